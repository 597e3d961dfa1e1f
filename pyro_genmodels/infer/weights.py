"""Per-datapoint importance weights of a model/guide pair.

Everything that scores a latent-variable model datapoint by datapoint — the
IWAE bound, importance-sampled ``log p(x)``, PSIS k-hat and the
``log_likelihood`` group of an ArviZ ``InferenceData`` — needs the same
quantity: for ``K`` draws ``z_k ~ q(z | x_n)`` from the guide,

    log w[k, n] = log p(x_n, z_k) - log q(z_k | x_n).

:func:`importance_log_weights` computes it in one vectorized pass over the
particles, by running the guide and the replayed model inside an extra
``pyro.plate`` to the left of every plate of the program (as Pyro's own
``Trace_ELBO(vectorize_particles=True)`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample

from pyro_genmodels._checks import check_int
from pyro_genmodels.distributions.energy import EnergyDistribution
from pyro_genmodels.models.layered import LayeredBoltzmann

PARTICLE_PLATE = "_pgm_particles"


@dataclass
class WeightedTraces:
    """The result of :func:`importance_log_weights`.

    Attributes:
        log_weights: ``(K, N)`` tensor, ``log p(x_n, z_k) - log q(z_k | x_n)``.
        log_joint: ``(K, N)`` tensor, ``log p(x_n, z_k)`` (all model sites).
        log_lik: ``(K, N)`` tensor, ``log p(x_n | z_k)`` (observed model sites only).
        log_q: ``(K, N)`` tensor, ``log q(z_k | x_n)`` (all guide sample sites).
        model_trace, guide_trace: the vectorized traces (particle dim leftmost
            at ``-(max_plate_nesting + 1)``).
        data_plate: name of the plate that indexes datapoints.
        particle_dim: the (negative) dim of the particle plate.
        data_dim: the (negative) dim of the data plate.
    """

    log_weights: torch.Tensor
    log_joint: torch.Tensor
    log_lik: torch.Tensor
    log_q: torch.Tensor
    model_trace: Trace
    guide_trace: Trace
    data_plate: str
    particle_dim: int
    data_dim: int


#: A trace node. Pyro types it as ``pyro.poutine.runtime.Message``, whose ``fn`` is a bare
#: ``Callable`` and whose ``mask`` may be a bool; the helpers here read it as Pyro fills it.
Site = Any


def is_sample(site: Site) -> bool:
    return site["type"] == "sample" and not site_is_subsample(site)


def max_plate_nesting(model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> int:
    """The deepest plate nesting of ``model`` and ``guide`` on these arguments.

    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)
    >>> max_plate_nesting(model, lambda x: None, torch.zeros(3))
    1
    """
    with poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    dims = [0]
    for trace in (model_trace, guide_trace):
        for site in trace.nodes.values():
            if is_sample(site):
                dims += [
                    -f.dim for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None
                ]
    return max(dims)


def _find_data_plate(model_trace: Trace, data_plate: str | None) -> tuple[str, int]:
    observed = [s for s in model_trace.nodes.values() if is_sample(s) and s["is_observed"]]
    if not observed:
        raise ValueError(
            "the model has no observed sample site: per-datapoint weights need the data "
            "to be observed (pass it as obs=... inside a pyro.plate)"
        )
    frames = [{f.name: f for f in s["cond_indep_stack"] if f.vectorized} for s in observed]
    if data_plate is not None:
        for names, site in zip(frames, observed):
            if data_plate not in names:
                raise ValueError(
                    f"data_plate={data_plate!r}: observed site {site['name']!r} is not inside "
                    f"that plate (its plates: {sorted(names) or 'none'})"
                )
        return data_plate, _plate_dim(frames[0][data_plate])
    stack = [f for f in observed[0]["cond_indep_stack"] if f.vectorized]
    common = [f for f in stack if f.name != PARTICLE_PLATE and all(f.name in n for n in frames)]
    if not common:
        raise ValueError(
            "could not find the data plate: every observed site must lie inside one common "
            "pyro.plate over datapoints (or pass data_plate=...); observed sites: "
            f"{[s['name'] for s in observed]}"
        )
    frame = common[0]  # the outermost common plate indexes datapoints
    return frame.name, _plate_dim(frame)


def check_normalized(site: Site) -> None:
    """``ValueError`` for a site whose distribution is an energy-based density of unknown log Z.

    Such a ``log_prob`` is ``-E(x)``, off by the unknown ``log Z``: no likelihood may be
    reported from it. The message points to AIS (:func:`pyro_genmodels.infer.ais`).
    """
    fn = site["fn"]
    while not isinstance(fn, EnergyDistribution) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    if isinstance(fn, EnergyDistribution) and not fn.normalized:
        machine = fn.energy if isinstance(fn.energy, LayeredBoltzmann) else None
        if machine is None:
            call = "log_z, stderr = pgm.infer.ais(dist), and pass log_normalizer=log_z"
        else:  # AIS anneals the machine itself, its hidden units summed out
            name = type(machine).__name__.lower()
            call = (
                f"log_z, stderr = pgm.infer.ais({name}, data=train), and score with "
                f"{name}.distribution(log_normalizer=log_z).log_prob(x)"
            )
        raise ValueError(
            f"site {site['name']!r} has an unnormalized EnergyDistribution (log Z unknown), so "
            f"its log_prob is not a log-likelihood; estimate log Z by annealed importance "
            f"sampling, {call} (report the AIS standard error with the estimate)"
        )


def _plate_dim(frame: Any) -> int:
    """A vectorized plate's dim (Pyro fills it in for every vectorized plate)."""
    if frame.dim is None:
        raise ValueError(f"plate {frame.name!r} has no dim: it must be a vectorized pyro.plate")
    return int(frame.dim)


