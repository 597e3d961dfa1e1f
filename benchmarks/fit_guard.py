"""Cost of ``fit``'s guarded step against ``pyro.infer.SVI.step``.

``fit`` checks loss and gradients before each update and the parameters after
it, keeping a copy of the stepped parameters and of their optimizer state to
undo a non-finite update. This script times one epoch of the same VAE, data,
batches, loss and optimizer (``pgm.optim.Adam``) under ``pgm.fit`` and under a
plain ``SVI`` loop, interleaved in one process, and writes seconds per step
and the ratio to ``benchmarks/results/fit_guard.csv``.

Usage (from the repository root, so that this checkout is the one imported)::

    PYTHONPATH=. python benchmarks/fit_guard.py          # hidden 256 and 1024 (2 minutes)
    PYTHONPATH=. python benchmarks/fit_guard.py --quick  # smoke test (seconds)
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd
import pyro
import torch

import pyro_genmodels as pgm

RESULTS = Path(__file__).parent / "results"


def _vae(hidden: int) -> pgm.models.VAE:
    torch.manual_seed(0)
    return pgm.models.VAE(64, 8, hidden_dims=(hidden, hidden))


def time_fit(x: torch.Tensor, hidden: int, batch: int) -> float:
    pyro.clear_param_store()
    vae = _vae(hidden)
    history = pgm.fit(
        vae.model,
        vae.guide,
        x,
        optim=pgm.optim.Adam({"lr": 1e-3}),
        epochs=1,
        batch_size=batch,
        shuffle=False,
        progress=False,
    )
    return float(history["time"].iloc[0]) / -(-x.shape[0] // batch)


def time_svi(x: torch.Tensor, hidden: int, batch: int) -> float:
    pyro.clear_param_store()
    vae = _vae(hidden)
    svi = pyro.infer.SVI(
        vae.model, vae.guide, pgm.optim.Adam({"lr": 1e-3}), pyro.infer.Trace_ELBO()
    )
    batches = x.split(batch)
    start = time.perf_counter()
    for b in batches:
        svi.step(b)
    return (time.perf_counter() - start) / len(batches)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(RESULTS / "fit_guard.csv"))
    args = p.parse_args()
    torch.set_num_threads(1)
    x = pgm.data.load("digits", binarize=True).train
    widths, repeats = ([32], 1) if args.quick else ([256, 1024], args.repeats)
    rows = []
    time_svi(x[:256], widths[0], 128), time_fit(x[:256], widths[0], 128)  # warm-up (first calls)
    for hidden in widths:
        fit_times, svi_times = [], []
        for _ in range(repeats):  # interleaved, so load from other processes hits both alike
            svi_times.append(time_svi(x, hidden, 128))
            fit_times.append(time_fit(x, hidden, 128))
        f, s = statistics.median(fit_times), statistics.median(svi_times)
        params = sum(p.numel() for p in _vae(hidden).parameters())
        rows.append(
            {
                "hidden": hidden,
                "parameters": params,
                "batch_size": 128,
                "fit_s_per_step": f,
                "svi_s_per_step": s,
                "ratio_fit_over_svi": f / s,
                "repeats": repeats,
            }
        )
        print(rows[-1])
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
