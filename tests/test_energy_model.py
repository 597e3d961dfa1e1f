"""``EnergyModel``: the energy-based program written once, and score matching's direct step.

The direct step (:mod:`pyro_genmodels.infer.energy_direct`) takes the step of
``ScoreMatchingLoss.loss_and_grads(ebm.model, ebm.guide, x)`` without running the
programs. A lambda around ``ebm.model`` hides the program, so ``fit`` takes the full step:
both runs must end with bit-identical parameters and histories. The one statistical test
(the closed-form optimum) uses a fixed seed; its tolerance is over five times the
estimate's spread over seeds.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from energy_helpers import Quadratic, energy_model, gaussian_data
from optim_helpers import PoisonRate, optimizer_tensors
from torch.distributions import constraints

import pyro_genmodels as pgm
from pyro_genmodels.distributions import EnergyDistribution
from pyro_genmodels.infer import ContrastiveDivergenceLoss, NCELoss, ScoreMatchingLoss
from pyro_genmodels.infer.energy_direct import DirectEnergyStep
from pyro_genmodels.models import EnergyModel

LOSSES = {  # each made for a device
    "denoising, one-sided": lambda device: ScoreMatchingLoss("denoising", antithetic=False),
    "denoising, antithetic (the default)": lambda device: ScoreMatchingLoss("denoising"),
    "denoising, three noise levels": lambda device: ScoreMatchingLoss(
        "denoising", noise_scale=[0.5, 0.2, 0.1]
    ),
    "sliced, two projections": lambda device: ScoreMatchingLoss("sliced", num_projections=2),
    "exact, raw data": lambda device: ScoreMatchingLoss("exact", noise_scale=0),
    "nce, a Gaussian noise": lambda device: NCELoss(
        dist.Normal(torch.zeros(2, device=device), 1.5).to_event(1), noise_ratio=2
    ),
    "nce, the base as its noise": lambda device: NCELoss(noise_ratio=2),
}


class Conditional(torch.nn.Module):
    """``E(x, σ)``: an MLP of ``x`` and ``log σ`` (noise-conditional)."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1)
        )

    def forward(self, x, sigma=None):
        if sigma is None:
            sigma = x.new_ones(x.shape[:-1] + (1,))
        return self.net(torch.cat([x, sigma.log()], -1))


@pytest.fixture
def count_direct(count_calls):
    """How many steps took the direct path."""
    return count_calls(DirectEnergyStep)


def toy(n, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 2, generator=g) * torch.tensor([1.0, 0.5])).to(device)


def train(device, make_loss, hidden=False, epochs=3, batch_size=16, base=False, **kwargs):
    """A fresh conditional MLP energy (on a Gaussian base with ``base=True``) trained on 50
    rows in batches of 16 (the last has 2)."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    q = None
    if base:
        q = dist.Normal(torch.zeros(2, device=device), torch.tensor([1.0, 0.5], device=device))
        q = q.to_event(1)
    ebm = EnergyModel(Conditional().to(device), (2,), base=q)
    model = (lambda x: ebm.model(x)) if hidden else ebm.model
    loss = make_loss(device)
    history = pgm.fit(model, ebm.guide, toy(50, device), loss=loss, epochs=epochs,
                      batch_size=batch_size, progress=False, **kwargs)  # fmt: skip
    return ebm, history


def test_the_program_is_the_hand_written_one(device):
    """The same site, distribution, plate and log-density as the README's model."""
    energy = Quadratic(device=device)
    ebm = EnergyModel(energy, (2,))
    x, _, _ = gaussian_data(5, device)
    ours = pyro.poutine.trace(ebm.model).get_trace(x)
    theirs = pyro.poutine.trace(energy_model(energy)).get_trace(x)
    site, other = ours.nodes["x"], theirs.nodes["x"]
    assert isinstance(site["fn"], EnergyDistribution) and site["is_observed"]
    assert site["fn"].batch_shape == other["fn"].batch_shape == (5,)
    assert [f.name for f in site["cond_indep_stack"]] == ["data"]
    assert torch.equal(site["fn"].log_prob(x), other["fn"].log_prob(x))
    assert torch.equal(site["fn"].log_prob(x), -energy(x))  # unnormalized: log q = 0, log Z = 0
    params = {n for n, s in ours.nodes.items() if s["type"] == "param"}
    assert params == {"energy$$$energy.chol", "energy$$$energy.b"}
    assert ebm.distribution().batch_shape == () and not ebm.distribution().normalized


@pytest.mark.parametrize("base", [False, True], ids=["no base", "a Gaussian base"])
@pytest.mark.parametrize("case", list(LOSSES))
def test_direct_steps_give_the_full_steps_numbers(device, case, base, count_direct):
    if case == "nce, the base as its noise" and not base:
        pytest.skip("NCELoss(noise=None) needs a base")
    ebm, history = train(device, LOSSES[case], base=base)
    assert count_direct["n"] == 3 * 4  # every step, the first one reading params through Pyro
    other, other_history = train(device, LOSSES[case], hidden=True, base=base)
    assert count_direct["n"] == 3 * 4  # the hidden program took no direct step
    for p, q in zip(ebm.parameters(), other.parameters(), strict=True):
        assert torch.equal(p, q)
    assert history["loss"].tolist() == other_history["loss"].tolist()


