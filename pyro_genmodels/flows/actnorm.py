"""ActNorm: a per-feature (or per-channel) affine layer initialized from data."""

from __future__ import annotations

import torch
from pyro.distributions import constraints
from pyro.distributions.torch_transform import TransformModule
from torch import nn

from pyro_genmodels._checks import check_cache_size, check_event, check_int


class ActNorm(TransformModule):
    """ActNorm ``y = exp(s) * x + b`` per feature (``event_dim=1``) or per channel
    (``event_dim=3``); ``log|det J| = H W sum(s)``.

    Data-dependent initialization: the first call in the density direction
    (``_inverse``, data ``y`` to base ``x``) while the module is in training mode
    sets ``b`` and ``s`` to the batch mean and log standard deviation of ``y`` (per
    feature or channel), so that the first batch leaves the layer standardized.
    A forward call made first (e.g. sampling) marks the layer initialized as it is.
    The ``initialized`` flag is a buffer, so ``state_dict`` round trips keep it.
    A first batch holding NaN or inf raises a ``ValueError`` and leaves the layer
    uninitialized (whatever the validation setting: the statistics would stay NaN).

    Args:
        num_features: ``D`` (``event_dim=1``, shapes ``(*, D)``) or ``C``
            (``event_dim=3``, shapes ``(*, C, H, W)``).
        event_dim: 1 or 3.

    >>> import torch
    >>> t = ActNorm(2)
    >>> y = torch.tensor([[0.0, 10.0], [2.0, 30.0]])
    >>> t.inv(y).detach().round(decimals=4)
    tensor([[-1., -1.],
            [ 1.,  1.]])

    References:
        Glow: Generative Flow with Invertible 1x1 Convolutions. D. P. Kingma,
        P. Dhariwal, 2018.
    """

    bijective = True
    sign = 1
    #: its first batch initializes it: :func:`pyro_genmodels.training.priming.prime` keeps
    #: the initialization (and the ``initialized`` buffer) that priming made
    data_dependent_init = True

    initialized: torch.Tensor  # a bool buffer: data-dependent init done

    def __init__(self, num_features: int, event_dim: int = 1, cache_size: int = 1) -> None:
        super().__init__(cache_size=check_cache_size(cache_size))
        self.num_features = check_int("num_features", num_features)
        if event_dim not in (1, 3):
            raise ValueError(f"event_dim must be 1 (vectors) or 3 (images), got {event_dim!r}")
        self.event_dims = event_dim
        shape = (num_features,) if event_dim == 1 else (num_features, 1, 1)
        self.loc = nn.Parameter(torch.zeros(shape))
        self.log_scale = nn.Parameter(torch.zeros(shape))
        self.register_buffer("initialized", torch.tensor(False))

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def domain(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, self.event_dims)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def codomain(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, self.event_dims)

    def _check(self, x: torch.Tensor, name: str) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() < self.event_dim:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must have {self.event_dims} event dims, got {got}")
        check_event(x, name, (self.num_features,) + tuple(x.shape[x.dim() - self.event_dims + 1 :]))

    def _reduce_dims(self, y: torch.Tensor) -> list[int]:
        feature = y.dim() - self.event_dims
        return [i for i in range(y.dim()) if i != feature]

    @torch.no_grad()
    def _initialize(self, y: torch.Tensor) -> None:
        if not bool(torch.isfinite(y).all()):
            raise ValueError(
                "ActNorm initializes loc and log_scale from its first batch, which must be "
                f"finite; got a batch of shape {tuple(y.shape)} holding NaN or inf values"
            )
        dims = self._reduce_dims(y)
        n = y.numel() // self.num_features
        if n > 1:
            mean = y.mean(dim=dims).reshape(self.loc.shape)
            std = y.std(dim=dims, correction=0).reshape(self.loc.shape)
            self.loc.copy_(mean)
            self.log_scale.copy_(std.clamp_min(1e-6).log())
        self.initialized.fill_(True)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x, "x")
        if not bool(self.initialized):
            self.initialized.fill_(True)
        return x * self.log_scale.exp() + self.loc

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check(y, "y")
        if not bool(self.initialized) and self.training:
            self._initialize(y)
        return (y - self.loc) * (-self.log_scale).exp()

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pixels = 1 if self.event_dims == 1 else x.shape[-1] * x.shape[-2]
        return (pixels * self.log_scale.sum()).expand(x.shape[: x.dim() - self.event_dims])
