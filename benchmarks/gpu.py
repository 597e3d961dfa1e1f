"""GPU throughput: training images/s of the conv VAE, PixelCNN and multiscale Glow.

For each model and each precision (``fp32``; ``bf16`` = autocast with float32
master weights, :mod:`pyro_genmodels.training.loss_stack`) one ``pyro.infer.SVI`` step
(loss, backward, ``pgm.optim.Adam`` update, the loss read back as a float, as
:func:`pyro_genmodels.fit` does) is timed on batches of mnist5k held on the
device. The floating-point operations of one training step (forward and
backward matrix products and convolutions) are counted once with
``torch.utils.flop_counter.FlopCounterMode``; achieved FLOP/s is that count
times steps per second, reported as a share of the card's dense bf16 peak
(looked up by device name in :data:`BF16_PEAK`, "unknown" for other cards).
The share is of the *bf16* peak for both precisions, so the fp32 rows show
how far plain float32 is from what the card could do.

Writes ``benchmarks/results/gpu.csv`` (or ``--out``). Without CUDA it prints
a skip message and exits 0 without writing. ``--device cpu --smoke`` runs
every code path with tiny networks and batches on the CPU (seconds).

Usage::

    python benchmarks/gpu.py                       # on a CUDA machine, about 2 minutes
    python benchmarks/gpu.py --device cpu --smoke --out /tmp/gpu.csv
"""

from __future__ import annotations

import argparse
import math
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyro
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package
from _results import RESULTS, save  # benchmarks/_results.py

import pyro_genmodels as pgm  # noqa: E402
from pyro_genmodels.training.loss_stack import stack

# Dense (no sparsity) bf16 tensor-core peaks, FLOP/s, from the vendors' data sheets.
# Ordered: the first pattern matching the lower-cased device name wins.
BF16_PEAK: list[tuple[str, float]] = [
    (r"\bh200\b", 989e12),  # H200 SXM (and GH200)
    (r"\bh100\b.*\bpcie\b", 756e12),
    (r"\bh100\b.*\bnvl\b", 835e12),
    (r"\bh100\b", 989e12),  # H100 SXM
    (r"\bb200\b", 2250e12),
    (r"\ba100\b", 312e12),
    (r"\bl40s\b", 362e12),
    (r"\bl4\b", 121e12),
]


def bf16_peak(device_name: str) -> float | None:
    """The dense bf16 peak FLOP/s of a card by name, or ``None`` when not in the table."""
    name = device_name.lower()
    for pattern, peak in BF16_PEAK:
        if re.search(pattern, name):
            return peak
    return None


@dataclass
class Bench:
    """A model to time: its Pyro programs, training data (on the device) and batch size."""

    name: str
    config: str
    model: Callable
    guide: Callable
    train: torch.Tensor
    batch_size: int


