"""Sample metrics against closed forms (fixed seeds; tolerances are >= 3.3 standard errors,
a failure rate below 1e-3 per check for other seeds)."""

import math

import pytest
import torch
from scipy import stats

from pyro_genmodels.data import toy2d
from pyro_genmodels.diagnostics import TOY2D_MODES, energy_distance, mmd, mode_coverage


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
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
