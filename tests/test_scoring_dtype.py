"""Scoring follows training's dtype rule: floating data are converted to the parameters' dtype
(``pyro_genmodels.placement.to_dtype``), so the float64 arrays of NumPy and scikit-learn that
train a float32 model also score it, at every entry point that scores data."""

import pyro
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels.nn import MADE, NADE


def _binary(n, d, device):
    return torch.bernoulli(torch.full((n, d), 0.5, device=device))


def _flow(device):
    flow = pgm.models.FlowDensity(2, "realnvp", num_layers=2, hidden_dims=[8]).to(device)
    return lambda x: flow.distribution().log_prob(x), torch.randn(7, 2, device=device), flow


def _conditional_flow(device):
    flow = pgm.models.FlowDensity(2, "maf", num_layers=2, hidden_dims=[8], context_dim=3)
    flow = flow.to(device)
    context = torch.randn(7, 3, device=device)
    x = torch.randn(7, 2, device=device)
    # the context is data too: converted like the values (x stays in the model's dtype)
    return lambda c: flow.distribution(c).log_prob(x.to(c.dtype)), context, flow


def _autoregressive(net):
    def build(device):
        conditioner = net().to(device)
        d = pgm.distributions.AutoregressiveDistribution(conditioner)
        return d.log_prob, _binary(7, 6, device), conditioner

    return build


def _energy(device):
    energy = pgm.nn.EnergyMLP(2, [8]).to(device)
    d = pgm.distributions.EnergyDistribution(energy, event_shape=(2,))
    return d.log_prob, torch.randn(7, 2, device=device), energy


def _rbm(device):
    rbm = pgm.models.RBM(6, 3).to(device)
    return rbm.distribution().log_prob, _binary(7, 6, device), rbm


def _dbm_elbo(device):
    dbm = pgm.models.DBM([6, 4, 3]).to(device)
    return dbm.elbo, _binary(7, 6, device), dbm


def _mixture(device):
    torch.manual_seed(0)
    logits, probs = torch.randn(3, device=device), torch.rand(3, 6, device=device)

    class Holder(torch.nn.Module):  # the mixture's parameters, so the test can cast them
        def __init__(self):
            super().__init__()
            self.logits, self.probs = torch.nn.Parameter(logits), torch.nn.Parameter(probs)

    holder = Holder()
    return (
        lambda x: pgm.distributions.BernoulliMixture(holder.logits, holder.probs).log_prob(x),
        _binary(7, 6, device),
        holder,
    )


def _seeded(score):
    def run(x):
        pyro.set_rng_seed(3)
        return score(x)

    return run


def _log_likelihood(device):
    flow = pgm.models.FlowDensity(2, "realnvp", num_layers=2, hidden_dims=[8]).to(device)
    score = lambda x: pgm.infer.log_likelihood(flow.model, flow.guide, x, num_samples=2)  # noqa: E731
    return _seeded(score), torch.randn(7, 2, device=device), flow


def _log_likelihood_dbm(device):
    dbm = pgm.models.DBM([6, 4, 3]).to(device)
    score = lambda x: pgm.infer.log_likelihood(dbm.model, dbm.guide, x, num_samples=4)  # noqa: E731
    return _seeded(score), _binary(7, 6, device), dbm


def _elbo_per_datapoint(device):
    dbm = pgm.models.DBM([6, 4, 3]).to(device)
    score = lambda x: pgm.infer.elbo_per_datapoint(dbm.model, dbm.guide, x, num_samples=4)  # noqa: E731
    return _seeded(score), _binary(7, 6, device), dbm


def _inference_data(device):
    dbm = pgm.models.DBM([6, 4, 3]).to(device)

    def score(x):
        pyro.set_rng_seed(3)
        idata = pgm.diagnostics.to_inference_data(dbm.model, dbm.guide, x, num_samples=4)
        return torch.as_tensor(idata.log_likelihood["v"].values)

    return score, _binary(7, 6, device), dbm


def _kl_per_dim(device):
    dbm = pgm.models.DBM([6, 4, 3]).to(device)
    score = lambda x: pgm.diagnostics.kl_per_dim(dbm.model, dbm.guide, x, site="h1", num_samples=4)  # noqa: E731
    return _seeded(score), _binary(7, 6, device), dbm


ENTRY_POINTS = {
    "FlowDistribution.log_prob": _flow,
    "FlowDensity.distribution(context)": _conditional_flow,
    "AutoregressiveDistribution(NADE).log_prob": _autoregressive(lambda: NADE(6, 8)),
    "AutoregressiveDistribution(MADE).log_prob": _autoregressive(lambda: MADE(6, [8])),
    "EnergyDistribution.log_prob": _energy,
    "RBM.distribution().log_prob": _rbm,
    "DBM.elbo": _dbm_elbo,
    "BernoulliMixture.log_prob": _mixture,
    "infer.log_likelihood (flow)": _log_likelihood,
    "infer.log_likelihood (DBM)": _log_likelihood_dbm,
    "infer.elbo_per_datapoint": _elbo_per_datapoint,
    "diagnostics.to_inference_data": _inference_data,
    "diagnostics.kl_per_dim": _kl_per_dim,
}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_float64_data_score_a_float32_model_as_its_float32_copy(name, device):
    score, x, _ = ENTRY_POINTS[name](device)
    with torch.no_grad():
        expected = score(x)
        got = score(x.double())  # what scikit-learn's arrays give (float32 values, exactly)
    assert got.dtype == expected.dtype == torch.float32
    assert torch.equal(got, expected)  # the same computation, not a float64 one


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_a_float64_model_scores_float32_data_in_float64(name, device):
    score, x, module = ENTRY_POINTS[name](device)
    module.double()
    with torch.no_grad():
        expected = score(x.double())
        got = score(x)
    assert got.dtype == expected.dtype == torch.float64
    assert torch.equal(got, expected)


def test_integer_data_are_kept_as_training_keeps_labels():
    from pyro_genmodels._dtypes import program_inputs, to_dtype

    labels = torch.tensor([0, 2, 1])
    assert to_dtype(labels, torch.float32) is labels
    net = torch.nn.Linear(2, 1).double()
    model = lambda x, y: net(x)  # noqa: E731
    (x, y), kw = program_inputs(model, model, (torch.zeros(3, 2), labels), {"c": torch.ones(1)})
    assert x.dtype == torch.float64 and y is labels and kw["c"].dtype == torch.float64
