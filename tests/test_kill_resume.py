"""kill -9 at random moments (between steps, mid checkpoint write), then resume: exact.

Each trial runs :mod:`kill_worker` in a subprocess that SIGKILLs itself at a
kill point drawn at random (fixed seed) among the optimization steps and the
``fsync`` calls of checkpoint writes; the run is then resumed in this process
and must equal an uninterrupted run bit for bit, with no temporary file left.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import kill_worker
import pytest
import torch

WORKER = Path(kill_worker.__file__)
ROOT = WORKER.parent.parent  # the checkout under test, imported first by the worker
STEPS = kill_worker.EPOCHS * (kill_worker.N // kill_worker.BATCH)
FSYNCS = 2 * kill_worker.EPOCHS  # one checkpoint per epoch: file fsync, folder fsync
_rng = random.Random(20261128)
TRIALS = [("step", _rng.randint(1, STEPS)) for _ in range(2)]
TRIALS += [("fsync", _rng.randint(1, FSYNCS)) for _ in range(2)]


@pytest.fixture(scope="module")
def uninterrupted():
    vae, history = kill_worker.train(None)
    return {k: v.clone() for k, v in vae.state_dict().items()}, history


@pytest.mark.parametrize("mode,k", TRIALS)
def test_kill9_then_resume_is_exact(tmp_path, uninterrupted, mode, k):
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path), mode, str(k)],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1",
        },
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    with (
        pytest.warns(UserWarning, match="no checkpoint")
        if not (tmp_path / "checkpoint.pt").exists()
        else _nothing()
    ):
        vae, history = kill_worker.train(tmp_path, resume=True)
    expected, full = uninterrupted
    got = vae.state_dict()
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    assert history["loss"].equals(full["loss"])
    assert not list(tmp_path.glob(".*.tmp"))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
