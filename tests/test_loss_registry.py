"""Conformance tests run on every loss in ``pgm.infer.LOSSES``.

To register a new loss, append one line to ``REGISTRY``:
``(loss_factory, model, guide, make_args)`` where ``make_args(device)`` returns the
arguments of ``model``/``guide`` (tensors and fresh networks on ``device``, float64).
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import pyro_genmodels as pgm
from pyro_genmodels.infer import IWAELoss


def vae_args(device):
    """Six binary 5-pixel images, a 2-d latent, linear encoder/decoder."""
    torch.manual_seed(0)
    x = (torch.rand(6, 5, device=device) < 0.5).double()
    return x, nn.Linear(2, 5).to(device).double(), nn.Linear(5, 4).to(device).double()


def vae_model(x, decoder, encoder):
    pyro.module("decoder", decoder)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))
        pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)


def vae_guide(x, decoder, encoder):
    pyro.module("encoder", encoder)
    loc, log_scale = encoder(x).split(2, -1)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def discrete_args(device):
    return (torch.tensor([-1.0, 0.2, 1.5], dtype=torch.float64, device=device),)


def discrete_model(x):
    logit = pyro.param("prior_logit", x.new_tensor(0.1))
    shift = pyro.param("shift", x.new_tensor(1.0))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Bernoulli(logits=logit))
        pyro.sample("x", dist.Normal(shift * (2 * z - 1), 1.0), obs=x)


def discrete_guide(x):
    weight = pyro.param("weight", x.new_tensor(0.5))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Bernoulli(logits=weight * x))


def gan_args(device):
    """Eight 2-d points and a generator z (3-d) -> x; critics are made by the loss factories."""
    torch.manual_seed(0)
    return torch.randn(8, 2, device=device).double(), nn.Linear(3, 2).to(device).double()


def gan_model(x, generator):
    pyro.module("generator", generator)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
        pyro.sample("x", dist.Delta(generator(z), event_dim=1), obs=x)


def gan_guide(x, generator):
    pass


def bigan_args(device):
    x, generator = gan_args(device)
    return x, generator, nn.Linear(2, 6).to(device).double()


def bigan_model(x, generator, encoder):
    gan_model(x, generator)


def bigan_guide(x, generator, encoder):
    pyro.module("encoder", encoder)
    loc, log_scale = encoder(x).split(3, -1)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def energy_args(device):
    """Eight 2-d points and a small energy network (Softplus: smooth second derivatives)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 4), nn.Softplus(), nn.Linear(4, 1)).to(device).double()
    return torch.randn(8, 2, device=device).double(), net


def score_args(device):
    """As energy_args without the output bias: E's additive constant is invisible to score
    matching and to CD without an energy penalty (E(x+) - E(x-) cancels it).
    """
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 4), nn.Softplus(), nn.Linear(4, 1, bias=False))
    return torch.randn(8, 2, device=device).double(), net.to(device).double()


def energy_model(x, energy):
    pyro.module("energy", energy)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", pgm.distributions.EnergyDistribution(energy, (2,)), obs=x)


def nce_model(x, energy):
    pyro.module("energy", energy)
    log_z = pyro.param("log_z", x.new_zeros(()))
    with pyro.plate("data", x.shape[0]):
        d = pgm.distributions.EnergyDistribution(energy, (2,), log_normalizer=log_z)
        pyro.sample("x", d, obs=x)


def energy_guide(x, energy):
    pass


def _langevin():
    return pgm.infer.LangevinSampler(0.01, 5)


def _noise():
    return dist.Normal(torch.zeros(2, dtype=torch.float64), 2.0).to_event(1)


