"""EnergyDistribution, the sampler interface and contrastive divergence on real and binary data."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from energy_helpers import Quadratic
from pyro.distributions import constraints

import pyro_genmodels as pgm
from pyro_genmodels.distributions import EnergyDistribution
from pyro_genmodels.infer.samplers import EnergySampler, LangevinSampler


class BinaryField(torch.nn.Module):
    """``E(x) = −aᵀx − ½ xᵀWx`` on ``{0,1}^D`` (W symmetric, zero diagonal)."""

    def __init__(self, dim=3, dtype=torch.float64, device="cpu"):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.a = torch.nn.Parameter(torch.randn(dim, generator=g, dtype=dtype).to(device))
        w = torch.randn(dim, dim, generator=g, dtype=dtype)
        self.w = torch.nn.Parameter((w + w.T).fill_diagonal_(0).to(device) / 2)

    def forward(self, x):
        w = (self.w + self.w.T) / 2
        w = w - torch.diag(torch.diagonal(w))
        return -(x @ self.a) - 0.5 * ((x @ w) * x).sum(-1)


class Gibbs(EnergySampler):
    """Single-site Gibbs sweeps for a binary energy (exact conditionals from two energies)."""

    num_steps = 20

    def run(self, dist, x, num_steps=None):
        x = x.detach().clone()
        with torch.no_grad():
            for _ in range(self.num_steps if num_steps is None else num_steps):
                for i in range(x.shape[-1]):
                    x1, x0 = x.clone(), x.clone()
                    x1[..., i], x0[..., i] = 1.0, 0.0
                    p1 = torch.sigmoid(dist.energy_of(x0) - dist.energy_of(x1))
                    x[..., i] = torch.bernoulli(p1)
        return x


def test_shapes_normalization_and_flags(device):
    energy = Quadratic(device=device)
    d = EnergyDistribution(energy, (2,))
    x = torch.randn(7, 3, 2, dtype=torch.float64, device=device)
    assert d.log_prob(x).shape == (7, 3) and not d.normalized
    log_z = torch.tensor(math.log(2 * math.pi), dtype=torch.float64, device=device)
    n = EnergyDistribution(energy, (2,), log_normalizer=log_z)
    ref = dist.MultivariateNormal(x.new_zeros(2), torch.eye(2, dtype=x.dtype, device=device))
    assert n.normalized
    assert torch.allclose(n.log_prob(x), ref.log_prob(x))
    e = d.expand((4,))
    assert e.batch_shape == (4,) and e.log_prob(
        torch.zeros(4, 2, dtype=x.dtype, device=device)
    ).shape == (4,)


def test_binary_normalization_by_enumeration(device):
    energy = BinaryField(device=device)
    states = torch.tensor(
        list(itertools.product([0.0, 1.0], repeat=3)), dtype=torch.float64, device=device
    )
    d = EnergyDistribution(energy, (3,), support=constraints.boolean)
    log_z = torch.logsumexp(d.log_prob(states), 0)
    n = EnergyDistribution(energy, (3,), log_normalizer=log_z, support=constraints.boolean)
    assert torch.allclose(
        n.log_prob(states).exp().sum(), torch.ones((), dtype=torch.float64, device=device)
    )
    assert d.support.is_discrete
    with pytest.raises(ValueError, match="no default sampler"):
        d.sample((2,))


def test_context_broadcasts_and_sets_batch_shape(device):
    class Cond(torch.nn.Module):
        def forward(self, x, c):
            return ((x - c) ** 2).sum(-1) / 2

    ctx = torch.randn(4, 2, dtype=torch.float64, device=device)
    d = EnergyDistribution(Cond(), (2,), context=ctx)
    assert d.batch_shape == (4,)
    x = torch.randn(5, 4, 2, dtype=torch.float64, device=device)
    assert torch.allclose(d.log_prob(x), -((x - ctx) ** 2).sum(-1) / 2)


def test_langevin_sampler_default_and_detached(device):
    d = EnergyDistribution(Quadratic(device=device), (2,))
    torch.manual_seed(0)
    x = d.sample((2000,))
    assert x.shape == (2000, 2) and not x.requires_grad and x.device.type == device.type
    assert (x.mean(0).abs() < 0.15).all() and ((x.var(0) - 1).abs() < 0.2).all()


def test_cd_trains_a_binary_energy_with_its_own_sampler(device):
    """CD with sampler=None on a discrete support uses the distribution's sampler, no ∇ₓ."""
    energy = BinaryField(device=device)

    def model(x):
        pyro.module("energy", energy)
        with pyro.plate("data", x.shape[0]):
            pyro.sample(
                "x",
                EnergyDistribution(energy, (3,), sampler=Gibbs(), support=constraints.boolean),
                obs=x,
            )

    x = torch.bernoulli(torch.full((64, 3), 0.5, dtype=torch.float64, device=device))
    for persistent in (False, True):
        loss = pgm.infer.ContrastiveDivergenceLoss(k=2, persistent=persistent, buffer_size=32)
        for _ in range(3):
            value = loss.loss_and_grads(model, lambda x: None, x)
        assert math.isfinite(value)
        assert energy.a.grad is not None and torch.isfinite(energy.a.grad).all()
        energy.zero_grad()
    assert loss.state_dict()["buffer.x"].shape == (32, 3)


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match="step_size"):
        LangevinSampler(step_size=-1.0)
    with pytest.raises(TypeError, match="step_size"):
        LangevinSampler(step_size="0.1")
    with pytest.raises(ValueError, match="noise_scale = sqrt"):
        LangevinSampler(0.1, noise_scale=0.01, adjust=True)
    with pytest.raises(ValueError, match="clamp"):
        LangevinSampler(0.1, clamp=(1.0, -1.0))


