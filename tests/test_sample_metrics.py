"""Sample metrics against closed forms (fixed seeds; tolerances are >= 3.3 standard errors,
a failure rate below 1e-3 per check for other seeds)."""

import math

import pytest
import torch
from scipy import stats

from pyro_genmodels.data import load, toy2d
from pyro_genmodels.diagnostics import (
    TOY2D_MODES,
    SampleClassifier,
    class_coverage,
    classifier_for,
    energy_distance,
    frechet_distance,
    gaussian_frechet_distance,
    mmd,
    mode_coverage,
    sample_scores,
)


def test_mmd_matches_closed_form_for_gaussians(device):
    # k(a,b) = exp(-|a-b|²/2h²); for x ~ N(m1, s1² I_d), y ~ N(m2, s2² I_d):
    # E k(x, y) = (h²/(h²+s1²+s2²))^{d/2} exp(-|m1-m2|²/(2(h²+s1²+s2²))).
    def ek(m, s1, s2, h=1.0, d=2):
        v = h**2 + s1**2 + s2**2
        return (h**2 / v) ** (d / 2) * math.exp(-(m**2) / (2 * v))

    truth = ek(0, 1, 1) + ek(0, 0.5, 0.5) - 2 * ek(1.0, 1, 0.5)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(3000, 2, generator=g, device=device, dtype=torch.float64)
    y = 0.5 * torch.randn(3000, 2, generator=g, device=device, dtype=torch.float64)
    y[:, 0] += 1.0
    assert mmd(x, y, bandwidth=1.0).item() == pytest.approx(truth, abs=0.03)  # sd ≈ 0.009
    z = torch.randn(3000, 2, generator=g, device=device, dtype=torch.float64)
    assert abs(mmd(x, z).item()) < 2e-3  # same law: unbiased estimate near 0


def test_energy_distance_matches_closed_form_in_1d(device):
    # E|X - Y| for X - Y ~ N(d, s²): s √(2/π) exp(-d²/2s²) + d (1 - 2Φ(-d/s)).
    def e_abs(d, s):
        return s * math.sqrt(2 / math.pi) * math.exp(-(d**2) / (2 * s**2)) + d * (
            1 - 2 * stats.norm.cdf(-d / s)
        )

    truth = 2 * e_abs(1.0, math.sqrt(1 + 4)) - e_abs(0, math.sqrt(2)) - e_abs(0, math.sqrt(8))
    # One estimate from 4000 + 4000 points has sd 0.023 (measured over 30 seeds); the mean of
    # 16 independent estimates has sd 0.0057, so the tolerance 0.025 is 4.4 sd (failure rate
    # about 1e-5 whatever the device's random stream).
    g = torch.Generator(device=device).manual_seed(0)
    estimates = []
    for _ in range(16):
        x = torch.randn(4000, 1, generator=g, device=device, dtype=torch.float64)
        y = 1.0 + 2.0 * torch.randn(4000, 1, generator=g, device=device, dtype=torch.float64)
        estimates.append(energy_distance(x, y).item())
    assert sum(estimates) / len(estimates) == pytest.approx(truth, abs=0.025)


def test_energy_distance_of_identical_sets(device):
    g = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(300, 3, generator=g, device=device, dtype=torch.float64)
    assert energy_distance(x, x, unbiased=False).item() == pytest.approx(0.0, abs=1e-12)
    # U-statistics: 2·mean(all pairs) - 2·mean(off-diagonal pairs) = -2/N · mean pairwise distance
    d = torch.pdist(x).mean().item()
    assert energy_distance(x, x).item() == pytest.approx(-2 * d / 300, rel=1e-6)  # cdist rounding


