"""Learning-rate schedules: a ``pyro.optim.PyroLRScheduler`` stepped once per epoch.

:class:`LRSchedule` is the callback ``fit`` adds when its optimizer is a
``PyroLRScheduler``: after every epoch it calls the scheduler's ``step()``, with the
epoch's monitored value for ``ReduceLROnPlateau`` (the validation score when there is
one and it is finite, else the epoch's loss). The scheduler's state travels with the
optimizer's in checkpoints.
"""

from __future__ import annotations

import math
from typing import Any

import pyro.optim
import torch

from pyro_genmodels.training.callbacks.base import Callback

__all__ = ["LRSchedule", "read_lr"]


def read_lr(optim: pyro.optim.PyroOptim) -> float | None:
    """The learning rate in use, when every parameter's optimizer shares one.

    >>> read_lr(pyro.optim.Adam({"lr": 0.1})) is None  # no parameter stepped yet
    True
    """
    lrs: set[float] = set()
    for obj in optim.optim_objs.values():
        opt = getattr(obj, "optimizer", obj)
        lrs.update(float(group["lr"]) for group in opt.param_groups if "lr" in group)
    return lrs.pop() if len(lrs) == 1 else None


def plateau_value(row: dict[str, Any], monitor: str | None) -> float:
    """What ``ReduceLROnPlateau`` sees: the monitored (validation) value when it is finite,
    else the epoch's (first) loss column.

    >>> plateau_value({"loss": 2.0, "val_loss": float("nan")}, "val_loss")
    2.0
    """
    value = row.get(monitor) if monitor is not None else None
    if value is not None and math.isfinite(float(value)):
        return float(value)
    return next(v for k, v in row.items() if k.startswith("loss"))


class LRSchedule(Callback):
    """Step a ``PyroLRScheduler`` after every epoch (see the module docstring).

    Args:
        monitor: the history column ``ReduceLROnPlateau`` follows (``None``: the loss).
    """

    def __init__(self, monitor: str | None = None) -> None:
        self.monitor = monitor

    def after_epoch(self, state: Any) -> None:
        optim = state.optim
        if not isinstance(optim, pyro.optim.PyroLRScheduler):
            return
        if optim.pt_scheduler_constructor is torch.optim.lr_scheduler.ReduceLROnPlateau:
            optim.step(plateau_value(state.row, self.monitor))
        else:
            optim.step()
