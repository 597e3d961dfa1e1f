"""Score matching, NCE and CD against closed forms; every sign pinned by a known optimum."""

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from energy_helpers import (
    NoiseConditionalQuadratic,
    Quadratic,
    energy_model,
    gaussian_data,
    minimize,
    no_guide,
)
from pyro.distributions import constraints

import pyro_genmodels as pgm
from pyro_genmodels.distributions import EnergyDistribution
from pyro_genmodels.infer import ContrastiveDivergenceLoss, NCELoss, ScoreMatchingLoss


def _sample_cov(x):
    c = x - x.mean(0)
    return c.T @ c / x.shape[0]


# ------------------------------------------------------------------ optima (signs)


def test_exact_score_matching_recovers_inverse_covariance(device):
    """Unsmoothed exact SM's minimizer is A = Σ̂⁻¹, b = Σ̂⁻¹ μ̂ (sample moments), to optimizer
    precision."""
    x, _, _ = gaussian_data(2000, device)
    energy = Quadratic(device=device)
    loss = ScoreMatchingLoss("exact", noise_scale=0)
    minimize(loss, energy_model(energy), x, list(energy.parameters()))
    prec = torch.linalg.inv(_sample_cov(x))
    assert torch.allclose(energy.precision, prec, atol=1e-4)
    assert torch.allclose(energy.b, prec @ x.mean(0), atol=1e-4)


@pytest.mark.parametrize("projection", ["rademacher", "gaussian"])
def test_sliced_score_matching_recovers_inverse_covariance(device, projection):
    """One projection per point: the optimum is Σ̂⁻¹ up to the projections' sampling error.

    Tolerance 0.06 on entries of size ~1 is > 4 standard deviations of that error at N = 4000.
    """
    x, _, _ = gaussian_data(4000, device)
    energy = Quadratic(device=device)
    loss = ScoreMatchingLoss("sliced", noise_scale=0, projection=projection)
    minimize(loss, energy_model(energy), x, list(energy.parameters()))
    prec = torch.linalg.inv(_sample_cov(x))
    assert torch.allclose(energy.precision, prec, atol=0.06)
    assert torch.allclose(energy.b, prec @ x.mean(0), atol=0.06)


def test_denoising_score_matching_recovers_smoothed_inverse_covariance(device):
    """The DSM optimum at σ is (Σ + σ²I)⁻¹ — not Σ⁻¹ and not its negative (the sign pin)."""
    sigma = 0.7
    x, mu, cov = gaussian_data(4000, device)
    x = x.repeat(4, 1)  # four noise draws per point
    energy = Quadratic(device=device)
    minimize(
        ScoreMatchingLoss("denoising", noise_scale=sigma),
        energy_model(energy),
        x,
        list(energy.parameters()),
    )
    target = torch.linalg.inv(
        _sample_cov(x) + sigma**2 * torch.eye(2, dtype=x.dtype, device=device)
    )
    assert torch.allclose(energy.precision, target, atol=0.05)
    assert torch.allclose(energy.b, target @ x.mean(0), atol=0.05)
    assert (energy.precision - torch.linalg.inv(cov)).abs().max() > 0.15  # it is the smoothed one


@pytest.mark.parametrize("method", ["exact", "sliced"])
def test_smoothed_score_matching_recovers_smoothed_inverse_covariance(device, method):
    """By default exact and sliced SM fit the data smoothed by N(0, σ²I): their optimum is
    (Σ + σ²I)⁻¹, as denoising's (σ = 0.7 makes it differ from Σ⁻¹ by 0.15 and more).

    Eight noise draws per point; tolerance 0.05 as for denoising (the smoothing draws' and the
    projections' sampling error at N = 32 000 is about 0.01)."""
    sigma = 0.7
    x, _, cov = gaussian_data(4000, device)
    x = x.repeat(8, 1)
    energy = Quadratic(device=device)
    loss = ScoreMatchingLoss(method, noise_scale=sigma)
    minimize(loss, energy_model(energy), x, list(energy.parameters()))
    eye = torch.eye(2, dtype=x.dtype, device=device)
    target = torch.linalg.inv(_sample_cov(x) + sigma**2 * eye)
    assert torch.allclose(energy.precision, target, atol=0.05)
    assert torch.allclose(energy.b, target @ x.mean(0), atol=0.05)
    assert (energy.precision - torch.linalg.inv(cov)).abs().max() > 0.15


