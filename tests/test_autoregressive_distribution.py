"""AutoregressiveDistribution: likelihoods normalize, samplers match densities, Pyro integration."""

import itertools
import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.distributions.testing.gof import (
    multinomial_goodness_of_fit,
    vector_density_goodness_of_fit,
)

from pyro_genmodels.distributions import AutoregressiveDistribution
from pyro_genmodels.nn import FVSBN, MADE, NADE, RNN, PixelCNN

# Each goodness-of-fit test below fails with probability FAILURE_RATE under a correct
# sampler (fixed seeds make each run deterministic); 8 such tests → < 1% overall.
FAILURE_RATE = 1e-3


def _randomize(net, dtype, device, scale=0.7):
    torch.manual_seed(1)
    net = net.to(device=device, dtype=dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(scale * torch.randn_like(p))
    return net


def _grid(levels, shape, dtype, device):
    d = math.prod(shape)
    states = list(itertools.product(range(levels), repeat=d))
    return torch.tensor(states, dtype=dtype, device=device).reshape((-1,) + tuple(shape))


def _index(x, levels):
    """Index of each state in the grid ``_grid(levels, ...)``."""
    flat = x.reshape(x.shape[0], -1).long()
    weights = levels ** torch.arange(flat.shape[1] - 1, -1, -1, device=x.device)
    return (flat * weights).sum(-1)


def _pooled_gof(probs, counts):
    """Pearson chi-square with the cells of expected count < 10 pooled into one."""
    small = probs * counts.sum() < 10
    if bool(small.any()):
        probs = torch.cat([probs[~small], probs[small].sum()[None]])
        counts = torch.cat([counts[~small], counts[small].sum()[None]])
    return multinomial_goodness_of_fit(probs, counts)


SAMPLER_CASES = {
    "fvsbn": (lambda: FVSBN(4, ordering=[2, 0, 3, 1]), "bernoulli", 2, {}),
    "nade": (lambda: NADE(4, 6, ordering=[3, 1, 0, 2]), "bernoulli", 2, {}),
    "made-ensemble": (lambda: MADE(4, [12], num_masks=3).eval(), "bernoulli", 2, {}),
    "pixelcnn": (lambda: PixelCNN((1, 2, 2), 4, 1), "bernoulli", 2, {}),
    "rnn-tokens": (lambda: RNN(6, num_params=3, vocab_size=3), "categorical", 3, {"length": 3}),
    "made-categorical": (lambda: MADE(3, [10], num_params=3, input_levels=3), "categorical", 3, {}),
    "pixelcnn-dmol": (
        lambda: PixelCNN((1, 1, 2), 4, 1, num_params=6, input_levels=4),
        "dmol",
        4,
        {"levels": 4},
    ),
}


@pytest.mark.parametrize("name", SAMPLER_CASES)
def test_sampler_matches_density_chi_square(name, dtype):
    build, likelihood, levels, kwargs = SAMPLER_CASES[name]
    d = AutoregressiveDistribution(_randomize(build(), dtype, "cpu"), likelihood, **kwargs)
    states = _grid(levels, d.event_shape, dtype, "cpu")
    probs = d.log_prob(states).exp().detach()
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0, dtype=dtype))  # K^D enumeration
    samples = d.sample((20000,))
    counts = torch.bincount(_index(samples, levels), minlength=len(states)).to(dtype)
    assert _pooled_gof(probs, counts) > FAILURE_RATE


def test_dmol_sampler_matches_its_pmf(dtype):
    """Interior bins of a sharp two-component mixture: a bin shift would fail at once."""
    from pyro_genmodels.distributions.autoregressive import _DiscretizedLogisticMixture

    lik = _DiscretizedLogisticMixture(6, levels=16)
    params = torch.tensor([0.3, -0.2, -0.3, 0.4, -2.5, -1.5], dtype=dtype)
    pmf = lik.log_prob(params.expand(16, 6), torch.arange(16, dtype=dtype)).exp()
    torch.testing.assert_close(pmf.sum(), torch.tensor(1.0, dtype=dtype))
    draws = lik.sample(params.expand(20000, 6), temperature=1.0)
    counts = torch.bincount(draws.long(), minlength=16).to(dtype)
    assert _pooled_gof(pmf, counts) > FAILURE_RATE


