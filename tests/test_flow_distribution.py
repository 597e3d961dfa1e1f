"""FlowDistribution: data broadcast against a context's batch shape (entry by entry against
one-row evaluations), empty inputs, non-finite contexts, expand."""

from __future__ import annotations

import pyro
import pytest
import torch

from pyro_genmodels import flows
from pyro_genmodels.models import FlowDensity, FlowDistribution


def _density(name="realnvp", device="cpu", **kwargs):
    torch.manual_seed(0)
    f = FlowDensity(2, name, num_layers=2, hidden_dims=[8], **kwargs)
    f = f.to(device=device, dtype=torch.float64).eval()
    with torch.no_grad():
        for p in f.parameters():
            p.add_(0.1 * torch.randn_like(p))
    for m in f.modules():
        if isinstance(m, flows.ActNorm):
            m.initialized.fill_(True)
    return f


@pytest.mark.parametrize("name", ["realnvp", "maf", "spline", "glow"])
def test_data_broadcast_against_a_context_batch_shape(name, device):
    """A context (4, 1, 3) and data (5, 2) give (4, 5): entry (i, j) is log p(x_j | c_i)."""
    flow = _density(name, device, context_dim=3)
    g = torch.Generator().manual_seed(1)
    c = torch.randn(4, 1, 3, generator=g, dtype=torch.float64).to(device)
    x = torch.randn(5, 2, generator=g, dtype=torch.float64).to(device)
    with torch.no_grad():
        lp = flow.distribution(c).log_prob(x)
        assert lp.shape == (4, 5)
        assert flow.log_prob(x, c).shape == (4, 5)
        for i in range(4):
            for j in range(5):
                one = flow.log_prob(x[j : j + 1], c[i, :, :])  # one row against one context
                torch.testing.assert_close(lp[i, j], one[0], rtol=1e-10, atol=1e-10)


def test_class_conditional_data_broadcast_against_label_batch_shape(device):
    flow = _density("realnvp", device, num_classes=3)
    labels = torch.tensor([[2], [0], [1], [2]], device=device)  # (4, 1)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = x.to(device)
    with torch.no_grad():
        d = flow.distribution(labels)
        assert d.batch_shape == (4, 1)
        lp = d.log_prob(x)
        assert lp.shape == (4, 5)
        for i in range(4):
            by_row = flow.log_prob(x, labels[i].expand(5))  # the same label on every row
            torch.testing.assert_close(lp[i], by_row, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match=r"do not broadcast with batch_shape \(4, 1\)"):
        d.log_prob(torch.zeros(3, 5, 2, device=device, dtype=torch.float64))


@pytest.mark.parametrize("context", [None, "vectors", "labels"])
def test_zero_rows_give_empty_results(context, device):
    kwargs = {"vectors": {"context_dim": 3}, "labels": {"num_classes": 3}}.get(context, {})
    flow = _density("realnvp", device, **kwargs)
    none = {
        None: None,
        "vectors": torch.zeros(0, 3, dtype=torch.float64, device=device),
        "labels": torch.zeros(0, dtype=torch.long, device=device),
    }[context]
    d = flow.distribution(none)
    assert d.batch_shape == ((0,) if context else ())
    assert d.sample((0,)).shape == ((0, 0, 2) if context else (0, 2))
    assert d.sample((3,)).shape == ((3, 0, 2) if context else (3, 2))
    lp = d.log_prob(torch.zeros(2, dtype=torch.float64, device=device))
    assert lp.shape == ((0,) if context else ()) and lp.dtype == torch.float64
    assert flow.log_prob(torch.zeros(0, 2, dtype=torch.float64, device=device), none).shape == (0,)
    assert flow.sample(0, none).shape == (0, 2)


def test_non_finite_context_is_refused_under_validation():
    flow = _density("realnvp", context_dim=3)
    c = torch.zeros(2, 3, dtype=torch.float64)
    c[1, 2] = float("nan")
    with pyro.validation_enabled(True):
        with pytest.raises(ValueError, match="context must be finite, but 1 of 6 values are NaN"):
            flow.log_prob(torch.zeros(2, 2, dtype=torch.float64), c)
    with pyro.validation_enabled(False):  # unchecked when validation is off, as in torch
        assert torch.isnan(flow.distribution(c).log_prob(torch.zeros(2, dtype=torch.float64))[1])


