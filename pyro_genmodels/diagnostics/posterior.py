"""How good is the guide? Pareto-k̂ of its importance weights, active units, KL per dim.

All three read the per-datapoint traces of
:func:`~pyro_genmodels.infer.weights.importance_log_weights`; the programs are
called as ``model(data, *args, **kwargs)``, and with ``batch_size`` every tensor
in ``args``/``kwargs`` with leading dim ``N`` is sliced like the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import arviz as az
import numpy as np
import torch
from torch.distributions import Distribution, Independent, kl_divergence

from pyro_genmodels.diagnostics._util import align, latent_site, weighted_batches
from pyro_genmodels.infer.estimators import DEFAULT_MAX_ELEMENTS, log_weight_chunks
from pyro_genmodels.infer.weights import WeightedTraces


def _khat(log_weights: torch.Tensor) -> torch.Tensor:
    """Pareto-k̂ per column of ``(K, N)`` log weights; ``-inf`` where all weights are equal."""
    lw = log_weights.detach().to("cpu", torch.float64).T.contiguous()
    with np.errstate(divide="ignore", invalid="ignore"):  # constant weights: 0 / 0 in the fit
        _, kss = az.psislw(lw.numpy().copy(), reff=1.0)
    khat = torch.as_tensor(np.asarray(kss, dtype=np.float64))
    # Differences below float resolution carry no information: the weights are constant.
    eps = torch.finfo(log_weights.dtype).eps
    spread = lw.max(-1).values - lw.min(-1).values
    constant = spread <= 64 * eps * lw.abs().max(-1).values.clamp(min=1.0)
    khat = torch.where(constant, torch.full_like(khat, -math.inf), khat)
    return khat.to(device=log_weights.device, dtype=log_weights.dtype)


def psis_khat(
    model: Callable,
    guide: Callable,
    data: torch.Tensor,
    *args: Any,
    num_samples: int = 1000,
    data_plate: str | None = None,
    batch_size: int | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    **kwargs: Any,
) -> torch.Tensor:
    """Pareto-k̂ of the weights ``w_k = p(x_n, z_k) / q(z_k | x_n)``, ``z_k ~ q``, per datapoint.

    k̂ estimates the shape of the generalized Pareto distribution fitted to the
    largest weights (``az.psislw``); ``1 / k̂`` is the number of finite moments of
    ``w``. Thresholds (Yao et al., 2018; Vehtari et al., 2024):

    - k̂ < 0.5: good — the guide covers the posterior; importance-sampled
      estimates (``log p(x_n)``, the IWAE bound) converge fast;
    - 0.5 ≤ k̂ ≤ 0.7: ok — finite variance is lost, PSIS still gives usable
      estimates;
    - k̂ > 0.7: the guide cannot be trusted for that datapoint (too narrow or
      misplaced); estimates based on it are unreliable.

    Weights that are all equal (an exact posterior guide) give ``k̂ = -inf``.
    Use hundreds of samples or more: the tail fit uses ``min(K/5, 3√K)`` of them,
    and ``K <= 20`` leaves too few for any fit (a ``ValueError``; ArviZ would
    return ``inf``).

    Args:
        model, guide: a Pyro model and guide; every latent local to a datapoint.
        data: the data, shape ``(N, *)``.
        num_samples: ``K``, the number of guide draws per datapoint.
        data_plate: the name of the plate over datapoints (found when omitted).
        batch_size: optional number of datapoints per pass.
        max_elements: at most this many particle×datapoint pairs per model pass
            (the chunking of :func:`pyro_genmodels.infer.log_likelihood`), so
            memory stays bounded whatever ``K`` and ``N``.

    Returns:
        k̂, shape ``(N,)``, on the device and dtype of the weights.

    References:
        Yao, Vehtari, Simpson & Gelman (2018), "Yes, but Did It Work?: Evaluating
        Variational Inference". Vehtari, Simpson, Gelman, Yao & Gabry (2024),
        "Pareto Smoothed Importance Sampling".

    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def narrow_guide(x):  # the posterior is N(x / 2, 1 / 2)
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.1))
    >>> pyro.set_rng_seed(0)
    >>> bool((psis_khat(model, narrow_guide, torch.zeros(2), num_samples=2000) > 0.7).all())
    True
    """
    if isinstance(num_samples, int) and not isinstance(num_samples, bool) and num_samples <= 20:
        raise ValueError(
            "num_samples must be > 20 for a Pareto tail fit (it uses min(K/5, 3 sqrt(K)) of "
            f"the K draws; with K <= 20 k-hat is undefined), got {num_samples}"
        )
    chunks = log_weight_chunks(
        model, guide, data, args, kwargs, num_samples, batch_size, None, data_plate, max_elements
    )
    with torch.no_grad():
        return torch.cat([_khat(torch.cat(list(particles))) for particles in chunks])


def _flat(value: torch.Tensor) -> torch.Tensor:
    """``(K, N, *rest)`` → ``(K, N, D)``."""
    return value.reshape(value.shape[0], value.shape[1], -1)


def _posterior_mean(w: WeightedTraces, site: str) -> torch.Tensor:
    """``E_q[z | x_n]`` of shape ``(N, D)``: the guide's exact mean when it has a finite one."""
    q_site, _ = latent_site(w, site)
    fn, event_dim = q_site["fn"], q_site["fn"].event_dim
    try:
        mean = fn.mean
    except NotImplementedError:
        mean = None
    if mean is None or not bool(torch.isfinite(mean).all()):
        mean = q_site["value"]
    if not mean.is_floating_point():  # discrete latents
        mean = mean.to(w.log_weights.dtype)
    return _flat(align(mean, event_dim, w)).mean(0)