def test_antithetic_denoising_has_the_same_mean_and_less_noise(device):
    """At σ = 0.1 the one-sided DSM gradient carries ε/σ-sized noise; pairing ε with −ε removes
    it. Over 200 draws of one batch, the gradient's mean agrees (within 4 of its standard
    errors) and its variance falls by more than 20× (measured: 109×, about 1/σ²)."""
    x, _, _ = gaussian_data(64, device)
    energy = _fixed_quadratic(device)
    model = energy_model(energy)

    def grads(antithetic):
        loss = ScoreMatchingLoss("denoising", noise_scale=0.1, antithetic=antithetic)
        out = []
        for seed in range(200):
            pyro.set_rng_seed(seed)
            value = loss.differentiable_loss(model, no_guide, x)
            out.append(
                torch.cat(
                    [g.flatten() for g in torch.autograd.grad(value, [energy.chol, energy.b])]
                )
            )
        return torch.stack(out)

    one, two = grads(False), grads(True)
    se = (one.var(0) / 200 + two.var(0) / 200).sqrt()
    assert ((one.mean(0) - two.mean(0)).abs() <= 4 * se + 1e-9).all()
    assert (two.var(0).sum() * 20 < one.var(0).sum()).item()


def test_multi_level_denoising_recovers_each_level(device):
    """Noise-conditional E(x, σ): each level's optimum is (Σ + σ²I)⁻¹ (σ² weighting keeps it).

    Sixteen noise draws per point: the σ = 0.3 level's largest deviation from its target was
    0.009-0.019 over noise seeds 1-5 (0.021-0.047 with four draws, and 0.069 once on another
    random stream), so the tolerance 0.06 is more than 10 of its standard deviations.
    """
    levels = [1.0, 0.3]
    x, _, _ = gaussian_data(4000, device)
    x = x.repeat(16, 1)
    energy = NoiseConditionalQuadratic(levels, device=device)
    ctx = x.new_full((1,), levels[-1])
    model = energy_model(energy, context=ctx)
    minimize(
        ScoreMatchingLoss("denoising", noise_scale=levels), model, x, list(energy.parameters())
    )
    eye = torch.eye(2, dtype=x.dtype, device=device)
    for level, part in zip(levels, energy.parts):
        target = torch.linalg.inv(_sample_cov(x) + level**2 * eye)
        assert torch.allclose(part.precision, target, atol=0.06), level


# ------------------------------------------------------------------ loss values


def _fixed_quadratic(device):
    energy = Quadratic(device=device)
    with torch.no_grad():
        energy.chol.copy_(torch.tensor([[1.2, 0.0], [0.4, 0.8]], dtype=torch.float64))
        energy.b.copy_(torch.tensor([0.3, -0.2], dtype=torch.float64))
    return energy


def test_exact_and_sliced_values_match_closed_form(device):
    """Exact: Σₙ ½‖Axₙ − b‖² − tr A; sliced with many projections agrees with it."""
    x, _, _ = gaussian_data(50, device)
    energy = _fixed_quadratic(device)
    a, b = energy.precision.detach(), energy.b.detach()
    closed = (0.5 * ((x @ a - b) ** 2).sum(-1) - torch.trace(a)).sum()
    model = energy_model(energy)
    exact = ScoreMatchingLoss("exact", noise_scale=0).loss(model, no_guide, x)
    assert exact == pytest.approx(closed.item(), rel=1e-12)
    sliced = ScoreMatchingLoss("sliced", noise_scale=0, num_projections=4000)
    sliced = sliced.loss(model, no_guide, x)
    # per point, vᵀAv (Rademacher) has sd √2·|A₁₂| ≈ 0.68; over 50·4000 draws the sum's sd is ≈ 0.08
    assert sliced == pytest.approx(closed.item(), abs=0.5)


