"""Conversion of a model/guide pair to ArviZ ``InferenceData``.

The guide is treated as an approximate posterior: ``K`` draws ``z_k ~ q(z | x_n)``
per datapoint form the ``posterior`` group (one chain of ``K`` draws), and the
model replayed on them gives the pointwise ``log_likelihood`` group that
``az.loo`` and ``az.waic`` read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import arviz as az
import numpy as np
import pyro
import torch

from pyro_genmodels.diagnostics._util import align, sample_sites, weighted_batches
from pyro_genmodels.infer.weights import WeightedTraces, site_log_prob


def _numpy(value: torch.Tensor) -> np.ndarray:
    return value.detach().cpu().numpy()


def _site_draws(site: dict, w: WeightedTraces) -> np.ndarray:
    return _numpy(align(site["value"], site["fn"].event_dim, w))


def _observed_value(site: dict, w: WeightedTraces) -> np.ndarray:
    return _numpy(align(site["value"], site["fn"].event_dim, w)[0])


def _batch_arrays(w: WeightedTraces) -> dict[str, dict[str, np.ndarray]]:
    num_data = w.log_weights.shape[1]
    latents = sample_sites(w.guide_trace, observed=False)
    observed = sample_sites(w.model_trace, observed=True)
    return {
        "posterior": {name: _site_draws(site, w) for name, site in latents.items()},
        "log_likelihood": {
            name: _numpy(site_log_prob(site, w.particle_dim, w.data_dim, num_data))
            for name, site in observed.items()
        },
        "observed_data": {name: _observed_value(site, w) for name, site in observed.items()},
        "sample_stats": {"log_importance_weight": _numpy(w.log_weights)},
    }


def _dims(arrays: dict[str, np.ndarray], data_dim: str, lead: int) -> dict[str, list[str]]:
    """Dim names after the chain/draw dims: the data plate, then ``<site>_dim_i``."""
    return {
        name: [data_dim] + [f"{name}_dim_{i}" for i in range(a.ndim - lead - 1)]
        for name, a in arrays.items()
    }


def to_inference_data(
    model: Callable,
    guide: Callable,
    data: torch.Tensor | None = None,
    *args: Any,
    num_samples: int = 100,
    data_plate: str | None = None,
    batch_size: int | None = None,
    **kwargs: Any,
) -> az.InferenceData:
    """ArviZ ``InferenceData`` of ``z_k ~ q(z | x_n)`` and ``log p(x_n | z_k)``, k ≤ K, n ≤ N.

    Groups (``<plate>`` is the data plate's name, e.g. ``"data"``):

    - ``posterior``: every latent sample site of the guide, shape
      ``(chain=1, draw=K, <plate>=N, <site>_dim_0, ...)`` (the guide's draws);
    - ``log_likelihood``: every observed site of the model, ``log p(x_n | z_k)`` of
      shape ``(1, K, N)`` — ArviZ's pointwise convention, so ``az.loo`` and
      ``az.waic`` run;
    - ``observed_data``: the observed values, ``(N, <site>_dim_0, ...)``;
    - ``sample_stats``: ``log_importance_weight`` ``log p(x_n, z_k) - log q(z_k | x_n)``,
      ``(1, K, N)``.

    Every latent must be local to a datapoint (see
    :func:`~pyro_genmodels.infer.weights.importance_log_weights`). The programs are
    called as ``model(data, *args, **kwargs)``, or as ``model(*args, **kwargs)`` when
    ``data`` is None (a model that holds or conditions on its observations itself; ``N``
    is then the size of its data plate). Floating data are converted to the dtype of the
    programs' parameters, as ``pgm.fit`` does. With ``batch_size``, the data are
    processed in slices of that many datapoints, and every tensor in ``args`` and
    ``kwargs`` whose leading dim equals ``N`` is sliced alike (so a tensor that is
    not per-datapoint must not have leading dim ``N``).

    Args:
        model, guide: a Pyro model and guide.
        data: the data, shape ``(N, *)``; datapoints index the data plate (None: the
            programs take no data argument).
        num_samples: ``K``, the number of guide draws per datapoint.
        data_plate: the name of the plate over datapoints (found when omitted).
        batch_size: optional number of datapoints per pass.

    References:
        Kumar, Carroll, Hartikainen & Martin (2019), "ArviZ a unified library for
        exploratory analysis of Bayesian models in Python".

    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))
    >>> idata = to_inference_data(model, guide, torch.tensor([0.0, 1.0, 2.0]), num_samples=10)
    >>> dict(idata.posterior["z"].sizes)
    {'chain': 1, 'draw': 10, 'data': 3}
    >>> idata.log_likelihood["x"].dims
    ('chain', 'draw', 'data')
    >>> x = torch.tensor([0.0, 1.0, 2.0])
    >>> def model_of_x():  # the observations live inside the program: no data argument
    ...     model(x)
    >>> dict(to_inference_data(model_of_x, lambda: guide(x), num_samples=10).posterior.sizes)
    {'chain': 1, 'draw': 10, 'data': 3}
    """
    parts = []
    plate_name = ""  # set from the first batch; weighted_batches yields at least one
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
        parts.append(_batch_arrays(w))
        plate_name = w.data_plate
    groups = {
        group: {
            name: np.concatenate(
                [p[group][name] for p in parts], axis=int(group != "observed_data")
            )
            for name in parts[0][group]
        }
        for group in parts[0]
    }
    coords = {plate_name: np.arange(groups["sample_stats"]["log_importance_weight"].shape[1])}
    datasets = {}
    for group, arrays in groups.items():
        lead = 0 if group == "observed_data" else 2
        if lead:
            arrays = {name: a[None] for name, a in arrays.items()}
        datasets[group] = az.dict_to_dataset(
            arrays,
            library=pyro,
            coords=coords,
            dims=_dims(arrays, plate_name, lead),
            default_dims=None if lead else [],
        )
    return az.InferenceData(**datasets)
