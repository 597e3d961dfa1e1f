"""Zoo entries of the adversarial family: GAN, LSGAN, WGAN-GP and BiGAN on dequantized images.

A GAN has no likelihood: ``test_nll_nats`` is NaN, ``estimator="samples"``, and
the zoo scores it like every other entry by its samples (energy distance, MMD,
class coverage, Fréchet distance in a fixed classifier's features). Each entry
updates its critic alternately inside the loss with its own Adam (β₁ = 0.5),
while the zoo's optimizer moves the generator (Adam with the same β).
``gan`` and ``bigan`` keep from collapsing with a batch-normalized generator and
a dropout critic (:data:`STABLE`); :class:`PackedCritic` (PacGAN) and
:class:`MinibatchStdCritic` are options of the builders.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_genmodels._checks import check_positive_int
from pyro_genmodels.data import Dataset
from pyro_genmodels.zoo import Setup, ZooEntry, register


def _generator(z_dim: int, hidden: int, x_dim: int, norm: str | None = None) -> nn.Module:
    """MLP ``z -> x`` in ``(0, 1)``: two ReLU layers, normalized if ``norm`` is ``"batch"``
    or ``"layer"``."""
    from pyro_genmodels.nn import MLP

    if norm is None:
        return MLP(z_dim, [hidden, hidden], x_dim, output_activation=nn.Sigmoid)
    if norm not in ("batch", "layer"):
        raise ValueError(f"norm must be None, 'batch' or 'layer', got {norm!r}")
    layers: list[nn.Module] = []
    for a in (z_dim, hidden):
        # batch statistics in training and sampling alike (no running averages, whose
        # lag behind a moving generator spoils eval-mode samples): draw n >= 2 at once
        n = nn.BatchNorm1d(hidden, track_running_stats=False) if norm == "batch" else None
        layers += [nn.Linear(a, hidden), n or nn.LayerNorm(hidden), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, x_dim), nn.Sigmoid())


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
    >>> out.shape, bool(out[0] == out[1]), bool(out[2] == out[3])  # row 4 packs with row 0's copy
    (torch.Size([5]), True, True)

    Reference: Lin, Khetan, Fanti, Oh, "PacGAN: The power of two samples in
    generative adversarial networks", NeurIPS 2018.
    """

    def __init__(self, net: nn.Module, pack: int) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        self.net, self.pack = net, check_positive_int("pack", pack)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, m = x.shape[0], self.pack
        padded = x[torch.arange(b + (-b) % m, device=x.device) % b]
        out = self.net(padded.reshape(-1, m * x.shape[-1]))
        return out.reshape(-1).repeat_interleave(m)[:b]


class MinibatchStdCritic(nn.Module):
    """A critic that also sees how varied its batch is: ``D(x) = w·[h(x), s] + b``,
    ``h`` an MLP's last hidden layer and ``s`` the mean over features of the standard
    deviation of ``h`` across the batch (the minibatch standard deviation layer).

    A collapsed generator's batch has ``s ≈ 0`` and is told apart at once. The loss
    calls the critic on real and on generated batches separately.

    Args:
        in_dim: data dimension ``D``.
        hidden: width of the two hidden layers.

    Shapes: input ``(B, D)`` with ``B >= 2`` → output ``(B, 1)``.

    >>> MinibatchStdCritic(3, 8)(torch.randn(4, 3)).shape
    torch.Size([4, 1])

    Reference: Karras, Aila, Laine, Lehtinen, "Progressive Growing of GANs for
    Improved Quality, Stability, and Variation", ICLR 2018 (section 3).
    """

    def __init__(self, in_dim: int, hidden: int) -> None:
        from pyro_genmodels.nn import MLP

        super().__init__()
        self.body = nn.Sequential(
            MLP(in_dim, [hidden], hidden, activation=nn.LeakyReLU), nn.LeakyReLU()
        )
        self.head = nn.Linear(hidden + 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        s = h.std(dim=0, unbiased=False).mean() if h.shape[0] > 1 else h.new_zeros(())
        return self.head(torch.cat([h, s.expand(h.shape[0], 1)], dim=-1))


def _critic(
    x_dim: int, hidden: int, pack: int = 1, batch_std: bool = False, dropout: float = 0.0
) -> nn.Module:
    """MLP critic (LeakyReLU 0.2, dropout after each hidden layer) on packs of ``pack``."""
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if batch_std:
        net: nn.Module = MinibatchStdCritic(x_dim * pack, hidden)
    else:
        layers: list[nn.Module] = []
        for a in (x_dim * pack, hidden):
            layers += [nn.Linear(a, hidden), nn.LeakyReLU(0.2), nn.Dropout(dropout)]
        net = nn.Sequential(*layers, nn.Linear(hidden, 1))
    return net if pack == 1 else PackedCritic(net, pack)


def _check_values(data: Dataset) -> None:
    """The generators draw values in (0, 1) (a sigmoid output): real data are refused."""
    if data.support == "real":
        raise ValueError(
            "the adversarial entries' generators draw values in (0, 1) (a sigmoid output); "
            "these data hold values outside [0, 1]"
        )


def _score(num_samples: int) -> dict:
    return {"test_nll_nats": float("nan"), "estimator": "samples"}


def _generator_programs(generator: nn.Module, z_dim: int, data: Dataset) -> tuple:
    """``(model, sample)``: the Pyro program ``z ~ N(0, I)``, ``x = G(z)`` observed, and
    ``n -> G(z)`` for ``n`` fresh draws (no gradient) on the data's device and dtype."""

    def model(x: torch.Tensor) -> None:
        pyro.module("generator", generator)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Delta(generator(z), event_dim=1), obs=x)

    def sample(n: int) -> torch.Tensor:
        with torch.no_grad():
            z = torch.randn(n, z_dim, device=data.train.device, dtype=data.train.dtype)
            return generator(z)

    return model, sample


