"""The state of a training run: one mutable :class:`RunState`, and the view callbacks get.

:class:`RunState` is everything :class:`~pyro_genmodels.training.trainer.Trainer` works
on: what is trained (model, guide, the loss as the user gave it, the optimizer, the
modules they use), how (device, strategy, seed, the callbacks), and where training is
(epoch, global step, the history, the row of the epoch being built). Checkpoints are
snapshots of it (:mod:`pyro_genmodels.training.snapshot`).

Callbacks get a :class:`FitState`: a read-only view of the run in which only the
current ``row`` (a dict that callbacks may read) and ``stop`` (set it to ``True`` to
end training after this epoch) can be written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro.optim
import torch

from pyro_genmodels.parallel.strategy import SingleProcess, Strategy

__all__ = ["FitState", "RunState"]


@dataclass
class RunState:
    """The training loop's state (see the module docstring).

    Attributes:
        model, guide: the Pyro programs, called as ``model(*batch)``.
        loss: the loss as given to ``fit`` (the runtime's layers are in ``stepper``).
        optim: the Pyro optimizer.
        modules: the ``nn.Module`` objects that model, guide and loss use.
        callbacks: every callback, the runtime's own (validation, checkpointing, ...) included.
        epochs: the number of epochs to reach.
        device: where training runs.
        strategy: one process or data-parallel ranks.
        seed: the run's seed.
        checkpoint_dir: where checkpoints go (``None``: nowhere); rank 0 alone writes.
        data: the data fingerprint (number, shapes, dtypes, digest, batching).
        settings: what a resumed run must keep
            (:func:`~pyro_genmodels.training.resume_rules.run_settings`).
        run_id: the run's identity (kept on resume).
        epoch: the current epoch, 0-based; ``step``: global steps so far; ``epoch_step``:
            steps done in the current epoch.
        history: the rows of the finished epochs; ``row``: the current epoch's row.
        stop: ``True`` ends training after this epoch.
        param_names: the param-store names the steps traced.
        checkpointed: a checkpoint was written at the end of this epoch.
    """

    model: Callable
    guide: Callable
    loss: Any
    optim: pyro.optim.PyroOptim
    modules: list[torch.nn.Module] = field(default_factory=list)
    callbacks: list[Any] = field(default_factory=list)
    epochs: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    strategy: Strategy = field(default_factory=SingleProcess)
    seed: int = 0
    checkpoint_dir: Path | None = None
    data: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    epoch: int = 0
    step: int = 0
    epoch_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    row: dict[str, Any] = field(default_factory=dict)
    stop: bool = False
    param_names: set[str] = field(default_factory=set)
    checkpointed: bool = False


_WRITABLE = ("row", "stop", "checkpointed")


class FitState:
    """What callbacks see: a read-only view of the :class:`RunState` at an epoch boundary.

    Attributes (read-only unless said): ``epoch`` (0-based), ``epochs``, ``step``,
    ``epoch_step``, ``history`` (the finished epochs' rows), ``row`` (the current epoch's
    row, writable), ``model``, ``guide``, ``loss``, ``optim``, ``device``, ``run_id``,
    ``seed``, ``modules``, ``callbacks``, ``strategy``, ``checkpoint_dir``,
    ``settings``, ``data``, ``param_names``; ``stop`` (writable: set it to ``True`` to end
    training after this epoch); ``checkpointed`` (writable: set by the callback that wrote
    ``checkpoint.pt`` this epoch).

    >>> state = FitState(RunState(print, print, None, pyro.optim.Adam({})))
    >>> state.epoch, state.stop
    (0, False)
    >>> state.stop = True; state.stop
    True
    >>> state.epoch = 3
    Traceback (most recent call last):
    ...
    AttributeError: FitState.epoch is read-only (callbacks may set row, stop, checkpointed)
    """

    __slots__ = ("_run",)

    def __init__(self, run: RunState) -> None:
        object.__setattr__(self, "_run", run)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._run, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _WRITABLE:
            raise AttributeError(
                f"FitState.{name} is read-only (callbacks may set {', '.join(_WRITABLE)})"
            )
        setattr(self._run, name, value)
