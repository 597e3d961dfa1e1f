"""Zoo entries of the energy family: built, trained briefly, scored by AIS, resumed exactly."""

import math

import pyro
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels.data import Dataset
from pyro_genmodels.zoo import ZOO, build, evaluate

NAMES = ["ebm-pcd", "ebm-dsm", "ebm-ssm", "ebm-nce"]
SMALL = dict(hidden=16, k=3, buffer_size=64, ais_chains=20, ais_betas=20, sample_steps=5)


def _toy():
    return Dataset(
        "8gaussians",
        pgm.data.toy2d("8gaussians", 256, seed=0),
        pgm.data.toy2d("8gaussians", 64, seed=1),
    )


@pytest.mark.parametrize("name", NAMES)
def test_entry_trains_and_scores_with_ais(name):
    assert ZOO[name].family == "energy" and not ZOO[name].binarize
    setup = build(name, _toy(), **SMALL)
    pgm.fit(
        setup.model,
        setup.guide,
        setup.train,
        loss=setup.loss,
        epochs=1,
        batch_size=64,
        progress=False,
    )
    scores = evaluate(setup)
    assert "AIS" in scores["estimator"]
    for key in ("test_nll_nats", "test_nll_stderr", "energy_distance"):
        assert math.isfinite(scores[key]), (key, scores)
    assert scores["test_nll_stderr"] > 0


def test_unnormalized_entry_refuses_importance_sampled_nll():
    setup = build("ebm-dsm", _toy(), **SMALL)
    with pytest.raises(ValueError, match="unnormalized EnergyDistribution.*ais"):
        pgm.infer.log_likelihood(setup.model, setup.guide, *setup.test, num_samples=2)


def test_pcd_entry_resumes_exactly(tmp_path):
    kwargs = dict(epochs=2, batch_size=64, seed=0, progress=False)
    torch.manual_seed(1)
    setup = build("ebm-pcd", _toy(), **SMALL)
    ref = pgm.fit(setup.model, setup.guide, setup.train, loss=setup.loss, **kwargs)
    buffer = setup.loss.state_dict()["buffer.x"]
    params = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    pyro.clear_param_store()
    torch.manual_seed(1)
    setup = build("ebm-pcd", _toy(), **SMALL)
    pgm.fit(
        setup.model,
        setup.guide,
        setup.train,
        loss=setup.loss,
        checkpoint_dir=tmp_path,
        **{**kwargs, "epochs": 1},
    )
    pyro.clear_param_store()
    torch.manual_seed(5)  # another init: params and buffer must come from the checkpoint
    setup = build("ebm-pcd", _toy(), **SMALL)
    again = pgm.fit(
        setup.model,
        setup.guide,
        setup.train,
        loss=setup.loss,
        checkpoint_dir=tmp_path,
        resume=True,
        **kwargs,
    )
    assert list(again["loss"]) == list(ref["loss"])
    assert torch.equal(setup.loss.state_dict()["buffer.x"], buffer)
    for name, value in pyro.get_param_store().items():
        assert torch.equal(value.detach(), params[name]), name


def test_digits_entry_reports_pixel_space_nll():
    data = pgm.data.load("digits")
    small = Dataset("digits", data.train[:128], data.test[:32], image_shape=(1, 8, 8))
    setup = build("ebm-pcd", small, **SMALL)
    pgm.fit(setup.model, setup.guide, setup.train, loss=setup.loss, epochs=1, progress=False)
    scores = evaluate(setup)
    assert "pixel space [0, 17)" in scores["estimator"] and math.isfinite(scores["test_nll_nats"])
    assert setup.sample(4).shape == (4, 64)


def test_score_matching_entries_smooth_as_their_data_need():
    """Sliced SM trains on the raw dequantized pixels (σ = 0.1, the loss's default for
    unit-scale data, cost 32 nats on digits); denoising SM smooths pixels by σ = 0.01
    (σ = 0.1 cost 30 nats), antithetically, and unbounded data (2-D toys) by the default 0.1."""
    data = pgm.data.load("digits")
    sliced, denoising = build("ebm-ssm", data).loss, build("ebm-dsm", data).loss
    assert (sliced.method, sliced.noise_scales) == ("sliced", [0.0])
    assert (denoising.method, denoising.noise_scales) == ("denoising", [0.01])
    assert denoising.antithetic
    toy = pgm.data.from_tensors(pgm.data.toy2d("8gaussians", 64), name="8gaussians")
    assert build("ebm-dsm", toy).loss.noise_scales == [0.1]
