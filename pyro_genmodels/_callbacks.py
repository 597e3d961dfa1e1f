"""Callbacks of :func:`pyro_genmodels.fit`: checking them, calling their hooks, merging metrics.

A callback is either ``cb(state) -> dict | None`` (called at epoch end) or an
object with optional ``on_epoch_start(state)`` / ``on_epoch_end(state) -> dict |
None``; the dicts' entries become history columns (scalars only, no clash with
existing columns).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

__all__ = ["check_callbacks", "has_hooks", "merge_metrics", "run_callbacks"]


def check_callbacks(callbacks: Iterable[Any]) -> list[Any]:
    if callable(callbacks) or not isinstance(callbacks, Iterable):
        raise TypeError(
            f"callbacks must be a sequence of callbacks, got {type(callbacks).__name__}"
        )
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not (callable(cb) or has_hooks(cb)):
            raise TypeError(
                f"callbacks[{i}] must be callable cb(state) or have on_epoch_start/on_epoch_end "
                f"methods, got {type(cb).__name__}"
            )
    return callbacks


def has_hooks(cb: Any) -> bool:
    return hasattr(cb, "on_epoch_start") or hasattr(cb, "on_epoch_end")


def run_callbacks(callbacks: list[Any], hook: str, state: Any) -> None:
    for i, cb in enumerate(callbacks):
        if has_hooks(cb):
            method = getattr(cb, hook, None)
            result = method(state) if method is not None else None
        else:
            result = cb(state) if hook == "on_epoch_end" else None
        if hook == "on_epoch_end" and result is not None:
            merge_metrics(state.row, result, i)


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
