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
    energy_sites,
    site_scale,
)


class NCELoss(EnergyLoss):
    """``Σₙ [softplus(−G(xₙ)) + Σ_{j≤ν} softplus(G(yₙⱼ))]``, ``G(u) = log p_θ(u) − log(ν p_n(u))``.

    Logistic classification of each datapoint against ``ν = noise_ratio`` draws
    ``y ~ noise``. ``log p_θ`` is the site's full ``log_prob`` (``−E(x) − log Z``),
    so every parameter it depends on is learned, including a ``log_normalizer``
    that is a ``pyro.param``: at the optimum the model is self-normalized.

    Args:
        noise: a Pyro/torch distribution with the data's event shape and batch shape
            ``()`` (e.g. a Gaussian fitted to the data); it must cover the data. It may
            live on another device than the data: it draws and scores there, and the
            results move to the data's device and dtype.
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

    def __init__(self, noise: Distribution, noise_ratio: int = 1) -> None:
        super().__init__()
        if not isinstance(noise, torch.distributions.Distribution):
            raise TypeError(f"noise must be a torch/Pyro distribution, got {type(noise).__name__}")
        if noise.batch_shape != torch.Size():
            raise ValueError(
                f"noise must have batch_shape (), got {tuple(noise.batch_shape)} "
                "(use .to_event to make dimensions part of the event)"
            )
        self.noise = noise
        self.noise_ratio = check_positive_int("noise_ratio", noise_ratio)

    def _differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        total: Any = 0.0
        nu = self.noise_ratio
        for site in energy_sites(self.name, model, guide, args, kwargs):
            dist = site["energy_dist"]
            if self.noise.event_shape != dist.event_shape:
                raise ValueError(
                    f"NCELoss noise has event_shape {tuple(self.noise.event_shape)} but site "
                    f"{site['name']!r} has event_shape {tuple(dist.event_shape)}"
                )
            x = site["value"].expand(dist.batch_shape + dist.event_shape)
            # the noise may live on another device than the data (a CPU noise for CUDA data):
            # it draws and scores on its own device, the results move to the data's
            draws = self.noise.sample(torch.Size((nu,)) + dist.batch_shape)
            home = draws.device
            y = draws.to(x)
            log_nu = torch.log(x.new_tensor(float(nu)))
            g_data = dist.log_prob(x) - self.noise.log_prob(x.to(home)).to(x) - log_nu
            g_noise = dist.log_prob(y) - self.noise.log_prob(y.to(home)).to(x) - log_nu
            per_point = F.softplus(-g_data) + F.softplus(g_noise).sum(0)
            total = total + (site_scale(site, per_point) * per_point).sum()
        return total