def test_incremental_and_naive_samplers_agree_exactly(device, dtype):
    net = _randomize(MADE(8, [16], ordering=torch.randperm(8)), dtype, device)
    d = AutoregressiveDistribution(net, "bernoulli")
    torch.manual_seed(3)
    fast = d.sample((50,))
    torch.manual_seed(3)
    slow = d.sample((50,), incremental=False)
    torch.testing.assert_close(fast, slow)


@pytest.mark.parametrize("name", ["made", "rnn-vectors"])
def test_gaussian_sampler_goodness_of_fit(name, dtype):
    torch.manual_seed(0)
    if name == "made":
        net, kwargs = MADE(2, [8], num_params=2), {}
    else:
        net, kwargs = RNN(4, num_params=2, features=1), {"length": 2}
    d = AutoregressiveDistribution(_randomize(net, dtype, "cpu", scale=0.4), "gaussian", **kwargs)
    samples = d.sample((3000,))
    probs = d.log_prob(samples).exp().detach()
    assert vector_density_goodness_of_fit(samples.reshape(3000, -1), probs) > FAILURE_RATE


def test_dmol_normalizes_over_256_levels(device, dtype):
    net = _randomize(MADE(2, [8], num_params=9, input_levels=256), dtype, device, scale=1.0)
    d = AutoregressiveDistribution(net, "dmol")
    v = torch.arange(256, dtype=dtype, device=device)
    grid = torch.stack(torch.meshgrid(v, v, indexing="ij"), -1).reshape(-1, 2)
    total = d.log_prob(grid).exp().sum().detach()
    assert abs(float(total) - 1.0) < 1e-5


def test_temperature_sharpens_samples(dtype):
    net = _randomize(NADE(5, 4), dtype, "cpu", scale=1.0)
    lp = [AutoregressiveDistribution(net, temperature=t).sample((4000,)) for t in (1.0, 0.3)]
    base = AutoregressiveDistribution(net)
    net.requires_grad_(False)
    # colder samples sit in higher-density states on average
    assert float(base.log_prob(lp[1]).mean()) > float(base.log_prob(lp[0]).mean()) + 0.1


def test_sequence_padding_lengths(device, dtype):
    net = _randomize(RNN(6, num_params=3, vocab_size=3), dtype, device)
    lengths = torch.tensor([2, 4], device=device)
    d = AutoregressiveDistribution(net, "categorical", lengths=lengths)
    assert d.event_shape == (4,) and d.batch_shape == (2,)
    grid = _grid(3, (4,), dtype, device)  # every value of the padding is irrelevant
    lp = d.log_prob(grid.unsqueeze(1))
    short = AutoregressiveDistribution(net, "categorical", length=2).log_prob(grid[:, :2])
    torch.testing.assert_close(lp[:, 0], short)
    full = AutoregressiveDistribution(net, "categorical", length=4).log_prob(grid)
    torch.testing.assert_close(lp[:, 1], full)
    sample = d.sample((7,))
    assert sample.shape == (7, 2, 4) and bool((sample[:, 0, 2:] == 0).all())


def test_image_event_and_expand(device, dtype):
    net = _randomize(PixelCNN((3, 2, 2), 6, 1, num_params=4, input_levels=4), dtype, device)
    d = AutoregressiveDistribution(net, "categorical")
    assert d.event_shape == (3, 2, 2) and d.batch_shape == ()
    e = d.expand((5,))
    x = e.sample()
    assert x.shape == (5, 3, 2, 2) and e.log_prob(x).shape == (5,)
    torch.testing.assert_close(e.log_prob(x), d.log_prob(x))
    assert d.support.check(x).all()


def _model(net, x=None, n=None, context=None):
    pyro.module("net", net)
    with pyro.plate("data", n if x is None else x.shape[0]):
        return pyro.sample("x", AutoregressiveDistribution(net, context=context), obs=x)


