"""An energy-based model of dequantized digits, trained by persistent contrastive
divergence; test NLL by annealed importance sampling (with its standard error) and a
grid of Langevin samples.

    python examples/ebm_digits.py --epochs 30 --out ebm_digits.png

``log Z`` is unknown during training; ``pgm.infer.ais`` estimates it afterwards. The
NLL is reported in the pixel space ``[0, 17)^64``, as for the flows.
"""

from __future__ import annotations

import argparse
import math

import pyro
import torch

import pyro_genmodels as pgm
from pyro_genmodels.distributions import EnergyDistribution
from pyro_genmodels.infer import ContrastiveDivergenceLoss, LangevinSampler, ais


def main(quick: bool = False, epochs: int = 30, out: str | None = None) -> dict:
    """Returns ``{"test_nll", "stderr", "history", "samples", "figure"}``."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    data = pgm.data.load("digits")
    x, x_test = (data.train[:256], data.test[:64]) if quick else (data.train, data.test)
    loc, scale = x.mean(0), x.std(0).clamp_min(1e-3)
    energy = pgm.nn.EnergyMLP(64, [16] * 2 if quick else [256, 256], loc, scale, confine=2.0)
    step = 0.01 * float(scale.mean()) ** 2
    sampler = LangevinSampler(step, 20, clamp=(0.0, 1.0), init_loc=loc, init_scale=scale)

    def model(xb: torch.Tensor) -> None:
        pyro.module("energy", energy)
        with pyro.plate("data", xb.shape[0]):
            pyro.sample("x", EnergyDistribution(energy, (64,), sampler=sampler), obs=xb)

    loss = ContrastiveDivergenceLoss(k=20, persistent=True, energy_reg=0.1)
    history = pgm.fit(
        model, lambda xb: None, x, loss=loss, epochs=1 if quick else epochs, progress=False
    )
    target = EnergyDistribution(energy, (64,))
    log_z, stderr = ais(
        target,
        num_chains=10 if quick else 100,
        num_betas=20 if quick else 1000,
        base_loc=loc,
        base_scale=scale,
        adapt_step_size=True,
    )
    with torch.no_grad():
        nll = (energy(x_test).mean() + log_z).item() + 64 * math.log(17)
    print(f"test NLL {nll:.2f} ± {stderr.item():.2f} nats (AIS, pixel space [0, 17)^64)")
    x0 = loc + scale * torch.randn(64, 64)
    samples = LangevinSampler(step, 20 if quick else 500, adjust=True).run(target, x0)
    fig = pgm.diagnostics.plot_samples(samples.clamp(0, 1), (1, 8, 8))
    if out:
        fig.savefig(out, dpi=80)
    return {
        "test_nll": nll,
        "stderr": stderr.item(),
        "history": history,
        "samples": samples,
        "figure": fig,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default=None, help="where to save the sample grid")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    main(args.quick, args.epochs, args.out)
