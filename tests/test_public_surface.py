"""Every name the README documents as ``pgm.<...>`` is reachable as an attribute of ``pgm``
after ``import pyro_genmodels as pgm`` (subpackages load on first use), and every module
of the package that ``pgm`` lists loads."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

README = (Path(__file__).parent.parent / "README.md").read_text()
NAMES = sorted(
    set(re.findall(r"\bpgm\.[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*", README))
)


def test_the_readme_documents_names():
    assert len(NAMES) > 30  # the walk below has something to walk


@pytest.mark.parametrize("dotted", NAMES)
def test_every_documented_name_is_an_attribute_of_pgm(dotted):
    import pyro_genmodels as pgm

    obj = pgm
    for part in dotted.split(".")[1:]:
        assert hasattr(obj, part), f"{dotted}: {part!r} is not an attribute"
        obj = getattr(obj, part)


def test_every_listed_submodule_loads():
    import pyro_genmodels as pgm

    for name in pgm.__all__:
        assert getattr(pgm, name) is not None
    for name in ("training", "parallel", "infer", "models"):
        assert importlib.import_module(f"pyro_genmodels.{name}") is getattr(pgm, name)