def test_denoising_value_matches_its_expectation(device):
    """At one point x: E ½‖A(x+σε) − b − ε/σ‖² = ½(‖Ax − b‖² + σ² tr A² − 2 tr A + D/σ²)."""
    sigma = 0.5
    energy = _fixed_quadratic(device)
    a, b = energy.precision.detach(), energy.b.detach()
    x0 = torch.tensor([0.5, -1.0], dtype=torch.float64, device=device)
    x = x0.expand(100000, 2)
    closed = 0.5 * (
        ((a @ x0 - b) ** 2).sum()
        + sigma**2 * torch.trace(a @ a)
        - 2 * torch.trace(a)
        + 2 / sigma**2
    )
    value = (
        ScoreMatchingLoss("denoising", noise_scale=sigma).loss(energy_model(energy), no_guide, x)
        / 1e5
    )
    assert value == pytest.approx(closed.item(), abs=0.05)  # MC sd ≈ 0.01


# ------------------------------------------------------------------ NCE


def test_nce_recovers_log_normalizer(device):
    """Unnormalized Gaussian energy ½((x − m)/s)² with a learned log Z: log Z → log(√(2π) s).

    Stated tolerance 0.05 nats (NCE's asymptotic sd at N = 4000, ν = 4 is ≈ 0.01).
    """
    g = torch.Generator().manual_seed(0)
    x = (1.0 + 0.7 * torch.randn(4000, 1, generator=g, dtype=torch.float64)).to(device)

    class Gauss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = torch.nn.Parameter(torch.zeros((), dtype=torch.float64, device=device))
            self.log_s = torch.nn.Parameter(torch.zeros((), dtype=torch.float64, device=device))

        def forward(self, x):
            return 0.5 * (((x - self.m) / self.log_s.exp()) ** 2).sum(-1)

    energy = Gauss()

    def model(x):
        pyro.module("energy", energy)
        log_z = pyro.param("log_z", torch.zeros((), dtype=torch.float64, device=device))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", EnergyDistribution(energy, (1,), log_normalizer=log_z), obs=x)

    noise = dist.Normal(torch.zeros(1, dtype=torch.float64, device=device), 2.0).to_event(1)
    loss = NCELoss(noise, noise_ratio=4)
    loss.loss(model, no_guide, x)  # creates the param
    params = list(energy.parameters()) + [pyro.param("log_z").unconstrained()]
    minimize(loss, model, x, params)
    log_z = pyro.param("log_z").item()
    assert log_z == pytest.approx(0.5 * math.log(2 * math.pi) + energy.log_s.item(), abs=0.05)
    assert log_z == pytest.approx(0.5 * math.log(2 * math.pi) + math.log(0.7), abs=0.05)


# ------------------------------------------------------------------ CD


def test_cd_gradient_is_energy_difference(device):
    """CD-k's loss is Σ E(x⁺) − E(x⁻) + α(E⁺² + E⁻²): checked against a recomputation."""
    x, _, _ = gaussian_data(32, device)
    energy = _fixed_quadratic(device)
    sampler = pgm.infer.LangevinSampler(0.05)
    model = energy_model(energy, sampler=sampler)
    loss = ContrastiveDivergenceLoss(k=3, energy_reg=0.1)
    pyro.set_rng_seed(5)
    value = loss.loss(model, no_guide, x)
    pyro.set_rng_seed(5)
    d = EnergyDistribution(energy, (2,)).expand((32,))
    x_neg = sampler.run(d, x, 3)
    with torch.no_grad():
        ep, en = energy(x), energy(x_neg)
    assert value == pytest.approx((ep - en + 0.1 * (ep**2 + en**2)).sum().item(), rel=1e-10)


