"""The Boltzmann zoo entries: AIS scores against exact ones, resume through pgm.fit."""

import dataclasses

import numpy as np
import pyro
import pytest
import torch

import pyro_genmodels as pgm

ENTRIES = ["rbm-cd1", "rbm-pcd", "dbm"]
SMALL = {
    "rbm-cd1": {"hidden": 12, "ais_steps": 1500, "gibbs_steps": 20},
    "rbm-pcd": {"hidden": 12, "ais_steps": 1500, "gibbs_steps": 20},
    "dbm": {"hidden": 10, "hidden2": 6, "ais_steps": 1500, "gibbs_steps": 20},
}


@pytest.fixture(scope="module")
def digits():
    data = pgm.data.load("digits", binarize=True, dtype=torch.float64)
    return dataclasses.replace(
        data,
        train=data.train[:300],
        train_labels=data.train_labels[:300],
        test=data.test[:60],
        test_labels=data.test_labels[:60],
    )


def test_family_is_registered():
    assert {n for n, e in pgm.zoo.ZOO.items() if e.family == "boltzmann"} == set(ENTRIES)


def _train(name, digits, epochs, tmp_path=None, resume=False, seed=0):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    setup = pgm.zoo.build(name, digits, **SMALL[name])
    hist = pgm.fit(setup.model, setup.guide, setup.train, loss=setup.loss,
                   optim=pgm.optim.Adam({"lr": 1e-2}), epochs=epochs, batch_size=50, seed=3,
                   checkpoint_dir=tmp_path, resume=resume, progress=False)  # fmt: skip
    return setup, hist


@pytest.mark.parametrize("name", ["rbm-cd1", "rbm-pcd"])
def test_rbm_ais_score_matches_the_exact_nll(name, digits):
    """12 hidden units: exact log Z by enumeration; AIS within 0.1 nats and 3 stderr."""
    setup, _ = _train(name, digits, 2)
    torch.manual_seed(0)
    with torch.no_grad():
        score = setup.score(1)
        exact = float(-setup.module.distribution().log_prob(digits.test).mean())
    assert score["estimator"].startswith("AIS")
    gap = abs(score["test_nll_nats"] - exact)
    assert gap < 0.1 and gap < 3 * score["test_nll_stderr"] + 1e-3
    assert np.isfinite(score["energy_distance"])
    draws = setup.sample(4)
    assert draws.shape == (4, 64) and bool(((draws == 0) | (draws == 1)).all())


def test_dbm_score_is_a_bound_better_than_uniform(digits):
    setup, _ = _train("dbm", digits, 2)
    torch.manual_seed(0)
    with torch.no_grad():
        score = setup.score(1)
    assert "variational bound" in score["estimator"]
    assert score["test_nll_stderr"] < 0.5
    assert score["test_nll_nats"] < 64 * np.log(2)  # the uniform model's NLL


@pytest.mark.parametrize("name", ENTRIES)
def test_resume_is_bit_exact(name, digits, tmp_path):
    _, ref = _train(name, digits, 3)
    ref_params = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    _train(name, digits, 1, tmp_path)
    _, resumed = _train(name, digits, 3, tmp_path, resume=True, seed=7)
    np.testing.assert_array_equal(resumed["loss"].to_numpy(), ref["loss"].to_numpy())
    for k, v in pyro.get_param_store().items():
        assert torch.equal(v.detach(), ref_params[k]), k


def test_non_binary_data_is_rejected():
    with pytest.raises(ValueError, match="binarized"):
        pgm.zoo.build("rbm-cd1", pgm.data.load("digits"))
