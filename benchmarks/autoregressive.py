"""Autoregressive family benchmark: exact test NLL, sampling speed, density throughput.

Writes ``benchmarks/results/autoregressive.csv`` with one row per measurement:

* ``nll``: exact test NLL (nats) of FVSBN, NADE, MADE (1 mask; 8-mask ensemble),
  PixelCNN and an LSTM over pixels on binarized digits and binarized mnist5k,
  beside a K=100 Bernoulli mixture fitted by EM in the same run (ratio column:
  NLL / mixture NLL). Each model trains on the training split minus a
  validation tail and keeps the epoch with the best validation NLL.
* ``sample``: images per second of each trained model's sampler, and for
  NADE, MADE and FVSBN the speed-up of the incremental sampler over the naive
  one (one full network pass per dimension), interleaved in this process.
* ``density``: images per second of ``log_prob`` (eval mode, no grad) for MADE,
  the MADE ensemble and PixelCNN.

Usage::

    python benchmarks/autoregressive.py            # full run (about 20 minutes on 1 busy core)
    python benchmarks/autoregressive.py --quick    # smoke test (seconds)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import pyro
import torch

import pyro_genmodels as pgm
from pyro_genmodels.distributions import AutoregressiveDistribution, BernoulliMixture

RESULTS = Path(__file__).parent / "results"
MODELS = ["fvsbn", "nade", "made", "made-ensemble", "pixelcnn", "lstm"]
# (build kwargs, epochs, learning rate, batch size) per dataset; chosen to keep the full run
# under 20 minutes on one busy core (the LSTM trains best with small batches: more steps)
BUDGETS = {
    "digits": {
        "fvsbn": ({}, 60, 3e-3, 100),
        "nade": ({"hidden": 100}, 60, 3e-3, 100),
        "made": ({"hidden": 256}, 60, 3e-3, 100),
        "made-ensemble": ({"hidden": 256, "num_masks": 8}, 60, 3e-3, 100),
        "pixelcnn": ({"channels": 32, "layers": 3}, 40, 3e-3, 100),
        "lstm": ({"hidden": 64}, 40, 3e-3, 32),
    },
    "mnist5k": {
        "fvsbn": ({}, 100, 3e-3, 100),
        "nade": ({"hidden": 100}, 25, 3e-3, 100),
        "made": ({"hidden": 500}, 100, 3e-3, 100),
        "made-ensemble": ({"hidden": 500, "num_masks": 8}, 100, 3e-3, 100),
        "pixelcnn": ({"channels": 32, "layers": 3}, 15, 3e-3, 100),
        "lstm": ({"hidden": 64}, 6, 3e-3, 32),
    },
}
EM_ITERS = 50
QUICK = {
    name: ({"hidden": 16} if name in ("nade", "made", "lstm") else {}, 1, 1e-3, 100)
    for name in MODELS
}
QUICK["made-ensemble"] = ({"hidden": 16, "num_masks": 2}, 1, 1e-3, 100)
QUICK["pixelcnn"] = ({"channels": 8, "layers": 1}, 1, 1e-3, 100)


def _dist(setup: pgm.zoo.Setup, data: pgm.data.Dataset) -> AutoregressiveDistribution:
    net = setup.module
    kwargs = {"length": data.num_dims} if isinstance(net, pgm.nn.RNN) else {}
    return AutoregressiveDistribution(net, "bernoulli", **kwargs)


def _events(setup: pgm.zoo.Setup, data: pgm.data.Dataset, x: torch.Tensor) -> torch.Tensor:
    shape = data.image_shape if isinstance(setup.module, pgm.nn.PixelCNN) else (data.num_dims,)
    return x.reshape(-1, *shape)


def exact_nll(setup, data, x: torch.Tensor) -> float:
    net, was = setup.module, setup.module.training
    net.eval()
    with torch.no_grad():
        d = _dist(setup, data)
        nll = torch.cat([-d.log_prob(_events(setup, data, t)) for t in x.split(250)]).mean()
    net.train(was)
    return float(nll)


def bench_nll(name: str, data, budget) -> tuple[dict, pgm.zoo.Setup]:
    kwargs, epochs, lr, batch_size = budget
    n_valid = max(32, data.train.shape[0] // 8)
    train, valid = data.train[:-n_valid], data.train[-n_valid:]
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    setup = pgm.zoo.build(name, data, **kwargs)
    start = time.perf_counter()
    history = pgm.fit(  # val_loss = exact validation NLL (empty guide); best epoch restored
        setup.model,
        setup.guide,
        train,
        loss=setup.loss,
        optim=pgm.optim.Adam({"lr": lr}),
        epochs=epochs,
        batch_size=batch_size,
        validation=valid,
        keep_best=True,
        progress=False,
    )
    seconds = time.perf_counter() - start
    best_epoch = int(history.loc[history["val_loss"].idxmin(), "epoch"])
    nll = exact_nll(setup, data, data.test)
    row = {
        "kind": "nll",
        "dataset": data.name,
        "model": name,
        "value": nll,
        "unit": "nats",
        "seconds": seconds,
        "epochs": epochs,
        "note": f"best epoch {best_epoch}; {kwargs}; lr {lr}; batch {batch_size}",
    }
    return row, setup


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_sampling(name, setup, data, n: int, naive: bool) -> list[dict]:
    setup.module.eval()
    d = _dist(setup, data)
    rows = []
    with torch.no_grad():
        fast = _time(lambda: d.sample((n,)))
        rows.append(
            {
                "kind": "sample",
                "dataset": data.name,
                "model": name,
                "value": n / fast,
                "unit": "images/s",
                "seconds": fast,
                "note": f"{n} images, incremental",
            }
        )
        if naive:
            slow = _time(lambda: d.sample((n,), incremental=False))
            again = _time(lambda: d.sample((n,)))  # interleaved: fast, slow, fast
            fast = min(fast, again)
            rows.append(
                {
                    "kind": "sample-speedup",
                    "dataset": data.name,
                    "model": name,
                    "value": slow / fast,
                    "unit": "x",
                    "seconds": slow,
                    "note": f"naive {n / slow:.1f} images/s vs incremental {n / fast:.1f}",
                }
            )
    return rows


def bench_density(name, setup, data, x: torch.Tensor) -> dict:
    setup.module.eval()
    d = _dist(setup, data)
    with torch.no_grad():
        d.log_prob(_events(setup, data, x[:10]))  # warm-up
        seconds = min(_time(lambda: d.log_prob(_events(setup, data, x))) for _ in range(3))
    return {
        "kind": "density",
        "dataset": data.name,
        "model": name,
        "value": len(x) / seconds,
        "unit": "images/s",
        "seconds": seconds,
        "note": f"log_prob of {len(x)} test images",
    }


def run(datasets: list[str], quick: bool, components: int) -> pd.DataFrame:
    rows = []
    for dataset in datasets:
        data = pgm.data.load(dataset, binarize=True)
        start = time.perf_counter()
        mixture = BernoulliMixture.fit_em(data.train, num_components=components, num_iters=EM_ITERS)
        ref = float(-mixture.log_prob(data.test).mean())
        rows.append(
            {
                "kind": "nll",
                "dataset": dataset,
                "model": f"bernoulli-mixture-{components}",
                "value": ref,
                "unit": "nats",
                "seconds": time.perf_counter() - start,
                "epochs": 0,
                "note": f"EM, at most {EM_ITERS} iterations",
            }
        )
        for name in MODELS:
            budget = QUICK[name] if quick else BUDGETS[dataset][name]
            row, setup = bench_nll(name, data, budget)
            row["ratio_to_mixture"] = row["value"] / ref
            rows.append(row)
            print(
                f"{dataset:8s} {name:14s} {row['value']:8.2f} nats ({row['seconds']:.0f} s)",
                flush=True,
            )
            n = 4 if quick else (16 if name == "pixelcnn" else 100)
            naive = name in ("nade", "made", "fvsbn")
            rows += bench_sampling(name, setup, data, n, naive and (quick or dataset == "mnist5k"))
            if name in ("made", "made-ensemble", "pixelcnn"):
                rows.append(bench_density(name, setup, data, data.test[: 64 if quick else 1000]))
    return pd.DataFrame(rows)


def main(quick: bool = False) -> pd.DataFrame:
    torch.set_num_threads(1)  # a shared, loaded CPU: no oversubscription
    datasets = ["digits"] if quick else ["digits", "mnist5k"]
    table = run(datasets, quick, components=10 if quick else 100)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table.drop(columns=["note"]).to_string(index=False, float_format="%.3f"))
    if not quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        table.to_csv(RESULTS / "autoregressive.csv", index=False)
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    main(parser.parse_args().quick)
