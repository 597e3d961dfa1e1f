"""Energy samplers that converge or say so, and training that trains or stops: the adaptive
default sampler's moments (banana, double well), its diagnostics and warning, the one MALA move
shared by the kernel and the samplers, the divergence monitor on an unstable and on the
README's setting, and the layering (distributions/ never imports infer/)."""

import math

import pyro
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels import fit
from pyro_genmodels.distributions import AdaptiveLangevinSampler, EnergyDistribution
from pyro_genmodels.distributions.samplers import energy_grad, langevin_move
from pyro_genmodels.infer import ContrastiveDivergenceLoss, EnergyDivergenceError, Langevin


def banana(x):
    """Unit-scale banana: x₁ ~ N(0, 1), x₂ | x₁ ~ N(0.8 (x₁² − 1), 1); Var = (1, 1 + 2·0.8²)."""
    return 0.5 * x[..., 0] ** 2 + 0.5 * (x[..., 1] - 0.8 * (x[..., 0] ** 2 - 1)) ** 2


def double_well(x):
    """Tilted double well 2(x₁² − 1)² + x₁/2 (wells 2.7:1, barrier 2.5 nats) times N(0, 1)."""
    return 2 * (x[..., 0] ** 2 - 1) ** 2 + 0.5 * x[..., 0] + 0.5 * x[..., 1] ** 2


class Fixed(torch.nn.Module):
    """A parameter-free energy whose buffer carries the device and dtype its chains take."""

    def __init__(self, fn, device):
        super().__init__()
        self.fn = fn
        self.register_buffer("anchor", torch.zeros((), device=device))  # float32: speed

    def forward(self, x):
        return self.fn(x)


def _well_moments():
    g = torch.linspace(-4, 4, 40001, dtype=torch.float64)
    w = torch.softmax(-(2 * (g**2 - 1) ** 2 + 0.5 * g), 0)
    return float((w * g).sum()), float((w * g * g).sum())


def test_adaptive_default_sampler_matches_banana_and_double_well(device):
    """EnergyDistribution.sample() with its default sampler (adaptive MALA, 1000 + 1000 moves),
    seed 0, 6000 chains: the banana's variances (1, 2.28), the double well's E[x₁²] and Var x₂
    within 5%, E[x₁] within 0.05 (the standard errors are ≤ 1.7%, so 5% is > 3 sd and the
    test fails by chance < 1 in 300 seeds); no convergence warning."""
    torch.manual_seed(0)
    kw = {"dtype": torch.float32, "device": device}
    d = EnergyDistribution(Fixed(banana, device), (2,))
    x = d.sample((6000,))
    assert torch.allclose(x.var(0), torch.tensor([1.0, 2.28], **kw), rtol=0.05)
    diag = d.sampler.diagnostics
    assert 0.5 < diag["accept_rate"] < 0.65 and diag["rhat"] < 1.1
    assert diag["ess"] > 6000  # more than one effective draw per chain over the kept moves
    d = EnergyDistribution(Fixed(double_well, device), (2,))
    x = d.sample((6000,))
    mean, second = _well_moments()
    assert abs(float(x[:, 0].mean()) - mean) < 0.05
    assert float((x[:, 0] ** 2).mean()) == pytest.approx(second, rel=0.05)
    assert float(x[:, 1].var()) == pytest.approx(1.0, rel=0.05)


def test_sampler_says_when_it_did_not_converge():
    """Five kept moves of the untamed MALA on the banana: chains stuck in its tails, split
    R-hat far above 1.1 — a warning naming the knobs, and the figures in ``diagnostics``."""
    torch.manual_seed(0)
    sampler = AdaptiveLangevinSampler(num_steps=5, warmup=5, tame=None, init_scale=3.0)
    with pytest.warns(UserWarning, match="may not have converged.*raise num_steps or warmup"):
        EnergyDistribution(banana, (2,), sampler=sampler).sample((500,))
    assert set(sampler.diagnostics) >= {"accept_rate", "step_size", "ess", "rhat"}


def test_one_mala_move_for_the_kernel_and_the_samplers():
    """The MCMC kernel's MALA transition is langevin_move on the packed sites: same seed, same
    draw, same acceptance probability."""

    def potential(params):
        return banana(torch.cat([params["a"].reshape(1), params["b"].reshape(1)]))

    kernel = Langevin(potential_fn=potential, step_size=0.3, adjust=True)
    z = {"a": torch.tensor(0.4, dtype=torch.float64), "b": torch.tensor(-0.2, dtype=torch.float64)}
    kernel.initial_params = z
    kernel.setup(warmup_steps=0)
    torch.manual_seed(7)
    new, accept_prob, _ = kernel._one_step(z, 0.3)
    flat = torch.stack([z["a"], z["b"]])
    torch.manual_seed(7)
    e, g = energy_grad(banana, flat)
    move = langevin_move(banana, flat, e, g, 0.3)
    assert torch.equal(torch.stack([new["a"], new["b"]]), move.x)
    assert accept_prob == pytest.approx(float(move.accept_prob), rel=1e-12)


def _toy_model(energy, **dist_kwargs):
    def model(x):
        pyro.module("energy", energy)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", EnergyDistribution(energy, (2,), **dist_kwargs), obs=x)

    return model


def _readme_energy(x):
    """The README's energy: 64 windowed Fourier features, confinement twice the data's scale."""
    return pgm.nn.EnergyMLP(2, [128, 128], x.mean(0), x.std(0), confine=2.0,
                            fourier_features=64, fourier_window=1.5)  # fmt: skip


def test_divergence_stops_an_unstable_run_and_not_the_readme_run():
    """8 Gaussians, the README's energy. CD-1, no energy penalty and ULA at η = 0.01 runs
    away while every value stays finite (the energy gap swings by tens of nats): fit stops with
    an error naming the quantity and the knobs. The README's loss (the defaults: k = 20,
    α = 0.1) trains the same steps without it."""
    x = pgm.data.toy2d("8gaussians", 2560, seed=0)
    torch.manual_seed(0)
    unstable = ContrastiveDivergenceLoss(
        k=1, persistent=True, energy_reg=0.0, sampler=pgm.infer.LangevinSampler(0.01)
    )
    with pytest.raises(EnergyDivergenceError, match=r"gap.*energy_reg.*k .*step size"):
        fit(_toy_model(_readme_energy(x)), lambda x: None, x, loss=unstable,
            epochs=30, batch_size=256, progress=False)  # fmt: skip
    pyro.clear_param_store()
    torch.manual_seed(0)
    readme = ContrastiveDivergenceLoss(persistent=True)
    history = fit(_toy_model(_readme_energy(x)), lambda x: None, x, loss=readme,
                  epochs=8, batch_size=256, progress=False)  # fmt: skip
    assert len(history) == 8 and math.isfinite(history["loss"].iloc[-1])


def test_distributions_never_import_infer():
    """The layering: no module of pyro_genmodels.distributions imports pyro_genmodels.infer or
    the training runtime, at its top or inside a function (the import statements, read)."""
    import ast
    import pathlib

    import pyro_genmodels.distributions as package

    found = []
    for path in pathlib.Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            bad = ("pyro_genmodels.infer", "pyro_genmodels.train", "pyro_genmodels.training")
            found += [f"{path.name}: {n}" for n in names if n.startswith(bad)]
    assert found == []
