"""Shared helpers of the diagnostics: argument checks, data batching, site alignment.

Every diagnostic runs :func:`pyro_genmodels.infer.weights.importance_log_weights`
on the data (optionally in batches) and reads per-datapoint quantities off the
vectorized traces; the helpers here put any site's tensor into the common
``(K, N, *rest)`` layout (particles, datapoints, then the remaining plate and
event dims).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from pyro.poutine.trace_struct import Trace

from pyro_genmodels._checks import check_batched_tensor, check_positive_int, slice_datapoints
from pyro_genmodels.infer.weights import WeightedTraces, importance_log_weights, is_sample


def batches(
    data: torch.Tensor, args: tuple, kwargs: dict, batch_size: int | None
) -> Iterator[tuple[tuple, dict]]:
    """Yields ``((batch, *args), kwargs)`` with tensors of leading dim ``N`` sliced alike."""
    num_data = data.shape[0]
    if batch_size is None:
        yield (data, *args), kwargs
        return
    check_positive_int("batch_size", batch_size)
    for start in range(0, num_data, batch_size):
        index = slice(start, start + batch_size)
        yield (
            (data[index], *slice_datapoints(args, num_data, index)),
            slice_datapoints(kwargs, num_data, index),
        )


def weighted_batches(
    model: Callable,
    guide: Callable,
    data: torch.Tensor,
    args: tuple,
    kwargs: dict,
    *,
    num_samples: int,
    data_plate: str | None,
    batch_size: int | None,
) -> Iterator[WeightedTraces]:
    """Runs :func:`importance_log_weights` on each batch of the data, without gradients."""
    check_batched_tensor(data)
    check_positive_int("num_samples", num_samples)
    for batch_args, batch_kwargs in batches(data, args, kwargs, batch_size):
        with torch.no_grad():
            yield importance_log_weights(
                model,
                guide,
                *batch_args,
                num_particles=num_samples,
                data_plate=data_plate,
                **batch_kwargs,
            )


def align(value: torch.Tensor, event_dim: int, w: WeightedTraces) -> torch.Tensor:
    """Moves a site tensor (batch + event dims) to ``(K, N, *rest)``, broadcasting K and N."""
    batch_rank = -w.particle_dim
    batch_ndim = value.dim() - event_dim
    value = value.reshape((1,) * (batch_rank - batch_ndim) + tuple(value.shape))
    value = value.movedim((w.particle_dim - event_dim, w.data_dim - event_dim), (0, 1))
    num_particles, num_data = w.log_weights.shape
    return value.expand(num_particles, num_data, *value.shape[2:])


def sample_sites(trace: Trace, observed: bool) -> dict[str, Any]:
    return {
        name: site
        for name, site in trace.nodes.items()
        if is_sample(site) and bool(site["is_observed"]) == observed
    }


def latent_site(w: WeightedTraces, site: str) -> tuple[dict, dict]:
    """The guide's and the model's records of latent ``site``."""
    latents = sample_sites(w.guide_trace, observed=False)
    if site not in latents:
        raise ValueError(
            f"site={site!r} is not a latent sample site of the guide; its latent sites are "
            f"{sorted(latents)}"
        )
    model_sites = sample_sites(w.model_trace, observed=False)
    if site not in model_sites:
        raise ValueError(
            f"site={site!r} is sampled by the guide but is not a latent site of the model; "
            f"the model's latent sites are {sorted(model_sites)}"
        )
    return latents[site], model_sites[site]
