"""Score matching for energy-based models (exact, sliced, denoising) as a Pyro loss."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from pyro_genmodels._checks import check_bool, check_positive_int
from pyro_genmodels.distributions.energy import EnergyDistribution
from pyro_genmodels.infer._energy_sites import (
    EnergyLoss,
    add_site_loss,
    check_real_support,
    energy_sites,
)

METHODS = ("exact", "sliced", "denoising")
#: σ when ``noise_scale`` is not given: for data of unit scale (the 2-D toys of
#: ``benchmarks/energy.py``); data of another scale should pass its own σ
DEFAULT_NOISE_SCALE = 0.1


def _flat_event(t: torch.Tensor, event_dim: int) -> torch.Tensor:
    return t.flatten(t.dim() - event_dim) if event_dim else t.unsqueeze(-1)


class ScoreMatchingLoss(EnergyLoss):
    """Fisher divergence to the data smoothed by ``N(0, σ²I)``, with the model score
    ``s(x) = −∇ₓU(x)``; sum over datapoints.

    ``U = E − log q`` is the site's potential (``E`` without a base ``q``): with a base the
    residual energy learns what the base's score misses. The three methods are three
    estimators of the same divergence, whose optimum is the score of the smoothed data
    ``p_σ = p * N(0, σ²I)`` (``σ = noise_scale``):

    - ``"exact"`` (Hyvärinen 2005): ``½‖∇U(x̃)‖² − tr ∇²U(x̃)`` at ``x̃ = x + σε``
      (the Hessian trace by one backward pass per dimension).
    - ``"sliced"`` (Song et al. 2019, variance-reduced form):
      ``½‖∇U(x̃)‖² − vᵀ∇ₓ(vᵀ∇U(x̃))``, averaged over ``num_projections``
      Rademacher (or Gaussian) ``v``; its expectation is the exact loss.
    - ``"denoising"`` (Vincent 2011): ``½‖∇U(x̃) − ε/σ‖²``, taken antithetically
      (``antithetic=True``): ``¼(‖∇U(x + σε) − ε/σ‖² + ‖∇U(x − σε) + ε/σ‖²)``, the
      same expectation without the ``‖ε‖/σ``-sized noise of the gradient (at σ = 0.1 on
      the 8-Gaussian toy, 1000 steps of ``benchmarks/energy.py``: NLL 0.16 nats above the
      entropy against 0.51 one-sided), for twice the network evaluations. With
      several ``noise_scale`` levels (Song & Ermon 2019) each datapoint draws
      one level uniformly, the energy is noise-conditional — called as
      ``energy(x, sigma)`` with ``sigma`` of shape ``(*batch, 1)`` — and the
      term is weighted by ``σ²``: ``½‖σ∇E(x̃, σ) − ε‖²``. Sample such a model
      with :func:`~pyro_genmodels.infer.annealed_langevin`.

    **Why smooth by default.** The Fisher divergence of the raw data is blind to the
    weights of separated components (Wenliang & Kanagawa 2020) and has no minimum for a
    density with jumps (the loss falls without bound as walls sharpen inside the
    support): on the checkerboard toy an MLP energy trained by unsmoothed sliced score
    matching lost its cells' weights (their KL to uniform grew to 0.4-0.6 nats while the
    edges sharpened); at ``σ = 0.1`` they stay within 0.01. ``noise_scale=0`` gives the
    raw-data ``"exact"``/``"sliced"`` loss (whose optimum for Gaussian data is
    ``Σ⁻¹``; ``(Σ + σ²I)⁻¹`` at ``σ``). ``σ`` is in the data's units: 0.1 suits data of
    unit scale (the 2-D toys); take about 5% of the data's standard deviation otherwise.

    The model observes data at :class:`~pyro_genmodels.distributions.EnergyDistribution`
    sites with a real support (discrete sites are rejected) and has no latent sites.

    Args:
        method: ``"exact"``, ``"sliced"`` or ``"denoising"``.
        noise_scale: ``σ ≥ 0`` (``> 0`` for denoising) or a decreasing sequence of levels
            (denoising only); None: 0.1, for data of unit scale (a ``UserWarning`` naming
            ``noise_scale`` when it is over a quarter of the first batch's spread).
        num_projections: projections per datapoint (sliced only).
        projection: ``"rademacher"`` or ``"gaussian"`` (sliced only).
        antithetic: pair each noise draw ``ε`` with ``−ε`` (denoising only).

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
        Wenliang & Kanagawa, "Blindness of score-based methods to isolated components and
        mixing proportions", 2020.
    """

    name = "ScoreMatchingLoss"

    def __init__(
        self,
        method: str = "sliced",
        noise_scale: float | Sequence[float] | None = None,
        num_projections: int = 1,
        projection: str = "rademacher",
        antithetic: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(method, str):
            raise TypeError(f"method must be a str, got {type(method).__name__}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.method = method
        # the default σ suits data of unit scale: checked against the first batch's scale
        self._check_default_scale = noise_scale is None
        noise_scale = DEFAULT_NOISE_SCALE if noise_scale is None else noise_scale
        levels = list(noise_scale) if isinstance(noise_scale, Sequence) else [noise_scale]
        for s in levels:
            if isinstance(s, bool) or not isinstance(s, int | float):
                raise TypeError(f"noise_scale must be a float or floats, got {noise_scale!r}")
        zero_ok = method != "denoising" and len(levels) == 1  # no smoothing: the raw data
        allowed = [math.isfinite(s) and (s > 0 or zero_ok and s == 0) for s in levels]
        if not levels or not all(allowed):
            raise ValueError(
                "noise_scale must be finite and positive (or 0 for 'exact' and 'sliced'), "
                f"got {noise_scale!r}"
            )
        if len(levels) > 1 and method != "denoising":
            raise ValueError(f"several noise levels need method='denoising', got {method!r}")
        self.noise_scales = [float(s) for s in levels]
        self.noise_conditional = isinstance(noise_scale, Sequence)
        self.num_projections = check_positive_int("num_projections", num_projections)
        if projection not in ("rademacher", "gaussian"):
            raise ValueError(f"projection must be 'rademacher' or 'gaussian', got {projection!r}")
        self.projection = projection
        self.antithetic = check_bool("antithetic", antithetic)

    def settings(self) -> dict[str, Any]:
        """The option kept under another name (a resumed ``fit`` must keep it)."""
        return {"noise_scale": self.noise_scales}

    def _grad(self, dist: Any, x: torch.Tensor) -> torch.Tensor:
        """``∇ₓE(x)`` with a graph (for ``∇θ`` and second derivatives)."""
        with torch.enable_grad():
            e = dist.potential(x)
            (g,) = torch.autograd.grad(e.sum(), x, create_graph=True)
        return g

    def _warn_if_the_default_scale_is_large(self, x: torch.Tensor, event_dim: int) -> None:
        """One warning naming ``noise_scale`` when the default σ is over a quarter of the
        first batch's mean per-coordinate standard deviation (it blurs such data: 32 nats of
        test NLL for sliced SM on dequantized digits, whose pixels' spread is 0.22)."""
        self._check_default_scale = False
        flat = _flat_event(x.detach(), event_dim)
        flat = flat.reshape(-1, flat.shape[-1])  # (points, coordinates)
        if flat.shape[0] < 2:
            return
        spread = float(flat.std(0).mean())
        sigma = self.noise_scales[0]
        if spread > 0 and sigma > 0.25 * spread:
            warnings.warn(
                f"ScoreMatchingLoss smooths the data by N(0, σ²I) with the default "
                f"noise_scale={sigma}, {sigma / spread:.0%} of the data's mean standard "
                f"deviation ({spread:.3g}): pass noise_scale (about 5% of that spread), or "
                "noise_scale=0 for exact/sliced score matching of the raw data",
                UserWarning,
                stacklevel=4,
            )

    def _per_point(self, dist: Any, x: torch.Tensor) -> torch.Tensor:
        event_dim = len(dist.event_shape)
        if self._check_default_scale:
            self._warn_if_the_default_scale_is_large(x, event_dim)
        if self.method == "denoising":
            return self._denoising(dist, x, event_dim)
        level = self.noise_scales[0]
        x = torch.add(x.detach(), torch.randn_like(x), alpha=level) if level else x.detach()
        x = x.requires_grad_(True)
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
        sigma_b: torch.Tensor | float
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
        else:
            sigma_b = self.noise_scales[0]  # a Python float: no tensor is built per step
        eps = torch.randn_like(x)
        if self.antithetic:  # x ± σε in one pass, as a leading sample dimension of 2
            eps = torch.stack([eps, -eps])
            x = x.unsqueeze(0)
        x_noisy = (x.detach() + sigma_b * eps).requires_grad_(True)
        g = self._grad(dist, x_noisy)
        resid = sigma_b * g - eps if self.noise_conditional else g - eps / sigma_b
        per_draw = 0.5 * _flat_event(resid, event_dim).pow(2).sum(-1)
        return per_draw.mean(0) if self.antithetic else per_draw

    def _differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        total: Any = None
        for site in energy_sites(self.name, model, guide, args, kwargs):
            check_real_support(self.name, site)
            dist = site["energy_dist"]
            x = site["value"].expand(dist.batch_shape + dist.event_shape)
            per_point = self._per_point(dist, x)
            total = add_site_loss(total, site, per_point)

        return total