def _builders(smoke: bool) -> dict[str, Callable[[torch.device], Bench]]:
    """Each model's builder; ``smoke`` shrinks networks and batches to a CPU test size."""
    from pyro_genmodels.zoo.autoregressive import autoregressive_setup

    binary = pgm.data.load("mnist5k", binarize=True)
    pixels = pgm.data.load("mnist5k", binarize=False)
    shape = tuple(binary.image_shape)
    small = 8 if smoke else None

    def vae(device: torch.device) -> Bench:
        z = 32
        m = pgm.models.VAE(784, z, encoder="conv", image_shape=shape).to(device)
        return Bench(
            "vae-conv",
            f"conv encoder/decoder (32, 64 channels), z_dim={z}, Bernoulli",
            m.model,
            m.guide,
            binary.train.to(device),
            small or 1024,
        )

    def pixelcnn(device: torch.device) -> Bench:
        channels, layers = (8, 1) if smoke else (64, 5)
        net = pgm.nn.PixelCNN(shape, channels=channels, num_layers=layers, kernel_size=5)
        setup = autoregressive_setup(net.to(device), binary, shape)
        return Bench(
            "pixelcnn",
            f"{layers} residual 3x3 blocks, {channels} channels, 5x5 type-A input, Bernoulli",
            setup.model,
            setup.guide,
            binary.train.to(device),
            small or 256,
        )

    def glow(device: torch.device) -> Bench:
        steps, hidden = (1, 8) if smoke else (4, 128)
        flow = pgm.models.FlowDensity(
            784,
            "glow",
            num_layers=steps,
            hidden_dims=[hidden, hidden],
            preprocess="logit",
            alpha=0.01,
            levels=256,
            image_shape=shape,
        ).to(device)
        return Bench(
            "glow",
            f"multiscale, 2 scales x {steps} steps, {hidden}-channel couplings, dequantized",
            flow.model,
            flow.guide,
            (pixels.train * 256).to(device),
            small or 256,
        )

    return {"vae-conv": vae, "pixelcnn": pixelcnn, "glow": glow}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(train: torch.Tensor, batch_size: int, seed: int) -> list[torch.Tensor]:
    """Whole batches of a seeded permutation of ``train`` (already on its device)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(train.shape[0], generator=generator).to(train.device)
    n = train.shape[0] // batch_size
    if n == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {train.shape[0]} training images")
    return [train[i] for i in order[: n * batch_size].split(batch_size)]


def _flops_per_step(bench: Bench, batch: torch.Tensor) -> float:
    """FLOPs of one forward + backward of the loss on ``batch`` (float32, no update)."""
    loss = pyro.infer.Trace_ELBO()
    with FlopCounterMode(display=False) as counter:
        loss.loss_and_grads(bench.model, bench.guide, batch)
    for p in pyro.get_param_store().values():
        p.grad = None
    return float(counter.get_total_flops())


def measure(
    build: Callable[[torch.device], Bench],
    precision: str,
    device: torch.device,
    seconds: float,
    warmup: int,
    min_steps: int,
) -> dict:
    """Images/s of one model at one precision: ``warmup`` steps, then at least
    ``min_steps`` steps and ``seconds`` of wall time between device syncs."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    bench = build(device)
    batches = _batches(bench.train, bench.batch_size, seed=0)
    flops = _flops_per_step(bench, batches[0])
    loss = stack(pyro.infer.Trace_ELBO(), False, precision, device)
    svi = pyro.infer.SVI(
        bench.model,
        bench.guide,
        pgm.optim.Adam({"lr": 1e-4}),
        loss=loss.loss,
        loss_and_grads=loss.loss_and_grads,
    )
    losses = [svi.step(batches[i % len(batches)]) for i in range(warmup)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start, steps = time.perf_counter(), 0
    while steps < min_steps or time.perf_counter() - start < seconds:
        losses.append(svi.step(batches[steps % len(batches)]))
        steps += 1
    _sync(device)
    elapsed = time.perf_counter() - start
    step_rate = steps / elapsed
    peak_mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "model": bench.name,
        "precision": precision,
        "batch_size": bench.batch_size,
        "steps": steps,
        "seconds": elapsed,
        "images_per_s": step_rate * bench.batch_size,
        "ms_per_step": 1e3 / step_rate,
        "gflop_per_image": flops / bench.batch_size / 1e9,
        "achieved_tflops": flops * step_rate / 1e12,
        "loss_per_image_first": losses[0] / bench.batch_size,
        "loss_per_image_last": losses[-1] / bench.batch_size,
        "losses_finite": all(math.isfinite(v) for v in losses),
        "peak_mem_gib": peak_mem,
        "config": bench.config,
    }


def main(argv: list[str] | None = None) -> pd.DataFrame | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(RESULTS / "gpu.csv"), help="CSV path")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu")
    p.add_argument("--smoke", action="store_true", help="tiny networks and batches, seconds")
    p.add_argument("--models", default="vae-conv,pixelcnn,glow")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--seconds", type=float, default=None, help="timed seconds per row")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("benchmarks/gpu.py: skipped, CUDA is not available (nothing written)")
        return None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    builders = _builders(args.smoke)
    unknown = sorted(set(args.models.split(",")) - set(builders))
    if unknown:
        p.error(f"--models: unknown {unknown}; choose from {sorted(builders)}")
    seconds = args.seconds if args.seconds is not None else (0.0 if args.smoke else 10.0)
    warmup, min_steps = (1, 2) if args.smoke else (10, 20)

    name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu {platform.machine()}"
    )
    peak = bf16_peak(name) if device.type == "cuda" else None
    rows = []
    for model in args.models.split(","):
        for precision in args.precisions.split(","):
            row = measure(builders[model], precision, device, seconds, warmup, min_steps)
            row["share_of_bf16_peak"] = (
                "unknown" if peak is None else row["achieved_tflops"] / (peak / 1e12)
            )
            row["bf16_peak_tflops"] = "unknown" if peak is None else peak / 1e12
            rows.append(row)
            share = row["share_of_bf16_peak"]
            print(
                f"{model:9s} {precision}: {row['images_per_s']:10.1f} images/s, "
                f"{row['achieved_tflops']:.3f} TFLOP/s, share of bf16 peak "
                f"{share if peak is None else format(share, '.2%')}",
                flush=True,
            )
    table = pd.DataFrame(rows)
    table["device"] = str(device)
    table["device_name"] = name
    table["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
    table["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    table["torch"] = torch.__version__
    table["pyro"] = pyro.__version__
    table["smoke"] = args.smoke
    save(table, args.out)
    return table


if __name__ == "__main__":
    main()
