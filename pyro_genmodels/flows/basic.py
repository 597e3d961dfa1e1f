"""Small transforms the builders need: the inverse of a module (keeping its
parameters registered), a flat<->image reshape, and logit preprocessing."""

from __future__ import annotations

import math
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from pyro.distributions.torch_transform import TransformModule
from torch.distributions import Transform

from pyro_genmodels._checks import check_cache_size
from pyro_genmodels._compat import (
    clear_transform_cache,
    set_transform_cache_size,
    transform_cache_size,
    transform_inverse,
)

_T = TypeVar("_T")  # a transform, or a conditional transform module


class Inverse(TransformModule):
    """The inverse ``g = f^{-1}`` of a ``TransformModule`` ``f``, itself a module
    (``f.inv`` is not an ``nn.Module``, so ``ComposeTransformModule`` would not
    register its parameters); ``log|det J_g(x)| = -log|det J_f(g(x))|``.

    MAF is ``Inverse(AffineAutoregressive(...))``: its density direction (data to
    base) is the autoregressive network's single forward pass.

    >>> import torch
    >>> from pyro.distributions.transforms import affine_autoregressive
    >>> f = affine_autoregressive(3)
    >>> g = Inverse(f)
    >>> x = torch.randn(2, 3)
    >>> bool(torch.allclose(g.inv(g(x)), x, atol=1e-5))
    True
    """

    def __init__(self, transform: Transform, cache_size: int = 1) -> None:
        super().__init__(cache_size=check_cache_size(cache_size))
        if not isinstance(transform, Transform):
            raise TypeError(f"transform must be a torch Transform, got {type(transform).__name__}")
        self.base = transform
        self.bijective = transform.bijective
        self.autoregressive = getattr(transform, "autoregressive", False)
        # fixed at construction: compositions query them on every log_prob
        self.domain, self.codomain = transform.codomain, transform.domain

    @property
    def sign(self) -> int:
        return self.base.sign

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.inv(x)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.base(y)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.base.log_abs_det_jacobian(y, x)

    def forward_shape(self, shape: torch.Size) -> torch.Size:
        return self.base.inverse_shape(shape)

    def inverse_shape(self, shape: torch.Size) -> torch.Size:
        return self.base.forward_shape(shape)


class LogitTransform(Transform):
    """Logit preprocessing, base direction ``y = (sigmoid(x) - a) / (1 - 2a)``,
    data direction ``x = logit(a + (1 - 2a) y)``; elementwise
    ``log|dy/dx| = -softplus(-x) - softplus(x) - log(1 - 2a)``.

    Put last in a flow so that ``log_prob`` is a density of data ``y`` in
    ``[0, 1]`` (the original, dequantized pixel space): no rescaling of the
    reported likelihood is needed.

    Args:
        alpha: ``a`` in ``[0, 0.5)``, keeps ``logit`` away from 0 and 1.

    >>> import torch
    >>> t = LogitTransform(0.05)
    >>> t(t.inv(torch.tensor([0.0, 0.5, 1.0])))
    tensor([0.0000, 0.5000, 1.0000])

    References:
        Density estimation using Real NVP. L. Dinh, J. Sohl-Dickstein, S. Bengio,
        2017 (section 4.1).
    """

    domain = constraints.real
    bijective = True
    sign = 1

    def __init__(self, alpha: float = 0.05, cache_size: int = 0) -> None:
        super().__init__(cache_size=check_cache_size(cache_size))
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise TypeError(f"alpha must be a float in [0, 0.5), got {alpha!r}")
        if not 0 <= alpha < 0.5:
            raise ValueError(f"alpha must be a float in [0, 0.5), got {alpha!r}")
        self.alpha = float(alpha)
        width = 1 - 2 * self.alpha
        self.codomain = constraints.interval(-self.alpha / width, (1 - self.alpha) / width)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LogitTransform) and other.alpha == self.alpha

    def with_cache(self, cache_size: int = 1) -> LogitTransform:
        return (
            self
            if transform_cache_size(self) == cache_size
            else LogitTransform(self.alpha, cache_size)
        )

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(x) - self.alpha) / (1 - 2 * self.alpha)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        p = self.alpha + (1 - 2 * self.alpha) * y
        return torch.logit(p)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -F.softplus(-x) - F.softplus(x) - math.log(1 - 2 * self.alpha)


