"""Data-parallel scaling and data-loading overhead of ``pgm.fit``.

Writes ``benchmarks/results/scale.csv`` with rows of two kinds:

* ``processes``: training samples/s of MADE and the VAE on binarized mnist5k
  (4000 training images, global batches of 128 and 512) with 1, 2 and 4 processes
  joined by ``torch.distributed`` (gloo on CPU, one thread each), and on 1..n GPUs
  (NCCL) when CUDA is present. Each run trains ``--epochs`` epochs; the rate
  is that of the last epoch (the first warms up), from ``fit``'s history.
* ``loader``: one process, the same models fed by in-memory tensors, by a
  ``DataLoader`` over a ``TensorDataset`` (``num_workers=0``) and by one with
  2 persistent worker processes, interleaved over 3 rounds (medians); the
  overhead is the ratio of epoch times.

Usage::

    python benchmarks/scale.py            # a few minutes on 2 cores
    python benchmarks/scale.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyro
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package
import pyro_genmodels as pgm  # noqa: E402
from pyro_genmodels.distributions import AutoregressiveDistribution

RESULTS = Path(__file__).parent / "results"
BATCH = 128


def _setup(name: str, quick: bool):
    """(model, guide) of ``name`` on 784-dim binary images, seeded alike on every rank."""
    torch.manual_seed(0)
    hidden = 32 if quick else (256 if name == "made" else 512)
    if name == "made":
        net = pgm.nn.MADE(784, [hidden])

        def model(x):
            pyro.module("made", net)
            with pyro.plate("data", x.shape[0]):
                pyro.sample("x", AutoregressiveDistribution(net, "bernoulli"), obs=x)

        return model, lambda x: None
    vae = pgm.models.VAE(784, 32, hidden_dims=(hidden, hidden))
    return vae.model, vae.guide


def _fit(name: str, data, epochs: int, quick: bool, **kwargs) -> float:
    """Samples/s of the last epoch."""
    pyro.clear_param_store()
    model, guide = _setup(name, quick)
    h = pgm.fit(
        model,
        guide,
        data,
        optim=pgm.optim.Adam({"lr": 1e-3}),
        epochs=epochs,
        seed=0,
        progress=False,
        **kwargs,
    )
    n = len(data.dataset) if isinstance(data, DataLoader) else len(data)
    return n / float(h["time"].iloc[-1])


def _train_images(quick: bool) -> torch.Tensor:
    x = pgm.data.load("mnist5k", binarize=True).train
    return x[:512] if quick else x


def _worker(
    rank: int,
    world: int,
    port: int,
    out: str,
    name: str,
    epochs: int,
    quick: bool,
    cuda: bool,
    batch: int,
) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
         "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)}
    )  # fmt: skip
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=300))
    try:
        device = torch.device("cuda", rank) if cuda else torch.device("cpu")
        rate = _fit(name, _train_images(quick), epochs, quick, batch_size=batch, device=device)
        if rank == 0:
            Path(out).write_text(str(rate))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_processes(
    name: str, world: int, epochs: int, quick: bool, cuda: bool, batch: int = BATCH
) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rate")
        args = (world, _free_port(), out, name, epochs, quick, cuda, batch)
        mp.start_processes(_worker, args=args, nprocs=world, start_method="spawn")
        return float(Path(out).read_text())


def bench_loader(name: str, epochs: int, quick: bool, rounds: int) -> dict[str, float]:
    """Median samples/s of each input path over ``rounds`` interleaved rounds."""
    x = _train_images(quick)
    torch.set_num_threads(1)
    loaders = {
        f"DataLoader, {workers} workers": DataLoader(
            TensorDataset(x),
            batch_size=BATCH,
            shuffle=True,
            num_workers=workers,
            persistent_workers=workers > 0,
        )  # fmt: skip
        for workers in (0, 2)
    }
    rates: dict[str, list[float]] = {"tensors": [], **{k: [] for k in loaders}}
    for _ in range(rounds):
        rates["tensors"].append(_fit(name, x, epochs, quick, batch_size=BATCH))
        for setting, loader in loaders.items():
            rates[setting].append(_fit(name, loader, epochs, quick))
    return {k: statistics.median(v) for k, v in rates.items()}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "scale.csv"))
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    machine = f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    rows = []

    def save(row: dict) -> None:
        rows.append({**row, "machine": machine, "torch": torch.__version__})
        print({k: row[k] for k in ("kind", "model", "setting", "samples_per_s")}, flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)

    for name in ("made", "vae"):
        for batch in (BATCH,) if args.quick else (BATCH, 4 * BATCH):
            base = None
            for world in (1, 2) if args.quick else (1, 2, 4):
                start = time.perf_counter()
                rate = bench_processes(name, world, epochs, args.quick, False, batch)
                base = base or rate
                save({"kind": "processes", "model": name,
                      "setting": f"{world} CPU processes, global batch {batch}",
                      "samples_per_s": rate, "speedup": rate / base,
                      "wall_s": time.perf_counter() - start})  # fmt: skip
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        world, gbase = 1, None
        while world <= gpus:
            rate = bench_processes(name, world, epochs, args.quick, cuda=True)
            gbase = gbase or rate
            save({"kind": "processes", "model": name, "setting": f"{world} GPUs",
                  "samples_per_s": rate, "speedup": rate / gbase,
                  "wall_s": float("nan")})  # fmt: skip
            world *= 2
        rates = bench_loader(name, epochs, args.quick, 1 if args.quick else 3)
        for setting, rate in rates.items():
            save({"kind": "loader", "model": name, "setting": setting, "samples_per_s": rate,
                  "speedup": rate / rates["tensors"], "wall_s": float("nan")})  # fmt: skip
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
