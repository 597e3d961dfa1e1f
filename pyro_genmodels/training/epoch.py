"""One epoch of training: every batch of the epoch's order through the guarded step.

:func:`run_epoch` visits epoch ``run.epoch``'s batches (the order of
:mod:`pyro_genmodels.training.batches`, seeded by ``(seed, epoch)``), takes a step on
each (:class:`~pyro_genmodels.training.step.Step`), and returns the epoch's history row:
``epoch`` (1-based), ``loss`` = (sum of the step losses) / N — the mean per datapoint
for losses that sum over the data plate — or ``loss_0, loss_1, ...`` for a loss of
several values, ``time`` (wall seconds of the steps) and ``lr`` (when all parameters
share one). A step that fails raises :class:`StepFailed` with its position.
"""

from __future__ import annotations

import time
from typing import Any

from pyro_genmodels.training.callbacks.lr_schedule import read_lr
from pyro_genmodels.training.guard import NonFiniteStep
from pyro_genmodels.training.history import add_values, loss_columns
from pyro_genmodels.training.state import RunState
from pyro_genmodels.training.step import Step

__all__ = ["StepFailed", "run_epoch"]


class StepFailed(Exception):
    """Step ``step`` (0-based) of ``steps`` in the current epoch failed with ``error``."""

    def __init__(self, step: int, steps: int, error: NonFiniteStep) -> None:
        super().__init__(str(error))
        self.step, self.steps, self.error = step, steps, error


def run_epoch(run: RunState, batches: Any, step: Step) -> dict[str, Any]:
    """Train epoch ``run.epoch``; returns its history row (see the module docstring)."""
    totals: list[float] = []
    sizes = batches.step_sizes(run.epoch)
    start = time.perf_counter()
    for i, batch in enumerate(batches.epoch(run.epoch)):
        run.epoch_step = i
        run.strategy.before_step(step.loss, *sizes[i])
        try:
            values = step(batch)
        except NonFiniteStep as error:
            raise StepFailed(i, len(sizes), error) from error
        totals = add_values(totals, values)
        run.step += 1
    row = {"epoch": run.epoch + 1, **loss_columns(totals, batches.num_data)}
    row["time"] = time.perf_counter() - start
    lr = read_lr(run.optim)
    if lr is not None:
        row["lr"] = lr
    return row
