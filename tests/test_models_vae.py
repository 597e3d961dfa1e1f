"""VAE, its likelihoods, beta and KL annealing: ELBOs against hand computations."""

import itertools
import math
from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO

from pyro_genmodels.infer.weights import importance_log_weights
from pyro_genmodels.models import VAE
from pyro_genmodels.training import KLAnnealing

LIKELIHOODS = ["bernoulli", "gaussian", "continuous_bernoulli"]


def _data(likelihood, n, d, device, dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, d, generator=g, dtype=dtype)
    if likelihood == "bernoulli":
        x = x.round()
    elif likelihood == "gaussian":
        x = 2 * x - 1
    return x.to(device)


def _hand_terms(vae, x, z):
    """log p(x|z), log p(z), log q(z|x) per datapoint, with torch.distributions."""
    loc, scale = vae.encoder(x)
    out = vae.decoder(z)
    if vae.likelihood == "bernoulli":
        lik = torch.distributions.Bernoulli(logits=out)
    elif vae.likelihood == "continuous_bernoulli":
        lik = torch.distributions.ContinuousBernoulli(logits=out)
    else:
        lik = torch.distributions.Normal(out[..., :4], F.softplus(out[..., 4:]) + 1e-5)
    log_px = lik.log_prob(x).sum(-1)
    log_pz = torch.distributions.Normal(torch.zeros_like(z), 1.0).log_prob(z).sum(-1)
    log_qz = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    return log_px, log_pz, log_qz


def _guide_z(vae, x, seed):
    pyro.set_rng_seed(seed)
    return poutine.trace(vae.guide).get_trace(x).nodes["z"]["value"]


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_elbo_single_particle_is_exact(likelihood, device, dtype):
    vae = VAE(4, 2, hidden_dims=(5,), likelihood=likelihood).to(device, dtype)
    x = _data(likelihood, 3, 4, device, dtype)
    z = _guide_z(vae, x, seed=7)
    pyro.set_rng_seed(7)  # Trace_ELBO draws the same z: the guide runs first
    loss = Trace_ELBO().loss(vae.model, vae.guide, x)
    log_px, log_pz, log_qz = _hand_terms(vae, x, z)
    expected = (log_px + log_pz - log_qz).sum().item()
    assert -loss == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_elbo_many_particles_matches_mc_minus_analytic_kl(device, dtype):
    vae = VAE(4, 2, hidden_dims=(5,)).to(device, dtype)
    x = _data("bernoulli", 3, 4, device, dtype)
    k = 20000
    loss = Trace_ELBO(num_particles=k, vectorize_particles=True).loss(vae.model, vae.guide, x)
    # Independent estimate: MC reconstruction term, closed-form KL.
    loc, scale = vae.encode(x)
    q = torch.distributions.Normal(loc, scale)
    p = torch.distributions.Normal(torch.zeros_like(loc), torch.ones_like(scale))
    z = q.sample((k,))
    rec = torch.distributions.Bernoulli(logits=vae.decoder(z)).log_prob(x).sum((-1, -2))
    kl = torch.distributions.kl_divergence(q, p).sum()
    expected = (rec.mean() - kl).item()
    # Standard error of the difference of the two independent MC means: the
    # ELBO's per-draw terms are rec + log p(z) - log q(z). Six standard errors:
    # a failure rate < 1e-8 under the normal approximation.
    per_draw = rec + (p.log_prob(z) - q.log_prob(z)).sum((-1, -2))
    tol = 6 * math.sqrt((rec.var() + per_draw.var()).item() / k)
    assert abs(-loss - expected) < tol


def test_beta_scales_exactly_the_kl(device, dtype):
    vae = VAE(4, 2, hidden_dims=(5,)).to(device, dtype)
    x = _data("bernoulli", 3, 4, device, dtype)
    losses = {}
    for beta in (0.0, 0.3, 1.0, 2.5):
        vae.beta = beta
        pyro.set_rng_seed(3)
        losses[beta] = Trace_ELBO().loss(vae.model, vae.guide, x)
    vae.beta = 1.0
    _, log_pz, log_qz = _hand_terms(vae, x, _guide_z(vae, x, seed=3))
    kl_mc = (log_qz - log_pz).sum().item()
    for beta in (0.3, 1.0, 2.5):
        assert losses[beta] - losses[0.0] == pytest.approx(beta * kl_mc, rel=1e-9, abs=1e-9)
    # With the analytic KL, the difference is beta times the closed-form KL.
    loc, scale = vae.encode(x)
    kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(loc, scale), torch.distributions.Normal(0.0, 1.0)
    ).sum()
    vals = {}
    for beta in (0.0, 0.5):
        vae.beta = beta
        pyro.set_rng_seed(3)
        vals[beta] = TraceMeanField_ELBO().loss(vae.model, vae.guide, x)
    assert vals[0.5] - vals[0.0] == pytest.approx(0.5 * kl.item(), rel=1e-9)