def active_units(
    model: Callable,
    guide: Callable,
    data: torch.Tensor,
    *args: Any,
    site: str = "z",
    threshold: float = 0.01,
    num_samples: int = 100,
    data_plate: str | None = None,
    batch_size: int | None = None,
    **kwargs: Any,
) -> tuple[int, torch.Tensor]:
    """Active units ``A_u = Var_x(E_{q(z|x)}[z_u]) > threshold`` of a latent site.

    A latent dimension whose posterior mean does not move with the input carries
    no information about it (it has collapsed to the prior). ``E_q[z_u | x_n]`` is
    the guide distribution's exact ``.mean`` when it has a finite one, otherwise
    the average of ``num_samples`` guide draws; the variance over the ``N``
    datapoints is the unbiased sample variance. Dims of the site after the data
    plate (event dims and nested plates) are flattened to ``D``.

    Args:
        model, guide: a Pyro model and guide; ``site`` local to a datapoint.
        data: the data, shape ``(N, *)`` with ``N >= 2``.
        site: the latent sample site's name.
        threshold: the activity threshold (Burda et al. use 0.01).
        num_samples: guide draws per datapoint (the exact mean needs none, but the
            model and guide are still run vectorized over them).
        data_plate: the name of the plate over datapoints (found when omitted).
        batch_size: optional number of datapoints per pass.

    Returns:
        ``(num_active, variances)`` with ``variances`` of shape ``(D,)``.

    References:
        Burda, Grosse & Salakhutdinov (2016), "Importance Weighted Autoencoders".

    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    ...         pyro.sample("x", dist.Normal(z[..., 1], 1.0), obs=x)
    >>> def guide(x):  # z_0 ignores x (inactive), z_1 follows it (active)
    ...     loc = torch.stack([torch.zeros_like(x), x / 2], -1)
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Normal(loc, 0.7).to_event(1))
    >>> num_active, variances = active_units(model, guide, torch.tensor([-1.0, 0.0, 1.0]))
    >>> num_active, variances.tolist()
    (1, [0.0, 0.25])
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold < 0:
        raise ValueError(f"threshold must be a non-negative float, got {threshold!r}")
    if isinstance(data, torch.Tensor) and data.dim() >= 1 and data.shape[0] < 2:
        raise ValueError(
            "data must hold N >= 2 datapoints to estimate a variance over them, got shape "
            f"{tuple(data.shape)}"
        )
    means = [
        _posterior_mean(w, site)
        for w in weighted_batches(
            model,
            guide,
            data,
            args,
            kwargs,
            num_samples=num_samples,
            data_plate=data_plate,
            batch_size=batch_size,
        )
    ]
    variances = torch.cat(means).var(0)
    return int((variances > threshold).sum()), variances


def _unwrap(fn: Distribution) -> Distribution:
    """Strips ``Independent`` and ``ExpandedDistribution`` wrappers (``.to_event``, ``.expand``)."""
    from pyro.distributions.torch_distribution import ExpandedDistribution

    while isinstance(fn, (Independent, ExpandedDistribution)):
        fn = fn.base_dist
    return fn


def _kl_elementwise(w: WeightedTraces, site: str) -> torch.Tensor:
    """``KL(q(z_u | x_n) || p(z_u))`` per particle, datapoint and dim, shape ``(K, N, D)``."""
    q_site, p_site = latent_site(w, site)
    value, event_dim = q_site["value"], q_site["fn"].event_dim
    q, p = _unwrap(q_site["fn"]), _unwrap(p_site["fn"])
    if q.event_shape != () or p.event_shape != ():
        raise ValueError(
            f"kl_per_dim needs the guide and the prior of site {site!r} to factorize over its "
            f"dims (Normal-like, possibly .to_event/.expand); got guide {type(q).__name__} with "
            f"event_shape {tuple(q.event_shape)} and prior {type(p).__name__} with event_shape "
            f"{tuple(p.event_shape)}"
        )
    try:
        kl = kl_divergence(q, p)
    except NotImplementedError:  # Monte Carlo: E_q[log q(z_u) - log p(z_u)]
        kl = q.log_prob(value) - p.log_prob(value)
    return _flat(align(kl.expand(value.shape), event_dim, w))


def kl_per_dim(
    model: Callable,
    guide: Callable,
    data: torch.Tensor,
    *args: Any,
    site: str = "z",
    num_samples: int = 100,
    data_plate: str | None = None,
    batch_size: int | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """``KL_u = (1/N) Σ_n KL(q(z_u | x_n) || p(z_u))`` for each dim ``u`` of a latent site.

    Closed form (``torch.distributions.kl_divergence``) when the guide's and the
    prior's distributions, stripped of ``Independent``/``Expanded`` wrappers,
    factorize over the dims and have a registered KL (Normal/Normal, ...); Monte
    Carlo otherwise, ``E_q[log q(z_u | x_n) - log p(z_u)]`` with ``num_samples``
    guide draws. Either way the result is averaged over the draws (exact when the
    prior does not depend on other latents). Non-factorized distributions
    (``MultivariateNormal``, flows) have no per-dim KL and raise ``ValueError``.
    Dims after the data plate are flattened to ``D``. Summed over ``u`` this is the
    KL term of the ELBO; dims with ``KL_u ≈ 0`` have collapsed to the prior.

    Args:
        model, guide: a Pyro model and guide; ``site`` local to a datapoint.
        data: the data, shape ``(N, *)``.
        site: the latent sample site's name.
        num_samples: guide draws per datapoint.
        data_plate: the name of the plate over datapoints (found when omitted).
        batch_size: optional number of datapoints per pass.

    Returns:
        ``KL_u``, shape ``(D,)``, in nats.

    References:
        Burda, Grosse & Salakhutdinov (2016), "Importance Weighted Autoencoders";
        Kingma & Welling (2014), "Auto-Encoding Variational Bayes".

    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    ...         pyro.sample("x", dist.Normal(z[..., 1], 1.0), obs=x)
    >>> def guide(x):  # dim 0 equals the prior, dim 1 is N(0, 1/2) for x = 0
    ...     scale = torch.tensor([1.0, 0.5**0.5])
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Normal(torch.zeros(2), scale).to_event(1))
    >>> kl_per_dim(model, guide, torch.zeros(3), num_samples=1)  # (log 2 - 1/2) / 2 in dim 1
    tensor([0.0000, 0.0966])
    """
    num_data, total = 0, None
    for w in weighted_batches(
        model,
        guide,
        data,
        args,
        kwargs,
        num_samples=num_samples,
        data_plate=data_plate,
        batch_size=batch_size,
    ):
        kl = _kl_elementwise(w, site).mean(0).sum(0)
        total = kl if total is None else total + kl
        num_data += w.log_weights.shape[1]
    return total / num_data
