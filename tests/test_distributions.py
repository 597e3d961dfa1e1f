import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.testing.gof import multinomial_goodness_of_fit

from pyro_genmodels.distributions import BernoulliMixture


def _all_states(d, device, dtype):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), device=device, dtype=dtype)


def test_mixture_normalizes_by_enumeration(device):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, generator=g, dtype=torch.float64).to(device)
    probs = torch.rand(2, 3, 5, generator=g, dtype=torch.float64).to(device)
    d = BernoulliMixture(logits, probs)
    x = _all_states(5, device, torch.float64)[:, None, :]  # (32, 1, 5) broadcasts over batch 2
    total = d.log_prob(x).exp().sum(0)
    assert d.batch_shape == (2,) and d.event_shape == (5,)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-10)


def test_mixture_sampler_matches_density(device):
    # Failure rate: the gof p-value threshold 1e-3 makes a false alarm ~1 in 1000 runs.
    g = torch.Generator().manual_seed(1)
    d = BernoulliMixture(
        torch.randn(3, generator=g).to(device), torch.rand(3, 4, generator=g).to(device)
    )
    samples = d.sample((20000,))
    states = _all_states(4, device, samples.dtype)
    index = (samples[:, None, :] == states).all(-1).float().argmax(-1)
    counts = torch.bincount(index, minlength=16).cpu()
    probs = d.log_prob(states).exp().cpu()
    assert multinomial_goodness_of_fit(probs, counts) > 1e-3


def test_em_recovers_two_clusters(device):
    mu = torch.tensor([[0.95] * 6 + [0.05] * 6, [0.05] * 6 + [0.95] * 6])
    truth = BernoulliMixture(torch.tensor([0.3, 0.7]).log(), mu)
    pyro.set_rng_seed(3)
    x = truth.sample((4000,)).to(device)
    fitted = BernoulliMixture.fit_em(x, num_components=2, num_iters=200, seed=0)
    gap = truth.log_prob(x.cpu()).mean() - fitted.log_prob(x).mean().cpu()
    assert abs(float(gap)) < 0.02  # fitted likelihood ≈ the truth's on its own data
    assert sorted(fitted.logits.softmax(-1).cpu().tolist()) == pytest.approx([0.3, 0.7], abs=0.03)


def test_mixture_in_pyro_plate():
    d = BernoulliMixture(torch.zeros(2), torch.full((2, 3), 0.5))
    x = torch.ones(7, 3)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", d, obs=x)

    tr = pyro.poutine.trace(model).get_trace(x)
    # every pixel has probability 1/2 under both components: log p = -21 log 2
    assert float(tr.log_prob_sum()) == pytest.approx(-21 * math.log(2))


def test_mixture_bad_input():
    with pytest.raises(ValueError, match=r"logits of shape \(\*batch, K\)"):
        BernoulliMixture(torch.zeros(3), torch.rand(2, 4))
    with pytest.raises(ValueError, match="binary"):
        BernoulliMixture.fit_em(torch.rand(10, 3), num_components=2)
    with pytest.raises(ValueError, match="num_components"):
        BernoulliMixture.fit_em(torch.ones(3, 2), num_components=5)
    d = BernoulliMixture(torch.zeros(2), torch.rand(2, 3), validate_args=True)
    with pytest.raises(ValueError):
        d.log_prob(torch.full((3,), 0.5))
    assert isinstance(d, dist.TorchDistribution)


def _observe_in_plate(d, x):
    def model():
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", d, obs=x)

    return pyro.poutine.trace(model).get_trace().log_prob_sum()


def test_mixture_expand_keeps_validation_inside_pyro_plate():
    d = BernoulliMixture(torch.zeros(2), torch.full((2, 3), 0.5), validate_args=True)
    half = torch.full((7, 3), 0.5)
    for default in (True, False):  # the explicit setting wins over the global default
        with pyro.validation_enabled(default):
            assert d.expand((7,))._validate_args is True
            with pytest.raises(ValueError, match="support"):
                _observe_in_plate(d, half)
    quiet = BernoulliMixture(torch.zeros(2), torch.full((2, 3), 0.5), validate_args=False)
    assert float(_observe_in_plate(quiet, half)) == pytest.approx(-21 * math.log(2))


def test_mixture_expand_keeps_the_subclass_and_checks_the_shape():
    class Tilted(BernoulliMixture):
        pass

    d = Tilted(torch.zeros(2, 1, 3), torch.rand(2, 1, 3, 4))
    e = d.expand((5, 2, 6))
    assert type(e) is Tilted and e.batch_shape == (5, 2, 6) and e.probs.shape == (5, 2, 6, 3, 4)
    with pytest.raises(ValueError, match=r"batch_shape \(2, 1\) does not expand to \(4, 3\)"):
        d.expand((4, 3))


def test_mixture_constraints_and_infer_shapes():
    assert BernoulliMixture.arg_constraints["probs"].event_dim == 2  # (*batch, K, D)
    assert BernoulliMixture.arg_constraints["logits"].event_dim == 1  # (*batch, K)
    shapes = BernoulliMixture.infer_shapes(logits=(4, 1, 3), probs=(4, 1, 3, 5))
    d = BernoulliMixture(torch.zeros(4, 1, 3), torch.rand(4, 1, 3, 5))
    assert shapes == (d.batch_shape, d.event_shape) == ((4, 1), (5,))
    with pytest.raises(ValueError, match="probs"):
        BernoulliMixture(torch.zeros(3), torch.full((3, 2), 1.5), validate_args=True)
    with pytest.raises(TypeError, match="logits as a float Tensor"):
        BernoulliMixture(torch.zeros(3, dtype=torch.long), torch.rand(3, 2))


def test_mixture_values_that_do_not_broadcast_raise_value_error():
    d = BernoulliMixture(torch.zeros(4, 2), torch.rand(4, 2, 3))
    for validate in (True, False):
        with pyro.validation_enabled(validate):
            with pytest.raises(
                ValueError, match=r"\(5,\).*do not broadcast with batch_shape \(4,\)"
            ):
                d.log_prob(torch.zeros(5, 3))
    assert d.log_prob(torch.zeros(5, 1, 3)).shape == (5, 4)
    assert d.log_prob(torch.zeros(0, 4, 3)).shape == (0, 4)
    assert d.sample((0,)).shape == (0, 4, 3)
