"""The Langevin MCMC kernel (MALA/ULA), the batched sampler's ULA bias, annealed Langevin."""

import math

import arviz as az
import pyro
import pyro.distributions as dist
import pytest
import torch
from energy_helpers import Quadratic

import pyro_genmodels as pgm
from pyro_genmodels.distributions import EnergyDistribution
from pyro_genmodels.infer import Langevin, LangevinSampler, annealed_langevin

LOC = torch.tensor([1.0, -2.0])
SCALE = torch.tensor([0.5, 2.0])


def gaussian_model():
    """Module-level (picklable) model: z ~ N(LOC, diag(SCALE²))."""
    pyro.sample("z", dist.Normal(LOC, SCALE).to_event(1))


def test_mala_matches_gaussian_mean_and_variance():
    """MALA with adapted step: mean within 4 MC standard errors (ESS-based), sd within 10%.

    Fixed seed; the failure rate of a 4-sigma band is < 1e-4 per coordinate.
    """
    pyro.set_rng_seed(0)
    kernel = Langevin(gaussian_model, step_size=0.1, adjust=True)
    mcmc = pyro.infer.MCMC(kernel, num_samples=2000, warmup_steps=300, disable_progbar=True)
    mcmc.run()
    z = mcmc.get_samples()["z"]
    ess = torch.tensor([az.ess(z[:, i].numpy()) for i in range(2)])
    assert ((z.mean(0) - LOC).abs() < 4 * SCALE / ess.sqrt()).all(), (z.mean(0), ess)
    assert ((z.std(0) / SCALE - 1).abs() < 0.1).all(), z.std(0)
    diag = kernel.diagnostics()
    assert diag["divergences"] == [] and 0.4 < diag["acceptance rate"] < 0.75


def test_arviz_from_pyro_with_two_chains():
    pyro.set_rng_seed(1)
    mcmc = pyro.infer.MCMC(
        Langevin(gaussian_model, step_size=0.2, adjust=True),
        num_samples=20,
        warmup_steps=10,
        num_chains=2,
        disable_progbar=True,
    )
    mcmc.run()
    idata = az.from_pyro(mcmc)
    assert idata.posterior["z"].shape == (2, 20, 2)
    assert "diverging" in idata.sample_stats


def test_potential_fn_and_ula_kernel():
    def potential(params):
        return 0.5 * (params["z"] ** 2).sum()

    kernel = Langevin(potential_fn=potential, step_size=0.05)
    kernel.initial_params = {"z": torch.zeros(3)}
    mcmc = pyro.infer.MCMC(kernel, num_samples=50, warmup_steps=5, disable_progbar=True)
    mcmc.run()
    assert mcmc.get_samples()["z"].shape == (50, 3)
    assert az.from_pyro(mcmc).sample_stats["diverging"].shape == (1, 50)


def test_energy_distribution_as_prior_under_langevin():
    """An unnormalized EnergyDistribution prior needs only -E: MALA recovers its N(b, 1) law."""
    energy = Quadratic(dtype=torch.float32)
    with torch.no_grad():
        energy.b.copy_(torch.tensor([1.5, -0.5]))

    def model():
        pyro.sample("z", EnergyDistribution(energy, (2,)))

    pyro.set_rng_seed(2)
    mcmc = pyro.infer.MCMC(
        Langevin(model, step_size=0.3, adjust=True), 800, warmup_steps=200, disable_progbar=True
    )
    mcmc.run()
    z = mcmc.get_samples()["z"]
    assert torch.allclose(z.mean(0), energy.b.detach(), atol=0.25)


def test_ula_discretization_bias_at_large_step(device):
    """For E = x²/2, ULA at step η has stationary variance 1/(1 − η/2) (4/3 at η = 0.5); MALA 1.

    20000 chains × 100 steps; the sd of the variance estimate is ≈ 0.013, the band 0.05.
    """
    d = EnergyDistribution(lambda x: 0.5 * (x**2).sum(-1), (1,))
    x0 = torch.zeros(20000, 1, dtype=torch.float64, device=device)
    torch.manual_seed(0)
    ula = LangevinSampler(0.5, 100).run(d, x0)
    mala = LangevinSampler(0.5, 100, adjust=True).run(d, x0)
    assert ula.var().item() == pytest.approx(4 / 3, abs=0.05)
    assert mala.var().item() == pytest.approx(1.0, abs=0.05)


def _mixture_energy(weights, means):
    """``E(x, σ) = −log Σₖ wₖ N(x; μₖ, (1 + σ²) I)``: the data convolved with N(0, σ²I)."""

    def energy(x, sigma):
        var = 1.0 + sigma**2  # (N, 1)
        comps = torch.stack(
            [
                -0.5 * ((x - m) ** 2).sum(-1) / var.squeeze(-1) - torch.log(var.squeeze(-1))
                for m in means
            ],
            -1,
        )
        return -torch.logsumexp(comps + torch.log(weights), -1)

    return energy


