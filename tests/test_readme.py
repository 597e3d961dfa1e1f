"""Every ```python block of README.md runs as written.

The blocks run one after another in one fresh interpreter (torch and Pyro are imported
once for all of them), each in a namespace of its own — so each must import what it
uses — after Pyro's param store is cleared and the generators are seeded, as in a new
session, in a temporary folder (the files a block writes land there). Shell commands
and output live in other blocks (```bash, ```text). The README keeps its blocks cheap:
together they run in well under two minutes on one core.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = [  # blocks inside list items are indented: their code is dedented
    textwrap.dedent(code)
    for _, code in re.findall(
        r"^( *)```python\n(.*?)^\1```", (ROOT / "README.md").read_text(), re.S | re.M
    )
]
TIMEOUT = 600  # seconds for all blocks: a guard against a hang, not a speed test

RUNNER = """
import json, sys, time, traceback
import pyro

blocks, results = json.load(open(sys.argv[1])), []
for code in blocks:
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    start = time.perf_counter()
    try:
        exec(compile(code, "README.md", "exec"), {"__name__": "__main__"})
        error = None
    except BaseException:
        error = traceback.format_exc()
    results.append({"seconds": time.perf_counter() - start, "error": error})
    json.dump(results, open(sys.argv[2], "w"))
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Each block's ``{"seconds", "error"}``, in the README's order."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "blocks.json").write_text(json.dumps(BLOCKS))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, "blocks.json", "results.json"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    results = folder / "results.json"
    found = json.loads(results.read_text()) if results.exists() else []
    assert len(found) == len(BLOCKS), done.stderr[-3000:]
    return found


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 7
    for block in BLOCKS:
        assert re.search(r"^import |^from ", block, re.M), block[:200]


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[b.splitlines()[-1][:40] for b in BLOCKS])
def test_readme_block_runs_as_written(index, outcomes):
    error = outcomes[index]["error"]
    assert error is None, f"README block {index}:\n{BLOCKS[index]}\n{error}"
