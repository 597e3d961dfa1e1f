"""Score matching for energy-based models (exact, sliced, denoising) as a Pyro loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from pyro_genmodels._checks import check_positive_int
from pyro_genmodels.distributions.energy import EnergyDistribution
from pyro_genmodels.infer._energy_sites import (
    EnergyLoss,
    check_real_support,
    energy_sites,
    site_scale,
)

METHODS = ("exact", "sliced", "denoising")


def _flat_event(t: torch.Tensor, event_dim: int) -> torch.Tensor:
    return t.flatten(t.dim() - event_dim) if event_dim else t.unsqueeze(-1)


class ScoreMatchingLoss(EnergyLoss):
    """Fisher divergence to the data, with the model score ``s(x) = −∇ₓU(x)``; sum over datapoints.

    ``U = E − log q`` is the site's potential (``E`` without a base ``q``): with a base the
    residual energy learns what the base's score misses.

    - ``"exact"`` (Hyvärinen 2005): ``½‖∇E(x)‖² − tr ∇²E(x)`` (the Hessian trace
      by one backward pass per dimension).
    - ``"sliced"`` (Song et al. 2019, variance-reduced form):
      ``½‖∇E(x)‖² − vᵀ∇ₓ(vᵀ∇E(x))``, averaged over ``num_projections``
      Rademacher (or Gaussian) ``v``; its expectation is the exact loss.
    - ``"denoising"`` (Vincent 2011): ``½‖∇E(x̃) − ε/σ‖²``, ``x̃ = x + σε``; the
      optimum is the score of the data convolved with ``N(0, σ²I)``. With
      several ``noise_scale`` levels (Song & Ermon 2019) each datapoint draws
      one level uniformly, the energy is noise-conditional — called as
      ``energy(x, sigma)`` with ``sigma`` of shape ``(*batch, 1)`` — and the
      term is weighted by ``σ²``: ``½‖σ∇E(x̃, σ) − ε‖²``. Sample such a model
      with :func:`~pyro_genmodels.infer.annealed_langevin`.

    The model observes data at :class:`~pyro_genmodels.distributions.EnergyDistribution`
    sites with a real support (discrete sites are rejected) and has no latent sites.

    Args:
        method: ``"exact"``, ``"sliced"`` or ``"denoising"``.
        noise_scale: ``σ > 0`` or a decreasing sequence of levels (denoising only).
        num_projections: projections per datapoint (sliced only).
        projection: ``"rademacher"`` or ``"gaussian"`` (sliced only).

    Example:
        >>> import pyro, torch
        >>> from pyro_genmodels.distributions import EnergyDistribution
        >>> energy = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Softplus(),
        ...                              torch.nn.Linear(8, 1))
        >>> def model(x):
        ...     pyro.module("energy", energy)
        ...     with pyro.plate("data", x.shape[0]):
        ...         pyro.sample("x", EnergyDistribution(energy, (2,)), obs=x)
        >>> loss = ScoreMatchingLoss("sliced", num_projections=2)
        >>> isinstance(loss.loss_and_grads(model, lambda x: None, torch.randn(16, 2)), float)
        True

    References:
        Hyvärinen, "Estimation of Non-Normalized Statistical Models by Score Matching", JMLR 2005.
        Vincent, "A Connection Between Score Matching and Denoising Autoencoders", 2011.
        Song, Garg, Shi & Ermon, "Sliced Score Matching", UAI 2019.
        Song & Ermon, "Generative Modeling by Estimating Gradients of the Data
        Distribution", NeurIPS 2019.
    """

    name = "ScoreMatchingLoss"

    def __init__(
        self,
        method: str = "sliced",
        noise_scale: float | Sequence[float] = 0.1,
        num_projections: int = 1,
        projection: str = "rademacher",
    ) -> None:
        super().__init__()
        if not isinstance(method, str):
            raise TypeError(f"method must be a str, got {type(method).__name__}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.method = method
        levels = list(noise_scale) if isinstance(noise_scale, Sequence) else [noise_scale]
        for s in levels:
            if isinstance(s, bool) or not isinstance(s, int | float):
                raise TypeError(f"noise_scale must be a float or floats, got {noise_scale!r}")
        if not levels or not all(math.isfinite(s) and s > 0 for s in levels):
            raise ValueError(f"noise_scale must be positive and finite, got {noise_scale!r}")
        if len(levels) > 1 and method != "denoising":
            raise ValueError(f"several noise levels need method='denoising', got {method!r}")
        self.noise_scales = [float(s) for s in levels]
        self.noise_conditional = isinstance(noise_scale, Sequence)
        self.num_projections = check_positive_int("num_projections", num_projections)
        if projection not in ("rademacher", "gaussian"):
            raise ValueError(f"projection must be 'rademacher' or 'gaussian', got {projection!r}")
        self.projection = projection

    def settings(self) -> dict[str, Any]:
        """The option kept under another name (a resumed ``fit`` must keep it)."""
        return {"noise_scale": self.noise_scales}

    def _grad(self, dist: Any, x: torch.Tensor) -> torch.Tensor:
        """``∇ₓE(x)`` with a graph (for ``∇θ`` and second derivatives)."""
        with torch.enable_grad():
            e = dist.potential(x)
            (g,) = torch.autograd.grad(e.sum(), x, create_graph=True)
        return g

    def _per_point(self, dist: Any, x: torch.Tensor) -> torch.Tensor:
        event_dim = len(dist.event_shape)
        if self.method == "denoising":
            return self._denoising(dist, x, event_dim)
        x = x.detach().requires_grad_(True)
        g = self._grad(dist, x)
        half_sq = 0.5 * _flat_event(g, event_dim).pow(2).sum(-1)
        if self.method == "exact":
            flat_g = _flat_event(g, event_dim)
            trace = torch.zeros_like(half_sq)
            for i in range(flat_g.shape[-1]):
                (h,) = torch.autograd.grad(flat_g[..., i].sum(), x, create_graph=True)
                trace = trace + _flat_event(h, event_dim)[..., i]
            return half_sq - trace
        total = torch.zeros_like(half_sq)
        for _ in range(self.num_projections):
            if self.projection == "rademacher":
                v = torch.randint(0, 2, x.shape, device=x.device).to(x.dtype) * 2 - 1
            else:
                v = torch.randn_like(x)
            (hv,) = torch.autograd.grad((g * v).sum(), x, create_graph=True)
            total = total + _flat_event(hv * v, event_dim).sum(-1)
        return half_sq - total / self.num_projections

    def _denoising(self, dist: Any, x: torch.Tensor, event_dim: int) -> torch.Tensor:
        batch = x.shape[: x.dim() - event_dim]
        if self.noise_conditional:
            levels = x.new_tensor(self.noise_scales)
            sigma = levels[torch.randint(0, len(levels), batch, device=x.device)]
            dist = EnergyDistribution(
                dist.energy,
                dist.event_shape,
                context=sigma.unsqueeze(-1),
                support=dist.support,
                base=dist.base,
            )
            sigma_b = sigma.reshape(batch + (1,) * event_dim)
            eps = torch.randn_like(x)
            x_noisy = (x.detach() + sigma_b * eps).requires_grad_(True)
            resid = sigma_b * self._grad(dist, x_noisy) - eps
        else:
            level = self.noise_scales[0]  # a Python float: no tensor is built per step
            eps = torch.randn_like(x)
            x_noisy = torch.add(x.detach(), eps, alpha=level).requires_grad_(True)
            resid = self._grad(dist, x_noisy) - eps / level
        return 0.5 * _flat_event(resid, event_dim).pow(2).sum(-1)

    def _differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        total: Any = 0.0
        for site in energy_sites(self.name, model, guide, args, kwargs):
            check_real_support(self.name, site)
            dist = site["energy_dist"]
            x = site["value"].expand(dist.batch_shape + dist.event_shape)
            per_point = self._per_point(dist, x)
            total = total + (site_scale(site, per_point) * per_point).sum()

        return total