def test_pyro_plate_trace_and_trace_elbo(device, dtype):
    net = NADE(6, 5).to(device=device, dtype=dtype)
    x = (torch.rand(10, 6, device=device, dtype=dtype) < 0.3).to(dtype)
    trace = poutine.trace(_model).get_trace(net, x)
    trace.compute_log_prob()
    site = trace.nodes["x"]
    assert site["fn"].batch_shape == (10,) and site["log_prob"].shape == (10,)
    elbo = pyro.infer.Trace_ELBO().loss(_model, lambda *a, **k: None, net, x)
    nll = -AutoregressiveDistribution(net).log_prob(x).sum().item()
    assert math.isclose(elbo, nll, rel_tol=1e-9)
    svi = pyro.infer.SVI(
        _model, lambda *a, **k: None, pyro.optim.Adam({"lr": 0.05}), pyro.infer.Trace_ELBO()
    )
    losses = [svi.step(net, x) for _ in range(30)]
    assert losses[-1] < losses[0]


def test_predictive_with_context(device, dtype):
    net = MADE(5, [8], context_dim=2).to(device=device, dtype=dtype)
    ctx = torch.eye(2, device=device, dtype=dtype)[torch.tensor([0, 1, 1], device=device)]
    out = pyro.infer.Predictive(_model, num_samples=4)(net, None, 3, ctx)
    assert out["x"].shape == (4, 3, 5)
    assert bool(((out["x"] == 0) | (out["x"] == 1)).all())


@pytest.mark.parametrize(
    "make", [lambda: MADE(5, [8], context_dim=3), lambda: NADE(5, 6, context_dim=3)]
)
def test_class_label_context_equals_one_hot(make, device, dtype):
    net = make().to(device=device, dtype=dtype)
    labels = torch.tensor([0, 2, 1], device=device)
    x = (torch.rand(3, 5, device=device) < 0.5).to(dtype)
    by_label = AutoregressiveDistribution(net, context=labels)
    by_vector = AutoregressiveDistribution(
        net, context=torch.eye(3, device=device, dtype=dtype)[labels]
    )
    assert by_label.batch_shape == (3,)
    assert torch.equal(by_label.log_prob(x), by_vector.log_prob(x))
    with pytest.raises(ValueError, match=r"class labels used as context must lie in \[0, 3\)"):
        AutoregressiveDistribution(net, context=torch.tensor([3], device=device))
    with pytest.raises(TypeError, match="context_dim = number of classes"):
        AutoregressiveDistribution(NADE(5, 6), context=torch.tensor([0]))


def test_bad_inputs():
    net = NADE(4, 3)
    d = AutoregressiveDistribution(net)
    with pytest.raises(ValueError, match=r"shape \(\*batch, 4\), got shape \(2, 5\)"):
        d.log_prob(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"'bernoulli'\) expects values in \{0, 1\}"):
        d.log_prob(torch.full((2, 4), 0.5))
    cat = AutoregressiveDistribution(NADE(3, 3, num_params=4, input_levels=4), "categorical")
    with pytest.raises(ValueError, match=r"integers in \[0, 4\).*e\.g\. 4\.0"):
        cat.log_prob(torch.tensor([[0.0, 4.0, 1.0]]))
    with pytest.raises(ValueError, match="num_params == 2"):
        AutoregressiveDistribution(net, "gaussian")
    with pytest.raises(ValueError, match="likelihood must be one of"):
        AutoregressiveDistribution(net, "poisson")
    with pytest.raises(TypeError, match="Conditioner"):
        AutoregressiveDistribution(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="temperature"):
        AutoregressiveDistribution(net, temperature=0.0)
    with pytest.raises(ValueError, match=r"context of shape \(\*batch, 2\), got None"):
        AutoregressiveDistribution(NADE(4, 3, context_dim=2))
    with pytest.raises(ValueError, match="lengths must lie in"):
        AutoregressiveDistribution(RNN(4), length=3, lengths=torch.tensor([4]))
    with pytest.raises(ValueError, match="fixed event shape"):
        AutoregressiveDistribution(net, length=3)


