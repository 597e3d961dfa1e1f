"""The callback protocol of :func:`pyro_genmodels.fit`, and calling every callback's hooks.

A callback is an object with any of the hooks of :class:`Callback` (every hook is
optional), or a plain function ``cb(state) -> dict | None`` called at every epoch's
end. ``state`` is the run's :class:`~pyro_genmodels.training.state.FitState`. The
hooks, in the order of one run:

- ``on_train_start(state)``: after setup (and after a resume restored the run);
- ``on_epoch_start(state)``: before an epoch's steps (``state.stop = True`` ends the run);
- ``on_epoch_end(state) -> dict | None``: after the steps; the dict's entries become
  history columns (scalars only, no clash with existing columns);
- ``after_epoch(state)``: the epoch's row is in ``state.history`` (learning-rate
  schedules, progress, checkpointing act here);
- ``on_checkpoint(state)``: ``checkpoint.pt`` was written;
- ``on_failure(state, error) -> str | None``: a step failed (non-finite); a returned
  sentence is added to the error (where the last good state was saved);
- ``on_train_end(state)``: after the last epoch (not after a failure);
- ``teardown(state)``: always, last (close what ``on_train_start`` opened).

A callback with ``state_dict()``/``load_state_dict()`` is checkpointed and restored
with the run (its kind, order and constructor options must be the same on resume); a
``settings()`` method adds options it keeps under other names.

Every training feature of ``fit`` is such a callback (:mod:`.validation`,
:mod:`.early_stopping`, :mod:`.best_epoch`, :mod:`.lr_schedule`, :mod:`.progress`,
:mod:`.checkpointing`), placed after the user's callbacks; the runtime calls nothing
else of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

__all__ = ["HOOKS", "Callback", "check_callbacks", "fire", "merge_metrics"]

HOOKS = (
    "on_train_start",
    "on_epoch_start",
    "on_epoch_end",
    "after_epoch",
    "on_checkpoint",
    "on_failure",
    "on_train_end",
    "teardown",
)
"""Every hook a callback may have, in the order of a run."""


class Callback:
    """A base with every hook doing nothing (subclassing it is optional)."""

    def on_train_start(self, state: Any) -> None:
        """After setup and restore, before the first epoch."""

    def on_epoch_start(self, state: Any) -> None:
        """Before an epoch's steps."""

    def on_epoch_end(self, state: Any) -> dict[str, Any] | None:
        """After an epoch's steps: metrics for the history."""
        return None

    def after_epoch(self, state: Any) -> None:
        """The epoch's row is in the history."""

    def on_checkpoint(self, state: Any) -> None:
        """``checkpoint.pt`` was written."""

    def on_failure(self, state: Any, error: Exception) -> str | None:
        """A step failed; a sentence to add to the error, or ``None``."""
        return None

    def on_train_end(self, state: Any) -> None:
        """After the last epoch."""

    def teardown(self, state: Any) -> None:
        """Always, last."""


def check_callbacks(callbacks: Iterable[Any]) -> list[Any]:
    """``callbacks`` as a list, each a callable or an object with at least one hook.

    >>> check_callbacks([print])[0] is print
    True
    """
    if callable(callbacks) or not isinstance(callbacks, Iterable):
        raise TypeError(
            f"callbacks must be a sequence of callbacks, got {type(callbacks).__name__}"
        )
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not (callable(cb) or _has_hooks(cb)):
            raise TypeError(
                f"callbacks[{i}] must be callable cb(state) or have hooks such as "
                f"on_epoch_start/on_epoch_end, got {type(cb).__name__}"
            )
    return callbacks


def _has_hooks(cb: Any) -> bool:
    return any(hasattr(cb, hook) for hook in HOOKS)


def fire(callbacks: list[Any], hook: str, state: Any, *args: Any) -> list[Any]:
    """Call ``hook`` of every callback in order; returns their results. ``on_epoch_end``
    results are merged into ``state.row``; a plain function is called at ``on_epoch_end``.
    """
    results = []
    for i, cb in enumerate(callbacks):
        if _has_hooks(cb):
            method = getattr(cb, hook, None)
            result = method(state, *args) if method is not None else None
        else:
            result = cb(state) if hook == "on_epoch_end" else None
        if hook == "on_epoch_end" and result is not None:
            merge_metrics(state.row, result, i)
        results.append(result)
    return results


def merge_metrics(row: dict[str, Any], metrics: Any, index: int) -> None:
    if not isinstance(metrics, dict):
        raise TypeError(
            f"callbacks[{index}] must return a dict of metrics or None, "
            f"got {type(metrics).__name__}"
        )
    for key, value in metrics.items():
        if key in row:
            raise ValueError(
                f"callbacks[{index}] returned metric {key!r}, which is already a column"
            )
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            raise TypeError(
                f"callbacks[{index}] metric {key!r} must be a scalar, got a tensor of shape "
                f"{tuple(value.shape)}"
            )
        if isinstance(value, torch.Tensor | np.generic):
            value = value.item()
        if not isinstance(value, int | float | str):
            raise TypeError(
                f"callbacks[{index}] metric {key!r} must be an int, float or str, got "
                f"{type(value).__name__}"
            )
        row[str(key)] = value
