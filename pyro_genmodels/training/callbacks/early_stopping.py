"""Early stopping: end training when a history column has not improved for a while.

:class:`Monitored` follows one history column (``val_loss`` or a callback's metric;
lower is better) every ``every`` epochs and keeps its best finite value and epoch. A
non-finite value (a NaN validation loss) is a failed validation: never the best, and
counted by the patience. :class:`EarlyStopping` stops the run once ``patience`` epochs
have passed since the best one (since the start while there is none); its state
(best score and epoch, whether it stopped) is checkpointed, so a resume inside the
patience window is exact and a stopped run stays stopped (resumed with more ``epochs``, it
says so with a warning and trains no further: its decision stands).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from pyro_genmodels.training.callbacks.base import Callback

__all__ = ["EarlyStopping", "Monitored"]


class Monitored(Callback):
    """The best value of one history column (see the module docstring).

    Args:
        monitor: the history column to minimize.
        every: look at it every this many epochs (the validation's rhythm).
    """

    def __init__(self, monitor: str = "val_loss", every: int = 1) -> None:
        self.monitor, self.every = monitor, every
        self.best_score: float | None = None
        self.best_epoch: int | None = None

    def observe(self, state: Any) -> float | None:
        """This epoch's value of the column (``None`` when not looked at); updates the best."""
        epoch = state.epoch + 1
        if epoch % self.every != 0:
            return None
        if self.monitor not in state.row:
            raise ValueError(
                f"monitor must name a history column, got {self.monitor!r}; the columns of "
                f"epoch {epoch} are {sorted(state.row)}"
            )
        score = float(state.row[self.monitor])
        if math.isfinite(score) and (self.best_score is None or score < self.best_score):
            self.best_score, self.best_epoch = score, epoch
        return score

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]


class EarlyStopping(Monitored):
    """Stop after ``patience`` epochs without a better ``monitor`` (a ``fit`` callback).

    Args:
        patience: epochs without improvement before stopping.
        monitor, every: as :class:`Monitored`.

    >>> stopper = EarlyStopping(patience=2, monitor="score")
    >>> stopper.patience, stopper.stopped
    (2, False)
    """

    def __init__(self, patience: int, monitor: str = "val_loss", every: int = 1) -> None:
        super().__init__(monitor, every)
        self.patience = patience
        self.stopped = False

    def on_train_start(self, state: Any) -> None:
        if self.stopped and state.epoch < state.epochs:
            warnings.warn(
                f"this run stopped early after epoch {state.epoch} ({self.monitor} had not "
                f"improved for {self.patience} epochs since epoch {self.best_epoch}); resuming "
                f"with epochs={state.epochs} trains no further. To train longer, start a new "
                "run from its weights (pgm.load_weights) without early stopping, or with more "
                "patience",
                stacklevel=2,
            )

    def on_epoch_start(self, state: Any) -> None:
        if self.stopped:  # a resumed run that had already stopped early trains no further
            state.stop = True

    def on_epoch_end(self, state: Any) -> None:
        if self.observe(state) is None:
            return
        since = self.best_epoch if self.best_epoch is not None else 0
        if state.epoch + 1 - since >= self.patience:
            self.stopped = state.stop = True

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stopped": self.stopped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.stopped = bool(state["stopped"])