def test_importance_weights_ignore_beta(device, dtype):
    vae = VAE(4, 2, hidden_dims=(5,)).to(device, dtype)
    x = _data("bernoulli", 3, 4, device, dtype)
    out = []
    for beta in (0.0, 1.0, 4.0):
        vae.beta = beta
        pyro.set_rng_seed(5)
        out.append(importance_log_weights(vae.model, vae.guide, x, num_particles=6).log_weights)
    torch.testing.assert_close(out[0], out[1])
    torch.testing.assert_close(out[2], out[1])


def test_bernoulli_likelihood_normalizes_by_enumeration(device, dtype):
    vae = VAE(3, 2, hidden_dims=(4,)).to(device, dtype)
    z = torch.randn(5, 2, device=device, dtype=dtype)
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), device=device, dtype=dtype)
    lp = vae.distribution_x(z).log_prob(xs[:, None])  # (8, 5)
    torch.testing.assert_close(lp.logsumexp(0), torch.zeros(5, device=device, dtype=dtype))
    torch.testing.assert_close(vae.decode(z), torch.sigmoid(vae.decoder(z)))


def test_continuous_bernoulli_normalizes_on_unit_interval(device, dtype):
    vae = VAE(1, 2, hidden_dims=(4,), likelihood="continuous_bernoulli").to(device, dtype)
    z = torch.randn(4, 2, device=device, dtype=dtype)
    grid = torch.linspace(0, 1, 4001, device=device, dtype=dtype)
    d = vae.distribution_x(z)
    dens = d.log_prob(grid[:, None, None]).exp()  # (G, 4)
    integral = torch.trapezoid(dens, grid, dim=0)
    torch.testing.assert_close(integral, torch.ones_like(integral), rtol=0, atol=1e-5)
    mean = torch.trapezoid(dens * grid[:, None], grid, dim=0)
    torch.testing.assert_close(vae.decode(z)[:, 0], mean, rtol=0, atol=1e-5)
    expected = torch.distributions.ContinuousBernoulli(logits=vae.decoder(z)).log_prob(
        grid[:7, None, None]
    )
    torch.testing.assert_close(d.log_prob(grid[:7, None, None]), expected.sum(-1))


def test_gaussian_likelihood_agrees_with_torch(device, dtype):
    vae = VAE(4, 2, hidden_dims=(5,), likelihood="gaussian").to(device, dtype)
    z = torch.randn(3, 2, device=device, dtype=dtype)
    x = torch.randn(3, 4, device=device, dtype=dtype)
    out = vae.decoder(z)
    expected = torch.distributions.Normal(out[:, :4], F.softplus(out[:, 4:]) + 1e-5).log_prob(x)
    torch.testing.assert_close(vae.distribution_x(z).log_prob(x), expected.sum(-1))
    torch.testing.assert_close(vae.decode(z), out[:, :4])


def test_conv_vae_shapes_and_training_reduces_loss(device):
    vae = VAE(64, 3, encoder="conv", image_shape=(1, 8, 8)).to(device)
    # Two prototype images with 5% of pixels flipped: quickly learnable.
    g = torch.Generator().manual_seed(2)
    protos = torch.rand(2, 64, generator=g).round()
    flips = (torch.rand(16, 64, generator=g) < 0.05).float()
    x = ((protos[torch.arange(16) % 2] + flips) % 2).to(device)
    loc, scale = vae.encode(x)
    assert loc.shape == scale.shape == (16, 3) and (scale > 0).all()
    assert vae.decode(loc).shape == vae.reconstruct(x).shape == (16, 64)
    draws = vae.sample(5, mean=False)
    assert draws.shape == (5, 64) and ((draws == 0) | (draws == 1)).all()
    assert ((vae.sample(5) > 0) & (vae.sample(5) < 1)).all()
    elbo = Trace_ELBO(num_particles=8, vectorize_particles=True)
    before = elbo.loss(vae.model, vae.guide, x)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    for _ in range(15):
        svi.step(x)
    after = elbo.loss(vae.model, vae.guide, x)
    assert after < 0.7 * before


