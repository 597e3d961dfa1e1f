"""The resume rules, row by row: each row of the README's table changes its setting between
a first run of 2 epochs and a resumed run of 3, and the resume is refused or warned as the
row says. The README's table is :func:`pyro_genmodels.training.resume_rules.rules_table` itself, and
every rule has a case here (a rule without one fails ``test_every_rule_has_a_case``).
"""

from __future__ import annotations

import inspect
import re
import sys
import warnings
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels.optim import Adam
from pyro_genmodels.training import fit
from pyro_genmodels.training.resume_rules import RESUME_RULES, describe, rules_table

sys.path.insert(0, str(Path(__file__).parent))
from test_loss_registry import REGISTRY  # noqa: E402

X = torch.rand(24, 6, generator=torch.Generator().manual_seed(0)).round()
V = torch.rand(8, 6, generator=torch.Generator().manual_seed(1)).round()
README = Path(__file__).parent.parent / "README.md"


def _vae(likelihood="bernoulli"):
    torch.manual_seed(0)
    return pgm.models.VAE(6, 2, hidden_dims=(8,), likelihood=likelihood)


class Counter:
    """A stateful callback (its count is checkpointed)."""

    def __init__(self, every: int = 1) -> None:
        self.every, self.count = every, 0

    def on_epoch_end(self, state):
        self.count += 1

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def _energy_model(net):
    def model(x):
        pyro.module("energy", net)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", pgm.distributions.EnergyDistribution(net, (6,)), obs=x)

    return model


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Softplus(), torch.nn.Linear(4, 1))


def _gan_model(generator):
    def model(x):
        pyro.module("generator", generator)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(3), 1.0).to_event(1))
            pyro.sample("x", dist.Delta(generator(z), event_dim=1), obs=x)

    return model


def _critic():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))


def _run(epochs, folder, resume=False, kind="vae", **change):
    """``fit`` of a small model for ``epochs`` with the defaults below, updated by ``change``."""
    pyro.clear_param_store()
    args = {"seed": 0, "data": X, "batch_size": 8, "shuffle": True, "optim": Adam({"lr": 0.01})}
    if kind == "vae":
        vae = _vae(change.pop("likelihood", "bernoulli"))
        model, guide = vae.model, vae.guide
        args["loss"] = pyro.infer.Trace_ELBO()
    elif kind == "energy":
        net = _net()
        model, guide = _energy_model(net), lambda x: None
        args["loss"] = pgm.infer.ContrastiveDivergenceLoss(
            k=1, persistent=True, buffer_size=8, sampler=pgm.infer.LangevinSampler(0.01, 2)
        )
    else:  # a GAN
        torch.manual_seed(0)
        generator = torch.nn.Linear(3, 6)
        model, guide = _gan_model(generator), lambda x: None
        critic_optim = change.pop("critic_optim", pyro.optim.Adam({"lr": 1e-3}))
        args["loss"] = pgm.infer.GANLoss(_critic(), n_critic=2, critic_optim=critic_optim)
        args["data"] = X * 2 - 1
    args.update(change)
    data = args.pop("data")
    return fit(model, guide, data, epochs=epochs, checkpoint_dir=folder, resume=resume,
               progress=False, **args)  # fmt: skip


# one case per rule: (kind, first run's options, resumed run's options)
CASES = {
    "seed": ("vae", {}, {"seed": 1}),
    "data.num_data": ("vae", {}, {"data": X[:16]}),
    "data.shapes": ("vae", {}, {"data": torch.cat([X, X], 1)}),
    "data.dtypes": ("vae", {"optim": Adam({"lr": 0.01})}, {"data": X.to(torch.int64)}),
    "data.sha256": ("vae", {}, {"data": 1 - X}),
    "data.batch_size": ("vae", {}, {"batch_size": 4}),
    "data.shuffle": ("vae", {}, {"shuffle": False}),
    "optim.kind": ("vae", {}, {"optim": pyro.optim.Adam({"lr": 0.01})}),
    "optim.lr": ("vae", {}, {"optim": Adam({"lr": 0.02})}),
    "loss": ("vae", {}, {"loss": pyro.infer.Trace_ELBO(num_particles=2)}),
    "loss.critic_optim.lr": ("gan", {}, {"critic_optim": pyro.optim.Adam({"lr": 2e-3})}),
    "modules": ("vae", {}, {"likelihood": "continuous_bernoulli"}),
    "validation": ("vae", {"validation": V}, {"validation": 1 - V}),
    "keep_best": ("vae", {"validation": V}, {"validation": V, "keep_best": True}),
    "precision": ("vae", {}, {"precision": "bf16"}),
    "jit": ("vae", {"jit": False}, {}),
    "callbacks": ("vae", {"callbacks": [Counter()]}, {"callbacks": [Counter(every=2)]}),
}

