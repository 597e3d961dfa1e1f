"""Shared helpers of the diagnostics: argument checks, data batching, site alignment.

Every diagnostic runs :func:`pyro_genmodels.infer.weights.importance_log_weights`
on the data (optionally in batches) and reads per-datapoint quantities off the
vectorized traces; the helpers here put any site's tensor into the common
``(K, N, *rest)`` layout (particles, datapoints, then the remaining plate and
event dims).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch
from pyro.poutine.trace_struct import Trace

from pyro_genmodels._checks import (
    check_batched_tensor,
    check_positive_int,
    check_programs,
    slice_datapoints,
)
from pyro_genmodels._dtypes import program_inputs
from pyro_genmodels.infer.weights import WeightedTraces, importance_log_weights, is_sample


def batches(
    data: torch.Tensor | None, args: tuple, kwargs: dict, batch_size: int | None
) -> Iterator[tuple[tuple, dict]]:
    """Yields ``((batch, *args), kwargs)`` with tensors of leading dim ``N`` sliced alike
    (``(args, kwargs)`` once when ``data`` is None: the programs take no data argument)."""
    if data is None:
        if batch_size is not None:
            raise ValueError(
                f"batch_size={batch_size!r} slices the data argument, but data is None (a "
                "model without a data argument is scored in one pass): leave batch_size=None"
            )
        yield args, kwargs
        return
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


def check_call(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, with_data: bool
) -> None:
    """A ``TypeError`` saying how the programs are called when their signatures cannot take
    ``(*args, **kwargs)`` (``args`` starts with the data when ``with_data``)."""
    check_programs(model, guide)
    for name, fn in (("model", model), ("guide", guide)):
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):  # no signature to read (a builtin): Python will say
            continue
        try:
            signature.bind(*args, **kwargs)
        except TypeError as error:
            call = "data, *args, **kwargs" if with_data else "*args, **kwargs"
            hint = (
                "; a model without a data argument (observations inside the model) takes data=None"
                if with_data
                else "; a model with a data argument takes it as data"
            )
            raise TypeError(
                f"the {name} is called as {name}({call}) with {len(args)} positional and "
                f"{len(kwargs)} keyword arguments, but its signature {signature} does not "
                f"accept them ({error}){hint}"
            ) from None


def weighted_batches(
    model: Callable,
    guide: Callable,
    data: torch.Tensor | None,
    args: tuple,
    kwargs: dict,
    *,
    num_samples: int,
    data_plate: str | None,
    batch_size: int | None,
) -> Iterator[WeightedTraces]:
    """Runs :func:`importance_log_weights` on each batch of the data, without gradients.

    Floating tensors among the data and the arguments are converted to the dtype of the
    programs' parameters (:func:`~pyro_genmodels.placement.program_inputs`, as ``fit`` does);
    ``data=None`` calls the programs as ``model(*args, **kwargs)``."""
    lead = () if data is None else (check_batched_tensor(data),)
    check_positive_int("num_samples", num_samples)
    check_call(model, guide, (*lead, *args), kwargs, with_data=data is not None)
    inputs, kwargs = program_inputs(model, guide, (*lead, *args), kwargs)
    data, args = (inputs[0], inputs[1:]) if lead else (None, inputs)
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
