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
    """On images the entries train on the logit of the pixels: sliced SM on the raw logits,
    denoising SM smoothing them by σ = 0.1, antithetically. On the raw pixels
    (``logit_alpha=None``) denoising SM smooths by σ = 0.01 (σ = 0.1 cost 30 nats), and
    unbounded data (2-D toys) by the default 0.1."""
    data = pgm.data.load("digits")
    sliced, denoising = build("ebm-ssm", data).loss, build("ebm-dsm", data).loss
    assert (sliced.method, sliced.noise_scales) == ("sliced", [0.0])
    assert (denoising.method, denoising.noise_scales) == ("denoising", [0.1])
    assert denoising.antithetic
    raw = build("ebm-dsm", data, logit_alpha=None).loss
    assert raw.noise_scales == [0.01]
    for bad in (0, 0.5, "0.01", True):
        with pytest.raises(ValueError, match=r"logit_alpha must be a float in \(0, 0.5\)"):
            build("ebm-dsm", data, logit_alpha=bad)
    toy = pgm.data.from_tensors(pgm.data.toy2d("8gaussians", 64), name="8gaussians")
    assert build("ebm-dsm", toy).loss.noise_scales == [0.1]


@pytest.mark.parametrize("name", NAMES)
def test_image_entry_starts_as_its_gaussian_base_in_pixel_space(name):
    """Before training (E ≡ 0, so AIS's log Ẑ = 0) the reported NLL is the Gaussian's, by hand:
    y = logit(s), s = α + (1 − 2α)x; −log p(x) = −log N(y; ȳ, C + 10⁻²I) − log|dy/dx| with
    log|dy/dx| = Σ log((1 − 2α)/(s(1 − s))); in the pixel space [0, 17): + 64 log 17."""
    data = pgm.data.load("digits")
    small = Dataset("digits", data.train[:256].double(), data.test[:32].double(),
                    image_shape=(1, 8, 8))  # fmt: skip
    setup = build(name, small, **SMALL)
    scores = evaluate(setup)
    a = 0.01
    s_train, s_test = a + (1 - 2 * a) * small.train, a + (1 - 2 * a) * small.test
    y_train, y_test = torch.logit(s_train), torch.logit(s_test)
    cov = torch.cov(y_train.T) + 1e-2 * torch.eye(64, dtype=torch.float64)
    q = torch.distributions.MultivariateNormal(y_train.mean(0), covariance_matrix=cov)
    log_dy_dx = torch.log((1 - 2 * a) / (s_test * (1 - s_test))).sum(-1)
    expected = float((-q.log_prob(y_test) - log_dy_dx).mean()) + 64 * math.log(17)
    assert scores["base_test_nll_nats"] == pytest.approx(expected, rel=1e-10)
    assert scores["test_nll_nats"] == pytest.approx(expected, rel=1e-10)
    assert "logit scale" in scores["estimator"] and "Gaussian base" in scores["estimator"]
    with pytest.warns(UserWarning, match="may not have converged"):  # 5 sampler steps
        samples = setup.sample(4)
    low, high = -a / (1 - 2 * a), (1 - a) / (1 - 2 * a)  # the logit transform's codomain
    assert samples.shape == (4, 64) and bool(((samples > low) & (samples < high)).all())


@pytest.mark.parametrize("name", ["ebm-flow-nce", "ebm-flow-pcd"])
def test_flow_entry_starts_as_its_flow(name):
    """Before training (E ≡ 0) an entry on a flow base reports the flow's exact NLL, and the
    base NLL it reports is the flow's own ``log_prob`` on the test rows, + 64 log 17."""
    data = pgm.data.load("digits")
    small = Dataset("digits", data.train[:256], data.test[:32], image_shape=(1, 8, 8))
    setup = build(name, small, **SMALL, base_epochs=1)
    scores = evaluate(setup)
    trace = pyro.poutine.trace(setup.model).get_trace(small.test)
    flow = trace.nodes["x"]["fn"].base  # the model's site: an energy on the flow
    expected = float(-flow.log_prob(small.test).mean()) + 64 * math.log(17)
    assert scores["base_test_nll_nats"] == pytest.approx(expected, rel=1e-6)
    assert scores["test_nll_nats"] == pytest.approx(expected, rel=1e-6)
    assert "AIS from the flow" in scores["estimator"]