class _FixedPermutation(Transform):
    """A parameter-free permutation of a vector's entries: ``log|det J| = 0``; it
    holds no tensor, so it follows its input to any device."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    volume_preserving = True

    def __init__(self, cache_size: int = 0) -> None:
        super().__init__(cache_size=check_cache_size(cache_size))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def with_cache(self, cache_size: int = 1) -> Transform:
        return self if transform_cache_size(self) == cache_size else type(self)(cache_size)

    @property
    def sign(self) -> int:
        raise NotImplementedError("the sign of the permutation depends on the dimension")

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[:-1])


class Flip(_FixedPermutation):
    """Reverses the order of a vector's entries, ``y_i = x_{D-1-i}``; ``log|det J| = 0``.

    The permutation between coupling or autoregressive layers.

    >>> import torch
    >>> Flip()(torch.tensor([1.0, 2.0, 3.0]))
    tensor([3., 2., 1.])
    """

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-1)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y.flip(-1)


class EvenOdd(_FixedPermutation):
    """Puts the even-indexed entries first, ``y = (x_0, x_2, ..., x_1, x_3, ...)``;
    ``log|det J| = 0``.

    Between it and its inverse, coupling layers that split a vector in halves
    condition on the even and the odd entries in turn: the alternating
    (checkerboard) masks of NICE and Real NVP.

    >>> import torch
    >>> t = EvenOdd()
    >>> t(torch.arange(5.0)), t.inv(t(torch.arange(5.0)))
    (tensor([0., 2., 4., 1., 3.]), tensor([0., 1., 2., 3., 4.]))
    """

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[..., 0::2], x[..., 1::2]], dim=-1)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        evens = (y.shape[-1] + 1) // 2
        x = torch.empty_like(y)
        x[..., 0::2] = y[..., :evens]
        x[..., 1::2] = y[..., evens:]
        return x


def _layers(transform: Any, submodules: bool = True) -> list[Transform]:
    """``transform`` and every transform inside it: the parts of compositions, the
    base of an :class:`Inverse` or of torch's inverse, the inner transform of a
    split, and (with ``submodules``) transforms among submodules."""
    stack: list[Any] = [transform]
    seen: set[int] = set()
    out: list[Transform] = []
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if isinstance(t, Transform):
            out.append(t)
            inverse = transform_inverse(t)
            if inverse is not None:
                stack.append(inverse)
        stack += list(getattr(t, "parts", ()))
        stack += [getattr(t, a) for a in ("base", "transform") if hasattr(t, a)]
        if submodules and isinstance(t, torch.nn.Module):
            stack += list(t.children())
    return out


def set_cache_size(transform: _T, cache_size: int) -> _T:
    """Sets ``cache_size`` (0 or 1) on ``transform`` and on every transform inside it;
    returns ``transform``.

    ``torch``'s ``with_cache`` changes only the outermost cache of a composition;
    with ``cache_size=0`` here, no layer returns a remembered input, so every
    inverse and log-det is recomputed.

    >>> from pyro_genmodels.flows import realnvp
    >>> flow = set_cache_size(realnvp(4, num_layers=1), 0)
    >>> from pyro_genmodels._compat import transform_cache_size
    >>> {transform_cache_size(t) for t in flow.parts}
    {0}
    """
    check_cache_size(cache_size)
    for t in _layers(transform):
        set_transform_cache_size(t, cache_size)
    return transform


def clear_cache(transform: _T) -> _T:
    """Forgets the last ``(x, y)`` pair remembered by every layer of ``transform``.

    A flow with ``cache_size=1`` answers ``inv(y)`` from its cache when ``y`` is the
    tensor it last produced or inverted, even after its parameters have changed.
    Layers are reached through compositions, inverses and splits (the transforms a
    caller's tensor can reach unchanged);
    build distributions after clearing (as :class:`~pyro_genmodels.models.FlowDensity`
    does) so that scoring the same tensor twice across an optimizer step is fresh.

    >>> import torch
    >>> from pyro_genmodels.flows import realnvp
    >>> flow, y = realnvp(2, num_layers=1), torch.zeros(1, 2)
    >>> x = flow.inv(y)
    >>> flow.inv(y) is x, clear_cache(flow).inv(y) is x
    (True, False)
    """
    for t in _layers(transform, submodules=False):  # submodules see only fresh tensors
        clear_transform_cache(t)
    return transform
