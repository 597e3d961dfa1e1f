"""Image-tensor transforms for multiscale flows: squeeze, and split/merge.

References:
    Density estimation using Real NVP. L. Dinh, J. Sohl-Dickstein, S. Bengio, 2017.
    Glow: Generative Flow with Invertible 1x1 Convolutions. D. P. Kingma,
    P. Dhariwal, 2018.
"""

from __future__ import annotations

import torch
from pyro.distributions import constraints
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.distributions.torch_transform import TransformModule
from torch.distributions import Transform

from pyro_genmodels.flows._checks import check_cache_size, check_context, check_event, check_int


class Squeeze(Transform):
    """Space-to-depth ``(C, H, W) -> (4C, H/2, W/2)``: each 2x2 patch becomes 4
    channels; a permutation, so ``log|det J| = 0``.

    Args:
        image_shape: ``(C, H, W)`` of the input, ``H`` and ``W`` even.

    Shapes: ``(*, C, H, W) -> (*, 4C, H/2, W/2)`` (event dim 3).

    >>> import torch
    >>> t = Squeeze((1, 4, 4))
    >>> t(torch.arange(16.0).reshape(1, 4, 4))[:, 0, 0]
    tensor([0., 1., 4., 5.])
    """

    domain = constraints.independent(constraints.real, 3)
    codomain = constraints.independent(constraints.real, 3)
    bijective = True
    sign = 1

    def __init__(self, image_shape: tuple[int, int, int], cache_size: int = 0) -> None:
        super().__init__(cache_size=check_cache_size(cache_size))
        shape = tuple(image_shape)
        if len(shape) != 3 or any(not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f"image_shape must be (C, H, W) of positive ints, got {image_shape!r}")
        if shape[1] % 2 or shape[2] % 2:
            raise ValueError(f"image_shape must have even H and W to squeeze, got {shape}")
        self.image_shape = shape
        c, h, w = shape
        self.out_shape = (4 * c, h // 2, w // 2)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Squeeze) and other.image_shape == self.image_shape

    def with_cache(self, cache_size: int = 1) -> Squeeze:
        return self if self._cache_size == cache_size else Squeeze(self.image_shape, cache_size)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        check_event(x, "x", self.image_shape)
        c, h, w = self.image_shape
        batch = x.shape[:-3]
        x = x.reshape(*batch, c, h // 2, 2, w // 2, 2)
        n = len(batch)
        x = x.permute(*range(n), n, n + 2, n + 4, n + 1, n + 3)  # (*, c, 2, 2, h/2, w/2)
        return x.reshape(*batch, *self.out_shape)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        check_event(y, "y", self.out_shape)
        c, h, w = self.image_shape
        batch = y.shape[:-3]
        y = y.reshape(*batch, c, 2, 2, h // 2, w // 2)
        n = len(batch)
        y = y.permute(*range(n), n, n + 3, n + 1, n + 4, n + 2)  # (*, c, h/2, 2, w/2, 2)
        return y.reshape(*batch, *self.image_shape)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[:-3])

    def forward_shape(self, shape: torch.Size) -> torch.Size:
        if tuple(shape[-3:]) != self.image_shape:
            raise ValueError(f"shape must end in {self.image_shape}, got {tuple(shape)}")
        return torch.Size(shape[:-3]) + self.out_shape

    def inverse_shape(self, shape: torch.Size) -> torch.Size:
        if tuple(shape[-3:]) != self.out_shape:
            raise ValueError(f"shape must end in {self.out_shape}, got {tuple(shape)}")
        return torch.Size(shape[:-3]) + self.image_shape


class MultiscaleSplit(TransformModule):
    """Multiscale split/merge: ``y = concat(f(x[:k]), x[k:])`` along ``dim``;
    ``log|det J| = log|det J_f(x[:k])|``.

    The part ``x[k:]`` is factored out (it goes straight to the base
    distribution, as in Real NVP's multiscale architecture); the rest continues
    through ``transform``. With ``dim=-3`` the split is over the channels of an
    image ``(*, C, H, W)``; with ``dim=-1`` over the entries of a vector.

    Args:
        transform: a (composed) transform of event dim ``-dim`` acting on the
            first ``split_size`` entries along ``dim``; its parameters are registered.
        split_size: ``k``, entries kept for further transformation.
        dim: -1 (vectors) or -3 (image channels).

    >>> import torch
    >>> from pyro_genmodels.flows import ActNorm
    >>> t = MultiscaleSplit(ActNorm(2), 2, dim=-1)
    >>> t(torch.zeros(5, 3)).shape
    torch.Size([5, 3])
    """

    bijective = True

    def __init__(
        self, transform: Transform, split_size: int, dim: int = -3, cache_size: int = 1
    ) -> None:
        super().__init__(cache_size=check_cache_size(cache_size))
        if dim not in (-1, -3):
            raise ValueError(f"dim must be -1 (vectors) or -3 (image channels), got {dim!r}")
        if not isinstance(transform, Transform):
            raise TypeError(f"transform must be a torch Transform, got {type(transform).__name__}")
        if transform.domain.event_dim != -dim:
            raise ValueError(
                f"transform must have event dim {-dim} for dim={dim}, "
                f"got {transform.domain.event_dim}"
            )
        self.transform = transform
        self.split_size = check_int("split_size", split_size)
        self.dim = dim

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def domain(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, -self.dim)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def codomain(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, -self.dim)

    def _split(self, x: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor) or x.dim() < -self.dim:
            raise ValueError(f"{name} must have {-self.dim} event dims, got {x!r:.80}")
        if x.shape[self.dim] <= self.split_size:
            raise ValueError(
                f"{name} must have more than split_size={self.split_size} entries along "
                f"dim {self.dim}, got shape {tuple(x.shape)}"
            )
        return x.split([self.split_size, x.shape[self.dim] - self.split_size], dim=self.dim)

    def _remember(self, x, y, x1, y1) -> None:
        """With a cache, the halves of the last pair: the inner transform's log-det then
        meets the very tensors it produced and answers from its own caches."""
        self._halves = (x, y, x1, y1) if self._cache_size else None

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self._split(x, "x")
        y1 = self.transform(x1)
        y = torch.cat([y1, x2], dim=self.dim)
        self._remember(x, y, x1, y1)
        return y

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = self._split(y, "y")
        x1 = self.transform.inv(y1)
        x = torch.cat([x1, y2], dim=self.dim)
        self._remember(x, y, x1, y1)
        return x

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        halves = getattr(self, "_halves", None)
        cached = getattr(self, "_cached_x_y", (None, None)) if self._cache_size else (None, None)
        if halves is not None and x is halves[0] is cached[0] and y is halves[1] is cached[1]:
            return self.transform.log_abs_det_jacobian(halves[2], halves[3])
        x1 = self._split(x, "x")[0]
        y1 = self._split(y, "y")[0]
        return self.transform.log_abs_det_jacobian(x1, y1)


class ConditionalMultiscaleSplit(ConditionalTransformModule):
    """Context-conditional :class:`MultiscaleSplit`: the part kept for further
    transformation goes through a conditional transform.

    Args:
        transform: a ``ConditionalTransformModule`` whose ``condition(c)`` acts on
            the first ``split_size`` entries along ``dim``.
        split_size, dim: as for :class:`MultiscaleSplit`.

    ``condition(c)``, ``c`` of shape ``(*, C)``, returns a :class:`MultiscaleSplit`.

    >>> import torch
    >>> from pyro_genmodels.flows import conditional_additive_coupling
    >>> t = ConditionalMultiscaleSplit(conditional_additive_coupling(2, 3), 2, dim=-1)
    >>> t.condition(torch.zeros(3))(torch.zeros(5, 4)).shape
    torch.Size([5, 4])
    """

    bijective = True

    def __init__(self, transform: ConditionalTransformModule, split_size: int, dim: int = -3):
        super().__init__()
        if not isinstance(transform, ConditionalTransformModule):
            raise TypeError(
                f"transform must be a ConditionalTransformModule, got {type(transform).__name__}"
            )
        self.transform = transform
        self.split_size = check_int("split_size", split_size)
        self.dim = dim

    def condition(self, context: torch.Tensor) -> MultiscaleSplit:
        check_context(context)
        return MultiscaleSplit(self.transform.condition(context), self.split_size, self.dim)
