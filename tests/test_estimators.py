"""Tests of pgm.infer.estimators: importance-sampled log p(x), ELBO, bits/dim."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_genmodels.infer import (
    bits_per_dim,
    elbo_per_datapoint,
    log_likelihood,
    rescale_log_likelihood,
)
from pyro_genmodels.infer.estimators import _plan_chunks


class LinearGaussian:
    """z ~ N(0, I_2), x | z ~ N(W z + b + shift, s^2 I_4)  =>  x ~ N(b + shift, W W^T + s^2 I)."""

    def __init__(self, device, dtype, sigma=0.5):
        g = torch.Generator().manual_seed(1)
        self.W = torch.randn(4, 2, generator=g, dtype=dtype).to(device)
        self.b = torch.randn(4, generator=g, dtype=dtype).to(device)
        self.sigma = sigma
        eye = torch.eye(2, dtype=dtype, device=device)
        self.post_cov = torch.linalg.inv(eye + self.W.T @ self.W / sigma**2)

    def marginal(self, shift=0.0):
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(
            4, dtype=self.W.dtype, device=self.W.device
        )
        return dist.MultivariateNormal(self.b + shift, cov)

    def post_mean(self, x, shift=0.0):
        return (x - self.b - shift) @ self.W @ self.post_cov / self.sigma**2

    def model(self, x, W=None, shift=0.0):
        W = self.W if W is None else W
        zeros = x.new_zeros(x.shape[0], 2)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(zeros, 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ W.T + self.b + shift, self.sigma).to_event(1), obs=x)

    def exact_guide(self, x, W=None, shift=0.0):
        with pyro.plate("data", x.shape[0]):
            tril = torch.linalg.cholesky(self.post_cov)
            pyro.sample("z", dist.MultivariateNormal(self.post_mean(x, shift), scale_tril=tril))

    def rough_params(self, x):
        return self.post_mean(x) + 0.1, 1.2 * self.post_cov.diagonal().sqrt().expand(x.shape[0], 2)

    def rough_guide(self, x):
        loc, scale = self.rough_params(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def data(self, n):
        return self.marginal().sample((n,))


@pytest.fixture
def lg(device):
    return LinearGaussian(device, torch.float64)


def test_log_likelihood_exact_posterior_any_chunking(lg):
    # The posterior as proposal makes every weight equal log p(x): any error in the
    # chunked log-sum-exp (a dropped or repeated chunk) shows as a log(K'/K) offset.
    x = lg.data(10)
    exact = lg.marginal().log_prob(x)
    for kw in [{}, {"batch_size": 3, "particle_batch_size": 2}, {"max_elements": 4}]:
        est = log_likelihood(lg.model, lg.exact_guide, x, num_samples=7, **kw)
        assert est.shape == (10,) and est.device == x.device and est.dtype == x.dtype
        torch.testing.assert_close(est, exact, atol=1e-6, rtol=0)


def test_log_likelihood_rough_guide_close_to_closed_form(lg):
    x = lg.data(20)
    exact = lg.marginal().log_prob(x)
    est = log_likelihood(lg.model, lg.rough_guide, x, num_samples=4000, particle_batch_size=1500)
    # std(log w) ~ 0.75 here, so the estimate's SE at K = 4000 is ~0.0125 nats: 0.05 is
    # 4 SE per datapoint (failure rate ~1e-3 over the 20 datapoints at a fresh seed).
    assert (est - exact).abs().max() < 0.05
    assert not est.requires_grad


def test_log_likelihood_slices_per_datapoint_args(lg):
    # W (leading dim 4 != N) is passed whole; shift (leading dim N) is sliced per chunk.
    x = lg.data(9)
    shift = torch.linspace(-1, 1, 9 * 4, dtype=x.dtype, device=x.device).reshape(9, 4)
    x = x + shift
    est = log_likelihood(
        lg.model, lg.exact_guide, x, lg.W, num_samples=3, batch_size=2, shift=shift
    )
    torch.testing.assert_close(est, lg.marginal(shift).log_prob(x), atol=1e-6, rtol=0)


def test_elbo_per_datapoint_equals_log_p_minus_kl(lg):
    x = lg.data(6)
    exact = lg.marginal().log_prob(x)
    loc, scale = lg.rough_params(x)
    tril = torch.linalg.cholesky(lg.post_cov)
    post = dist.MultivariateNormal(lg.post_mean(x), scale_tril=tril)
    # closed-form KL(N(m1, diag s^2) || N(m2, S2)) in 2-D
    prec = torch.linalg.inv(lg.post_cov)
    d = post.loc - loc
    kl = 0.5 * (
        (prec.diagonal() * scale**2).sum(-1)
        + (d @ prec * d).sum(-1)
        - 2
        + torch.logdet(lg.post_cov)
        - 2 * scale.log().sum(-1)
    )
    elbo = elbo_per_datapoint(lg.model, lg.rough_guide, x, num_samples=10000)
    # SE of the ELBO is std(log w)/sqrt(K) ~ 0.0075 here: 0.035 is > 4.5 SE (rate < 1e-4).
    torch.testing.assert_close(elbo, exact - kl, atol=0.035, rtol=0)
    exact_elbo = elbo_per_datapoint(lg.model, lg.exact_guide, x, num_samples=3, batch_size=4)
    torch.testing.assert_close(exact_elbo, exact, atol=1e-6, rtol=0)


def _discrete_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Bernoulli(x.new_tensor(0.3)))
        pyro.sample("x", dist.Normal(2 * z - 1, 1.0), obs=x)


def _discrete_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Bernoulli(torch.sigmoid(x)))


def test_log_likelihood_discrete_guide(device):
    x = torch.tensor([-1.5, 0.0, 2.0], dtype=torch.float64, device=device)
    mix = dist.Normal(x.new_tensor([-1.0, 1.0]), 1.0).log_prob(x[:, None])
    exact = torch.logsumexp(mix + x.new_tensor([0.7, 0.3]).log(), -1)
    est = log_likelihood(_discrete_model, _discrete_guide, x, num_samples=20000)
    # weights are bounded (two values per datapoint): relative SE < 1% at K = 20000
    torch.testing.assert_close(est, exact, atol=0.02, rtol=0)


def test_plan_chunks_respects_budget():
    assert _plan_chunks(1000, 5000, None, None, 2**15) == (6, 5000)
    assert _plan_chunks(100, 10, None, None, 64) == (6, 10)
    assert _plan_chunks(5, 100, None, None, 30) == (1, 30)
    assert _plan_chunks(10, 7, 3, 2, 1) == (3, 2)
    assert _plan_chunks(10, 100, 4, None, 40) == (4, 10)
    assert _plan_chunks(3, 4, 100, 100, 1) == (3, 4)


def test_bits_per_dim_known_values(device):
    assert bits_per_dim(784 * math.log(2.0), 784) == pytest.approx(1.0)
    nll = torch.tensor([0.0, 10 * math.log(2.0)], dtype=torch.float64, device=device)
    out = bits_per_dim(nll, 10, shift=8.0)
    assert out.device == nll.device and out.dtype == nll.dtype
    torch.testing.assert_close(out, nll.new_tensor([8.0, 9.0]))


def test_rescale_is_change_of_variables_and_matches_shift(device):
    # x ~ N(0, 64^2 I_3); y = x / 256 ~ N(0, 0.25^2 I_3): log p_x(x) = log p_y(x/256) + 3 log(1/256)
    x = torch.tensor([[1.0, -30.0, 100.0]], dtype=torch.float64, device=device)
    log_px = dist.Normal(x.new_tensor(0.0), 64.0).log_prob(x).sum(-1)
    log_py = dist.Normal(x.new_tensor(0.0), 0.25).log_prob(x / 256).sum(-1)
    torch.testing.assert_close(rescale_log_likelihood(log_py, 3, 1 / 256), log_px)
    torch.testing.assert_close(
        bits_per_dim(-rescale_log_likelihood(log_py, 3, 1 / 256), 3),
        bits_per_dim(-log_py, 3, shift=8.0),
    )


def _subsampled_model(x):
    with pyro.plate("data", x.shape[0], subsample_size=2) as idx:
        pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=x[idx])


def _subsampled_guide(x):
    with pyro.plate("data", x.shape[0], subsample_size=2):
        pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"data": [1.0, 2.0]}, TypeError, "data must be a torch.Tensor"),
        ({"data": torch.zeros(0, 2)}, ValueError, "N >= 1"),
        ({"data": torch.tensor(1.0)}, ValueError, "shape ()"),
        ({"model": 3}, TypeError, "model must be callable"),
        ({"guide": None}, TypeError, "guide must be callable"),
        ({"num_samples": 0}, ValueError, "num_samples must be a positive int"),
        ({"num_samples": 2.5}, TypeError, "num_samples"),
        ({"num_samples": True}, TypeError, "num_samples"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int or None"),
        ({"particle_batch_size": -1}, ValueError, "particle_batch_size"),
        ({"max_elements": 0}, ValueError, "max_elements"),
        ({"data_plate": 3}, TypeError, "data_plate"),
        ({"data_plate": "pixels"}, ValueError, "data_plate='pixels'"),
    ],
)
@pytest.mark.parametrize("fn", [log_likelihood, elbo_per_datapoint])
def test_estimator_bad_inputs(fn, kwargs, exc, words):
    lg = LinearGaussian("cpu", torch.float64)
    call = {"model": lg.model, "guide": lg.rough_guide, "data": lg.data(3), **kwargs}
    model, guide, data = call.pop("model"), call.pop("guide"), call.pop("data")
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")):
        fn(model, guide, data, **call)


def test_estimator_rejects_subsampled_plate():
    with pytest.raises(ValueError, match="no subsampling"):
        log_likelihood(_subsampled_model, _subsampled_guide, torch.zeros(5), num_samples=2)


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: bits_per_dim("1.0", 3), TypeError, "nll_nats must be a float or a tensor"),
        (lambda: bits_per_dim(1.0, 0), ValueError, "num_dims must be a positive int"),
        (lambda: bits_per_dim(1.0, 2.0), TypeError, "num_dims"),
        (
            lambda: bits_per_dim(1.0, 3, shift=float("nan")),
            ValueError,
            "shift must be a finite real number",
        ),
        (lambda: rescale_log_likelihood(None, 3, 0.5), TypeError, "log_p must be a float"),
        (lambda: rescale_log_likelihood(1.0, -1, 0.5), ValueError, "num_dims"),
        (
            lambda: rescale_log_likelihood(1.0, 3, 0.0),
            ValueError,
            "scale must be a finite real number > 0",
        ),
        (lambda: rescale_log_likelihood(1.0, 3, float("inf")), ValueError, "scale"),
    ],
)
def test_units_bad_inputs(call, exc, words):
    with pytest.raises(exc, match=words):
        call()
