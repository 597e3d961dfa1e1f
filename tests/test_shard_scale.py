"""Plate scaling of data-parallel training, checked in one process: the losses of the shards
of a batch, each run under :class:`ShardScale`, sum to the loss of the whole batch.

The shards are those of 2 ranks of an uneven batch of 5 (3 + 2 rows). Every case is free
of sampling noise (Delta guides, a global latent drawn first from the same seed), so the
loss values and the gradients of every param must agree within 1e-10 in float64: for
Trace_ELBO, TraceMeanField_ELBO, TraceGraph_ELBO, IWAELoss, RenyiELBO and exact score
matching, with a plate over the batch, a subsampled plate of a larger population
``pyro.plate("data", N, subsample=idx)``, a global latent outside the plate, and data
observed without a plate.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_genmodels.distributions import EnergyDistribution
from pyro_genmodels.infer import IWAELoss, ScoreMatchingLoss
from pyro_genmodels.parallel.shard_scale import PlateRecorder, ShardScale, find_data_plates

N, B, WORLD = 12, 5, 2
X = torch.linspace(-1.0, 2.0, N, dtype=torch.float64)
IDX = torch.tensor([7, 0, 3, 11, 5])  # the global batch: rows of a population of N


def _map_model(x, idx, subsample):
    """A global ``loc ~ N(0, 1)`` (a MAP point through the guide's Delta) and the data."""
    loc = pyro.sample("loc", dist.Normal(x.new_zeros(()), 1.0))
    plate = pyro.plate("data", N, subsample=idx) if subsample else pyro.plate("data", len(x))
    with plate:
        pyro.sample("x", dist.Normal(loc, 1.5), obs=x)


def _map_guide(x, idx, subsample):
    q = pyro.param("loc_q", torch.tensor(0.3, dtype=torch.float64))
    pyro.sample("loc", dist.Delta(q))


def _normal_guide(x, idx, subsample):
    """A random global latent: exact only because every shard draws it first from seed 0."""
    q = pyro.param("loc_q", torch.tensor(0.3, dtype=torch.float64))
    pyro.sample("loc", dist.Normal(q, 0.7))


def _local_model(x, idx, subsample):
    """A latent ``z_i`` per datapoint and a param prior mean; no global site."""
    m = pyro.param("m", torch.tensor(0.2, dtype=torch.float64))
    plate = pyro.plate("data", N, subsample=idx) if subsample else pyro.plate("data", len(x))
    with plate:
        z = pyro.sample("z", dist.Normal(m, 1.0))
        pyro.sample("x", dist.Normal(z, 0.5), obs=x)


def _local_guide(x, idx, subsample):
    zq = pyro.param("zq", torch.linspace(-0.5, 0.5, N, dtype=torch.float64))
    plate = pyro.plate("data", N, subsample=idx) if subsample else pyro.plate("data", len(x))
    with plate:
        pyro.sample("z", dist.Delta(zq[idx]))


def _unplated_model(x, idx, subsample):
    """A global latent and the data observed as one event (no plate)."""
    loc = pyro.sample("loc", dist.Normal(x.new_zeros(()), 1.0))
    pyro.sample("x", dist.Normal(loc, 1.5).expand(x.shape).to_event(1), obs=x)


_ENERGY = nn.Sequential(nn.Linear(1, 6), nn.Tanh(), nn.Linear(6, 1)).double()


def _energy_model(x, idx, subsample):
    pyro.module("energy", _ENERGY)
    plate = pyro.plate("data", N, subsample=idx) if subsample else pyro.plate("data", len(x))
    with plate:
        pyro.sample("x", EnergyDistribution(_ENERGY, (1,)), obs=x.unsqueeze(-1))


CASES = {
    "map-elbo": (_map_model, _map_guide, pyro.infer.Trace_ELBO),
    "normal-meanfield": (_map_model, _normal_guide, pyro.infer.TraceMeanField_ELBO),
    "normal-tracegraph": (_map_model, _normal_guide, pyro.infer.TraceGraph_ELBO),
    "local-iwae": (_local_model, _local_guide, lambda: IWAELoss(num_particles=3)),
    "local-renyi": (
        _local_model,
        _local_guide,
        lambda: pyro.infer.RenyiELBO(alpha=0.5, num_particles=2),
    ),
    "energy-score": (
        _energy_model,
        lambda *a: None,
        lambda: ScoreMatchingLoss("exact", noise_scale=0),
    ),
}


def _grads() -> dict[str, torch.Tensor]:
    out = {}
    for name, p in pyro.get_param_store().named_parameters():
        out[name] = p.grad.clone() if p.grad is not None else torch.zeros_like(p)
        p.grad = None
    return out


def _recorded(loss, model, guide, args):
    rec = PlateRecorder()
    pyro.set_rng_seed(0)
    loss.loss(rec(model), rec(guide), *args)
    return rec


@pytest.mark.parametrize("subsample", [False, True], ids=["batch-plate", "subsampled"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_shards_sum_to_the_global_loss(case, subsample):
    model, guide, make_loss = CASES[case]
    loss = make_loss()
    pyro.clear_param_store()
    whole = (X[IDX], IDX, subsample)
    shards = [
        (x, i, subsample) for x, i in zip(X[IDX].tensor_split(WORLD), IDX.tensor_split(WORLD))
    ]
    pyro.set_rng_seed(0)
    ref_value = loss.loss_and_grads(model, guide, *whole)
    ref = _grads()
    plates, sites = find_data_plates(
        _recorded(loss, model, guide, whole), _recorded(loss, model, guide, shards[0])
    )
    assert plates == {"data": not subsample}  # found from the sizes, not the name
    scale = ShardScale(plates, sites, WORLD)
    total, got = 0.0, {k: torch.zeros_like(v) for k, v in ref.items()}
    for shard in shards:
        scale.set_step(B, len(shard[1]))
        pyro.set_rng_seed(0)
        total += loss.loss_and_grads(scale.wrap(model), scale.wrap(guide), *shard)
        for k, g in _grads().items():
            got[k] += g
    assert abs(total - ref_value) < 1e-10 * max(1.0, abs(ref_value))
    for k, g in ref.items():
        torch.testing.assert_close(got[k], g, rtol=1e-10, atol=1e-10)
    assert sum(float(g.abs().sum()) for g in ref.values()) > 1e-3  # the check has teeth


def test_data_without_a_plate_is_summed_and_the_prior_shared():
    loss = pyro.infer.Trace_ELBO()
    pyro.clear_param_store()
    whole = (X[IDX], IDX, False)
    shards = [(x, i, False) for x, i in zip(X[IDX].tensor_split(WORLD), IDX.tensor_split(WORLD))]
    ref_value = loss.loss_and_grads(_unplated_model, _map_guide, *whole)
    ref = _grads()
    plates, sites = find_data_plates(
        _recorded(loss, _unplated_model, _map_guide, whole),
        _recorded(loss, _unplated_model, _map_guide, shards[0]),
    )
    assert plates == {} and sites == {"x"}
    scale = ShardScale(plates, sites, WORLD)
    tr = pyro.poutine.trace(scale.wrap(_unplated_model)).get_trace(*shards[1])
    assert tr.nodes["loc"]["scale"] == 0.5 and tr.nodes["x"]["scale"] == 1.0
    total = 0.0
    for shard in shards:
        scale.set_step(B, len(shard[1]))
        total += loss.loss_and_grads(scale.wrap(_unplated_model), scale.wrap(_map_guide), *shard)
    assert abs(total - ref_value) < 1e-10
    torch.testing.assert_close(pyro.param("loc_q").grad, ref["loc_q"], rtol=1e-10, atol=1e-10)
    pyro.clear_param_store()


def test_without_a_plate_scale_the_global_prior_counts_world_times():
    """What the scaling fixes: unscaled shards count the global prior twice."""
    loss = pyro.infer.Trace_ELBO()
    pyro.clear_param_store()
    whole = (X[IDX], IDX, False)
    ref = loss.loss(_map_model, _map_guide, *whole)
    shards = [(x, i, False) for x, i in zip(X[IDX].tensor_split(WORLD), IDX.tensor_split(WORLD))]
    plain = sum(loss.loss(_map_model, _map_guide, *s) for s in shards)
    prior = -dist.Normal(0.0, 1.0).log_prob(torch.tensor(0.3, dtype=torch.float64)).item()
    assert abs(plain - ref - prior) < 1e-10
    pyro.clear_param_store()


def test_compiled_loss_is_keyed_by_the_scale():
    """A shard of 3 rows is 3/5 of one global batch and 3/6 of another: the compiled loss
    (its scales are constants of the trace) is compiled once per factor."""
    from pyro_genmodels.training.loss_stack import CompiledLoss

    pyro.clear_param_store()
    jit = CompiledLoss(pyro.infer.Trace_ELBO())
    plain = pyro.infer.Trace_ELBO()
    scale = ShardScale({"data": False}, set(), WORLD)
    model = lambda x, idx: _map_model(x, idx, True)  # noqa: E731  (tensors only for the JIT)
    guide = lambda x, idx: _map_guide(x, idx, True)  # noqa: E731
    for global_size in (5, 6, 5):
        scale.set_step(global_size, 3)
        args = (scale.wrap(model), scale.wrap(guide), X[IDX[:3]], IDX[:3])
        expected = plain.loss(*args)
        # (Pyro's JIT keeps a scale as a float32 constant: agreement to float32 precision)
        assert abs(jit.loss_and_grads(*args) - expected) < 1e-6 * abs(expected)
    assert len(jit.compiled) == 2
    pyro.clear_param_store()


def test_a_program_calling_the_other_is_scaled_once():
    scale = ShardScale({}, set(), WORLD)
    inner = scale.wrap(lambda: pyro.sample("g", dist.Normal(0.0, 1.0), obs=torch.zeros(())))
    outer = scale.wrap(lambda: inner())
    tr = pyro.poutine.trace(outer).get_trace()
    assert tr.nodes["g"]["scale"] == 0.5
