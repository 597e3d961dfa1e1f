"""Argument checks and per-datapoint slicing shared by the package's entry points."""

from __future__ import annotations

from typing import Any

import torch


def check_positive_int(name: str, value: Any, allow_none: bool = False) -> Any:
    """``value`` if it is a positive int (or None when allowed), else a ``ValueError``.

    >>> check_positive_int("num_samples", 3)
    3
    """
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        expected = "a positive int or None" if allow_none else "a positive int"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def check_batched_tensor(data: Any, name: str = "data") -> torch.Tensor:
    """``data`` if it is a tensor of shape ``(N, *)`` with ``N >= 1``."""
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, *), got {type(data).__name__}")
    if data.dim() < 1 or data.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (N, *) with N >= 1 datapoints, got shape {tuple(data.shape)}"
        )
    return data


def check_programs(model: Any, guide: Any) -> None:
    """Raises a ``TypeError`` unless ``model`` and ``guide`` are callable."""
    for name, fn in (("model", model), ("guide", guide)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}")


def slice_datapoints(values: Any, num_data: int, index: slice) -> Any:
    """Slices every tensor of a tuple/dict whose leading dim is ``num_data``; the rest pass whole.

    >>> x, c = torch.zeros(4, 2), torch.ones(3)
    >>> [tuple(v.shape) for v in slice_datapoints((x, c), 4, slice(0, 2))]
    [(2, 2), (3,)]
    """

    def cut(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == num_data:
            return v[index]
        return v

    if isinstance(values, dict):
        return {k: cut(v) for k, v in values.items()}
    return tuple(cut(v) for v in values)
