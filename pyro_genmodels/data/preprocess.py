"""Pixel preprocessing: uniform dequantization and binarization."""

from __future__ import annotations

import math

import torch

from pyro_genmodels.data.validation import check_finite, check_positive_int


def _out_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def dequantize(
    x_int: torch.Tensor,
    levels: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Uniform dequantization ``y = (x + u) / levels`` with ``u ~ U[0, 1)``.

    Maps integer pixels ``x ∈ {0, ..., levels-1}`` to ``y ∈ [x/levels, (x+1)/levels)``,
    so that a continuous density on ``[0, 1]^D`` lower-bounds the discrete model
    (Theis, van den Oord and Bethge, "A note on the evaluation of generative
    models", 2016) and ``floor(y * levels)`` recovers ``x``. The noise is drawn in
    float64 whatever ``dtype`` is (so a float32 result is the float64 one rounded) and
    a value that rounding pushed out of its cell is moved to the nearest representable
    value inside, so that ``floor(y.double() * levels) == x`` holds exactly.

    Args:
        x_int: integer-valued tensor of any shape ``(*)`` (integer or floating dtype)
            with values in ``{0, ..., levels-1}``.
        levels: the number of quantization levels (17 for digits, 256 for MNIST).
        generator: an optional ``torch.Generator`` on ``x_int``'s device, for
            reproducible noise.
        dtype: floating dtype of the result; default ``x_int``'s dtype if floating,
            else the default dtype.

    Returns:
        a tensor of shape ``(*)`` and ``dtype`` on ``x_int``'s device.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> y = dequantize(torch.tensor([0, 16]), 17, generator=g)
    >>> torch.floor(y * 17).long().tolist()
    [0, 16]
    """
    if not isinstance(x_int, torch.Tensor):
        raise TypeError(f"x_int must be a torch.Tensor, got {type(x_int).__name__}")
    levels = check_positive_int("levels", levels)
    check_finite(x_int, "x_int")
    bad = (x_int < 0) | (x_int > levels - 1)
    if x_int.is_floating_point():
        bad = bad | (x_int != torch.floor(x_int))
    num_bad = int(bad.sum())
    if num_bad:
        raise ValueError(
            f"x_int must hold integers in {{0, ..., {levels - 1}}} (levels={levels}), but "
            f"{num_bad} of {x_int.numel()} values are not, e.g. {x_int[bad][0].item()}"
        )
    if generator is not None and generator.device.type != x_int.device.type:
        raise ValueError(
            f"generator must live on x_int's device {x_int.device}, got {generator.device}"
        )
    if dtype is None:
        dtype = _out_dtype(x_int)
    elif not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
    return dequantize_unchecked(x_int, levels, generator, dtype)


def dequantize_unchecked(
    x_int: torch.Tensor, levels: int, generator: torch.Generator | None, dtype: torch.dtype
) -> torch.Tensor:
    """``dequantize`` without validating its arguments (for trusted pixels)."""
    x = x_int.to(torch.float64)
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=x.device)
    return _snap_into_cells(((x + u) / levels).to(dtype), x, levels)


def _snap_into_cells(y: torch.Tensor, x: torch.Tensor, levels: int) -> torch.Tensor:
    """Moves each ``y`` by one ulp at a time until ``floor(y.double() * levels) == x``."""
    for _ in range(4):
        cell = torch.floor(y.double() * levels)
        low, high = cell < x, cell > x
        if not bool((low | high).any()):
            return y
        y = torch.where(low, torch.nextafter(y, torch.ones_like(y)), y)
        y = torch.where(high, torch.nextafter(y, torch.zeros_like(y)), y)
    raise ValueError(f"dtype {y.dtype} is too coarse to represent {levels} dequantized levels")


def binarize(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Deterministic binarization ``b = 1[x > threshold]``.

    For integer pixels ``x ∈ {0, ..., 16}`` the rule ``x >= 8`` is
    ``binarize(x, 7.5)``; for MNIST ``x / 255 > 0.5`` is ``binarize(x / 255, 0.5)``.

    Args:
        x: tensor of any shape ``(*)``.
        threshold: a finite number; values strictly above it become 1.

    Returns:
        a tensor of zeros and ones of shape ``(*)`` on ``x``'s device, with ``x``'s
        dtype if floating and the default dtype otherwise.

    >>> import torch
    >>> binarize(torch.tensor([0.2, 0.5, 0.7])).tolist()
    [0.0, 0.0, 1.0]
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a real number, got {threshold!r}")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    check_finite(x, "x")
    return (x > threshold).to(_out_dtype(x))


def standardize(
    x: torch.Tensor, *others: torch.Tensor
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
    """Per-feature standardization ``z = (x - μ) / σ`` with ``μ``, ``σ`` of ``x``'s rows.

    ``μ`` and ``σ`` (the population standard deviation) come from ``x`` alone (the
    training rows) and are applied to ``x`` and to each of ``others`` (validation and test
    rows), so that held-out data never inform the scaling. A feature that is constant in
    ``x`` (``σ = 0``) has no scale: a ``ValueError`` names it.

    Args:
        x: floating tensor ``(N, D)`` with ``N >= 2``.
        others: floating tensors ``(M, D)``.

    Returns:
        ``((z, *others_z), μ, σ)`` with ``μ`` and ``σ`` of shape ``(D,)``.

    >>> import torch
    >>> (z, t), loc, scale = standardize(torch.tensor([[0.0], [2.0]]), torch.tensor([[4.0]]))
    >>> z.tolist(), t.tolist(), loc.tolist(), scale.tolist()
    ([[-1.0], [1.0]], [[3.0]], [1.0], [1.0])
    """
    for name, t in (("x", x), *((f"others[{i}]", o) for i, o in enumerate(others))):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() != 2:
            got = f"{t.dtype} of shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else t
            raise TypeError(f"{name} must be a floating tensor (N, D), got {got}")
        if t.shape[1] != x.shape[1]:
            raise ValueError(f"{name} must have x's {x.shape[1]} features, got {tuple(t.shape)}")
        check_finite(t, name)
    if x.shape[0] < 2:
        raise ValueError(f"x must have at least 2 rows to estimate a scale, got {x.shape[0]}")
    loc, scale = x.mean(0), x.std(0, unbiased=False)
    constant = torch.nonzero(scale == 0).flatten().tolist()
    if constant:
        shown = constant[:10] + (["..."] if len(constant) > 10 else [])
        raise ValueError(
            f"{len(constant)} feature(s) are constant in the training rows and have no scale "
            f"to standardize by (columns {shown}); drop them first"
        )
    return tuple((t - loc) / scale for t in (x, *others)), loc, scale
