"""VAEs with flow posteriors (amortized on the encoder's output) and flow priors."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels import flows
from pyro_genmodels.models import VAE
from pyro_genmodels.models import _likelihoods as L

X = (torch.rand(6, 8) > 0.5).float()


def _options(names, exclude=()):
    """(builder, options) pairs: each builder's defaults and each documented option value."""
    out = []
    for name in names:
        out.append((name, {}))
        for option, values in flows.RECORDS[name].options.items():
            out += [(name, {option: v}) for v in values if (option, v) not in exclude]
    return out


@pytest.mark.parametrize("guide_flow", L.GUIDE_FLOWS)
def test_flow_posterior_trains_and_scores(guide_flow, device):
    vae = VAE(8, 2, hidden_dims=(16,), guide_flow=guide_flow, guide_flow_layers=2).to(device)
    x = X.to(device)
    loss = pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
    loss.backward()
    for name, p in vae.guide_flow.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    tr = pyro.poutine.trace(vae.guide).get_trace(x)
    assert isinstance(tr.nodes["z"]["fn"], dist.TransformedDistribution)
    ll = pgm.infer.log_likelihood(vae.model, vae.guide, x, num_samples=50)
    assert ll.shape == (6,) and torch.isfinite(ll).all()


def test_iaf_posterior_density_is_the_change_of_variables(device):
    """``log q(z|x) = log N(z0; loc, scale) - log|det J_f(z0)|`` with ``z0 = f^{-1}(z)``
    computed afresh (D network passes), against the guide trace's cached value."""
    torch.manual_seed(0)
    vae = VAE(8, 3, hidden_dims=(16,), guide_flow="iaf").double().to(device)
    x = X.double().to(device)
    tr = pyro.poutine.trace(vae.guide).get_trace(x)
    z = tr.nodes["z"]["value"]
    logq = tr.nodes["z"]["fn"].log_prob(z)
    loc, scale = vae.encode(x)
    flow = vae.guide_flow.condition(torch.cat([loc, scale], -1))
    z0 = flow.inv(z.clone())
    expected = dist.Normal(loc, scale).to_event(1).log_prob(z0) - flow.log_abs_det_jacobian(
        z0, flow(z0)
    )
    assert torch.allclose(logq, expected, atol=1e-6)


def test_the_guide_flow_is_amortized(device):
    torch.manual_seed(0)
    vae = VAE(8, 2, hidden_dims=(16,), guide_flow="planar").to(device)
    loc, scale = vae.encode(X.to(device))
    flow = vae.guide_flow.condition(torch.cat([loc, scale], -1))
    z = torch.zeros(6, 2, device=device)
    y = flow(z)
    assert not torch.allclose(y[0], y[1])  # same input, different datapoints, different maps


def test_maf_prior_is_a_normalized_density(device):
    torch.manual_seed(0)
    vae = VAE(8, 2, hidden_dims=(16,), prior_flow="maf").double().to(device)
    with torch.no_grad():
        for p in vae.prior_flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    n, lo, hi = 300, -10.0, 10.0
    h = (hi - lo) / n
    t = lo + h * (torch.arange(n, dtype=torch.float64, device=device) + 0.5)
    pts = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        mass = (vae.prior(pts).log_prob(pts).exp() * h * h).sum().item()
    assert abs(mass - 1) < 0.02
    tr = pyro.poutine.trace(vae.model).get_trace(X.double().to(device))
    assert isinstance(tr.nodes["z"]["fn"], dist.TransformedDistribution)
    assert vae.sample(4).shape == (4, 8)


def test_flow_vae_rejects_unknown_flows():
    with pytest.raises(ValueError, match="guide_flow must be None or one of .* got 'maf'"):
        VAE(8, 2, guide_flow="maf")
    with pytest.raises(ValueError, match="prior_flow must be None or one of .* got 'planar'"):
        VAE(8, 2, prior_flow="planar")
    with pytest.raises(ValueError, match="guide_flow_layers must be a positive int"):
        VAE(8, 2, guide_flow="iaf", guide_flow_layers=0)


def _elbo_grads(vae, x):
    loss = pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in vae.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


# Batch norm's training-mode log-det is computed from the data side's batch statistics:
# right in the density direction only, so not for a guide, which samples while training.
@pytest.mark.parametrize(
    "name,options", _options(L.GUIDE_FLOWS, exclude={("norm", "batchnorm")}), ids=str
)
def test_every_guide_flow_option_in_a_vae(name, options, device):
    """The guide's density of its sample is the change of variables ``log q(z|x) =
    log N(z0; loc, scale) - log|det J_f(z0)|``, with ``z0`` the base draw, ``f`` recomputed
    without caches and its Jacobian by autograd."""
    torch.manual_seed(0)
    vae = VAE(8, 4, hidden_dims=(16,), guide_flow=name)
    vae.guide_flow = flows.BUILDERS[name](
        4, num_layers=2, hidden_dims=[16], context_dim=8, **options
    )
    vae = vae.double().to(device)
    x = X.double().to(device)
    _elbo_grads(vae, x)
    tr = pyro.poutine.trace(vae.guide).get_trace(x)
    fn, z = tr.nodes["z"]["fn"], tr.nodes["z"]["value"]
    flow = fn.transforms[0]
    logq = fn.log_prob(z)
    z0 = flow.inv(z).detach()  # from the cache: the base draw
    assert torch.allclose(flow(z0.clone()), z, atol=1e-8)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v), z0.clone())  # (6, 4, 6, 4)
    ladj = torch.stack([torch.linalg.slogdet(jac[i, :, i, :])[1] for i in range(len(z0))])
    loc, scale = vae.encode(x)
    expected = dist.Normal(loc, scale).to_event(1).log_prob(z0) - ladj
    assert torch.allclose(logq, expected, atol=1e-6)


@pytest.mark.parametrize("name,options", _options(L.PRIOR_FLOWS), ids=str)
def test_every_prior_flow_option_in_a_vae(name, options, device):
    """The prior is a normalized density in eval mode (2-D quadrature), and trains."""
    torch.manual_seed(0)
    vae = VAE(8, 2, hidden_dims=(16,), prior_flow=name)
    vae.prior_flow = flows.BUILDERS[name](2, num_layers=2, hidden_dims=[16], **options)
    vae = vae.double().to(device)
    _elbo_grads(vae, X.double().to(device))
    vae.eval()
    n, lo, hi = 200, -9.0, 9.0
    h = (hi - lo) / n
    t = lo + h * (torch.arange(n, dtype=torch.float64, device=device) + 0.5)
    pts = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        mass = (vae.prior(pts).log_prob(pts).exp() * h * h).sum().item()
    assert abs(mass - 1) < 0.02, mass