def test_kl_annealing_values_and_callback():
    vae = VAE(4, 2, hidden_dims=(3,))
    schedule = KLAnnealing(vae, start=0.2, end=1.0, epochs=4)
    assert [schedule.value(e) for e in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    for epoch in (0, 2, 7):
        schedule.on_epoch_start(SimpleNamespace(epoch=epoch, step=0, history=[]))
        assert vae.beta == pytest.approx(schedule.value(epoch))
        assert schedule.on_epoch_end(SimpleNamespace(epoch=epoch)) == {"beta": vae.beta}
    down = KLAnnealing(vae, start=2.0, end=0.5, epochs=3)
    assert [down.value(e) for e in (0, 1, 3)] == pytest.approx([2.0, 1.5, 0.5])
    other = SimpleNamespace(alpha=1.0)
    KLAnnealing(other, 0.0, 10.0, epochs=2, attribute="alpha").on_epoch_start(
        SimpleNamespace(epoch=1)
    )
    assert other.alpha == 5.0


def test_kl_annealing_bad_input():
    vae = VAE(4, 2, hidden_dims=(3,))
    with pytest.raises(ValueError, match="attribute"):
        KLAnnealing(vae, attribute="gamma")
    with pytest.raises(ValueError, match="epochs"):
        KLAnnealing(vae, epochs=0)
    with pytest.raises(ValueError, match="start"):
        KLAnnealing(vae, start=-1.0)
    with pytest.raises(ValueError, match="epoch"):
        KLAnnealing(vae).value(-1)


def test_vae_bad_input(device):
    vae = VAE(4, 2, hidden_dims=(3,)).to(device)
    good = torch.zeros(2, 4, device=device)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 4\), got shape \(2, 5\)"):
        vae.model(torch.zeros(2, 5, device=device))
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        vae.guide(torch.zeros(4, device=device))
    with pytest.raises(ValueError, match="binary"):
        vae.model(good + 0.5)
    with pytest.raises(TypeError, match="floating point"):
        vae.guide(good.long())
    with pytest.raises(TypeError, match="torch.Tensor"):
        vae.model([[0.0] * 4])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        VAE(4, 2, hidden_dims=(3,), likelihood="continuous_bernoulli").model(good + 2)
    with pytest.raises(ValueError, match="z must have shape"):
        vae.decode(torch.zeros(3, 5, device=device))
    vae.beta = -1.0
    with pytest.raises(ValueError, match="beta"):
        vae.model(good)


def test_vae_constructor_errors():
    with pytest.raises(ValueError, match="likelihood must be one of"):
        VAE(4, 2, likelihood="poisson")
    with pytest.raises(ValueError, match="encoder must be one of"):
        VAE(4, 2, encoder="rnn")
    with pytest.raises(ValueError, match="needs image_shape"):
        VAE(64, 2, encoder="conv")
    with pytest.raises(ValueError, match="C\\*H\\*W equal to the number of features D=64"):
        VAE(64, 2, encoder="conv", image_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="z_dim must be a positive int"):
        VAE(4, 0)
    with pytest.raises(ValueError, match="beta"):
        VAE(4, 2, beta=-0.1)
    with pytest.raises(TypeError, match="hidden_dims"):
        VAE(4, 2, hidden_dims=8)


def test_every_parameter_gets_a_gradient(device):
    vae = VAE(64, 2, hidden_dims=(6,), likelihood="gaussian").to(device)
    x = torch.randn(5, 64, device=device)
    Trace_ELBO().differentiable_loss(vae.model, vae.guide, x).backward()
    for name, p in vae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_sample_site_shapes_are_pyro_conformant(device):
    vae = VAE(4, 2, hidden_dims=(3,)).to(device)
    x = torch.zeros(3, 4, device=device)
    tr = poutine.trace(vae.model).get_trace(x)
    tr.compute_log_prob()
    assert tr.nodes["z"]["log_prob"].shape == (3,) and tr.nodes["x"]["log_prob"].shape == (3,)
    assert isinstance(tr.nodes["x"]["fn"], dist.Independent)
