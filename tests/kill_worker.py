"""A small training run that kills itself (SIGKILL) at a chosen moment; run as a script.

``python kill_worker.py CHECKPOINT_DIR MODE K``: ``MODE`` is ``step`` (die
at the K-th optimization step, before its update) or ``fsync`` (die at the K-th ``os.fsync``:
odd calls come after a checkpoint's temporary file is written and before it
replaces the old checkpoint, even calls just after the replacement).
:func:`train` is shared with the test, which resumes in its own process.
"""

from __future__ import annotations

import os
import signal
import sys

import pyro
import torch

EPOCHS, N, BATCH = 6, 24, 6


def data() -> torch.Tensor:
    return torch.rand(N, 6, generator=torch.Generator().manual_seed(3)).round()


def train(checkpoint_dir, resume: bool = False, loss=None):
    from pyro_genmodels.models import VAE
    from pyro_genmodels.training import fit

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae = VAE(6, 2, hidden_dims=(8,))
    history = fit(
        vae.model,
        vae.guide,
        data(),
        loss=loss or pyro.infer.Trace_ELBO(),
        epochs=EPOCHS,
        batch_size=BATCH,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        progress=False,
    )
    return vae, history


def _die_at_step(k: int) -> None:
    """SIGKILL at the K-th call of Adam's ``step`` (the update of the K-th training step)."""
    update, calls = torch.optim.Adam.step, [0]

    def step(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)
        return update(self, *args, **kwargs)

    torch.optim.Adam.step = step  # type: ignore[method-assign]


class _DieAt:
    """Counts calls and sends SIGKILL to this process at the K-th."""

    def __init__(self, fn, k: int) -> None:
        self.fn, self.k, self.calls = fn, k, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.k:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.fn(*args, **kwargs)


if __name__ == "__main__":
    directory, mode, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "step":
        _die_at_step(k)
    else:
        os.fsync = _DieAt(os.fsync, k)
    train(directory)
    sys.exit(3)  # reached only if K is past the end of the run