def test_frechet_distance_closed_form(device):
    linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(4, 4, generator=g, dtype=torch.float64), torch.randn(4, 4, generator=g)
    c1, c2 = a @ a.T + 0.1 * torch.eye(4), (b @ b.T).double() + 0.1 * torch.eye(4)
    m1, m2 = torch.randn(4, generator=g, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    s1 = linalg.sqrtm(c1.numpy())  # a reference that does not share our eigen route
    cross = linalg.sqrtm(s1 @ c2.numpy() @ s1).real.trace()
    truth = float((m1 - m2).pow(2).sum() + c1.trace() + c2.trace() - 2 * cross)
    to = {"device": device}
    got = gaussian_frechet_distance(m1.to(**to), c1.to(**to), m2.to(**to), c2.to(**to))
    assert got.item() == pytest.approx(truth, rel=1e-9)
    # diagonal, commuting case: |m1 - m2|² + Σ (σ1 - σ2)²; here 1 + (1-2)² + (3-1)² = 6
    diag = gaussian_frechet_distance(
        torch.tensor([1.0, 0.0]), torch.diag(torch.tensor([1.0, 9.0])),
        torch.zeros(2), torch.diag(torch.tensor([4.0, 1.0])),
    )  # fmt: skip
    assert diag.item() == pytest.approx(6.0, rel=1e-12)
    # from samples: Gaussian fits of 40000 draws; sd of the estimate ≈ 0.05 here, 4 sd.
    l1, l2 = torch.linalg.cholesky(c1), torch.linalg.cholesky(c2)
    gd = torch.Generator(device=device).manual_seed(3)
    x = m1.to(**to) + torch.randn(40000, 4, generator=gd, **to, dtype=torch.float64) @ l1.T.to(**to)
    y = m2.to(**to) + torch.randn(40000, 4, generator=gd, **to, dtype=torch.float64) @ l2.T.to(**to)
    assert frechet_distance(x, y).item() == pytest.approx(truth, abs=0.2)
    assert frechet_distance(x, x).item() == pytest.approx(0.0, abs=1e-8)


@pytest.fixture(scope="module")
def digits():
    return load("digits", binarize=False)


def test_class_coverage_known_answers(digits):
    clf = classifier_for(digits)
    assert clf is classifier_for(digits)  # trained once, then cached
    assert clf.test_accuracy > 0.93
    assert class_coverage(digits.test, clf)["classes"] == 10
    one = class_coverage(digits.test[:1].repeat(1000, 1), clf)
    assert one["classes"] == 1 and sorted(one["counts"])[-1] == 1000
    # two classes each at half of their expected share are covered; at a tenth they are not
    labels = digits.test_labels
    half = torch.cat([digits.test[labels == k][:10] for k in range(10)] * 3)
    assert class_coverage(half, clf, min_fraction=0.2)["classes"] >= 9


def test_sample_scores_of_the_test_split(digits):
    scores = sample_scores(digits.test, digits)
    assert scores["class_coverage"] == 10
    assert scores["frechet_distance"] == pytest.approx(0.0, abs=1e-6)
    assert abs(scores["energy_distance"]) < 0.05 and abs(scores["mmd"]) < 0.01
    collapsed = sample_scores(digits.test[:1].repeat(1000, 1), digits)
    assert collapsed["class_coverage"] == 1 and collapsed["frechet_distance"] > 10


def test_classifier_leaves_global_rng_alone(digits):
    state = torch.get_rng_state()
    SampleClassifier.fit(digits.train[:100], digits.train_labels[:100], steps=2)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("name", sorted(TOY2D_MODES))
def test_true_samples_cover_every_mode_with_expected_quality(name, device):
    x = toy2d(name, 5000, seed=3, device=device, dtype=torch.float64)
    scores = mode_coverage(x, name)
    assert scores["modes"] == scores["num_modes"] == len(TOY2D_MODES[name][0])
    # Binomial(5000, 0.9889): sd 0.0015; 4 sd.
    assert scores["high_quality"] == pytest.approx(scores["expected_high_quality"], abs=0.006)


def test_collapsed_samples_cover_one_mode(device):
    centers, std = TOY2D_MODES["25gaussians"]
    x = torch.tensor(centers[7], device=device) + std * torch.randn(1000, 2, device=device)
    scores = mode_coverage(x, "25gaussians")
    assert scores["modes"] == 1 and scores["high_quality"] > 0.95
    far = mode_coverage(x + 10.0, "25gaussians")
    assert far["modes"] == 0 and far["high_quality"] == 0.0


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: mmd(torch.zeros(5), torch.zeros(5, 1)), ValueError, r"x must have shape \(N, D\)"),
        (
            lambda: mmd(torch.zeros(5, 2), torch.zeros(5, 3)),
            ValueError,
            r"y must have shape \(N, 2\)",
        ),
        (lambda: mmd(torch.zeros(5, 2), torch.zeros(5, 2), -1.0), ValueError, "bandwidth"),
        (lambda: energy_distance([1.0], torch.zeros(5, 1)), TypeError, "x must be a Tensor"),
        (lambda: mode_coverage(torch.zeros(5, 2), "rings"), ValueError, "name must be one of"),
        (lambda: mode_coverage(torch.zeros(5, 3), "8gaussians"), ValueError, r"\(N, 2\)"),
        (lambda: mode_coverage(torch.zeros(5, 2), "8gaussians", 0.0), ValueError, "num_std"),
        (lambda: energy_distance(torch.zeros(5, 1), torch.zeros(5, 1), 1), TypeError, "unbiased"),
        (lambda: frechet_distance(torch.zeros(5, 2), torch.zeros(5, 3)), ValueError, r"\(N, 2\)"),
        (lambda: SampleClassifier(4, 1), ValueError, "num_classes must be an int >= 2"),
        (lambda: classifier_for(object()), ValueError, "labelled Dataset"),
        (
            lambda: SampleClassifier.fit(torch.zeros(5, 2), torch.zeros(5)),
            ValueError,
            "y must be integer labels",
        ),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