def site_log_prob(site: Site, particle_dim: int, data_dim: int, num_data: int) -> torch.Tensor:
    """``log_prob`` of one site reduced to shape ``(K, N)`` (scales ignored, masks applied)."""
    names = {f.name for f in site["cond_indep_stack"] if f.vectorized}
    check_normalized(site)
    lp = site["fn"].log_prob(site["value"])
    if site["mask"] is not None:
        lp = torch.where(site["mask"], lp, lp.new_zeros(()))
    if not any(f.dim == data_dim for f in site["cond_indep_stack"] if f.name in names):
        raise ValueError(
            f"site {site['name']!r} lies outside the data plate: per-datapoint importance "
            "weights need every latent to be local to a datapoint (global latents make "
            "log p(x_n) not factorize over n)"
        )
    # Pad to full rank, then sum every dim except the particle and data dims.
    lp = lp.reshape((1,) * max(0, -particle_dim - lp.dim()) + lp.shape)
    lp = lp.movedim((particle_dim, data_dim), (0, 1))
    lp = lp.reshape(lp.shape[0], lp.shape[1], -1).sum(-1)
    return lp.expand(lp.shape[0], num_data)


def importance_log_weights(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_particles: int = 1,
    data_plate: str | None = None,
    plate_nesting: int | None = None,
    **kwargs: Any,
) -> WeightedTraces:
    """Per-datapoint log importance weights ``log p(x_n, z_k) - log q(z_k | x_n)``.

    The guide is run once, vectorized over ``num_particles`` draws; the model is
    replayed against it. Every sample site must sit inside the data plate (local
    latents). ``poutine.scale`` factors are ignored (the weights are those of the
    model as written); masks are honoured.

    Args:
        model, guide: a Pyro model and guide taking ``*args, **kwargs``.
        num_particles: ``K``, the number of draws from the guide.
        data_plate: name of the plate over datapoints; by default the outermost
            plate common to every observed site.
        plate_nesting: the programs' deepest plate nesting; found by a trial run
            when omitted.

    Returns:
        A :class:`WeightedTraces` with ``(K, N)`` tensors.

    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):  # the exact posterior: every weight equals log p(x)
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))
    >>> w = importance_log_weights(model, guide, torch.tensor([0.0, 1.0]), num_particles=4)
    >>> w.log_weights.shape
    torch.Size([4, 2])
    >>> exact = dist.Normal(0.0, 2**0.5).log_prob(torch.tensor([0.0, 1.0]))
    >>> bool(torch.allclose(w.log_weights, exact.expand(4, 2), atol=1e-5))
    True
    """
    check_int("num_particles", num_particles, minimum=1)
    if plate_nesting is None:
        plate_nesting = max_plate_nesting(model, guide, *args, **kwargs)
    particle_dim = -(plate_nesting + 1)
    vectorize = pyro.plate(PARTICLE_PLATE, num_particles, dim=particle_dim)
    guide_trace = poutine.trace(vectorize(guide)).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(vectorize(model), trace=guide_trace)).get_trace(
        *args, **kwargs
    )
    name, data_dim = _find_data_plate(model_trace, data_plate)
    num_data = next(
        f.size
        for s in model_trace.nodes.values()
        if is_sample(s)
        for f in s["cond_indep_stack"]
        if f.name == name
    )

    def total(trace: Trace, observed: bool | None) -> torch.Tensor:
        out: torch.Tensor | None = None
        for site in trace.nodes.values():
            if not is_sample(site) or (observed is not None and site["is_observed"] != observed):
                continue
            lp = site_log_prob(site, particle_dim, data_dim, num_data)
            out = lp if out is None else out + lp
        if out is None:
            first: Site = next(p for p in model_trace.nodes.values() if is_sample(p))
            ref = first["value"]
            out = torch.zeros(num_particles, num_data, dtype=ref.dtype, device=ref.device)
        return out

    log_lik = total(model_trace, observed=True)
    log_joint = log_lik + total(model_trace, observed=False)
    log_q = total(guide_trace, observed=None)
    return WeightedTraces(
        log_weights=log_joint - log_q,
        log_joint=log_joint,
        log_lik=log_lik,
        log_q=log_q,
        model_trace=model_trace,
        guide_trace=guide_trace,
        data_plate=name,
        particle_dim=particle_dim,
        data_dim=data_dim,
    )
