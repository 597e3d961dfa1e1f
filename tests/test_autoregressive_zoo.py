"""The autoregressive zoo entries, training through pgm.fit, and the benchmark's quick mode."""

import dataclasses
import importlib.util
import math
from pathlib import Path

import pyro
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels.distributions import AutoregressiveDistribution

AR_ENTRIES = ["fvsbn", "nade", "made", "made-ensemble", "pixelcnn", "lstm"]
SMALL = {
    "nade": {"hidden": 8},
    "made": {"hidden": 16},
    "made-ensemble": {"hidden": 16},
    "pixelcnn": {"channels": 4, "layers": 1},
    "lstm": {"hidden": 8},
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    data = pgm.data.load("digits", binarize=True)
    return dataclasses.replace(
        data,
        test=data.test[:40],
        test_labels=data.test_labels[:40],
    )


def test_family_is_registered():
    assert {n for n, e in pgm.zoo.ZOO.items() if e.family == "autoregressive"} == set(AR_ENTRIES)


@pytest.mark.parametrize("name", AR_ENTRIES)
def test_score_is_exact_nll_of_the_model(name, digits):
    setup = pgm.zoo.build(name, digits, **SMALL.get(name, {}))
    setup.module.eval()
    with torch.no_grad():
        score = setup.score(1)
        elbo = pyro.infer.Trace_ELBO().loss(setup.model, setup.guide, digits.test)
        draws = setup.sample(5)
    assert score["estimator"] == "exact"
    # the empty guide makes -ELBO the exact -log p(x)
    assert math.isclose(score["test_nll_nats"], elbo / len(digits.test), rel_tol=1e-5)
    assert draws.shape == (5, 64) and bool(((draws == 0) | (draws == 1)).all())


def test_zoo_rejects_continuous_data():
    data = pgm.data.load("digits", binarize=False)
    with pytest.raises(ValueError, match="binarized"):
        pgm.zoo.build("nade", data)


def test_issue_example_trains_with_fit_and_samples_with_predictive():
    data = pgm.data.load("digits", binarize=True)
    net = pgm.nn.MADE(input_dim=64, hidden_dims=[32], num_masks=4)

    def model(x=None, num=16):
        pyro.module("made", net)
        with pyro.plate("data", num if x is None else x.shape[0]):
            return pyro.sample("x", AutoregressiveDistribution(net, likelihood="bernoulli"), obs=x)

    masks = set()
    for _ in range(8):  # training mode: each pass draws one of the masks
        AutoregressiveDistribution(net).log_prob(data.train[:2])
        masks.add(net.mask_index)
    assert len(masks) > 1
    history = pgm.fit(
        model,
        lambda x: None,
        data.train,
        loss=pyro.infer.Trace_ELBO(),
        epochs=3,
        optim=pgm.optim.Adam({"lr": 3e-3}),
        progress=False,
    )
    assert history["loss"].iloc[-1] < history["loss"].iloc[0] < 64 * math.log(2) + 1
    net.eval()
    samples = pyro.infer.Predictive(model, num_samples=16)(None)["x"]
    assert samples.shape == (16, 16, 64)


def test_benchmark_quick_mode():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "autoregressive.py"
    spec = importlib.util.spec_from_file_location("bench_autoregressive", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.main(quick=True)
    nll = table[table.kind == "nll"].set_index("model")["value"]
    assert set(AR_ENTRIES) < set(nll.index) and nll.gt(0).all()
    speedups = table[table.kind == "sample-speedup"]
    # a timing ratio is recorded by the benchmark, not asserted by the suite; that the
    # incremental and naive samplers draw the same images is tested in
    # test_autoregressive_distribution.py
    assert set(speedups.model) == {"fvsbn", "nade", "made"}