def test_mala_sampler_matches_double_well_density(device):
    """MALA draws of exp(−(x² − 1)²) pass a goodness-of-fit test against the quadrature density.

    4000 independent chains × 300 steps; threshold 1e-3, so a false alarm ~1 in 1000 runs.
    """
    from pyro.distributions.testing.gof import density_goodness_of_fit

    d = EnergyDistribution(lambda x: ((x**2 - 1) ** 2).sum(-1), (1,))
    grid = torch.linspace(-4, 4, 20001, dtype=torch.float64)
    log_z = torch.logsumexp(-((grid**2 - 1) ** 2), 0) + math.log(8 / 20000)
    torch.manual_seed(0)
    x0 = torch.randn(4000, 1, dtype=torch.float64, device=device)
    x = LangevinSampler(0.1, 300, adjust=True).run(d, x0)
    probs = (-d.energy_of(x) - log_z.to(device)).exp()
    assert density_goodness_of_fit(x.squeeze(-1).cpu(), probs.cpu()) > 1e-3


def test_expand_and_validation_contract(device):
    energy = BinaryField(device=device)
    d = EnergyDistribution(energy, (3,), support=constraints.boolean, validate_args=True)
    e = d.expand((4, 2))
    assert type(e) is EnergyDistribution and e.batch_shape == (4, 2) and e._validate_args
    with pytest.raises(ValueError, match="cannot expand"):
        EnergyDistribution(Quadratic(device=device), (2,), context=torch.zeros(3, 1)).expand((4,))
    with pytest.raises(ValueError):
        d.log_prob(torch.full((3,), 0.5, dtype=torch.float64, device=device))

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", d, obs=x)

    tr = pyro.poutine.trace(model).get_trace(
        torch.full((5, 3), 0.5, dtype=torch.float64, device=device)
    )
    with pytest.raises(ValueError, match="within the support"):
        tr.log_prob_sum()
    with pytest.raises(TypeError, match="energy must be callable"):
        EnergyDistribution("E", (2,))
    with pytest.raises(ValueError, match=r"event_shape\[0\] must be a positive int"):
        EnergyDistribution(energy, (0,))


@pytest.mark.parametrize("log_z", [math.nan, math.inf, -math.inf])
def test_non_finite_log_normalizer_and_non_tensor_values_are_refused(log_z, device):
    """log Z = NaN or ±inf leaves no density: a ValueError when arguments are validated (the
    default; per-call values follow Pyro's switch). A number given to log_prob is the wrong kind:
    a TypeError naming the expected shape (the energy network reads tensors)."""
    energy = Quadratic(device=device)
    log_z = torch.tensor(log_z, dtype=torch.float64, device=device)
    with pytest.raises(ValueError, match="log_normalizer must be finite"):
        EnergyDistribution(energy, (2,), log_normalizer=log_z)
    with pyro.validation_enabled(False):
        EnergyDistribution(energy, (2,), log_normalizer=log_z)
    d = EnergyDistribution(energy, (2,))
    with pytest.raises(TypeError, match=r"expects a torch.Tensor value of shape \(\*batch, 2\)"):
        d.log_prob(1.0)


def test_energy_prior_under_nuts():
    """A latent site with an unnormalized EnergyDistribution prior runs under NUTS (N(b, I) law)."""
    energy = Quadratic(dtype=torch.float32)
    with torch.no_grad():
        energy.b.copy_(torch.tensor([1.5, -0.5]))

    def model():
        pyro.sample("z", EnergyDistribution(energy, (2,)))

    pyro.set_rng_seed(0)
    mcmc = pyro.infer.MCMC(
        pyro.infer.NUTS(model, max_tree_depth=3), 250, warmup_steps=50, disable_progbar=True
    )
    mcmc.run()
    z = mcmc.get_samples()["z"]
    assert (
        torch.allclose(z.mean(0), energy.b.detach(), atol=0.3) and (abs(z.std(0) - 1) < 0.25).all()
    )
