"""Checkpoints: ``checkpoint.pt`` every few epochs and at the end, ``last_good.pt`` on failure.

:class:`Checkpointing` is the callback ``fit`` adds when given ``checkpoint_dir``. After
every ``every``-th epoch, the last one, and an epoch after which training stops, it
writes the run's snapshot (:func:`~pyro_genmodels.training.snapshot.capture`) to
``checkpoint.pt``, atomically and checksummed (:mod:`pyro_genmodels.training.files`),
which ``resume=True`` continues from. When a step fails (a non-finite value), it saves
the state before that step to ``last_good.pt`` with the step's position
(``epoch_step``), unless that state itself holds a non-finite value; resume never reads
it. Under data parallelism every rank makes the snapshot (its random and loss states
are gathered) and rank 0 alone writes.
"""

from __future__ import annotations

from typing import Any

from pyro_genmodels.training.callbacks.base import Callback
from pyro_genmodels.training.files import save_checkpoint
from pyro_genmodels.training.snapshot import capture, non_finite_entries

__all__ = ["CHECKPOINT_NAME", "LAST_GOOD_NAME", "Checkpointing"]

CHECKPOINT_NAME = "checkpoint.pt"
LAST_GOOD_NAME = "last_good.pt"


class Checkpointing(Callback):
    """Write ``checkpoint.pt`` and ``last_good.pt`` (see the module docstring).

    Args:
        every: write every this many epochs (and after the last one).
    """

    def __init__(self, every: int = 1) -> None:
        self.every = every

    def after_epoch(self, state: Any) -> None:
        done = state.epoch + 1
        if not (done % self.every == 0 or done == state.epochs or state.stop):
            return
        payload = capture(state, epoch=done)  # a collective call under data parallelism
        if state.strategy.writer:
            save_checkpoint(state.checkpoint_dir / CHECKPOINT_NAME, payload)
        state.checkpointed = True

    def on_failure(self, state: Any, error: Exception) -> str:
        if not state.strategy.writer:
            return "rank 0 saves the last good state"
        path = state.checkpoint_dir / LAST_GOOD_NAME
        payload = capture(state, epoch=state.epoch, epoch_step=state.epoch_step)
        bad = non_finite_entries(payload)
        if bad:
            return (
                f"the state was not saved to {str(path)!r} because it already holds non-finite "
                f"values (in {bad[:5]})"
            )
        try:
            save_checkpoint(path, payload)
        except OSError as e:
            why = f"{type(e).__name__}: {e}"
            return f"saving the last good state to {str(path)!r} failed as well ({why})"
        return f"the last good state (before this step) was saved to {str(path)!r}"