def critic(in_dim=2):
    """A small critic (moved to the data's device by the loss on first use)."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(in_dim, 4), nn.Tanh(), nn.Linear(4, 1)).double()


def dbm_args(device):
    """Six binary 4-pixel images and a [4, 3, 2] DBM with random weights."""
    torch.manual_seed(0)
    dbm = pgm.models.DBM([4, 3, 2]).to(device=device, dtype=torch.float64)
    with torch.no_grad():
        for p in dbm.parameters():
            p.normal_(0, 0.5)
    return (torch.rand(6, 4, device=device) < 0.5).double(), dbm


def dbm_model(v, dbm):
    return dbm.model(v)


def dbm_guide(v, dbm):
    return dbm.guide(v)


REGISTRY = [
    (lambda: IWAELoss(num_particles=3), vae_model, vae_guide, vae_args),
    (lambda: IWAELoss(num_particles=3, dreg=True), vae_model, vae_guide, vae_args),
    (lambda: IWAELoss(num_particles=4), discrete_model, discrete_guide, discrete_args),
    (lambda: pgm.infer.GANLoss(critic()), gan_model, gan_guide, gan_args),
    (lambda: pgm.infer.GANLoss(critic(), "kl", "minimax"), gan_model, gan_guide, gan_args),
    (lambda: pgm.infer.GANLoss(critic(), "hellinger"), gan_model, gan_guide, gan_args),
    (
        lambda: pgm.infer.GANLoss(critic(), n_critic=3, critic_optim=pyro.optim.Adam({})),
        gan_model,
        gan_guide,
        gan_args,
    ),
    (lambda: pgm.infer.LSGANLoss(critic()), gan_model, gan_guide, gan_args),
    (
        lambda: pgm.infer.WGANLoss(critic(), pyro.optim.RMSprop({"lr": 1e-3}), clip_value=0.5),
        gan_model,
        gan_guide,
        gan_args,
    ),
    (lambda: pgm.infer.WGANGPLoss(critic()), gan_model, gan_guide, gan_args),
    (
        lambda: pgm.infer.WGANGPLoss(critic(), n_critic=2, critic_optim=pyro.optim.Adam({})),
        gan_model,
        gan_guide,
        gan_args,
    ),
    (
        lambda: pgm.infer.BiGANLoss(pgm.infer.ConcatSites(critic(5), ["x", "z"])),
        bigan_model,
        bigan_guide,
        bigan_args,
    ),
    (lambda: pgm.infer.DBMLoss(num_chains=5), dbm_model, dbm_guide, dbm_args),
    (
        lambda: pgm.infer.ContrastiveDivergenceLoss(k=2, sampler=_langevin()),
        energy_model,
        energy_guide,
        score_args,
    ),
    (
        lambda: pgm.infer.ContrastiveDivergenceLoss(persistent=True, buffer_size=4, energy_reg=0.1),
        energy_model,
        energy_guide,
        energy_args,
    ),
    (lambda: pgm.infer.ScoreMatchingLoss("exact"), energy_model, energy_guide, score_args),
    (
        lambda: pgm.infer.ScoreMatchingLoss("sliced", num_projections=2),
        energy_model,
        energy_guide,
        score_args,
    ),
    (
        lambda: pgm.infer.ScoreMatchingLoss("denoising", noise_scale=0.1),
        energy_model,
        energy_guide,
        score_args,
    ),
    (lambda: pgm.infer.NCELoss(_noise(), noise_ratio=2), nce_model, energy_guide, energy_args),
]

IDS = [f"{type(factory()).__name__}-{i}" for i, (factory, *_) in enumerate(REGISTRY)]


def _public_loss_classes():
    found = set(pgm.infer.LOSSES)
    for name in dir(pgm.infer):
        obj = getattr(pgm.infer, name)
        if not name.startswith("_") and isinstance(obj, type) and hasattr(obj, "loss_and_grads"):
            found.add(obj)
    return found


def _floats(value):
    """A loss value as a list of floats (losses may return one value or a tuple)."""
    if isinstance(value, (tuple, list)):
        return [v for item in value for v in _floats(item)]
    if isinstance(value, torch.Tensor):
        return [value.detach().item()]
    return [float(value)]


def test_every_loss_is_registered():
    registered = {type(factory()) for factory, *_ in REGISTRY}
    missing = sorted(cls.__name__ for cls in _public_loss_classes() - registered)
    assert not missing, f"losses missing from tests/test_loss_registry.py REGISTRY: {missing}"
    for cls in pgm.infer.LOSSES:  # every listed loss is exported under its own name
        assert getattr(pgm.infer, cls.__name__, None) is cls, cls.__name__


@pytest.mark.parametrize("factory, model, guide, make_args", REGISTRY, ids=IDS)
def test_loss_methods_agree(factory, model, guide, make_args, device):
    args = make_args(device)
    values = []
    for method in ("loss", "differentiable_loss", "loss_and_grads"):
        # each call gets a fresh loss (and critic): start it from an empty param store, as a
        # critic registered by the previous call would otherwise shadow the new one
        pyro.clear_param_store()
        pyro.set_rng_seed(11)
        values.append(_floats(getattr(factory(), method)(model, guide, *args)))
    assert all(math.isfinite(v) for v in values[0]), values
    assert values[1] == pytest.approx(values[0], rel=1e-9, abs=1e-12)
    assert values[2] == pytest.approx(values[0], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("factory, model, guide, make_args", REGISTRY, ids=IDS)
def test_loss_and_grads_reaches_every_parameter(factory, model, guide, make_args, device):
    args = make_args(device)
    factory().loss_and_grads(model, guide, *args)
    store = pyro.get_param_store()
    assert len(store.keys()) > 0
    for name in store.keys():
        grad = store.get_param(name).unconstrained().grad
        assert grad is not None, f"no gradient on parameter {name!r}"
        assert torch.isfinite(grad).all(), f"non-finite gradient on parameter {name!r}"
        assert grad.device == args[0].device


@pytest.mark.parametrize("factory, model, guide, make_args", REGISTRY, ids=IDS)
def test_svi_step(factory, model, guide, make_args, device):
    args = make_args(device)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), loss=factory())
    svi.step(*args)
    before = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    assert all(math.isfinite(v) for v in _floats(svi.step(*args)))
    after = dict(pyro.get_param_store().items())
    unchanged = {k for k in before if torch.equal(before[k], after[k].detach())}
    # A Wasserstein critic's output bias cancels in E f(real) - E f(fake) (equal batch sizes)
    # and the gradient penalty does not see it: its gradient is exactly zero, so it stays.
    # Every other parameter has a non-zero gradient and must move.
    loss = factory()
    wasserstein = isinstance(loss, pgm.infer.WGANLoss | pgm.infer.WGANGPLoss)
    assert unchanged == ({"discriminator$$$2.bias"} if wasserstein else set())


@pytest.mark.parametrize("factory, model, guide, make_args", REGISTRY, ids=IDS)
def test_a_loss_of_several_values_names_them(factory, model, guide, make_args):
    """``fit`` records a tuple loss as ``loss_0, loss_1, ...``: the loss names each value
    (``loss_parts``), and the report titles its curves with those names."""
    loss = factory()
    value = loss.loss(model, guide, *make_args(torch.device("cpu")))
    parts = getattr(loss, "loss_parts", None)
    if isinstance(value, (tuple, list)):
        assert isinstance(parts, tuple) and len(parts) == len(value), (type(loss), parts)
        assert len(set(parts)) == len(parts) and all(isinstance(p, str) and p for p in parts)
    else:
        assert parts is None, f"{type(loss).__name__} returns one value but names {parts}"
