"""Zoo entries of the adversarial family: GAN, LSGAN, WGAN-GP and BiGAN on dequantized images.

A GAN has no likelihood: ``test_nll_nats`` is NaN, ``estimator="samples"``, and
the zoo scores it like every other entry by its samples (energy distance, MMD,
class coverage, Fréchet distance in a fixed classifier's features). Each entry
updates its critic alternately inside the loss with its own Adam (β₁ = 0.5),
while the zoo's optimizer moves the generator. The critics of ``gan`` and
``bigan`` see packs of samples (:class:`PackedCritic`, PacGAN), which keeps the
generator from collapsing onto a few digits.
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


class PackedCritic(nn.Module):
    """PacGAN's critic ``D(x₁, ..., x_m)``: one score per pack of ``m`` consecutive
    samples, given to each member, so a batch keeps one score per datapoint.

    Packs hold only real or only generated samples (the loss calls the critic on
    each separately); the critic then sees the diversity of a pack, which
    penalizes a collapsed generator. A batch not divisible by ``m`` is padded
    cyclically with its own first rows.

    Args:
        net: the inner critic, ``(B/m, m·D) -> (B/m, 1)`` or ``(B/m,)``.
        pack: the pack size ``m >= 1``.

    Shapes: input ``(B, D)`` → output ``(B,)``.

    >>> from pyro_genmodels.nn import MLP
    >>> critic = PackedCritic(MLP(2 * 3, [8], 1), pack=2)
    >>> out = critic(torch.randn(5, 3))
    >>> out.shape, bool(out[0] == out[1]), bool(out[4] == out[0])  # row 4 packs with row 0
    (torch.Size([5]), True, True)

    Reference: Lin, Khetan, Fanti, Oh, "PacGAN: The power of two samples in
    generative adversarial networks", NeurIPS 2018.
    """

    def __init__(self, net: nn.Module, pack: int) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
            raise ValueError(f"pack must be a positive int, got {pack!r}")
        self.net, self.pack = net, pack

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, m = x.shape[0], self.pack
        padded = x[torch.arange(b + (-b) % m, device=x.device) % b]
        out = self.net(padded.reshape(-1, m * x.shape[-1]))
        return out.reshape(-1).repeat_interleave(m)[:b]


def _critic(x_dim: int, hidden: int, pack: int) -> nn.Module:
    from pyro_genmodels.nn import MLP

    net = MLP(x_dim * pack, [hidden, hidden], 1, activation=nn.LeakyReLU)
    return net if pack == 1 else PackedCritic(net, pack)


def _score(num_samples: int) -> dict:
    return {"test_nll_nats": float("nan"), "estimator": "samples"}


def _gan(
    data: Dataset,
    *,
    objective: str = "gan",
    z_dim: int = 16,
    hidden: int = 128,
    critic_lr: float = 1e-3,
    pack: int = 1,
    n_critic: int = 5,
) -> Setup:
    """``critic_lr`` is the critic's learning rate (the zoo's optimizer moves the generator);
    ``pack`` the PacGAN pack size; ``n_critic`` the WGAN-GP critic steps per step."""
    from pyro_genmodels.infer import GANLoss, LSGANLoss, WGANGPLoss
    from pyro_genmodels.optim import Adam

    x_dim = data.num_dims
    net = nn.ModuleDict(
        {"generator": _generator(z_dim, hidden, x_dim), "critic": _critic(x_dim, hidden, pack)}
    ).to(data.train.device)

    def model(x: torch.Tensor) -> None:
        pyro.module("generator", net["generator"])
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Delta(net["generator"](z), event_dim=1), obs=x)

    def guide(x: torch.Tensor) -> None:
        pass

    betas = (0.5, 0.9) if objective == "wgan-gp" else (0.5, 0.999)
    critic_optim = Adam({"lr": critic_lr, "betas": betas})
    if objective == "gan":
        loss = GANLoss(net["critic"], critic_optim=critic_optim)
    elif objective == "lsgan":
        loss = LSGANLoss(net["critic"], critic_optim=critic_optim)
    elif objective == "wgan-gp":
        loss = WGANGPLoss(net["critic"], n_critic=n_critic, critic_optim=critic_optim)
    else:
        raise ValueError(f"objective must be 'gan', 'lsgan' or 'wgan-gp', got {objective!r}")

    def sample(n: int) -> torch.Tensor:
        with torch.no_grad():
            z = torch.randn(n, z_dim, device=data.train.device, dtype=data.train.dtype)
            return net["generator"](z)

    setup = Setup(net, model, guide, data.train, (data.test,), loss, sample, score=_score)
    setup.optim_args = {"betas": betas}
    return setup


def _bigan(
    data: Dataset, *, z_dim: int = 16, hidden: int = 128, critic_lr: float = 1e-3, pack: int = 1
) -> Setup:
    """``critic_lr`` is the critic's learning rate; ``pack`` the joint critic's PacGAN pack size."""
    from pyro_genmodels.infer import BiGANLoss, ConcatSites
    from pyro_genmodels.nn import MLP
    from pyro_genmodels.optim import Adam

    x_dim = data.num_dims
    net = nn.ModuleDict(
        {
            "generator": _generator(z_dim, hidden, x_dim),
            "encoder": MLP(x_dim, [hidden, hidden], z_dim),
            "critic": ConcatSites(_critic(x_dim + z_dim, hidden, pack), ["x", "z"]),
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

    loss = BiGANLoss(net["critic"], critic_optim=Adam({"lr": critic_lr, "betas": (0.5, 0.999)}))

    def sample(n: int) -> torch.Tensor:
        with torch.no_grad():
            z = torch.randn(n, z_dim, device=data.train.device, dtype=data.train.dtype)
            return net["generator"](z)

    note = "encoder q(z|x)"
    setup = Setup(net, model, guide, data.train, (data.test,), loss, sample, note, _score)
    setup.optim_args = {"betas": (0.5, 0.999)}
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