# more changes the README's rows name, each refused
MORE_REFUSED = {
    "CD k": ("energy", {}, {"loss": pgm.infer.ContrastiveDivergenceLoss(
        k=2, persistent=True, buffer_size=8, sampler=pgm.infer.LangevinSampler(0.01, 2))}),
    "CD persistent": ("energy", {}, {"loss": pgm.infer.ContrastiveDivergenceLoss(
        k=1, persistent=False, buffer_size=8, sampler=pgm.infer.LangevinSampler(0.01, 2))}),
    "CD step size": ("energy", {}, {"loss": pgm.infer.ContrastiveDivergenceLoss(
        k=1, persistent=True, buffer_size=8, sampler=pgm.infer.LangevinSampler(0.02, 2))}),
    "CD to score matching": ("energy", {}, {"loss": pgm.infer.ScoreMatchingLoss("exact")}),
    "GAN n_critic": ("gan", {}, {"loss_n_critic": 3}),
    "critic optimizer kind": ("gan", {}, {"critic_optim": pyro.optim.SGD({"lr": 1e-3})}),
    "validation dropped": ("vae", {"validation": V}, {}),
    "validation added": ("vae", {}, {"validation": V}),
    "validation_every": ("vae", {"validation": V}, {"validation": V, "validation_every": 2}),
    "early_stopping": ("vae", {"validation": V}, {"validation": V, "early_stopping": 5}),
    "monitor": ("vae", {"validation": V, "callbacks": [lambda s: {"m": 1.0}]},
                {"validation": V, "callbacks": [lambda s: {"m": 1.0}], "monitor": "m"}),
    "callback dropped": ("vae", {"callbacks": [Counter()]}, {}),
}  # fmt: skip


def test_every_rule_has_a_case():
    assert set(CASES) == {rule.key for rule in RESUME_RULES}


def test_the_readme_shows_the_rules_table():
    assert rules_table() in README.read_text()


def _resume(kind, first, second, tmp_path):
    second = dict(second)
    n_critic = second.pop("loss_n_critic", None)
    if n_critic is not None:
        second["loss"] = pgm.infer.GANLoss(
            _critic(), n_critic=n_critic, critic_optim=pyro.optim.Adam({"lr": 1e-3})
        )
    _run(2, tmp_path, kind=kind, **first)
    return lambda: _run(5, tmp_path, resume=True, kind=kind, **second)


@pytest.mark.parametrize("rule", RESUME_RULES, ids=[r.key for r in RESUME_RULES])
def test_each_rule_acts_as_the_table_says(rule, tmp_path):
    kind, first, second = CASES[rule.key]
    resume = _resume(kind, first, second, tmp_path)
    if rule.on_change == "refused":
        with pytest.raises(ValueError, match="resume refuses a change of") as error:
            resume()
        assert rule.what in str(error.value)
    else:
        with pytest.warns(UserWarning, match=re.escape(rule.key)):
            history = resume()
        assert len(history) == 5


@pytest.mark.parametrize("name", list(MORE_REFUSED))
def test_more_changes_are_refused(name, tmp_path):
    kind, first, second = MORE_REFUSED[name]
    resume = _resume(kind, first, second, tmp_path)
    with pytest.raises(ValueError, match="resume refuses a change of"):
        resume()


@pytest.mark.parametrize("kind", ["vae", "energy", "gan"])
def test_an_unchanged_resume_is_silent(kind, tmp_path):
    _run(2, tmp_path, kind=kind)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(_run(5, tmp_path, resume=True, kind=kind)) == 5


@pytest.mark.parametrize("factory", [entry[0] for entry in REGISTRY])
def test_every_loss_option_is_described(factory):
    """Every constructor argument of every registered loss (but its networks) is recorded."""
    loss = factory()
    described = describe(loss)
    for name in inspect.signature(type(loss).__init__).parameters:
        if name in ("self", "max_plate_nesting", "discriminator", "critic"):
            continue
        assert name in described, f"{type(loss).__name__}({name}=...) is not recorded"
