"""Normalizing flows on every 2-D toy density; test NLL against the data's entropy,
density plots with seaborn.

    python examples/flow_toy2d.py --flow realnvp --epochs 20 --out toy2d.png

Trains ``pgm.models.FlowDensity`` by maximum likelihood (``Trace_ELBO`` with an
empty guide is the exact NLL) on each toy of ``pgm.data.toy2d`` and draws the
learned densities with ``pgm.diagnostics.plot_density_2d``.
"""

from __future__ import annotations

import argparse

import pyro
import torch
from matplotlib.figure import Figure

import pyro_genmodels as pgm
from pyro_genmodels.models import FlowDensity

TOYS = ("two_moons", "8gaussians", "25gaussians", "checkerboard", "pinwheel", "rings", "2spirals")


def train_toy(toy: str, flow: str, epochs: int, n: int, layers: int, hidden: int) -> tuple:
    """Fits one toy; returns the model and its test NLL in nats."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    x, x_test = pgm.data.toy2d(toy, n=n, seed=0), pgm.data.toy2d(toy, n=max(n // 4, 100), seed=1)
    kwargs = {"bound": 5.0} if flow == "spline" else {}
    model = FlowDensity(2, flow, num_layers=layers, hidden_dims=[hidden, hidden], **kwargs)
    pgm.fit(
        model.model,
        model.guide,
        x,
        loss=pyro.infer.Trace_ELBO(),
        optim=pgm.optim.Adam({"lr": 1e-3}),
        epochs=epochs,
        batch_size=256,
        progress=False,
    )
    with torch.no_grad():
        return model, -model.log_prob(x_test).mean().item()


def main(
    quick: bool = False, flow: str = "realnvp", epochs: int = 20, out: str | None = None
) -> dict:
    """Returns ``{"nll": {toy: nats}, "entropy": {toy: nats}, "figure": Figure}``."""
    n, layers, hidden = (20000, 8, 64) if not quick else (256, 1, 8)
    epochs = 1 if quick else epochs
    fig = Figure(figsize=(3 * len(TOYS), 3))
    nll = {}
    for i, toy in enumerate(TOYS):
        model, nll[toy] = train_toy(toy, flow, epochs, n, layers, hidden)
        floor = pgm.data.TOY2D_ENTROPY.get(toy, float("nan"))
        print(f"{toy:>12}: test NLL {nll[toy]:.3f} nats (entropy floor {floor:.3f})")
        with torch.no_grad():
            panel = pgm.diagnostics.plot_density_2d(model.log_prob, grid=30 if quick else 200)
        ax = fig.add_subplot(1, len(TOYS), i + 1)
        ax.imshow(panel.axes[0].images[0].get_array(), origin="lower", cmap="viridis")
        ax.set_title(toy)
        ax.axis("off")
    if out:
        fig.savefig(out, dpi=80)
    return {"nll": nll, "entropy": dict(pgm.data.TOY2D_ENTROPY), "figure": fig}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", default="realnvp", choices=pgm.flows.INVERTIBLE)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default=None, help="where to save the density figure")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    main(args.quick, args.flow, args.epochs, args.out)
