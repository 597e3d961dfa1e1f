"""Tests of pgm.infer.IWAELoss: the bound's value, its gradients (standard, DReG, VIMCO)."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import RenyiELBO, Trace_ELBO

from pyro_genmodels.infer import IWAELoss, importance_log_weights
from pyro_genmodels.infer.iwae import _detach_distribution


class LinearGaussian:
    """z ~ N(0, I_2), x | z ~ N(W z + b, s^2 I_4)  =>  x ~ N(b, W W^T + s^2 I)."""

    def __init__(self, device, dtype=torch.float64, sigma=0.5):
        g = torch.Generator().manual_seed(1)
        self.W = torch.randn(4, 2, generator=g, dtype=dtype).to(device)
        self.b = torch.randn(4, generator=g, dtype=dtype).to(device)
        self.sigma = sigma
        eye = torch.eye(2, dtype=dtype, device=device)
        self.post_cov = torch.linalg.inv(eye + self.W.T @ self.W / sigma**2)

    def marginal(self):
        eye = torch.eye(4, dtype=self.W.dtype, device=self.W.device)
        return dist.MultivariateNormal(self.b, self.W @ self.W.T + self.sigma**2 * eye)

    def post_mean(self, x):
        return (x - self.b) @ self.W @ self.post_cov / self.sigma**2

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.sigma).to_event(1), obs=x)

    def exact_guide(self, x):
        with pyro.plate("data", x.shape[0]):
            tril = torch.linalg.cholesky(self.post_cov)
            pyro.sample("z", dist.MultivariateNormal(self.post_mean(x), scale_tril=tril))

    def rough_guide(self, x):  # shifted, mean-field and too wide: KL(q || posterior) ~ 0.2
        scale = 1.2 * self.post_cov.diagonal().sqrt()
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.post_mean(x) + 0.1, scale).to_event(1))


@pytest.fixture
def lg(device):
    return LinearGaussian(device)


@pytest.mark.parametrize("dreg", [False, True])
def test_exact_posterior_gives_log_likelihood(lg, dreg):
    x = lg.marginal().sample((5,))
    exact = lg.marginal().log_prob(x).sum()
    loss_fn = IWAELoss(num_particles=6, dreg=dreg)
    assert loss_fn.loss(lg.model, lg.exact_guide, x) == pytest.approx(-exact.item(), abs=1e-8)
    diff = loss_fn.differentiable_loss(lg.model, lg.exact_guide, x)
    assert diff.device == x.device and diff.dtype == x.dtype
    torch.testing.assert_close(diff, -exact)


def test_k1_is_the_elbo(lg):
    # Same seed, same draws: K = 1 is Pyro's Trace_ELBO exactly.
    x = lg.marginal().sample((50,))
    pyro.set_rng_seed(3)
    iwae = IWAELoss(num_particles=1, max_plate_nesting=1).loss(lg.model, lg.rough_guide, x)
    pyro.set_rng_seed(3)
    elbo = Trace_ELBO().loss(lg.model, lg.rough_guide, x)
    assert iwae == pytest.approx(elbo, rel=1e-12)


def test_bound_tightens_with_k(lg):
    # Mean gap log p(x_n) - L_K(x_n) over N = 4000 datapoints: about 0.17, 0.075, 0.033,
    # 0.007 for K = 1, 2, 4, 16, each with SD < 0.012 across seeds (std(log w) ~ 0.7).
    # Successive gaps must drop by > 0.01 (their expected drops are >= 0.025, > 3.5 SD
    # of the difference) and stay > -0.01 (the bound holds in expectation).
    x = lg.marginal().sample((4000,))
    log_p = lg.marginal().log_prob(x).sum().item()
    gaps = [
        (IWAELoss(num_particles=k).loss(lg.model, lg.rough_guide, x) + log_p) / 4000
        for k in (1, 2, 4, 16)
    ]
    assert all(a - b > 0.01 for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] > -0.01, gaps


def test_large_k_approaches_log_likelihood(lg):
    x = lg.marginal().sample((5,))
    exact = lg.marginal().log_prob(x)
    loss_fn = IWAELoss(num_particles=5000)
    for n in range(5):  # std(log w) ~ 0.7: SE at K = 5000 is ~0.011, 0.05 is > 4 SE
        bound = -loss_fn.loss(lg.model, lg.rough_guide, x[n : n + 1])
        assert abs(bound - exact[n].item()) < 0.05


def _same_draws(loss_fn, model, guide, x, seed=7):
    pyro.set_rng_seed(seed)
    return loss_fn.loss(model, guide, x)


def test_relation_to_renyi_elbo(lg):
    # Pyro's RenyiELBO(alpha=0) sums out only the plates NOT common to all model sites.
    # Vectorized with the same particle dim it consumes the same random numbers, so the
    # values compare exactly. (1) Every site in the data plate: both are per-datapoint.
    k = 4
    renyi = RenyiELBO(alpha=0, num_particles=k, max_plate_nesting=1, vectorize_particles=True)
    ours = IWAELoss(num_particles=k, max_plate_nesting=1)
    x = lg.marginal().sample((8,))
    assert _same_draws(ours, lg.model, lg.rough_guide, x) == pytest.approx(
        _same_draws(renyi, lg.model, lg.rough_guide, x), rel=1e-10
    )

    # (2) A subsampled plate: Renyi scales log w inside the log-mean-exp, IWAELoss
    # scales each datapoint's bound. They agree for a batch of one at scale 1 only.
    def model(x):
        with pyro.plate("data", x.shape[0] * 5 // 2, subsample_size=x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0] * 5 // 2, subsample_size=x.shape[0]):
            pyro.sample("z", dist.Normal(x / 3, 0.8))

    x = torch.linspace(-2, 2, 4, dtype=x.dtype, device=x.device)
    pyro.set_rng_seed(7)
    lw = importance_log_weights(model, guide, x, num_particles=k, plate_nesting=1).log_weights
    log_mean = torch.logsumexp(lw, 0) - math.log(k)
    renyi_value = -(torch.logsumexp(2.5 * lw, 0) - math.log(k)).sum().item()
    assert _same_draws(renyi, model, guide, x) == pytest.approx(renyi_value, rel=1e-10)
    ours_value = -2.5 * log_mean.sum().item()
    assert _same_draws(ours, model, guide, x) == pytest.approx(ours_value, rel=1e-10)
    assert abs(ours_value - renyi_value) > 0.1


def test_renyi_whole_batch_when_a_site_is_global(lg):
    # (3) A site outside the data plate: Renyi log-mean-exps the weight of the whole
    # batch, prod_n w[k, n]; per-datapoint weights do not exist and IWAELoss refuses.
    def model(x):
        pyro.factor("global_term", x.new_zeros(()))
        lg.model(x)

    x = lg.marginal().sample((50,))
    k = 4
    renyi = RenyiELBO(alpha=0, num_particles=k, max_plate_nesting=1, vectorize_particles=True)
    pyro.set_rng_seed(7)
    lw = importance_log_weights(
        lg.model, lg.rough_guide, x, num_particles=k, plate_nesting=1
    ).log_weights
    whole_batch = -(torch.logsumexp(lw.sum(1), 0) - math.log(k)).item()
    per_datapoint = -(torch.logsumexp(lw, 0) - math.log(k)).sum().item()
    assert _same_draws(renyi, model, lg.rough_guide, x) == pytest.approx(whole_batch, rel=1e-10)
    assert abs(whole_batch - per_datapoint) > 0.1
    with pytest.raises(ValueError, match="could not find the data plate.*'global_term'"):
        IWAELoss(k).loss(model, lg.rough_guide, x)


def test_subsampled_plate_is_scaled(device):
    x = torch.linspace(-2, 2, 10, dtype=torch.float64, device=device)
    seen = []

    def model(x):
        with pyro.plate("data", 10, subsample_size=4) as idx:
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[idx])

    def guide(x):
        with pyro.plate("data", 10, subsample_size=4) as idx:
            seen.append(idx)
            pyro.sample("z", dist.Normal(x[idx] / 2, 0.5**0.5))

    log_p = dist.Normal(x.new_zeros(()), 2**0.5).log_prob(x)
    loss_fn = IWAELoss(num_particles=3, max_plate_nesting=1)
    for wrap in (lambda f: f, lambda f: poutine.scale(f, scale=0.1)):  # poutine.scale ignored
        seen.clear()
        loss = loss_fn.loss(wrap(model), wrap(guide), x)
        assert loss == pytest.approx(-(10 / 4) * log_p[seen[-1]].sum().item(), rel=1e-10)


def _scalar_model(x):
    theta = pyro.param("theta", x.new_tensor([0.2, -0.1]))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(theta[0], 1.0))
        pyro.sample("x", dist.Normal(z + theta[1], 1.0), obs=x)


def _local_guide(x):
    loc = pyro.param("loc", x.new_zeros(x.shape[0]))
    log_scale = pyro.param("log_scale", x.new_full((x.shape[0],), math.log(0.9)))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(loc, log_scale.exp()))


def _grads(loss_fn, model, guide, x, seed):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    loss = loss_fn.loss_and_grads(model, guide, x)
    params = pyro.get_param_store()
    return loss, {k: params.get_param(k).unconstrained().grad.clone() for k in params.keys()}


def test_dreg_model_gradient_is_the_iwae_gradient(device):
    x = torch.linspace(-1, 2, 7, dtype=torch.float64, device=device)
    loss_a, a = _grads(IWAELoss(5), _scalar_model, _local_guide, x, seed=4)
    loss_b, b = _grads(IWAELoss(5, dreg=True), _scalar_model, _local_guide, x, seed=4)
    assert loss_a == pytest.approx(loss_b, rel=1e-12)
    torch.testing.assert_close(a["theta"], b["theta"], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(a["loc"], b["loc"])  # the guide gradients differ


def test_dreg_guide_gradient_unbiased_and_lower_variance(device):
    # N copies of one datapoint, each with its own guide parameters: the N gradient
    # entries are iid draws of each estimator. Means must agree within 4 SE (two-sided
    # failure rate 6e-5 per parameter); DReG's variance is ~250x lower here, assert 10x.
    n = 20000
    x = torch.full((n,), 1.0, dtype=torch.float64, device=device)
    _, iwae = _grads(IWAELoss(10), _scalar_model, _local_guide, x, seed=1)
    _, dreg = _grads(IWAELoss(10, dreg=True), _scalar_model, _local_guide, x, seed=2)
    for name in ("loc", "log_scale"):
        a, b = iwae[name], dreg[name]
        se = ((a.var() + b.var()) / n).sqrt()
        assert (a.mean() - b.mean()).abs() < 4 * se, name
        assert b.var() < a.var() / 10, name


def test_dreg_rejects_non_reparametrized_guide(device):
    x = torch.tensor([0.0, 1.0], dtype=torch.float64, device=device)
    with pytest.raises(ValueError, match="requires fully reparametrized guides.*'z'"):
        IWAELoss(3, dreg=True).loss_and_grads(_bernoulli_model, _bernoulli_guide, x)


def _bernoulli_model(x):
    logit = pyro.param("prior_logit", x.new_full((x.shape[0],), -0.5))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Bernoulli(logits=logit))
        pyro.sample("x", dist.Normal(2 * z - 1, 1.0), obs=x)


def _bernoulli_guide(x):
    logit = pyro.param("logit", x.new_full((x.shape[0],), 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Bernoulli(logits=logit))


def test_vimco_gradient_matches_enumeration(device):
    # Exact gradient of E[L_K] by enumerating all 2^K particle configurations.
    k, x0 = 3, 0.5
    phi = torch.tensor(1.0, dtype=torch.float64, device=device, requires_grad=True)
    theta = torch.tensor(-0.5, dtype=torch.float64, device=device, requires_grad=True)
    expected = 0.0
    for zs in itertools.product([0.0, 1.0], repeat=k):
        z = phi.new_tensor(zs)
        log_q = dist.Bernoulli(logits=phi).log_prob(z)
        lw = dist.Bernoulli(logits=theta).log_prob(z) - log_q
        lw = lw + dist.Normal(2 * z - 1, 1.0).log_prob(phi.new_tensor(x0))
        expected = expected + log_q.sum().exp() * (torch.logsumexp(lw, 0) - math.log(k))
    exact = torch.autograd.grad(expected, (phi, theta))
    # N iid copies with local parameters; 4 SE tolerance (failure rate 6e-5 per parameter).
    n = 20000
    x = torch.full((n,), x0, dtype=torch.float64, device=device)
    loss, grads = _grads(IWAELoss(k), _bernoulli_model, _bernoulli_guide, x, seed=0)
    assert -loss / n == pytest.approx(expected.item(), abs=0.02)
    for name, true in zip(("logit", "prior_logit"), exact):
        g = -grads[name]
        assert (g.mean() - true).abs() < 4 * (g.var() / n).sqrt(), name


DISTRIBUTIONS = [
    lambda p: dist.Normal(p[0], p[1].exp()),
    lambda p: dist.Normal(p[0], p[1].exp()).expand([3]).to_event(1),
    lambda p: dist.Normal(p[0], p[1].exp()).mask(torch.tensor([True, False], device=p.device)),
    lambda p: dist.LogNormal(p[0], p[1].exp()),
    lambda p: dist.Gamma(p[0].exp(), p[1].exp()),
    lambda p: dist.Beta(p[0].exp(), p[1].exp()),
    lambda p: dist.StudentT(3.0, p[0], p[1].exp()),
    lambda p: dist.Delta(p[0], p[1], event_dim=0),
    lambda p: dist.MultivariateNormal(p[:2], scale_tril=torch.diag(p[2:].exp())),
    lambda p: dist.LowRankMultivariateNormal(p[:2], p[2:].reshape(2, 1), p[:2].exp()),
    lambda p: dist.TransformedDistribution(
        dist.Normal(p[0], 1.0), [dist.transforms.AffineTransform(p[1], 2.0)]
    ),
]


@pytest.mark.parametrize("make", DISTRIBUTIONS)
def test_detach_distribution(make, device):
    params = torch.tensor([0.3, -0.2, 0.1, 0.4], dtype=torch.float64, device=device)
    params.requires_grad_(True)
    d = make(params)
    value = d.sample().requires_grad_(True)
    detached = _detach_distribution(d)
    assert detached.batch_shape == d.batch_shape and detached.event_shape == d.event_shape
    lp, lp_det = d.log_prob(value).sum(), detached.log_prob(value).sum()
    torch.testing.assert_close(lp_det, lp.detach())
    (g_value,) = torch.autograd.grad(lp, value, retain_graph=True, allow_unused=True)
    if g_value is None:  # Delta: log_prob is flat in the value
        assert not lp_det.requires_grad
        return
    (g_det,) = torch.autograd.grad(lp_det, value, retain_graph=True)
    torch.testing.assert_close(g_det, g_value)
    assert torch.autograd.grad(lp_det, params, allow_unused=True)[0] is None


def test_detach_distribution_rejects_learnable_transforms():
    flow = dist.transforms.Planar(2)
    d = dist.TransformedDistribution(dist.Normal(torch.zeros(2), 1.0).to_event(1), [flow])
    with pytest.raises(NotImplementedError, match="Planar.*dreg=False"):
        _detach_distribution(d)


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"num_particles": 0}, ValueError, "num_particles must be a positive int, got 0"),
        ({"num_particles": 2.0}, TypeError, "num_particles"),
        ({"num_particles": True}, TypeError, "num_particles"),
        ({"dreg": 1}, TypeError, "dreg must be a bool"),
        ({"data_plate": 0}, TypeError, "data_plate must be a plate name"),
        ({"max_plate_nesting": -1}, ValueError, "max_plate_nesting must be an int >= 0 or None"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        IWAELoss(**kwargs)


def test_rejects_global_latents_and_wrong_plate(device):
    x = torch.zeros(3, dtype=torch.float64, device=device)

    def model(x):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), 1.0))
        with pyro.plate("data", 3):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(x.new_zeros(()), 1.0))

    with pytest.raises(ValueError, match="outside the data plate"):
        IWAELoss(2).loss(model, guide, x)
    with pytest.raises(ValueError, match="data_plate='batch'"):
        IWAELoss(2, data_plate="batch").loss(_scalar_model, _local_guide, x)
