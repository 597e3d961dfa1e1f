"""``pgm.fit`` on small models against the peer library a user would pick instead.

Small models are where a training loop's fixed cost per step shows: a few hundred
microseconds of Python around a step of a millisecond. Rows, each a ratio of seconds per
step measured in one process, epoch by epoch interleaved (so load on the machine hits
both alike); ``fit``'s ratio is the median of the per-epoch ratios (each epoch of ``fit``
against the peer's epoch right after it), with their spread; one thread:

- MAF (5 layers, 2x64 hidden units) on two moons, batch 256: ``pgm.fit`` as the README
  shows it (``FlowDensity(2, "maf")``, every default) against zuko's MAF of the same size
  in a plain PyTorch loop; and the same plain loop around both networks (the networks'
  own difference);
- denoising score matching on eight Gaussians (an MLP energy 2-128-128-1, SiLU, σ = 0.1),
  batch 256: ``pgm.fit`` with ``ScoreMatchingLoss("denoising", antithetic=False)`` (one
  noise draw per point, the estimator torchebm computes; the default pairs ε with −ε and
  so evaluates the network on twice the points) against torchebm's
  ``DenoisingScoreMatching`` on the same network in a plain loop: on the energy's
  ``pgm.models.EnergyModel`` as the README shows it (whose step skips the Pyro program),
  and on the same program written by hand (``pyro.module``, a plate, the site);
- the first epoch's extra seconds of ``fit`` (setup, priming, tracing).

Results: ``benchmarks/results/fit_speed.csv``. Usage (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/fit_speed.py
    PYTHONPATH=. python benchmarks/fit_speed.py --quick   # smoke test
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import pandas as pd
import pyro
import torch
from _results import RESULTS, save  # benchmarks/_results.py

import pyro_genmodels as pgm
from pyro_genmodels.training.rng import forked_rng

BATCH, LAYERS, HIDDEN, SIGMA = 256, 5, 64, 0.1


class Interleaved:
    """A ``fit`` callback timing, after each of fit's epochs, one epoch of each plain loop
    ``step(batch)`` over the same shuffled batches (random states forked)."""

    def __init__(self, x: torch.Tensor, steps: dict[str, Callable[[torch.Tensor], None]]):
        self.x, self.steps = x, steps
        self.seconds: dict[str, list[float]] = {name: [] for name in steps}

    def on_epoch_end(self, state) -> None:
        with forked_rng():
            batches = self.x[torch.randperm(len(self.x))].split(BATCH)
            for name, step in self.steps.items():
                start = time.perf_counter()
                for batch in batches:
                    step(batch)
                self.seconds[name].append(time.perf_counter() - start)


def plain_loop(module: torch.nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor]):
    """One Adam step of ``loss_fn`` (a batch's summed loss) on ``module``'s parameters."""
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step(batch: torch.Tensor) -> None:
        loss = loss_fn(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()

    return step


def maf_case(x: torch.Tensor) -> tuple[Callable, dict]:
    import zuko

    flow = pgm.models.FlowDensity(2, "maf", num_layers=LAYERS, hidden_dims=[HIDDEN, HIDDEN])
    twin = pgm.models.FlowDensity(2, "maf", num_layers=LAYERS, hidden_dims=[HIDDEN, HIDDEN])
    peer = zuko.flows.MAF(2, transforms=LAYERS, hidden_features=(HIDDEN, HIDDEN))
    plain = {
        "zuko MAF, plain loop": plain_loop(peer, lambda b: -peer().log_prob(b).sum()),
        "pgm MAF, plain loop": plain_loop(twin, lambda b: -twin.log_prob(b).sum()),
    }

    def run(callbacks: list, epochs: int):
        return pgm.fit(flow.model, flow.guide, x, epochs=epochs, batch_size=BATCH,
                       callbacks=callbacks, progress=False)  # fmt: skip

    return run, plain


def dsm_case(x: torch.Tensor, by_hand: bool = False) -> tuple[Callable, dict]:
    from torchebm.core import BaseModel
    from torchebm.losses import DenoisingScoreMatching

    def mlp() -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Linear(2, 128), torch.nn.SiLU(), torch.nn.Linear(128, 128),
            torch.nn.SiLU(), torch.nn.Linear(128, 1),
        )  # fmt: skip

    net, peer_net = mlp(), mlp()

    class Wrapped(BaseModel):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return self.inner(v)

    peer = DenoisingScoreMatching(Wrapped(peer_net), noise_scale=SIGMA)

    def by_hand_model(xb: torch.Tensor) -> None:
        pyro.module("energy", net)
        with pyro.plate("data", xb.shape[0]):
            pyro.sample("x", pgm.distributions.EnergyDistribution(net, (2,)), obs=xb)

    ebm = pgm.models.EnergyModel(net, (2,))
    model, guide = (by_hand_model, lambda xb: None) if by_hand else (ebm.model, ebm.guide)
    plain = {"torchebm DSM, plain loop": plain_loop(peer_net, lambda b: peer(b))}

    def run(callbacks: list, epochs: int):
        return pgm.fit(model, guide, x, loss=pgm.infer.ScoreMatchingLoss(
            "denoising", noise_scale=SIGMA, antithetic=False), epochs=epochs, batch_size=BATCH,
            callbacks=callbacks, progress=False)  # fmt: skip

    return run, plain


#: case: (toy data, builder, the peer's row, what the fit row runs)
CASES = {
    "MAF, two moons": ("moons", maf_case, "zuko MAF, plain loop",
                       "pgm.fit as the README shows it"),
    "denoising score matching, 8 Gaussians": ("8gaussians", dsm_case,
                                              "torchebm DSM, plain loop",
                                              "pgm.fit on EnergyModel as the README shows it, "
                                              "one-sided DSM (antithetic=False)"),
    "denoising score matching, 8 Gaussians, a hand-written model": (
        "8gaussians", lambda x: dsm_case(x, by_hand=True), "torchebm DSM, plain loop",
        "pgm.fit on the program written by hand, one-sided DSM"),
}  # fmt: skip


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke test")
    p.add_argument("--epochs", type=int, default=30, help="timed epochs (after the first)")
    p.add_argument("--out", default=str(RESULTS / "fit_speed.csv"))
    args = p.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    rows = []
    for case, (toy, build, reference, label) in CASES.items():
        pyro.clear_param_store()
        torch.manual_seed(0)
        x = pgm.data.toy2d(toy, 2048 if args.quick else 8192, seed=0)
        run, plain = build(x)
        timer = Interleaved(x, plain)
        history = run([timer], epochs + 1)
        steps = -(-len(x) // BATCH)
        fit_times = [float(t) / steps for t in history["time"].iloc[1:]]
        ours = statistics.median(fit_times)
        ref = [t / steps for t in timer.seconds[reference][1:]]
        base = statistics.median(ref)
        per_epoch = [a / b for a, b in zip(fit_times, ref)]
        common = {"case": case, "epochs": epochs, "threads": torch.get_num_threads()}
        rows.append({**common, "what": label, "s_per_step": ours,
                     "ratio_to_peer": statistics.median(per_epoch),  # paired epochs
                     "spread": f"{min(per_epoch):.2f}-{max(per_epoch):.2f}"})  # fmt: skip
        for name, seconds in timer.seconds.items():
            value = statistics.median(seconds[1:]) / steps
            rows.append({**common, "what": name, "s_per_step": value,
                         "ratio_to_peer": value / base, "spread": ""})  # fmt: skip
        first = float(history["time"].iloc[0]) - ours * steps
        rows.append({**common, "what": "first epoch's extra seconds of fit (s)",
                     "s_per_step": first, "ratio_to_peer": float("nan"), "spread": ""})  # fmt: skip
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200):
        print(table)
    if not args.quick:
        save(table, args.out)
    return table


if __name__ == "__main__":
    main()
