"""Energy-based models on a base density q: E ≡ 0 gives back q exactly (log_prob, AIS log Z,
samples), NCE with q as its noise recovers a known tilt in closed form, CD chains start from q,
the samplers move in a flow's latent space."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.testing.gof import auto_goodness_of_fit

import pyro_genmodels as pgm
from pyro_genmodels.distributions import AdaptiveLangevinSampler, EnergyDistribution
from pyro_genmodels.distributions.adaptive import ChainSpace
from pyro_genmodels.infer import ContrastiveDivergenceLoss, NCELoss, ais

GOF_FAILURE_RATE = 1e-3  # each gof test fails by chance about once in 1000 runs

MU = torch.tensor([0.5, -1.0], dtype=torch.float64)
SCALE = torch.tensor([1.0, 0.5], dtype=torch.float64)


def _gaussian(device):
    return dist.Normal(MU.to(device), SCALE.to(device)).to_event(1)


def _flow(device):
    torch.manual_seed(3)
    flow = pgm.models.FlowDensity(2, "realnvp", num_layers=2, hidden_dims=[8])
    return flow.to(device=device, dtype=torch.float64).distribution()


def zero(x):
    return (x * 0).sum(-1)


@pytest.mark.parametrize("base", ["gaussian", "flow"])
def test_zero_energy_gives_back_the_base(base, device):
    """log_prob equals log q to float64 precision; AIS from q has every weight 1 (log Ẑ = 0,
    stderr 0); the default sampler's draws (in the flow's latent space for a flow) pass a
    goodness-of-fit test against q."""
    q = _gaussian(device) if base == "gaussian" else _flow(device)
    d = EnergyDistribution(zero, base=q, log_normalizer=torch.zeros((), dtype=torch.float64))
    x = q.sample((64,)).detach()
    assert torch.allclose(d.log_prob(x), q.log_prob(x), atol=1e-12, rtol=0)
    assert torch.allclose(d.unnormalized_log_prob(x), q.log_prob(x), atol=1e-12, rtol=0)
    assert ChainSpace(d).latent == (base == "flow")
    torch.manual_seed(0)
    log_z, se = ais(EnergyDistribution(zero, base=q), num_chains=50, num_betas=20)
    assert float(log_z) == 0.0 and float(se) == 0.0
    sampler = AdaptiveLangevinSampler(num_steps=100)
    d = EnergyDistribution(zero, base=q, sampler=sampler)
    s = d.sample((4000,)).detach()
    with torch.no_grad():
        if base == "flow":  # the flow's own density is too rough for the nearest-neighbour
            base0, transform = d.latent_form()  # test: check its latent draws against q₀
            s = transform.inv(s)
            q = base0
        probs = q.log_prob(s).exp()
    assert auto_goodness_of_fit(s.cpu(), probs.cpu(), dim=2) > GOF_FAILURE_RATE
    assert 0.4 < sampler.diagnostics["accept_rate"] < 0.75


def test_ais_from_the_base_matches_a_closed_form_tilt(device):
    """q = N(μ, diag s²), E(x) = aᵀx: log Z = −aᵀμ + ½ Σ aᵢ² sᵢ² (the Gaussian's cumulant).
    AIS from q is within 3 standard errors + 0.01 (false alarm < 1%)."""
    a = torch.tensor([0.7, -0.4], dtype=torch.float64, device=device)
    q = _gaussian(device)
    exact = float(-(a * q.mean).sum() + 0.5 * (a**2 * q.variance).sum())
    torch.manual_seed(0)
    log_z, se = ais(EnergyDistribution(lambda x: x @ a, base=q), num_chains=200, num_betas=200)
    assert abs(float(log_z) - exact) < 3 * float(se) + 0.01


def _tilt_model(linear, log_z, q):
    def model(x):
        pyro.module("linear", linear)
        lz = pyro.param("log_z", log_z)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", EnergyDistribution(linear, (2,), base=q, log_normalizer=lz), obs=x)

    return model


def test_nce_with_the_base_as_noise_recovers_a_known_tilt(device):
    """Data from q(x) e^{−aᵀx}/Z = N(μ − Σa, Σ); NCE with noise=None (the base q) fits E(x) = bᵀx
    and log Z. The closed form on the sample: the maximum-likelihood tilt b* = Σ⁻¹(μ − x̄) with
    log Z* = −b*ᵀμ + ½ b*ᵀΣb* (population: b = a). 10 000 points, ν = 4, 150 full-batch Adam
    steps; the estimate's spread from fresh noise draws is ~0.01 (tolerance 0.03)."""
    a = torch.tensor([0.7, -0.4], dtype=torch.float64, device=device)
    q = _gaussian(device)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(10000, 2, generator=g, dtype=torch.float64).to(device)
    x = q.mean - q.variance * a + q.stddev * noise
    linear = torch.nn.Linear(2, 1, bias=False).to(device=device, dtype=torch.float64)
    torch.nn.init.zeros_(linear.weight)
    model = _tilt_model(linear, torch.zeros((), dtype=torch.float64, device=device), q)
    loss = NCELoss(noise_ratio=4)
    svi = pyro.infer.SVI(model, lambda x: None, pyro.optim.Adam({"lr": 0.05}), loss)
    for _ in range(150):
        svi.step(x)
    b_star = (q.mean - x.mean(0)) / q.variance
    log_z_star = float(-(b_star * q.mean).sum() + 0.5 * (b_star**2 * q.variance).sum())
    b = linear.weight.detach().squeeze(0)
    assert torch.allclose(b, b_star, atol=0.03) and torch.allclose(b, a, atol=0.15)
    assert abs(float(pyro.param("log_z")) - log_z_star) < 0.03


def test_nce_base_noise_is_the_explicit_noise_with_log_q_cancelled(device):
    """noise=None and noise=q give the same loss from the same draws (log q cancels exactly)."""
    q = _gaussian(device)
    linear = torch.nn.Linear(2, 1, bias=False).to(device=device, dtype=torch.float64)
    model = _tilt_model(linear, torch.full((), 0.3, dtype=torch.float64, device=device), q)
    x = q.sample((32,))
    values = []
    for noise in (None, q):
        torch.manual_seed(5)
        values.append(NCELoss(noise, noise_ratio=3).loss(model, lambda x: None, x))
    assert values[0] == pytest.approx(values[1], rel=1e-12)
    with pytest.raises(ValueError, match="base as its noise.*site 'x'"):
        NCELoss().loss(_tilt_model(linear, torch.zeros(()), None), lambda x: None, x)


def test_pcd_chains_start_from_the_base(device):
    """With base=q the persistent buffer's fresh chains are draws of q (one MALA move at E ≡ 0
    leaves q invariant): mean and sd of 4000 chains within 5 standard errors."""
    q = _gaussian(device)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", EnergyDistribution(zero, base=q), obs=x)

    loss = ContrastiveDivergenceLoss(k=1, persistent=True, buffer_size=4000)
    torch.manual_seed(0)
    loss.loss(model, lambda x: None, torch.zeros(4000, 2, dtype=torch.float64, device=device))
    chains = loss.state_dict()["buffer.x"]
    assert torch.allclose(chains.mean(0), q.mean, atol=5 * float(SCALE.max()) / math.sqrt(4000))
    assert torch.allclose(chains.std(0), q.stddev, rtol=0.05)
    assert "step_size.x" in loss.state_dict()  # the site's own adaptive sampler is saved


def test_base_is_checked():
    q = dist.Normal(torch.zeros(3), 1.0).to_event(1)
    with pytest.raises(TypeError, match="base must be a torch/Pyro distribution"):
        EnergyDistribution(zero, (3,), base=lambda x: x)
    with pytest.raises(ValueError, match=r"base must have batch_shape \(\) and event_shape \(2,\)"):
        EnergyDistribution(zero, (2,), base=q)
    with pytest.raises(ValueError, match="needs event_shape"):
        EnergyDistribution(zero)
    assert EnergyDistribution(zero, base=q).event_shape == (3,)