def test_sites_carry_scale_mask_and_subsampling_as_pyro_traces_them(device):
    """The exact score-matching loss is Σₙ sₙ mₙ (½‖Axₙ − b‖² − tr A): the scale ``s`` of
    ``poutine.scale`` times a subsampling plate's N/B, the mask ``m``; the rows are those the
    plate drew, in the model or replayed from the guide's plate."""
    x, _, _ = gaussian_data(40, device)
    energy = _fixed_quadratic(device)
    a, b = energy.precision.detach(), energy.b.detach()
    mask = torch.arange(10, device=device) % 3 != 0
    loss = ScoreMatchingLoss("exact", noise_scale=0)

    def per_point(rows):
        return 0.5 * ((rows @ a.T - b) ** 2).sum(-1) - torch.trace(a)

    def model(data, sites=("x",)):
        with pyro.plate("data", 40, subsample_size=10) as idx:
            for site in sites:
                with poutine.mask(mask=mask):
                    pyro.sample(site, EnergyDistribution(energy, (2,)), obs=data[idx])
        return idx

    def guide(data):  # the guide draws the rows; the model reuses them
        with pyro.plate("data", 40, subsample_size=10):
            pass

    for g in (no_guide, guide):
        pyro.set_rng_seed(3)
        traced = poutine.trace(poutine.scale(model, 0.5)).get_trace(x)
        idx = traced.nodes["_RETURN"]["value"]
        expected = (0.5 * 4.0 * mask * per_point(x[idx])).sum()
        pyro.set_rng_seed(3)
        value = loss.loss(poutine.scale(model, 0.5), g, x)
        if g is guide:  # the guide's draw is the model's: the same rows as its own trace
            pyro.set_rng_seed(3)
            idx = poutine.trace(guide).get_trace(x).nodes["data"]["value"]
            expected = (0.5 * 4.0 * mask * per_point(x[idx])).sum()
        assert value == pytest.approx(expected.item(), rel=1e-10)
    with pytest.raises(RuntimeError, match="Multiple sample sites named 'x'"):
        loss.loss(lambda data: model(data, ("x", "x")), no_guide, x)


def test_pcd_learns_gaussian_precision(device):
    """PCD with MALA negatives moves a quadratic energy toward Σ⁻¹ from A = I (loose: 0.25)."""
    x, _, cov = gaussian_data(1000, device)
    energy = Quadratic(device=device)
    sampler = pgm.infer.LangevinSampler(0.1, adjust=True)
    model = energy_model(energy, sampler=sampler)
    svi = pyro.infer.SVI(
        model,
        no_guide,
        pyro.optim.Adam({"lr": 0.02}),
        ContrastiveDivergenceLoss(k=5, persistent=True, buffer_size=1000, energy_reg=0.0),
    )
    for _ in range(300):
        idx = torch.randint(0, 1000, (100,), device=device)
        svi.step(x[idx])
    assert torch.allclose(energy.precision, torch.linalg.inv(cov), atol=0.25)


# ------------------------------------------------------------------ bad input


