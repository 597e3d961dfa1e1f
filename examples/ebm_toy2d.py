"""Energy-based models on a 2-D toy, one per objective: persistent CD, exact, sliced and
denoising score matching, NCE, and a noise-conditional energy (several noise levels)
sampled by annealed Langevin. Test NLL by grid normalization against the entropy floor;
seaborn density and sample plots.

    python examples/ebm_toy2d.py --toy 8gaussians --epochs 20 --out ebm_toy2d.png

Each model is an ordinary Pyro program observing the data at an
``EnergyDistribution`` site; the objective is the loss handed to ``pgm.fit``.
"""

from __future__ import annotations

import argparse
import math

import pyro
import pyro.distributions as dist
import seaborn as sns
import torch
from matplotlib.figure import Figure
from torch import nn

import pyro_genmodels as pgm
from pyro_genmodels.distributions import EnergyDistribution
from pyro_genmodels.infer import (
    ContrastiveDivergenceLoss,
    LangevinSampler,
    NCELoss,
    ScoreMatchingLoss,
    annealed_langevin,
)

OBJECTIVES = ("pcd", "exact", "sliced", "denoising", "nce", "multi-level")
SIGMAS = [1.0, 0.5, 0.25, 0.1]


class NoiseConditionalEnergy(nn.Module):
    """``E(x, σ) = MLP([x, log σ]) + ‖x‖² / (2·8²)`` for annealed sampling."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = pgm.nn.MLP(3, [hidden, hidden], 1, activation=nn.SiLU)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        inp = torch.cat([x, sigma.log().expand(x.shape[:-1] + (1,))], -1)
        return self.net(inp).squeeze(-1) + (x**2).sum(-1) / 128


def grid_log_z(energy, half: float = 8.0, n: int = 400) -> float:
    """``log ∫ exp(−E)`` over ``[−half, half]²`` by the midpoint rule."""
    h = 2 * half / n
    axis = torch.linspace(-half + h / 2, half - h / 2, n)
    with torch.no_grad():
        e = energy(torch.cartesian_prod(axis, axis))
    return (torch.logsumexp(-e, 0) + 2 * math.log(h)).item()


def train(objective: str, x: torch.Tensor, epochs: int, hidden: int, steps: int = 500) -> tuple:
    """Fits one objective; returns ``(energy(x) -> (N,), sampler(n) -> (n, 2))``."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    loc, scale = x.mean(0), x.std(0)
    step = 0.01 * float(scale.mean()) ** 2
    sampler = LangevinSampler(step, 20, init_loc=loc, init_scale=scale)
    if objective == "multi-level":
        net = NoiseConditionalEnergy(hidden)
        context = x.new_full((1,), SIGMAS[-1])
    else:
        # the README's energy: windowed Fourier features learn sharp edges (the checkerboard)
        net = pgm.nn.EnergyMLP(2, [hidden, hidden], loc, scale, confine=2.0,
                               fourier_features=64, fourier_window=1.5)  # fmt: skip
        context = None
    log_z = objective == "nce"

    def model(xb: torch.Tensor) -> None:
        pyro.module("energy", net)
        lz = pyro.param("log_z", xb.new_zeros(())) if log_z else None
        with pyro.plate("data", xb.shape[0]):
            d = EnergyDistribution(net, (2,), log_normalizer=lz, sampler=sampler, context=context)
            pyro.sample("x", d, obs=xb)

    loss = {
        "pcd": lambda: ContrastiveDivergenceLoss(persistent=True),  # k = 20, energy_reg = 0.1
        "exact": lambda: ScoreMatchingLoss("exact"),
        "sliced": lambda: ScoreMatchingLoss("sliced"),
        "denoising": lambda: ScoreMatchingLoss("denoising", noise_scale=0.1),
        "nce": lambda: NCELoss(dist.Normal(loc, 1.5 * scale).to_event(1), noise_ratio=4),
        "multi-level": lambda: ScoreMatchingLoss("denoising", noise_scale=SIGMAS),
    }[objective]()
    pgm.fit(model, lambda xb: None, x, loss=loss, epochs=epochs, batch_size=256, progress=False)

    if objective == "multi-level":

        def energy(v: torch.Tensor) -> torch.Tensor:
            return net(v, v.new_full(v.shape[:-1] + (1,), SIGMAS[-1]))

        def sample(n: int) -> torch.Tensor:
            x0 = loc + 3 * scale * torch.randn(n, 2)
            return annealed_langevin(net, x0, SIGMAS, step_size=0.002, num_steps=steps // 5)

    else:
        energy = net

        def sample(n: int) -> torch.Tensor:
            target = EnergyDistribution(
                net, (2,), sampler=LangevinSampler(step, steps, adjust=True)
            )
            return target.sampler.run(target, loc + scale * torch.randn(n, 2))

    return energy, sample


def main(
    quick: bool = False, toy: str = "8gaussians", epochs: int = 20, out: str | None = None
) -> dict:
    """Returns ``{"nll": {objective: nats}, "floor": nats, "figure": Figure}``."""
    n, hidden = (256, 16) if quick else (20000, 128)
    epochs = 1 if quick else epochs
    x, x_test = pgm.data.toy2d(toy, n, seed=0), pgm.data.toy2d(toy, max(n // 4, 100), seed=1)
    floor = pgm.data.TOY2D_ENTROPY.get(toy, float("nan"))
    fig = Figure(figsize=(3 * len(OBJECTIVES), 6))
    nll = {}
    for i, objective in enumerate(OBJECTIVES):
        energy, sample = train(objective, x, epochs, hidden, 20 if quick else 500)
        log_z = grid_log_z(energy, n=60 if quick else 400)
        with torch.no_grad():
            nll[objective] = energy(x_test).mean().item() + log_z
        print(f"{objective:>12}: test NLL {nll[objective]:.3f} nats (entropy floor {floor:.3f})")
        with torch.no_grad():
            panel = pgm.diagnostics.plot_density_2d(
                lambda v, e=energy, z=log_z: -e(v) - z, grid=30 if quick else 200
            )
        ax = fig.add_subplot(2, len(OBJECTIVES), i + 1)
        ax.imshow(panel.axes[0].images[0].get_array(), origin="lower", cmap="viridis")
        ax.set_title(f"{objective}: {nll[objective]:.2f} nats")
        ax.axis("off")
        ax = fig.add_subplot(2, len(OBJECTIVES), len(OBJECTIVES) + i + 1)
        s = sample(64 if quick else 2000).numpy()
        sns.kdeplot(x=s[:, 0], y=s[:, 1], fill=True, ax=ax, levels=8, warn_singular=False)
        ax.set(xlim=(-4, 4), ylim=(-4, 4), title="samples")
        ax.axis("off")
    if out:
        fig.savefig(out, dpi=80)
    return {"nll": nll, "floor": floor, "figure": fig}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy", default="8gaussians")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default=None, help="where to save the figure")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    main(args.quick, args.toy, args.epochs, args.out)
