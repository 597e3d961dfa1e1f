"""Flows that start at the full-covariance Gaussian fitted to the data.

On small data a flow trained from a random start often ends worse than the
closed-form Gaussian ``N(mean, cov)``. :class:`GaussianAffine` is the affine
layer ``x = loc + L z`` (``L`` lower-triangular, positive diagonal) and
:func:`start_at_gaussian` puts one, set to the training mean and the Cholesky
factor of the training covariance, after a flow whose layers are made the
identity (their networks' output layers zeroed): at initialization the flow's
density *is* that Gaussian, and training (with validation, early stopping and
the best epoch kept) moves away from it only where held-out data say so.
"""

from __future__ import annotations

import torch
from pyro.distributions import constraints
from pyro.distributions.torch_transform import ComposeTransformModule, TransformModule
from pyro.nn import AutoRegressiveNN, ConditionalAutoRegressiveNN, ConditionalDenseNN, DenseNN
from torch import nn
from torch.distributions import Transform

from pyro_genmodels._checks import check_cache_size, check_event, check_int
from pyro_genmodels._compat import clear_transform_cache

NETWORKS = (AutoRegressiveNN, ConditionalAutoRegressiveNN, DenseNN, ConditionalDenseNN)


def _check_data(x: object, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor (N, D), got {x!r:.60}")
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must have shape (N, D) with N >= 2, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must hold finite values, got NaN or inf")
    return x


def gaussian_fit(x: torch.Tensor, shrinkage: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximum-likelihood mean and Cholesky factor of ``(1 - s) S + s diag(S)``.

    ``S = (1/N) sum_n (x_n - m)(x_n - m)^T`` is the ML covariance; ``shrinkage``
    ``s`` in ``[0, 1]`` pulls it towards its diagonal (0: the ML Gaussian).

    Shapes: ``x`` ``(N, D)``; returns ``(D,)`` and ``(D, D)``, in ``x``'s dtype and device.

    >>> import torch
    >>> m, L = gaussian_fit(torch.tensor([[0.0, 0.0], [2.0, 2.0]]))
    >>> m.tolist(), (L @ L.T).round(decimals=4).tolist()
    ([1.0, 1.0], [[1.0, 1.0], [1.0, 1.0]])
    """
    x = _check_data(x)
    if isinstance(shrinkage, bool) or not isinstance(shrinkage, int | float):
        raise TypeError(f"shrinkage must be a float in [0, 1], got {shrinkage!r}")
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be a float in [0, 1], got {shrinkage!r}")
    mean = x.mean(0)
    cov = torch.cov(x.T, correction=0).reshape(x.shape[1], x.shape[1])
    cov = (1 - shrinkage) * cov + shrinkage * torch.diag_embed(torch.diagonal(cov))
    if not (torch.diagonal(cov) > 0).all():
        raise ValueError("x has a singular covariance (a constant feature)")
    jitter = 1e-6 * torch.diagonal(cov).mean()
    cov = cov + jitter * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    chol, info = torch.linalg.cholesky_ex(cov)
    if info.item() != 0:
        raise ValueError("x has a singular covariance (collinear features)")
    return mean, chol


class GaussianAffine(TransformModule):
    """Full affine layer ``x = loc + L z`` with ``L`` lower-triangular with positive
    diagonal ``exp(log_diag)``; ``log|det J| = sum(log_diag)``. Base ``N(0, I)``
    through it is ``N(loc, L L^T)``.

    Args:
        input_dim: ``D``.
        loc: ``(D,)`` initial shift (default 0).
        scale_tril: ``(D, D)`` initial lower-triangular factor with a positive
            diagonal (default the identity); its upper triangle is ignored.

    Shapes ``(*, D) -> (*, D)``; log-det ``(*)``.

    >>> import torch
    >>> t = GaussianAffine(2, torch.tensor([1.0, 0.0]), torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    >>> t(torch.tensor([[1.0, 1.0]])).tolist()
    [[3.0, 2.0]]
    >>> t.log_abs_det_jacobian(None, torch.zeros(3, 2)).detach()
    tensor([0.6931, 0.6931, 0.6931])

    References:
        Normalizing Flows for Probabilistic Modeling and Inference. G. Papamakarios,
        E. Nalisnick, D. J. Rezende, S. Mohamed, B. Lakshminarayanan, 2021 (Sec. 3.1).
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    sign = 1

    def __init__(
        self,
        input_dim: int,
        loc: torch.Tensor | None = None,
        scale_tril: torch.Tensor | None = None,
        cache_size: int = 1,
    ) -> None:
        super().__init__(cache_size=check_cache_size(cache_size))
        self.input_dim = check_int("input_dim", input_dim)
        d = self.input_dim
        loc = torch.zeros(d) if loc is None else loc
        if scale_tril is None and isinstance(loc, torch.Tensor):
            scale_tril = torch.eye(d, dtype=loc.dtype, device=loc.device)
        for name, t, shape in (("loc", loc, (d,)), ("scale_tril", scale_tril, (d, d))):
            if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                raise TypeError(f"{name} must be a floating-point torch.Tensor, got {t!r:.60}")
            if t.shape != shape or not torch.isfinite(t).all():
                raise ValueError(f"{name} must be finite of shape {shape}, got {tuple(t.shape)}")
        diag = torch.diagonal(scale_tril)
        if not (diag > 0).all():
            raise ValueError("scale_tril must have a positive diagonal")
        self.loc = nn.Parameter(loc.detach().clone())
        self.tril = nn.Parameter(torch.tril(scale_tril.detach(), -1).clone())
        self.log_diag = nn.Parameter(diag.detach().log().clone())

    @classmethod
    def from_data(cls, x: torch.Tensor, shrinkage: float = 0.0, cache_size: int = 1):
        """The layer mapping ``N(0, I)`` onto the Gaussian of :func:`gaussian_fit`
        (``x`` ``(N, D)``; parameters in ``x``'s dtype and device)."""
        loc, chol = gaussian_fit(x, shrinkage)
        return cls(x.shape[1], loc, chol, cache_size).to(x.device)

    def scale_tril(self) -> torch.Tensor:
        """``L`` ``(D, D)``."""
        return torch.tril(self.tril, -1) + torch.diag_embed(self.log_diag.exp())

    def _call(self, z: torch.Tensor) -> torch.Tensor:
        check_event(z, "z", (self.input_dim,))
        return self.loc + z @ self.scale_tril().T

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        check_event(x, "x", (self.input_dim,))
        flat = (x - self.loc).reshape(-1, self.input_dim)
        # z L^T = x - loc: a right-hand solve with the upper-triangular L^T
        z = torch.linalg.solve_triangular(self.scale_tril().T, flat, upper=True, left=False)
        return z.reshape(x.shape)

    def log_abs_det_jacobian(self, x, y):
        shape = (x if x is not None else y).shape[:-1]
        return self.log_diag.sum().expand(shape)


def zero_networks(flow: Transform) -> int:
    """Zeroes the last linear layer (weights and biases) of every Pyro network
    (``AutoRegressiveNN``, ``DenseNN`` and their conditional forms) inside
    ``flow``; returns how many were zeroed. Affine autoregressive and coupling
    layers and rational-quadratic splines are then the identity."""
    count = 0
    for module in flow.modules() if isinstance(flow, nn.Module) else ():
        if isinstance(module, NETWORKS):
            last: nn.Linear = module.layers[-1]  # type: ignore[assignment]
            with torch.no_grad():
                last.weight.zero_()
                if last.bias is not None:
                    last.bias.zero_()
            count += 1
    return count


def start_at_gaussian(flow: Transform, x: torch.Tensor, shrinkage: float = 0.0):
    """``flow`` followed by :meth:`GaussianAffine.from_data` ``(x)``, with ``flow``
    made the identity by :func:`zero_networks`: base ``N(0, I)`` through the result
    is the Gaussian fitted to ``x`` (:func:`gaussian_fit`), exactly.

    ``flow`` maps base to data, ``(*, D) -> (*, D)``; ``x`` ``(N, D)`` is the
    training data, moved to the device and dtype of ``flow``'s parameters (the
    Gaussian's parameters are created there). A ``ValueError`` says when ``flow`` is
    not the identity after zeroing (e.g. planar layers, Pyro's rational-linear
    splines, ActNorm). On a :class:`~pyro_genmodels.models.FlowDensity`, use
    ``model.flow = start_at_gaussian(model.flow, x)``; a model rebuilt the same way
    loads its ``state_dict``.

    >>> import torch
    >>> from pyro_genmodels import flows
    >>> x = torch.randn(50, 3) @ torch.tensor([[1.0, 0.5, 0.0], [0, 1, 0.5], [0, 0, 1]])
    >>> flow = start_at_gaussian(flows.maf(3, num_layers=2, hidden_dims=[8]), x)
    >>> m, L = gaussian_fit(x)
    >>> z = torch.randn(4, 3)
    >>> bool(torch.allclose(flow(z), m + z @ L.T, atol=1e-5))
    True

    References:
        Masked Autoregressive Flow for Density Estimation. G. Papamakarios,
        T. Pavlakou, I. Murray, 2017 (a Gaussian is MAF's one-layer linear case).
    """
    if not isinstance(flow, Transform) or not isinstance(flow, nn.Module):
        raise TypeError(f"flow must be a transform module, got {type(flow).__name__}")
    x = _check_data(x)
    ref = next(flow.parameters(), None)
    if ref is not None:  # the Gaussian lives where the flow's parameters live
        x = x.to(device=ref.device, dtype=ref.dtype)
    affine = GaussianAffine.from_data(x, shrinkage)
    zero_networks(flow)
    with torch.no_grad():
        probe = affine.inv(x)
        moved = (flow(probe) - probe).abs().max().item()
    if moved > 1e-5 * (1 + probe.abs().max().item()):
        raise ValueError(
            f"flow must be the identity once its networks' output layers are zeroed; it "
            f"moves the data by up to {moved:.3g} (use maf, realnvp, nice or spline with "
            "kind='autoregressive', without norm layers)"
        )
    for t in (flow, affine):  # a cached pair from the probe must not answer later calls
        for layer in t.modules():
            if isinstance(layer, Transform):
                clear_transform_cache(layer)
    return ComposeTransformModule([flow, affine])
