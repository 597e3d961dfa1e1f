"""Argument checks shared by the flow transforms and builders (not public API)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_hidden(hidden_dims: object, default: Sequence[int]) -> list[int]:
    if hidden_dims is None:
        return list(default)
    if not isinstance(hidden_dims, Sequence) or isinstance(hidden_dims, str):
        raise TypeError(f"hidden_dims must be a sequence of positive ints, got {hidden_dims!r}")
    return [check_int("hidden_dims[i]", h) for h in hidden_dims]


def check_cache_size(cache_size: object) -> int:
    if cache_size not in (0, 1) or isinstance(cache_size, bool):
        raise ValueError(f"cache_size must be 0 or 1, got {cache_size!r}")
    return cache_size  # type: ignore[return-value]


def check_event(x: torch.Tensor, name: str, event_shape: tuple[int, ...]) -> None:
    """Raises unless ``x`` is a tensor whose rightmost dims equal ``event_shape``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    k = len(event_shape)
    if x.dim() < k or tuple(x.shape[x.dim() - k :]) != tuple(event_shape):
        shape = ", ".join(str(s) for s in event_shape)
        raise ValueError(f"{name} must have shape (*, {shape}), got {tuple(x.shape)}")


def check_context(context: object) -> torch.Tensor:
    """Raises unless ``context`` is a tensor (shapes are checked by the network)."""
    if not isinstance(context, torch.Tensor):
        raise TypeError(f"context must be a torch.Tensor, got {type(context).__name__}")
    return context


def check_positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive float, got {value!r}")
    return float(value)