def test_annealed_langevin_recovers_mixture_weights(device):
    """Song & Ermon's toy: 0.8/0.2 mixture of N(±5·1, I); annealed Langevin within 0.05, plain not.

    2000 chains: the share's sd is ≈ 0.009, so the 0.05 band fails with probability < 1e-7.
    """
    kw = dict(dtype=torch.float64, device=device)
    weights = torch.tensor([0.8, 0.2], **kw)
    means = [torch.full((2,), -5.0, **kw), torch.full((2,), 5.0, **kw)]
    energy = _mixture_energy(weights, means)
    torch.manual_seed(0)
    x0 = torch.rand(2000, 2, **kw) * 16 - 8
    sigmas = torch.logspace(math.log10(20), 0, 10).tolist()
    x = annealed_langevin(energy, x0, sigmas, step_size=0.1, num_steps=100)
    share = (x.sum(-1) < 0).double().mean().item()
    assert share == pytest.approx(0.8, abs=0.05)
    d = EnergyDistribution(energy, (2,), context=torch.zeros(2000, 1, **kw))
    plain = LangevinSampler(0.05, 1000).run(d, x0)
    plain_share = (plain.sum(-1) < 0).double().mean().item()
    assert abs(plain_share - 0.8) > 0.15, plain_share


def test_kernel_argument_errors():
    with pytest.raises(ValueError, match="exactly one of model= or potential_fn="):
        Langevin()
    with pytest.raises(ValueError, match="step_size"):
        Langevin(gaussian_model, step_size=0.0)
    with pytest.raises(ValueError, match="needs adjust=True"):
        Langevin(gaussian_model, adapt_step_size=True)
    with pytest.raises(ValueError, match="sigmas must be positive and decreasing"):
        annealed_langevin(lambda x, s: x.sum(-1), torch.zeros(3, 2), [0.1, 1.0])
    k = Langevin(potential_fn=lambda p: p["z"].sum())
    with pytest.raises(ValueError, match="needs initial_params"):
        pyro.infer.MCMC(k, 2, warmup_steps=0, disable_progbar=True).run()
    assert pgm.infer.Langevin is Langevin


def test_ula_with_a_diverging_step_raises_naming_step_size():
    """η = 1e6 on N(LOC, diag(SCALE²)): ULA's step multiplies z − LOC by 1 − η/σ² ≈ −1e6, so
    the draws overflow within a few steps; the kernel raises instead of returning NaN/inf."""
    pyro.set_rng_seed(0)
    mcmc = pyro.infer.MCMC(
        Langevin(gaussian_model, step_size=1e6), 40, warmup_steps=0, disable_progbar=True
    )
    with pytest.raises(FloatingPointError, match=r"draw \d+: .*step_size=1e\+06.*adjust=True"):
        mcmc.run()


def test_mala_rejects_non_finite_proposals_and_stays_finite():
    """MALA at η = 1e6 without adaptation: every proposal's potential overflows or exceeds the
    energy-error bound, acceptance is 0, each draw is the start (a divergence) and finite."""
    pyro.set_rng_seed(0)
    kernel = Langevin(gaussian_model, step_size=1e6, adjust=True, adapt_step_size=False)
    mcmc = pyro.infer.MCMC(kernel, 40, warmup_steps=0, disable_progbar=True)
    mcmc.run()
    z = mcmc.get_samples()["z"]
    assert torch.isfinite(z).all() and (z == z[0]).all()
    diag = kernel.diagnostics()
    assert diag["acceptance rate"] == 0.0 and diag["divergences"] == list(range(1, 41))


def test_batched_langevin_draws_that_diverge_raise(device):
    """The batched sampler's ULA draws and annealed Langevin raise naming step_size; MALA rejects
    the same proposals and returns finite chains."""
    d = EnergyDistribution(lambda x: 0.5 * (x**2).sum(-1), (2,))
    torch.manual_seed(0)
    with pytest.raises(FloatingPointError, match=r"LangevinSampler draws.*step_size=1e\+06"):
        LangevinSampler(1e6, 20).sample(d, (40,))
    assert torch.isfinite(LangevinSampler(1e6, 20, adjust=True).sample(d, (40,))).all()
    x0 = torch.zeros(40, 2, device=device)
    with pytest.raises(FloatingPointError, match=r"annealed_langevin draws.*step_size=1e\+06"):
        annealed_langevin(lambda x, s: 0.5 * (x**2).sum(-1), x0, [1.0], step_size=1e6)
