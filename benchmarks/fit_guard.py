"""Cost of ``fit``'s non-finite guard, as a share of a training step.

``fit`` checks the loss and, with one fused reduction, the gradients and parameters of
every step (:mod:`pyro_genmodels.training.guard`); an Adam update whose bounds prove it
finite then runs as it is, any other is snapshotted (parameters and optimizer state,
fused copies), checked and undone if needed. This script times steady epochs of the
same VAE, data, batches, compiled analytic-KL loss and optimizer under ``pgm.fit`` with

- the guard as it is (``guard``),
- every update snapshotted and checked, the guard's slow path (``guard, snapshot path``:
  what every step paid before the bound was used),
- no guard at all (``no guard``: the optimizer's update alone, monkeypatched in),

interleaved repeat by repeat in one process, and writes seconds per step and the guard's
cost in percent of an unguarded step to ``benchmarks/results/fit_guard.csv``.

Usage (from the repository root, so that this checkout is the one imported)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/fit_guard.py   # digits and mnist5k
    PYTHONPATH=. python benchmarks/fit_guard.py --quick              # smoke test (seconds)
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import warnings
from collections.abc import Iterator

import pandas as pd
import pyro
import torch
from _results import RESULTS, save  # benchmarks/_results.py

import pyro_genmodels as pgm
from pyro_genmodels.training import guard as guard_module

SIZES = {"digits": (256, 8), "mnist5k": (512, 32)}


@contextlib.contextmanager
def _variant(name: str) -> Iterator[None]:
    guard = guard_module.UpdateGuard
    saved = guard.update, guard._provably_finite
    if name == "no guard":
        guard.update = lambda self, params: self.optim(params)  # type: ignore[method-assign]
    elif name == "guard, snapshot path":
        guard._provably_finite = lambda self, *args: False  # type: ignore[method-assign]
    try:
        yield
    finally:
        guard.update, guard._provably_finite = saved


def time_step(x: torch.Tensor, dataset: str, variant: str, batch: int) -> float:
    """Seconds per step of fit's second epoch (the first traces the compiled loss)."""
    hidden, z_dim = SIZES[dataset]
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = pgm.models.VAE(x.shape[1], z_dim, hidden_dims=(hidden, hidden))
    with _variant(variant), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = pgm.fit(vae.model, vae.guide, x, loss=pyro.infer.TraceMeanField_ELBO(),
                          epochs=2, batch_size=batch, progress=False)  # fmt: skip
    return float(history["time"].iloc[1]) / -(-x.shape[0] // batch)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke test")
    p.add_argument("--repeats", type=int, default=9, help="interleaved repeats per variant")
    p.add_argument("--out", default=str(RESULTS / "fit_guard.csv"))
    args = p.parse_args(argv)
    variants = ["guard", "guard, snapshot path", "no guard"]
    rows = []
    for dataset in ["digits"] if args.quick else ["digits", "mnist5k"]:
        x = pgm.data.load(dataset, binarize=True).train
        x = x[:256] if args.quick else x
        times: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(2 if args.quick else args.repeats):
            for variant in variants:
                times[variant].append(time_step(x, dataset, variant, 128))
        bare = statistics.median(times["no guard"])
        hidden, _ = SIZES[dataset]
        for variant in variants:
            step = statistics.median(times[variant])
            rows.append({"dataset": dataset, "hidden": hidden, "variant": variant,
                         "s_per_step": step, "cost_percent_of_a_step": 100 * (step / bare - 1),
                         "repeats": len(times[variant]),
                         "threads": torch.get_num_threads()})  # fmt: skip
            print(f"{dataset:8s} {variant:22s} {step * 1e3:7.2f} ms/step "
                  f"{100 * (step / bare - 1):+6.1f}% of an unguarded step")  # fmt: skip
    table = pd.DataFrame(rows)
    if not args.quick:
        save(table, args.out)
    return table


if __name__ == "__main__":
    main()