def test_flows_without_inverse_score_their_own_samples_in_any_shape():
    # FlowDensity refuses a flow without an inverse; FlowDistribution takes one directly
    torch.manual_seed(0)
    planar = flows.planar(2, num_layers=2, hidden_dims=[8], context_dim=3).double()
    base = _density().base()
    d = FlowDistribution(planar, base, torch.zeros(2, 1, 3, dtype=torch.float64))
    x = d.sample((4,))
    assert d.log_prob(x).shape == (4, 2, 1)
    with pytest.raises(ValueError, match="broadcast"):
        d.expand((2, 3)).log_prob(torch.zeros(4, 2, dtype=torch.float64))


@pytest.mark.parametrize("context_dim", [None, 3])
@pytest.mark.parametrize("name", flows.names(invertible=False))
def test_flows_without_inverse_refuse_points_they_did_not_draw(name, context_dim, device):
    """Planar, radial and sylvester flows score their own samples; any other value (a copy of a
    sample included) is a NotImplementedError that says why and names the invertible flows."""
    torch.manual_seed(0)
    kw = {} if context_dim is None else {"context_dim": context_dim}
    flow = flows.BUILDERS[name](2, num_layers=2, **kw).to(device=device, dtype=torch.float64)
    base = _density(device=device).base()
    context = None if context_dim is None else torch.zeros(4, 3, dtype=torch.float64).to(device)
    d = FlowDistribution(flow, base, context)
    x = d.sample((4,) if context is None else ())
    assert torch.isfinite(d.log_prob(x)).all()
    for value in (x.clone(), torch.zeros_like(x)):
        with pytest.raises(NotImplementedError, match=r"no closed-form inverse.*maf, realnvp"):
            d.log_prob(value)


def test_expand_support_and_bad_arguments():
    flow = _density("realnvp", context_dim=3, preprocess="logit", levels=4)
    d = flow.distribution(torch.zeros(2, 1, 3, dtype=torch.float64))
    e = d.expand((5, 2, 3))
    assert type(e) is FlowDistribution and e.context.shape == (5, 2, 3, 3)
    with pytest.raises(ValueError, match=r"batch_shape \(2, 1\) does not expand to \(4, 3\)"):
        d.expand((4, 3))
    assert d.support.check(torch.tensor([0.0, 4.0], dtype=torch.float64))
    assert not d.support.check(torch.tensor([-0.5, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="support"):
        d.log_prob(torch.tensor([-0.5, 1.0], dtype=torch.float64))
    base = flow.base()
    with pytest.raises(ValueError, match="needs a context"):
        FlowDistribution(flow.flow, base)
    with pytest.raises(ValueError, match="takes no context"):
        FlowDistribution(flows.realnvp(2, 2), base, torch.zeros(1, 3))
    with pytest.raises(TypeError, match="float Tensor"):
        FlowDistribution(flow.flow, base, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="event_shape"):
        FlowDistribution(flows.realnvp(2, 2), base.expand((3,)))


def test_vectorized_particles_of_a_latent_context():
    """A global latent context under ``vectorize_particles`` has shape (P, 1, C) against data
    (N, D): the ELBO equals the mean over particles of its one-particle values."""
    flow = _density("realnvp", context_dim=3)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    loc = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)

    def model(x):
        c = pyro.sample("c", pyro.distributions.Normal(loc, 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", flow.distribution(c), obs=x)

    def guide(x):
        pyro.sample("c", pyro.distributions.Normal(loc, 0.5).to_event(1))

    elbo = pyro.infer.Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    pyro.set_rng_seed(0)
    vectorized = elbo.differentiable_loss(model, guide, x)
    pyro.set_rng_seed(0)
    prior, q = pyro.distributions.Normal(loc, 1.0), pyro.distributions.Normal(loc, 0.5)
    cs = q.to_event(1).sample((4,))  # the guide's draws: the same generator calls
    with torch.no_grad():
        one = [
            q.log_prob(c).sum() - prior.log_prob(c).sum() - flow.log_prob(x, c.expand(6, 3)).sum()
            for c in cs
        ]
    torch.testing.assert_close(vectorized, torch.stack(one).mean(), rtol=1e-10, atol=1e-10)
