"""Deep generative models as Pyro citizens.

``pyro_genmodels`` (imported as ``pgm``) supplies the distributions, networks,
losses, estimators, diagnostics and the training loop that turn ordinary Pyro
programs into deep generative models. Subpackages load on first use, and so do the
top-level functions: :func:`fit` (training), :func:`load_weights` (a checkpoint into
fresh modules) and :func:`load_run` (a command-line run, rebuilt).

>>> import pyro_genmodels as pgm
>>> pgm.nn.MLP(2, [4], 1).out_dim
1
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "data",
    "diagnostics",
    "distributions",
    "flows",
    "infer",
    "models",
    "nn",
    "optim",
    "parallel",
    "params",
    "runs",
    "training",
    "zoo",
)
#: Functions at the top level, by the module that defines them (loaded on first use).
_FUNCTIONS = {
    "fit": "pyro_genmodels.training",
    "load_run": "pyro_genmodels.runs",
    "load_weights": "pyro_genmodels.runs",
}
__all__ = [*_SUBMODULES, *_FUNCTIONS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"pyro_genmodels.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'pyro_genmodels' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