def _gan(
    data: Dataset,
    *,
    objective: str = "gan",
    z_dim: int = 16,
    hidden: int = 128,
    critic_lr: float = 1e-3,
    pack: int = 1,
    batch_std: bool = False,
    dropout: float = 0.0,
    norm: str | None = None,
    n_critic: int = 5,
) -> Setup:
    """``critic_lr`` is the critic's learning rate (the zoo's optimizer moves the generator);
    ``pack`` the PacGAN pack size; ``batch_std`` adds a minibatch standard deviation
    feature to the critic; ``dropout`` drops critic units; ``norm``
    (``"batch"``, ``"layer"``) normalizes the generator's hidden layers;
    ``n_critic`` the WGAN-GP critic steps."""
    from pyro_genmodels.infer import GANLoss, LSGANLoss, WGANGPLoss
    from pyro_genmodels.infer.adversarial import AdversarialLoss
    from pyro_genmodels.optim import Adam

    _check_values(data)
    x_dim = data.num_dims
    net = nn.ModuleDict(
        {
            "generator": _generator(z_dim, hidden, x_dim, norm),
            "critic": _critic(x_dim, hidden, pack, batch_std, dropout),
        }
    ).to(data.train.device)

    model, sample = _generator_programs(net["generator"], z_dim, data)

    def guide(x: torch.Tensor) -> None:
        pass

    betas = (0.5, 0.9) if objective == "wgan-gp" else (0.5, 0.999)
    critic_optim = Adam({"lr": critic_lr, "betas": betas})
    loss: AdversarialLoss
    if objective == "gan":
        loss = GANLoss(net["critic"], critic_optim=critic_optim)
    elif objective == "lsgan":
        loss = LSGANLoss(net["critic"], critic_optim=critic_optim)
    elif objective == "wgan-gp":
        loss = WGANGPLoss(net["critic"], n_critic=n_critic, critic_optim=critic_optim)
    else:
        raise ValueError(f"objective must be 'gan', 'lsgan' or 'wgan-gp', got {objective!r}")

    setup = Setup(net, model, guide, data.train, (data.test,), loss, sample, score=_score)
    setup.optim_args = {"betas": betas}
    return setup


def _bigan(
    data: Dataset,
    *,
    z_dim: int = 16,
    hidden: int = 128,
    critic_lr: float = 1e-3,
    pack: int = 1,
    batch_std: bool = False,
    dropout: float = 0.0,
    norm: str | None = None,
    stochastic: bool = False,
) -> Setup:
    """``critic_lr``, ``pack``, ``batch_std``, ``dropout``, ``norm``: as for the GAN
    entries; ``stochastic``: the encoder draws ``z ~ N(μ(x), σ(x)²)`` (ALI) rather than
    ``z = E(x)``."""
    from pyro_genmodels.infer import BiGANLoss, ConcatSites
    from pyro_genmodels.nn import MLP
    from pyro_genmodels.optim import Adam

    _check_values(data)
    x_dim = data.num_dims
    net = nn.ModuleDict(
        {
            "generator": _generator(z_dim, hidden, x_dim, norm),
            "encoder": MLP(x_dim, [hidden, hidden], 2 * z_dim if stochastic else z_dim),
            "critic": ConcatSites(
                _critic(x_dim + z_dim, hidden, pack, batch_std, dropout), ["x", "z"]
            ),
        }
    ).to(data.train.device)

    model, sample = _generator_programs(net["generator"], z_dim, data)

    def guide(x: torch.Tensor) -> None:
        pyro.module("encoder", net["encoder"])
        out = net["encoder"](x)
        with pyro.plate("data", x.shape[0]):
            if stochastic:
                loc, scale = out[..., :z_dim], nn.functional.softplus(out[..., z_dim:]) + 1e-3
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))
            else:
                pyro.sample("z", dist.Delta(out, event_dim=1))

    loss = BiGANLoss(net["critic"], critic_optim=Adam({"lr": critic_lr, "betas": (0.5, 0.999)}))

    note = "encoder q(z|x)"
    setup = Setup(net, model, guide, data.train, (data.test,), loss, sample, note, _score)
    setup.optim_args = {"betas": (0.5, 0.999)}
    return setup


#: Budget of the JS-objective entries: a slow two-player game, many small steps.
BUDGET = {"epochs": 40, "lr": 2e-4, "batch_size": 64}
#: What keeps ``gan`` and ``bigan`` from collapsing onto a few digits (measured on digits:
#: without them, 4/10 and 1/10 classes at 50 epochs): a batch-normalized generator, a
#: critic with dropout and the same slow rate for both players.
STABLE = {"norm": "batch", "dropout": 0.3, "critic_lr": 2e-4}

for _entry in [
    ZooEntry(
        "gan",
        "adversarial",
        "GAN (non-saturating), MLPs, batch-norm generator, dropout critic",
        _gan,
        STABLE,
        False,
        BUDGET,
    ),
    ZooEntry(
        "wgan-gp",
        "adversarial",
        "WGAN-GP, n_critic=5, MLPs",
        _gan,
        {"objective": "wgan-gp", "hidden": 64},
        False,
        {"epochs": 30, "lr": 1e-3, "batch_size": 128},
    ),
    ZooEntry(
        "bigan",
        "adversarial",
        "BiGAN: generator, stochastic encoder, joint critic",
        _bigan,
        {**STABLE, "stochastic": True},
        False,
        # three players: at 40 epochs 9, 5 and 7 classes over seeds 0-2; at 60, 9, 9 and 10
        {**BUDGET, "epochs": 60},
    ),
]:
    register(_entry)
