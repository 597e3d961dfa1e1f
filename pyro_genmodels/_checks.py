"""Argument checks shared by every entry point of the package, and per-datapoint slicing.

One rule decides the exception type everywhere:

- ``TypeError``: the argument is of the wrong *kind* -- a float, a bool or a string where an
  int is meant (``2.0`` is a ``TypeError``, as is ``True``), a non-sequence where a sequence
  is meant, a non-tensor where a tensor is meant, a tensor or dtype that is not floating where
  a floating one is meant (a dtype is the kind of a tensor's values).
- ``ValueError``: the argument is of the right kind but its *value* is wrong -- an int below its
  minimum, a shape of the wrong length or size, a name outside a list of choices, a tensor
  holding NaN/inf or values outside the support.

Every message names the argument, states what was expected and shows what was received.
Constructor arguments are always checked; the data-value checks (finite, binary, in range)
that run on every ``model``/``guide`` call follow Pyro's validation switch
(``pyro.enable_validation``, read by :func:`validating`), since each forces a host sync on CUDA.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import pyro.poutine.util
import torch


def validating() -> bool:
    """Whether per-call data-value checks run: Pyro's validation switch
    (``pyro.enable_validation`` / ``pyro.validation_enabled``), on by default.

    >>> import pyro
    >>> with pyro.validation_enabled(False):
    ...     validating()
    False
    """
    return pyro.poutine.util.is_validation_enabled()


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int | None = 1, allow_none: bool = False) -> Any:
    """``value`` as an int if it is an int ``>= minimum`` (or None when allowed).

    ``TypeError`` for anything that is not an int (floats such as ``2.0`` and bools included),
    ``ValueError`` for an int below ``minimum``. numpy integers are accepted.

    >>> check_int("num_layers", 3)
    3
    >>> check_int("num_layers", 2.0)
    Traceback (most recent call last):
    ...
    TypeError: num_layers must be a positive int, got float 2.0
    >>> check_int("num_layers", 0)
    Traceback (most recent call last):
    ...
    ValueError: num_layers must be a positive int, got 0
    """
    if value is None and allow_none:
        return None
    named = {None: "an int", 1: "a positive int"}
    expected = named.get(minimum, f"an int >= {minimum}")
    if allow_none:
        expected += " or None"
    if not _is_int(value):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def check_positive_int(name: str, value: Any, allow_none: bool = False) -> Any:
    """``value`` if it is an int ``>= 1`` (or None when allowed); see :func:`check_int`.

    >>> check_positive_int("num_samples", 3)
    3
    """
    return check_int(name, value, 1, allow_none)


def check_real(
    name: str,
    value: Any,
    minimum: float | None = None,
    strict: bool = False,
    maximum: float | None = None,
    finite: bool = True,
) -> float:
    """``value`` as a float if it is a finite real number within the bounds.

    ``minimum`` is exclusive when ``strict``; ``maximum`` is inclusive. ``TypeError`` for a
    non-number or a bool, ``ValueError`` for NaN, infinity or a value outside the bounds.
    ``finite=False`` admits ``±inf`` where it has a meaning (the open side of a box); NaN never.

    >>> check_real("beta", 1)
    1.0
    >>> check_real("lr", 0.0, minimum=0.0, strict=True)
    Traceback (most recent call last):
    ...
    ValueError: lr must be a finite real number > 0.0, got 0.0
    """
    bounds = []
    if minimum is not None:
        bounds.append(f"{'>' if strict else '>='} {minimum}")
    if maximum is not None:
        bounds.append(f"<= {maximum}")
    kind = "a finite real number" if finite else "a real number (not NaN)"
    expected = kind + (" " + " and ".join(bounds) if bounds else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    v = float(value)
    low_bad = minimum is not None and (v <= minimum if strict else v < minimum)
    bad = math.isnan(v) or (finite and math.isinf(v))
    if bad or low_bad or (maximum is not None and v > maximum):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return v


def check_real_or_tensor(
    name: str, value: Any, minimum: float | None = None, strict: bool = False
) -> Any:
    """``value`` if it is a finite real number (returned as a float, see :func:`check_real`) or a
    real tensor whose every entry is finite and ``>= minimum`` (``> minimum`` when ``strict``).

    ``TypeError`` for any other kind (a bool or complex tensor included), ``ValueError`` for
    NaN, infinity or a value below the bound.

    >>> check_real_or_tensor("init_scale", torch.tensor([1.0, float("inf")]))
    Traceback (most recent call last):
    ...
    ValueError: init_scale must be finite, but 1 of 2 values are NaN or inf
    """
    if not isinstance(value, torch.Tensor):
        return check_real(name, value, minimum, strict)
    if value.dtype == torch.bool or value.is_complex():
        raise TypeError(f"{name} must be a real number or a real tensor, got {value.dtype}")
    check_finite(value, name)
    if minimum is not None and bool((value <= minimum if strict else value < minimum).any()):
        raise ValueError(
            f"{name} must hold values {'>' if strict else '>='} {minimum}, got "
            f"min {value.min().item():.3g}"
        )
    return value


def check_positive_float(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite real ``> 0``; see :func:`check_real`.

    >>> check_positive_float("alpha", 2)
    2.0
    """
    return check_real(name, value, minimum=0.0, strict=True)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool, else a ``TypeError``.

    >>> check_bool("binarize", True)
    True
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``: a ``TypeError`` for a non-string where names are
    expected, a ``ValueError`` naming the valid ones otherwise.

    >>> check_choice("likelihood", "bernoulli", ("bernoulli", "gaussian"))
    'bernoulli'
    """
    if all(isinstance(c, str) for c in choices) and not isinstance(value, str):
        raise TypeError(
            f"{name} must be one of {tuple(choices)}, got {type(value).__name__} {value!r}"
        )
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_hidden_dims(
    hidden_dims: Any, default: Sequence[int] | None = None, name: str = "hidden_dims"
) -> tuple[int, ...]:
    """``hidden_dims`` as a tuple of ints ``>= 1`` (``default`` when it is None and a default
    is given). An empty sequence is allowed (no hidden layer).

    >>> check_hidden_dims([32, 32])
    (32, 32)
    >>> check_hidden_dims(None, default=(8,))
    (8,)
    """
    if hidden_dims is None and default is not None:
        return tuple(default)
    if not isinstance(hidden_dims, Sequence) or isinstance(hidden_dims, str):
        raise TypeError(
            f"{name} must be a sequence of positive ints, got {type(hidden_dims).__name__} "
            f"{hidden_dims!r}"
        )
    return tuple(check_int(f"{name}[{i}]", h) for i, h in enumerate(hidden_dims))


def check_image_shape(
    image_shape: Any,
    size: int | None = None,
    name: str = "image_shape",
    lengths: tuple[int, ...] = (3,),
) -> tuple[int, ...]:
    """``image_shape`` as a tuple ``(C, H, W)`` of ints ``>= 1`` (``lengths`` lists the
    allowed lengths), whose product is ``size`` when given.

    >>> check_image_shape((1, 8, 8), size=64)
    (1, 8, 8)
    >>> check_image_shape((1, 8, 8), size=60)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: image_shape (1, 8, 8) must have C*H*W equal to ... D=60, got C*H*W=64
    """
    form = " or ".join({2: "(H, W)", 3: "(C, H, W)"}.get(k, f"{k} ints") for k in lengths)
    if not isinstance(image_shape, Sequence) or isinstance(image_shape, str):
        raise TypeError(
            f"{name} must be a sequence {form} of positive ints, got "
            f"{type(image_shape).__name__} {image_shape!r}"
        )
    if len(image_shape) not in lengths:
        raise ValueError(f"{name} must be {form}, got {tuple(image_shape)!r}")
    shape = tuple(check_int(f"{name}[{i}]", s) for i, s in enumerate(image_shape))
    if size is not None and math.prod(shape) != size:
        dims = "*".join("CHW"[-len(shape) :])
        raise ValueError(
            f"{name} {shape} must have {dims} equal to the number of features D={size}, "
            f"got {dims}={math.prod(shape)}"
        )
    return shape


def check_cache_size(cache_size: Any) -> int:
    """``cache_size`` if it is 0 or 1 (the sizes torch's ``Transform`` cache takes).

    >>> check_cache_size(1)
    1
    """
    if not _is_int(cache_size):
        raise TypeError(
            f"cache_size must be 0 or 1, got {type(cache_size).__name__} {cache_size!r}"
        )
    if cache_size not in (0, 1):
        raise ValueError(f"cache_size must be 0 or 1, got {cache_size!r}")
    return int(cache_size)


def check_event(x: Any, name: str, event_shape: Sequence[int]) -> None:
    """Raises unless ``x`` is a tensor whose rightmost dims equal ``event_shape``.

    >>> check_event(torch.zeros(2, 3), "x", (4,))
    Traceback (most recent call last):
    ...
    ValueError: x must have shape (*, 4), got (2, 3)
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    k = len(event_shape)
    if x.dim() < k or tuple(x.shape[x.dim() - k :]) != tuple(event_shape):
        shape = ", ".join(str(s) for s in event_shape)
        raise ValueError(f"{name} must have shape (*, {shape}), got {tuple(x.shape)}")


def check_context(context: Any) -> torch.Tensor:
    """``context`` if it is a tensor (its shape is checked by the network that reads it)."""
    if not isinstance(context, torch.Tensor):
        raise TypeError(f"context must be a torch.Tensor, got {type(context).__name__}")
    return context


def check_finite(
    x: torch.Tensor, name: str, hint: str = "", error: type[Exception] = ValueError
) -> None:
    """Raises ``error`` (a ``ValueError`` by default) naming ``name`` and the count of NaN/inf
    values in ``x``, followed by ``hint`` (what to change).

    One cheap reduction first; the entry-wise count runs only when the sum is not finite.
    Computed values that diverged (a sampler's draws) raise ``FloatingPointError`` with a hint
    naming the knob; inputs keep the ``ValueError``.

    >>> check_finite(torch.tensor([1.0, float("nan")]), "x")
    Traceback (most recent call last):
    ...
    ValueError: x must be finite, but 1 of 2 values are NaN or inf
    """
    if x.is_floating_point() and not bool(torch.isfinite(x.sum())):
        num_bad = int((~torch.isfinite(x)).sum())
        if num_bad:
            raise error(
                f"{name} must be finite, but {num_bad} of {x.numel()} values are NaN or inf{hint}"
            )


def check_binary(x: torch.Tensor, name: str) -> None:
    """Raises a ``ValueError`` unless every value of ``x`` is 0 or 1.

    >>> check_binary(torch.tensor([0.0, 0.5]), "x")
    Traceback (most recent call last):
    ...
    ValueError: x must be binary (values in {0, 1}), but 1 of 2 values are not, e.g. 0.5
    """
    bad = (x != 0) & (x != 1)
    num_bad = int(bad.sum())
    if num_bad:
        example = x[bad][0].item()
        raise ValueError(
            f"{name} must be binary (values in {{0, 1}}), but {num_bad} of {x.numel()} "
            f"values are not, e.g. {example}"
        )


def check_in_range(x: torch.Tensor, name: str, low: float, high: float, why: str = "") -> None:
    """Raises a ``ValueError`` unless every value of ``x`` lies in ``[low, high]``.

    >>> check_in_range(torch.tensor([0.5, 2.0]), "x", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: x must lie in [0, 1]; found values in [0.5, 2]
    """
    if bool(((x < low) | (x > high)).any()):
        raise ValueError(
            f"{name} must lie in [{low}, {high}]{why}; "
            f"found values in [{x.min().item():.3g}, {x.max().item():.3g}]"
        )


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
