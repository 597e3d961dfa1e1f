"""Noise-contrastive estimation (Gutmann & Hyvärinen 2010) as a Pyro loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from pyro.distributions import Distribution

from pyro_genmodels._checks import check_positive_int
from pyro_genmodels.infer._energy_sites import (
    EnergyLoss,
    add_site_loss,
    energy_sites,
)


class NCELoss(EnergyLoss):
    """``Σₙ [softplus(−G(xₙ)) + Σ_{j≤ν} softplus(G(yₙⱼ))]``, ``G(u) = log p_θ(u) − log(ν p_n(u))``.

    Logistic classification of each datapoint against ``ν = noise_ratio`` draws
    ``y ~ noise``. ``log p_θ`` is the site's full ``log_prob`` (``log q − E − log Z``),
    so every parameter it depends on is learned, including a ``log_normalizer``
    that is a ``pyro.param``: at the optimum of infinite data the model is self-normalized.

    **The learned log Z is a training device, not a likelihood**: with finite data and
    a flexible energy it is biased (the benchmark measures it against a grid ``log Z``);
    report likelihoods with :func:`~pyro_genmodels.infer.ais` (the zoo does).

    **The base as noise** (Gao et al. 2020's flow contrastive estimation with the flow
    fixed): with ``noise=None`` each site's base ``q`` of
    ``EnergyDistribution(energy, base=q)`` is the noise. Then ``log q`` cancels from
    ``G(u) = −E(u) − log Z − log ν``, so the flow is never evaluated on the data, only
    sampled; the classifier learns the residual ``E`` directly, the better the closer
    ``q`` is to the data.

    Args:
        noise: a Pyro/torch distribution with the data's event shape and batch shape
            ``()`` (e.g. a Gaussian fitted to the data); it must cover the data. It may
            live on another device than the data: it draws and scores there, and the
            results move to the data's device and dtype. None: each site's base.
        noise_ratio: ``ν``, noise draws per datapoint.

    Example:
        >>> import pyro, pyro.distributions as dist, torch
        >>> from pyro_genmodels.distributions import EnergyDistribution
        >>> energy = torch.nn.Linear(2, 1)
        >>> def model(x):
        ...     pyro.module("energy", energy)
        ...     log_z = pyro.param("log_z", torch.zeros(()))
        ...     with pyro.plate("data", x.shape[0]):
        ...         pyro.sample("x", EnergyDistribution(energy, (2,), log_normalizer=log_z), obs=x)
        >>> noise = dist.Normal(torch.zeros(2), 2.0).to_event(1)
        >>> loss = NCELoss(noise, noise_ratio=4)
        >>> isinstance(loss.loss_and_grads(model, lambda x: None, torch.randn(8, 2)), float)
        True

    References:
        Gutmann & Hyvärinen, "Noise-contrastive estimation: A new estimation principle for
        unnormalized statistical models", AISTATS 2010.
    """

    name = "NCELoss"

    def __init__(self, noise: Distribution | None = None, noise_ratio: int = 1) -> None:
        super().__init__()
        if noise is not None and not isinstance(noise, torch.distributions.Distribution):
            raise TypeError(
                f"noise must be a torch/Pyro distribution or None, got {type(noise).__name__}"
            )
        if noise is not None and noise.batch_shape != torch.Size():
            raise ValueError(
                f"noise must have batch_shape (), got {tuple(noise.batch_shape)} "
                "(use .to_event to make dimensions part of the event)"
            )
        self.noise = noise
        self.noise_ratio = check_positive_int("noise_ratio", noise_ratio)

    def _differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        total: Any = None
        for site in energy_sites(self.name, model, guide, args, kwargs):
            dist = site["energy_dist"]
            x = site["value"].expand(dist.batch_shape + dist.event_shape)
            per_point = self._per_point(dist, x, site["name"])
            total = add_site_loss(total, site, per_point)
        return total

    def _per_point(self, dist: Any, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """The loss per datapoint of the site ``name`` with distribution ``dist`` (batch shape
        ``(*batch)``) at ``x`` ``(*batch, *event)``: shape ``(*batch)``."""
        nu = self.noise_ratio
        noise = self.noise if self.noise is not None else dist.base
        if noise is None:
            raise ValueError(
                f"NCELoss(noise=None) uses each site's base as its noise, but site "
                f"{name!r} has none: give noise= or EnergyDistribution(..., base=q)"
            )
        if noise.event_shape != dist.event_shape:
            raise ValueError(
                f"NCELoss noise has event_shape {tuple(noise.event_shape)} but site "
                f"{name!r} has event_shape {tuple(dist.event_shape)}"
            )
        # the noise may live on another device than the data (a CPU noise for CUDA data):
        # it draws and scores on its own device, the results move to the data's
        with torch.no_grad():
            draws = noise.sample(torch.Size((nu,)) + dist.batch_shape)
        y = draws.to(x)
        log_nu = torch.log(x.new_tensor(float(nu)))
        if noise is dist.base:  # log q cancels: G(u) = -E(u) - log Z - log nu
            log_z = 0.0 if dist.log_normalizer is None else dist.log_normalizer
            e_data = dist.energy_of(x)
            g_data = -e_data - log_z - log_nu
            g_noise = -dist.energy_of(y) - log_z - log_nu
        else:
            home = draws.device
            e_data = dist.energy_of(x)
            g_data = -e_data + dist.base_log_prob(x) - noise.log_prob(x.to(home)).to(x)
            g_data = g_data - (0.0 if dist.log_normalizer is None else dist.log_normalizer)
            g_data = g_data - log_nu
            g_noise = dist.log_prob(y) - noise.log_prob(y.to(home)).to(x) - log_nu
        return F.softplus(-g_data) + F.softplus(g_noise).sum(0)