def test_a_resumed_run_with_direct_steps_continues_exactly(tmp_path, count_direct):
    make = LOSSES["denoising, antithetic (the default)"]
    whole, _ = train("cpu", make, epochs=4)
    train("cpu", make, epochs=2, checkpoint_dir=tmp_path)
    resumed, history = train("cpu", make, epochs=4, checkpoint_dir=tmp_path, resume=True)
    assert len(history) == 4 and count_direct["n"] > 0
    for p, q in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_failed_direct_step_changes_nothing(count_direct):
    """An infinite rate set before epoch 2 makes its first (direct) step's update non-finite:
    fit raises, and the parameters and Adam's moments are as epoch 1 left them."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    ebm = EnergyModel(Conditional(), (2,))
    optim = pgm.optim.Adam({"lr": 1e-2})
    saved = {}

    def save():
        saved["params"] = [p.detach().clone() for p in ebm.parameters()]
        saved["moments"] = [t.clone() for t in optimizer_tensors(optim)]
        saved["direct"] = count_direct["n"]

    with pytest.raises(FloatingPointError, match="epoch 2 of 3"):
        pgm.fit(ebm.model, ebm.guide, toy(50, "cpu"), loss=ScoreMatchingLoss("denoising"),
                optim=optim, epochs=3, batch_size=16, progress=False,
                callbacks=[PoisonRate(optim, 1, save)])  # fmt: skip
    assert count_direct["n"] == saved["direct"] + 1  # the failed step was a direct one
    for p, q in zip(ebm.parameters(), saved["params"], strict=True):
        assert torch.equal(p, q)
    moments = optimizer_tensors(optim)
    for m, q in zip(moments, saved["moments"], strict=True):
        assert torch.equal(m, q)


def test_a_scale_around_fit_takes_the_full_step(count_direct):
    """A Pyro handler around the run changes the program: the full step honours it."""
    make = LOSSES["denoising, one-sided"]
    with pyro.poutine.scale(scale=0.5):
        _, scaled = train("cpu", make, epochs=1, batch_size=50)
    _, plain = train("cpu", make, epochs=1, batch_size=50)
    assert count_direct["n"] == 1  # the unscaled run's only step
    assert scaled["loss"][0] == pytest.approx(0.5 * plain["loss"][0], rel=1e-6)


def test_denoising_through_the_direct_step_recovers_the_smoothed_precision(count_direct):
    """The DSM optimum at σ is ``(Σ + σ²I)⁻¹`` (not ``Σ⁻¹``, not its negative): ``fit``'s
    direct steps reach it. Tolerance 0.05 (the estimate's spread over seeds is < 0.01)."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    sigma = 0.7
    x, _, cov = gaussian_data(4000, "cpu")
    energy = Quadratic()
    ebm = EnergyModel(energy, (2,))
    pgm.fit(ebm.model, ebm.guide, x, loss=ScoreMatchingLoss("denoising", noise_scale=sigma),
            optim=pgm.optim.Adam({"lr": 0.02}), epochs=30, batch_size=500,
            progress=False)  # fmt: skip
    assert count_direct["n"] == 30 * 8
    eye = torch.eye(2, dtype=x.dtype)
    target = torch.linalg.inv(torch.cov(x.T, correction=0) + sigma**2 * eye)
    assert torch.allclose(energy.precision, target, atol=0.05)
    assert torch.allclose(energy.b, target @ x.mean(0), atol=0.05)
    assert (energy.precision - torch.linalg.inv(cov)).abs().max() > 0.15


def test_svi_takes_the_steps_fit_takes(count_direct):
    """``pyro.infer.SVI`` runs the program: two steps (batches ``x[:8]``, ``x[8:]``) from the
    same state and random draws give ``fit``'s epoch, whose second step is a direct one."""
    x = toy(16, "cpu")
    results = []
    for use_fit in (True, False):
        pyro.clear_param_store()
        torch.manual_seed(0)
        ebm = EnergyModel(Conditional(), (2,))
        loss = ScoreMatchingLoss("denoising")
        optim = pyro.optim.Adam({"lr": 0.01})
        if use_fit:  # fit seeds every generator with ``seed`` at its start
            history = pgm.fit(ebm.model, ebm.guide, x, loss=loss, optim=optim, epochs=1,
                              batch_size=8, shuffle=False, seed=7, progress=False)  # fmt: skip
            total = history["loss"][0] * len(x)
        else:
            pyro.set_rng_seed(7)
            svi = pyro.infer.SVI(ebm.model, ebm.guide, optim, loss)
            total = svi.step(x[:8]) + svi.step(x[8:])
        results.append((total, [p.detach().clone() for p in ebm.parameters()]))
    assert count_direct["n"] == 2  # fit's two steps: a full first one, then a direct one
    (a, pa), (b, pb) = results
    assert a == pytest.approx(b, rel=1e-6)
    for p, q in zip(pa, pb, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


class _OtherModel(EnergyModel):
    def model(self, x):  # a program the direct step does not know
        return super().model(x)


class _OtherLoss(ScoreMatchingLoss):
    def _differentiable_loss(self, model, guide, *args, **kwargs):
        return 2 * super()._differentiable_loss(model, guide, *args, **kwargs)


def _offer(loss=None, ebm=None, data=None):
    ebm = ebm or EnergyModel(Conditional(), (2,))
    loss = loss or ScoreMatchingLoss("denoising")
    data = toy(10, "cpu") if data is None else data
    return loss.direct_step(ebm.model, ebm.guide, (data,))


def test_the_direct_step_is_offered_only_where_it_is_the_same_step():
    assert isinstance(_offer(), DirectEnergyStep)
    assert isinstance(_offer(ScoreMatchingLoss("sliced")), DirectEnergyStep)
    noise = dist.Normal(torch.zeros(2), 1.0).to_event(1)
    assert isinstance(_offer(NCELoss(noise)), DirectEnergyStep)
    binary = EnergyModel(Conditional(), (2,), support=constraints.boolean)
    other = EnergyModel(Conditional(), (2,))
    refused = {
        "another model": _offer(ebm=_OtherModel(Conditional(), (2,))),
        "a loss whose step is its own": _offer(_OtherLoss("denoising")),
        "a discrete support": _offer(ebm=binary, data=torch.ones(10, 2)),
        "float64 data for float32 parameters": _offer(data=toy(10, "cpu").double()),
        "data of another event shape": _offer(data=torch.ones(10, 3)),
        "data with two batch dimensions": _offer(data=torch.ones(10, 4, 2)),
        "two data tensors": ScoreMatchingLoss().direct_step(
            other.model, other.guide, (torch.ones(2, 2),) * 2
        ),
        "another model's guide": ScoreMatchingLoss().direct_step(
            EnergyModel(Conditional(), (2,)).model, other.guide, (torch.ones(2, 2),)
        ),
    }
    assert all(offer is None for offer in refused.values()), refused


def test_other_losses_train_the_same_program():
    """NCE learns the registered ``log Z`` (an ``nn.Parameter``) with the energy; PCD trains
    the program through the full step. ``log Z`` of ``½((x − m)/s)²`` is ``log(√(2π) s)``:
    within 0.05 nats (NCE's asymptotic sd at N = 4000, ν = 4 is ≈ 0.01)."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = 1.0 + 0.7 * torch.randn(4000, 1, generator=g, dtype=torch.float64)

    class Gauss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
            self.log_s = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

        def forward(self, x):
            return 0.5 * (((x - self.m) / self.log_s.exp()) ** 2).sum(-1)

    log_z = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
    ebm = EnergyModel(Gauss(), (1,), log_normalizer=log_z)
    noise = dist.Normal(torch.zeros(1, dtype=torch.float64), 2.0).to_event(1)
    pgm.fit(ebm.model, ebm.guide, x, loss=NCELoss(noise, noise_ratio=4),
            optim=pgm.optim.Adam({"lr": 0.05}), epochs=40, batch_size=1000,
            progress=False)  # fmt: skip
    assert "energy$$$log_normalizer" in pyro.get_param_store()
    assert ebm.distribution().normalized
    expected = 0.5 * math.log(2 * math.pi) + math.log(0.7)
    assert log_z.item() == pytest.approx(expected, abs=0.05)
    pcd = EnergyModel(Conditional(), (2,))
    history = pgm.fit(pcd.model, pcd.guide, toy(64, "cpu"),
                      loss=ContrastiveDivergenceLoss(persistent=True, k=2), epochs=2,
                      batch_size=32, progress=False)  # fmt: skip
    assert len(history) == 2 and all(math.isfinite(v) for v in history["loss"])


def test_bad_input_is_named():
    with pytest.raises(TypeError, match="energy must be an nn.Module"):
        EnergyModel(lambda x: x.sum(-1), (2,))
    with pytest.raises(TypeError, match="name must be"):
        EnergyModel(Conditional(), (2,), name="")
    with pytest.raises(ValueError, match="event_shape"):
        EnergyModel(Conditional(), (0,))
    with pytest.raises(TypeError, match="base must be"):
        EnergyModel(Conditional(), (2,), base="gaussian")
    ebm = EnergyModel(Conditional(), (2,))
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 2\), got \(4, 3\)"):
        ebm.model(torch.ones(4, 3))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\), got \(3, 4, 2\)"):
        ebm.model(torch.ones(3, 4, 2))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        ebm.model([[0.0, 1.0]])
    with pytest.raises(TypeError, match="x must be a floating-point tensor .* got torch.int64"):
        ebm.model(torch.ones(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="x must have the energy's dtype .* got torch.float64"):
        ebm.model(torch.ones(4, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating-point"):  # through fit, named as well
        pgm.fit(ebm.model, ebm.guide, torch.ones(8, 2, dtype=torch.long),
                loss=ScoreMatchingLoss("denoising"), epochs=1, progress=False)  # fmt: skip
    with pytest.raises(TypeError, match="data must be a tuple"):
        ScoreMatchingLoss().direct_step(ebm.model, ebm.guide, torch.ones(2, 2))