def test_bad_inputs_get_clear_errors(device):
    x, _, _ = gaussian_data(8, device)
    energy = Quadratic(device=device)
    with pytest.raises(ValueError, match="method must be one of"):
        ScoreMatchingLoss("hutchinson")
    with pytest.raises(ValueError, match="noise_scale must be finite and positive"):
        ScoreMatchingLoss("denoising", noise_scale=-0.1)
    with pytest.raises(ValueError, match=r"or 0 for 'exact' and 'sliced'\), got 0"):
        ScoreMatchingLoss("denoising", noise_scale=0)
    with pytest.raises(TypeError, match="antithetic must be a bool"):
        ScoreMatchingLoss("denoising", antithetic=1)
    with pytest.raises(ValueError, match="several noise levels need method='denoising'"):
        ScoreMatchingLoss("exact", noise_scale=[1.0, 0.1])
    with pytest.raises(TypeError, match="noise must be a torch/Pyro distribution"):
        NCELoss("gaussian")
    with pytest.raises(ValueError, match="reinit_prob must be in"):
        ContrastiveDivergenceLoss(reinit_prob=1.5)
    with pytest.raises(ValueError, match="k must be a positive int"):
        ContrastiveDivergenceLoss(k=0)
    # discrete site rejected by score matching
    binary = energy_model(energy, support=constraints.boolean)
    with pytest.raises(ValueError, match="cannot train the discrete site 'x'"):
        ScoreMatchingLoss("exact").loss(binary, no_guide, (x > 0).double())
    # wrong event shape of the data
    with pytest.raises(ValueError, match=r"expects x of shape \(\*, 2"):
        ScoreMatchingLoss("exact").loss(
            energy_model(energy), no_guide, torch.zeros(8, 3, dtype=x.dtype, device=device)
        )

    # energy returning the wrong shape
    class Wrapped(torch.nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.inner, self.fn = energy, fn

        def forward(self, v):
            return self.fn(v)

    wrong = energy_model(Wrapped(lambda v: v))  # (N, 2) instead of (N,)
    with pytest.raises(ValueError, match="energy must return shape"):
        ScoreMatchingLoss("sliced").loss(wrong, no_guide, x)
    # energy returning non-finite values: log_prob says so; in training fit's guard stops
    bad = Wrapped(lambda v: energy(v) / 0.0)
    with pyro.validation_enabled(True), pytest.raises(ValueError, match="non-finite"):
        EnergyDistribution(bad, (2,)).log_prob(x)
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        pgm.fit(
            energy_model(bad),
            no_guide,
            x,
            loss=ContrastiveDivergenceLoss(),
            epochs=1,
            progress=False,
        )

    # a latent site, a guide with sites, no energy site
    def latent_model(x):
        z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", EnergyDistribution(energy, (2,)), obs=x - z)

    with pytest.raises(ValueError, match="site 'z' is latent"):
        ScoreMatchingLoss().loss(latent_model, no_guide, x)
    with pytest.raises(ValueError, match="the guide has sample sites"):
        ScoreMatchingLoss().loss(
            energy_model(energy), lambda x: pyro.sample("z", dist.Normal(0.0, 1.0)), x
        )

    def normal_model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(x.new_zeros(2), 1.0).to_event(1), obs=x)

    with pytest.raises(ValueError, match="site .x. has Normal"):
        NCELoss(dist.Normal(x.new_zeros(2), 1.0).to_event(1)).loss(normal_model, no_guide, x)


def test_log_likelihood_refuses_unnormalized_energy_and_names_ais(device):
    x, _, _ = gaussian_data(8, device)
    energy = Quadratic(device=device)
    with pytest.raises(ValueError, match="unnormalized EnergyDistribution.*pgm.infer.ais"):
        pgm.infer.log_likelihood(energy_model(energy), no_guide, x, num_samples=2)
    log_z = torch.tensor(math.log(2 * math.pi), dtype=torch.float64, device=device)
    ll = pgm.infer.log_likelihood(
        energy_model(energy, log_normalizer=log_z), no_guide, x, num_samples=2
    )
    ref = dist.MultivariateNormal(
        x.new_zeros(2), torch.eye(2, dtype=x.dtype, device=device)
    ).log_prob(x)
    assert torch.allclose(ll, ref)


def test_default_noise_scale_warns_once_on_data_of_small_scale():
    """σ = 0.1 blurs data whose spread is 0.05 (it would be 200% of it): one UserWarning
    naming noise_scale; none for unit-scale data or when σ is given."""
    import warnings

    torch.manual_seed(0)
    energy = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", EnergyDistribution(energy, (2,)), obs=x)

    small, unit = 0.05 * torch.randn(64, 2), torch.randn(64, 2)
    loss = ScoreMatchingLoss("sliced")
    with pytest.warns(UserWarning, match="noise_scale") as caught:
        loss.loss(model, no_guide, small)
        loss.loss(model, no_guide, small)  # once per loss
    assert sum("noise_scale" in str(w.message) for w in caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ScoreMatchingLoss("sliced").loss(model, no_guide, unit)
        ScoreMatchingLoss("sliced", noise_scale=0.1).loss(model, no_guide, small)
        ScoreMatchingLoss("denoising", noise_scale=0.1).loss(model, no_guide, small)
