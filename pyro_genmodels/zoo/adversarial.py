"""Zoo entries of the adversarial family: GAN, LSGAN, WGAN-GP and BiGAN on dequantized images.

A GAN has no likelihood: its score is sample based (``test_nll_nats`` is NaN,
``estimator="samples"``): the MMD (Gaussian kernel, median bandwidth) and the
energy distance between as many generated images as there are test images and
the test split. Each entry updates its critic alternately inside the loss
with its own Adam (β₁ = 0.5), while the zoo's optimizer moves the generator.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_genmodels.data import Dataset
from pyro_genmodels.zoo import Setup, ZooEntry, register


def _generator(z_dim: int, hidden: int, x_dim: int) -> nn.Module:
    from pyro_genmodels.nn import MLP

    return MLP(z_dim, [hidden, hidden], x_dim, output_activation=nn.Sigmoid)


def _score(sample, test: torch.Tensor):
    def score(num_samples: int) -> dict:
        from pyro_genmodels.diagnostics import energy_distance, mmd

        fake = sample(test.shape[0])
        return {
            "test_nll_nats": float("nan"),
            "estimator": "samples",
            "mmd": float(mmd(test, fake)),
            "energy_distance": float(energy_distance(test, fake)),
        }

    return score


def _gan(
    data: Dataset, *, objective: str = "gan", z_dim: int = 16, hidden: int = 128, lr: float = 1e-3
) -> Setup:
    from pyro_genmodels.infer import GANLoss, LSGANLoss, WGANGPLoss
    from pyro_genmodels.infer.adversarial import AdversarialLoss
    from pyro_genmodels.nn import MLP
    from pyro_genmodels.optim import Adam

    x_dim = data.num_dims
    net = nn.ModuleDict(
        {"generator": _generator(z_dim, hidden, x_dim), "critic": MLP(x_dim, [hidden, hidden], 1)}
    ).to(data.train.device)

    def model(x: torch.Tensor) -> None:
        pyro.module("generator", net["generator"])
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Delta(net["generator"](z), event_dim=1), obs=x)

    def guide(x: torch.Tensor) -> None:
        pass

    betas = (0.5, 0.9) if objective == "wgan-gp" else (0.5, 0.999)
    critic_optim = Adam({"lr": lr, "betas": betas})
    loss: AdversarialLoss
    if objective == "gan":
        loss = GANLoss(net["critic"], critic_optim=critic_optim)
    elif objective == "lsgan":
        loss = LSGANLoss(net["critic"], critic_optim=critic_optim)
    elif objective == "wgan-gp":
        loss = WGANGPLoss(net["critic"], n_critic=5, critic_optim=critic_optim)
    else:
        raise ValueError(f"objective must be 'gan', 'lsgan' or 'wgan-gp', got {objective!r}")

    def sample(n: int) -> torch.Tensor:
        with torch.no_grad():
            z = torch.randn(n, z_dim, device=data.train.device, dtype=data.train.dtype)
            return net["generator"](z)

    setup = Setup(net, model, guide, data.train, (data.test,), loss, sample)
    setup.score = _score(sample, data.test)
    return setup


def _bigan(data: Dataset, *, z_dim: int = 16, hidden: int = 128, lr: float = 1e-3) -> Setup:
    from pyro_genmodels.infer import BiGANLoss, ConcatSites
    from pyro_genmodels.nn import MLP
    from pyro_genmodels.optim import Adam

    x_dim = data.num_dims
    net = nn.ModuleDict(
        {
            "generator": _generator(z_dim, hidden, x_dim),
            "encoder": MLP(x_dim, [hidden, hidden], z_dim),
            "critic": ConcatSites(MLP(x_dim + z_dim, [hidden, hidden], 1), ["x", "z"]),
        }
    ).to(data.train.device)

    def model(x: torch.Tensor) -> None:
        pyro.module("generator", net["generator"])
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Delta(net["generator"](z), event_dim=1), obs=x)

    def guide(x: torch.Tensor) -> None:
        pyro.module("encoder", net["encoder"])
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(net["encoder"](x), event_dim=1))

    loss = BiGANLoss(net["critic"], critic_optim=Adam({"lr": lr, "betas": (0.5, 0.999)}))

    def sample(n: int) -> torch.Tensor:
        with torch.no_grad():
            z = torch.randn(n, z_dim, device=data.train.device, dtype=data.train.dtype)
            return net["generator"](z)

    setup = Setup(net, model, guide, data.train, (data.test,), loss, sample, note="encoder q(z|x)")
    setup.score = _score(sample, data.test)
    return setup


for _entry in [
    ZooEntry("gan", "adversarial", "GAN (non-saturating), MLPs, alternating", _gan, {}, False),
    ZooEntry(
        "wgan-gp",
        "adversarial",
        "WGAN-GP, n_critic=5, MLPs",
        _gan,
        {"objective": "wgan-gp", "hidden": 64},
        False,
    ),
    ZooEntry(
        "bigan",
        "adversarial",
        "BiGAN: generator, encoder, joint critic",
        _bigan,
        {"hidden": 64},
        False,
    ),
]:
    register(_entry)
