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


def check_expand_shape(owner: str, batch_shape: torch.Size, new_shape: Any) -> torch.Size:
    """``new_shape`` as a ``torch.Size`` if ``batch_shape`` expands to it by torch's rules
    (each existing size is 1 or equal to the new one), else a ``ValueError``.

    >>> check_expand_shape("D", torch.Size([2, 1]), (5, 2, 3))
    torch.Size([5, 2, 3])
    >>> check_expand_shape("D", torch.Size([2, 1]), (4, 3))
    Traceback (most recent call last):
    ...
    ValueError: D.expand: batch_shape (2, 1) does not expand to (4, 3) (sizes must be 1 or equal)
    """
    try:
        new = torch.Size(new_shape)
    except TypeError:
        raise TypeError(
            f"{owner}.expand: batch_shape must be a sequence of ints, got {new_shape!r}"
        ) from None
    if any(s < 0 for s in new):
        raise ValueError(f"{owner}.expand: batch_shape must hold sizes >= 0, got {tuple(new)}")
    old = tuple(batch_shape)
    if len(new) < len(old) or any(
        o != 1 and o != n for o, n in zip(reversed(old), reversed(tuple(new)))
    ):
        raise ValueError(
            f"{owner}.expand: batch_shape {old} does not expand to {tuple(new)} "
            "(sizes must be 1 or equal)"
        )
    return new


def broadcast_value_shape(
    owner: str, value: Any, batch_shape: torch.Size, event_shape: torch.Size
) -> torch.Size:
    """The batch shape of ``log_prob(value)``: ``value``'s leading dims broadcast against
    ``batch_shape``. A ``TypeError`` when ``value`` is not a tensor, a ``ValueError`` when
    its trailing dims are not ``event_shape`` or its leading dims do not broadcast.

    >>> broadcast_value_shape("D", torch.zeros(5, 1, 3), torch.Size([4]), torch.Size([3]))
    torch.Size([5, 4])
    """
    event = tuple(event_shape)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{owner} expects a Tensor value, got {type(value).__name__}")
    k = len(event)
    if value.dim() < k or tuple(value.shape[value.dim() - k :]) != event:
        raise ValueError(
            f"{owner} expects values of shape (*batch, {', '.join(map(str, event))}), "
            f"got shape {tuple(value.shape)}"
        )
    leading = value.shape[: value.dim() - k]
    try:
        return torch.broadcast_shapes(leading, batch_shape)
    except RuntimeError:
        raise ValueError(
            f"{owner}: the value's batch dims {tuple(leading)} (value shape "
            f"{tuple(value.shape)}) do not broadcast with batch_shape {tuple(batch_shape)}"
        ) from None
