"""The flow records: each property is checked against what the builder's flow does
(network passes counted by hooks, inverses tried, signatures read), and every
consumer's choices are checked to derive from the records. Deterministic."""

from __future__ import annotations

import inspect

import pyro.distributions as dist
import pytest
import torch
from pyro.nn import AutoRegressiveNN, ConditionalAutoRegressiveNN, ConditionalDenseNN, DenseNN

import pyro_genmodels as pgm
from pyro_genmodels import flows
from pyro_genmodels.models import _likelihoods

NETS = (
    DenseNN,
    ConditionalDenseNN,
    AutoRegressiveNN,
    ConditionalAutoRegressiveNN,
    flows.ConvCoupling,
)
D, LAYERS, C = 4, 2, 3
PASSES = {"1": LAYERS, "D": LAYERS * D}


def _counted(flow):
    """Hooks counting the forward passes of every network inside ``flow``."""
    calls = []
    for m in flow.modules():
        if isinstance(m, NETS):
            m.register_forward_hook(lambda *_: calls.append(1))
    return calls


def _distribution(flow, context, event=(D,), device="cpu"):
    base = dist.Normal(torch.zeros(event, device=device), 1.0).to_event(len(event))
    t = flow.condition(context) if context is not None else flows.clear_cache(flow)
    return dist.TransformedDistribution(base, [t])


@pytest.mark.parametrize("name", list(flows.RECORDS))
def test_record_is_true_of_its_flow(name, device):
    record = flows.RECORDS[name]
    params = inspect.signature(record.build).parameters
    assert ("context_dim" in params) == record.conditional
    assert ("image_shape" in params) == record.images
    assert getattr(flows, name) is record.build and name in flows.__all__

    # network passes per layer: with a context every builder has networks to count
    torch.manual_seed(0)
    context = torch.randn(C, device=device) if record.conditional else None
    extra = {"context_dim": C} if record.conditional else {}
    flow = record.build(D, num_layers=LAYERS, hidden_dims=[8], **extra).to(device)
    for built in (flow, record.build(D, num_layers=1)):  # conditional and not
        assert bool(flows.without_inverse(built)) == (not record.invertible)
    calls = _counted(flow)
    d = _distribution(flow, context, device=device)
    x = d.rsample((5,))
    lp = d.log_prob(x)  # its own sample: scored from the cache
    assert torch.isfinite(lp).all()
    assert len(calls) == PASSES[record.sample_passes], (name, len(calls))
    calls.clear()
    fresh = torch.randn(5, D, device=device)
    if record.invertible:
        lp = _distribution(flow, context, device=device).log_prob(fresh)
        assert torch.isfinite(lp).all()
        assert len(calls) == PASSES[record.density_passes], (name, len(calls))
        t = flow.condition(context) if context is not None else flow
        z = torch.randn(5, D, device=device)
        assert torch.allclose(t.inv(t(z).clone()), z, atol=1e-5)
        record.build(D, num_layers=1, cache_size=0)  # the cache is optional
    else:
        with pytest.raises((NotImplementedError, KeyError)):  # Pyro's TransformedDistribution
            _distribution(flow, context, device=device).log_prob(fresh)
        with pytest.raises(ValueError, match=f"cache_size must be 1 for {name}"):
            record.build(D, num_layers=1, cache_size=0)

    # documented options: each accepted, an undocumented value refused
    for option, values in record.options.items():
        for value in values:
            record.build(D, num_layers=1, hidden_dims=[8], **{option: value})
        with pytest.raises(ValueError, match=f"{option} must be one of"):
            record.build(D, num_layers=1, hidden_dims=[8], **{option: "undocumented"})

    if record.images:  # one scale of convolutional steps: still one pass per layer
        flow = record.build(
            16, num_layers=LAYERS, hidden_dims=[4], image_shape=(1, 4, 4), num_scales=1
        ).to(device)
        calls = _counted(flow)
        d = _distribution(flow, None, (16,), device)
        d.log_prob(d.sample((3,)))
        assert len(calls) == LAYERS
        calls.clear()
        _distribution(flow, None, (16,), device).log_prob(torch.randn(3, 16, device=device))
        assert len(calls) == LAYERS


def test_registries_derive_from_the_records():
    assert flows.BUILDERS == {n: r.build for n, r in flows.RECORDS.items()}
    assert flows.INVERTIBLE == tuple(n for n, r in flows.RECORDS.items() if r.invertible)
    assert _likelihoods.GUIDE_FLOWS == tuple(
        n for n, r in flows.RECORDS.items() if r.conditional and r.sample_passes == "1"
    )
    assert _likelihoods.PRIOR_FLOWS == tuple(
        n for n, r in flows.RECORDS.items() if r.density_passes == "1"
    )
    with pytest.raises(ValueError, match="unknown flow properties"):
        flows.names(fast=True)


@pytest.mark.parametrize("name", list(flows.RECORDS))
def test_flow_density_accepts_exactly_the_invertible_builders(name, device):
    if flows.RECORDS[name].invertible:
        kwargs = {"image_shape": (1, 2, 2), "num_scales": 1} if flows.RECORDS[name].images else {}
        flow = pgm.models.FlowDensity(4, name, num_layers=1, hidden_dims=[4], **kwargs).to(device)
        assert flow.log_prob(torch.randn(3, 4, device=device)).shape == (3,)
        return
    valid = str(flows.INVERTIBLE).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=f"flow must be one of {valid}, got '{name}'"):
        pgm.models.FlowDensity(2, name)


@pytest.mark.parametrize("role", ["guide_flow", "prior_flow"])
@pytest.mark.parametrize("name", list(flows.RECORDS))
def test_vae_accepts_exactly_the_suitable_builders(name, role):
    choices = _likelihoods.GUIDE_FLOWS if role == "guide_flow" else _likelihoods.PRIOR_FLOWS
    if name in choices:
        pgm.models.VAE(8, 2, hidden_dims=(8,), **{role: name})
        return
    with pytest.raises(ValueError, match=f"{role} must be None or one of .*got '{name}'"):
        pgm.models.VAE(8, 2, **{role: name})