def test_expand_checks_the_new_batch_shape():
    d = AutoregressiveDistribution(NADE(3, 4, context_dim=2), context=torch.zeros(2, 1, 2))
    assert d.expand((5, 2, 3)).batch_shape == (5, 2, 3)
    assert d.expand((5, 2, 3)).context.shape == (5, 2, 3, 2)
    with pytest.raises(ValueError, match=r"batch_shape \(2, 1\) does not expand to \(4, 3\)"):
        d.expand((4, 3))
    plain = AutoregressiveDistribution(NADE(3, 4)).expand((2, 1))  # no context, no lengths
    with pytest.raises(ValueError, match=r"batch_shape \(2, 1\) does not expand to \(4, 3\)"):
        plain.expand((4, 3))
    with pytest.raises(ValueError, match="does not expand"):
        plain.expand((1,))


def test_support_is_a_constraint_on_the_class_and_infer_shapes():
    support = AutoregressiveDistribution.support
    assert isinstance(support, constraints.Constraint)
    with pytest.raises(NotImplementedError):  # depends on the instance: torch's protocol
        assert support.event_dim == 1
    image = AutoregressiveDistribution(PixelCNN((1, 2, 2), 4, 1))
    assert image.support.event_dim == 3 and image.support.is_discrete
    real = AutoregressiveDistribution(NADE(3, 4, num_params=2), "gaussian")
    assert real.support.event_dim == 1 and not real.support.is_discrete
    net = RNN(4, context_dim=2)
    d = AutoregressiveDistribution(net, context=torch.zeros(4, 1, 2), lengths=torch.tensor([2, 3]))
    shapes = AutoregressiveDistribution.infer_shapes(
        conditioner=(3,), context=(4, 1, 2), lengths=(2,)
    )
    assert shapes == (d.batch_shape, d.event_shape) == ((4, 2), (3,))


def test_values_that_do_not_broadcast_raise_value_error():
    d = AutoregressiveDistribution(NADE(3, 4, context_dim=2), context=torch.zeros(4, 2))
    for validate in (True, False):
        with pyro.validation_enabled(validate):
            with pytest.raises(
                ValueError, match=r"\(5,\).*do not broadcast with batch_shape \(4,\)"
            ):
                d.log_prob(torch.zeros(5, 3))
    assert d.log_prob(torch.zeros(5, 1, 3)).shape == (5, 4)


@pytest.mark.parametrize(
    "make",
    [
        lambda: NADE(3, 4, context_dim=2),
        lambda: RNN(4, context_dim=2),
        lambda: MADE(3, [6], 1, 2, context_dim=2),
    ],
    ids=["nade", "rnn", "made-ensemble"],
)
def test_zero_rows_give_empty_results(make, device, dtype):
    net = make().to(device=device, dtype=dtype).eval()
    kwargs = {"length": 3} if isinstance(net, RNN) else {}
    d = AutoregressiveDistribution(
        net, **kwargs, context=torch.zeros(2, 2, device=device, dtype=dtype)
    )
    x = d.sample((0,))
    assert x.shape == (0, 2, 3) and x.dtype == dtype
    lp = d.log_prob(x)
    assert lp.shape == (0, 2) and lp.dtype == dtype and lp.device.type == device.type
    empty = AutoregressiveDistribution(
        net, **kwargs, context=torch.zeros(0, 2, device=device, dtype=dtype)
    )
    assert empty.log_prob(torch.zeros(3, device=device, dtype=dtype)).shape == (0,)
    assert empty.sample((4,)).shape == (4, 0, 3)


def test_non_finite_context_is_refused_under_validation():
    net = NADE(3, 4, context_dim=2)
    context = torch.tensor([[0.0, 1.0], [float("nan"), 0.5]])
    with pyro.validation_enabled(True):
        with pytest.raises(ValueError, match="context must be finite, but 1 of 4 values are NaN"):
            AutoregressiveDistribution(net, context=context)
    with pytest.raises(ValueError, match="context must be finite"):
        AutoregressiveDistribution(net, context=context * float("inf"), validate_args=True)
    with pyro.validation_enabled(False):  # unchecked when validation is off, as in torch
        d = AutoregressiveDistribution(net, context=context)
        assert torch.isnan(d.log_prob(torch.zeros(3))[1])
