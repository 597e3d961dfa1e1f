"""VAE family benchmark: test NLL, training-step speed and evaluation memory.

Writes ``benchmarks/results/vae.csv`` with one row per measurement:

* ``nll``: test NLL in nats (IW-K importance sampling) of every VAE-family zoo
  model on binarized digits and binarized mnist5k, beside a K=100 Bernoulli
  mixture fitted by EM in the same run (exact NLL).
* ``speed``: seconds per training step of ``VAE`` + ``Trace_ELBO`` under
  ``pyro.infer.SVI`` against a plain-PyTorch loop of the same network, batch and
  optimizer, interleaved in one process; the ratio is the figure of merit.
* ``memory``: peak resident memory of ``pgm.infer.log_likelihood`` with
  K=5000 on the 1000 mnist5k test images, measured in a fresh subprocess.
* ``pythae`` (not in the default run; needs the ``bench`` extra): the zoo's VAE
  (``vae.loss()``, and ``Trace_ELBO`` beside it) against pythae's VAE on binarized
  digits and mnist5k, same split, network, initial weights, optimizer and budget,
  both scored by ``pgm.infer.log_likelihood`` with the same K, per seed, and the
  median gap over seeds (``benchmarks/vae_pythae.py``).
* ``pythae_step`` (not in the default run; the ``bench`` extra): one step of both at
  the same weights (initial, and after pgm's training), batch and reparameterization
  noise, the relative difference of their losses and gradients: whether the two
  compute the same thing.

Usage::

    python benchmarks/vae.py                 # full run (about 20 minutes on 2 cores)
    python benchmarks/vae.py --quick         # smoke test (seconds)
    python benchmarks/vae.py --parts pythae  # the side-by-side (about 20 minutes)
    python benchmarks/vae.py --parts pythae_step  # one step of each, compared (3 minutes)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyro
import torch
import torch.nn.functional as F
from _results import RESULTS, stamp  # benchmarks/_results.py

import pyro_genmodels as pgm
from pyro_genmodels.distributions import BernoulliMixture
from pyro_genmodels.training.loss_stack import stack
from pyro_genmodels.training.rng import forked_rng as pyro_genmodels_rng_fork

VAE_MODELS = ["vae", "iwae", "ssvae", "wae", "cvae", "vae-conv"]
# IW samples per model where K=5000 is out of reach on 2 CPU cores: the conv decoder
# costs ~14 MFLOP per 28x28 draw, so IW-5000 on 1000 test images is ~70 TFLOP. A smaller
# K gives a looser (higher) NLL, so a comparison it wins stays conservative.
K_OVERRIDE = {("mnist5k", "vae-conv"): 1000}


def bench_nll(
    dataset: str, epochs: int, num_samples: int, components: int, save: Callable[[list], None]
) -> list[dict]:
    """The mixture baseline, then each VAE-family model; ``save(rows)`` after each."""
    data = pgm.data.load(dataset, binarize=True)
    start = time.perf_counter()
    mixture = BernoulliMixture.fit_em(data.train, num_components=components, num_iters=200)
    common = {"kind": "nll", "dataset": dataset, "unit": "nats"}
    rows = [
        {
            **common,
            "model": f"bernoulli-mixture-{components}",
            "value": float(-mixture.log_prob(data.test).mean()),
            "estimator": "exact",
            "seconds": time.perf_counter() - start,
            "epochs": 0,
        }
    ]
    save(rows)
    for name in VAE_MODELS:
        table, _ = pgm.zoo.run(
            data,
            [name],
            epochs=epochs,
            batch_size=128,  # the batch these rows were measured with (the zoo's VAE budget is 64)
            num_samples=K_OVERRIDE.get((dataset, name), num_samples),
            progress=False,
            hidden=512 if dataset == "mnist5k" else 256,
            z_dim=32 if dataset == "mnist5k" else 8,
        )
        r = table.iloc[0]
        rows.append(
            {
                **common,
                "model": name,
                "value": r.test_nll_nats,
                "estimator": r.estimator,
                "seconds": r.train_seconds + r.eval_seconds,
                "khat_bad_fraction": r.khat_bad_fraction,
                "epochs": epochs,
            }
        )
        save(rows)
    return rows


def _plain_vae_step(enc, dec, opt, x):
    loc, log_scale = enc(x).chunk(2, -1)
    scale = F.softplus(log_scale) + 1e-5  # the same parameterization as pgm's guide
    z = loc + scale * torch.randn_like(loc)
    logits = dec(z)
    rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    kl = 0.5 * (loc**2 + scale**2 - 1).sum(-1) - scale.log().sum(-1)
    loss = (kl - rec).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def _timed(step, x, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step(x)
    return (time.perf_counter() - start) / steps


def bench_speed(dataset: str, steps: int, repeats: int, batch_size: int = 128) -> list[dict]:
    """Seconds per step of ``SVI(VAE, Trace_ELBO)`` (with Pyro's per-parameter Adam, then
    with ``pgm.optim.Adam``, then compiled as ``fit(jit=True)`` does), each interleaved
    with plain PyTorch on the same network."""
    data = pgm.data.load(dataset, binarize=True)
    d, h, zd = data.num_dims, *((512, 32) if dataset == "mnist5k" else (256, 8))
    x = data.train[:batch_size]
    common = {"kind": "speed", "dataset": dataset, "estimator": f"median of {repeats}x{steps}"}
    common.update({"epochs": 0, "seconds": 0.0})
    rows = []
    configs = [
        ("pyro.optim.Adam", pyro.optim.Adam, False),
        ("pgm.optim.Adam", pgm.optim.Adam, False),
        ("pgm.optim.Adam, jit", pgm.optim.Adam, True),
    ]
    for name, optim, jit in configs:
        pyro.clear_param_store()
        vae = pgm.models.VAE(d, zd, hidden_dims=(h, h), likelihood="bernoulli")
        loss = stack(pyro.infer.Trace_ELBO(), jit, "fp32", torch.device("cpu"))
        elbo = loss.unwrap() if jit else loss
        svi = pyro.infer.SVI(vae.model, vae.guide, optim({"lr": 1e-3}), loss=elbo.loss,
                             loss_and_grads=loss.loss_and_grads)  # fmt: skip
        enc, dec = pgm.nn.MLP(d, [h, h], 2 * zd), pgm.nn.MLP(zd, [h, h], d)
        opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)

        def plain(x, enc=enc, dec=dec, opt=opt):
            return _plain_vae_step(enc, dec, opt, x)

        _timed(svi.step, x, 3)  # warm-up
        _timed(plain, x, 3)
        ours, theirs = [], []
        for _ in range(repeats):
            ours.append(_timed(svi.step, x, steps))
            theirs.append(_timed(plain, x, steps))
        p, q = statistics.median(ours), statistics.median(theirs)
        label = f"SVI(VAE, {'JitTrace_ELBO' if jit else 'Trace_ELBO'})"
        rows += [
            {**common, "model": f"{label} + {name.split(',')[0]}", "value": p, "unit": "s/step"},
            {**common, "model": f"plain PyTorch (vs {name})", "value": q, "unit": "s/step"},
            {**common, "model": f"ratio, {name}", "value": p / q, "unit": "ratio"},
        ]
    return rows


class _PlainEpochs:
    """A ``fit`` callback that, after each of fit's epochs, times one epoch of the same
    network in a plain PyTorch loop (same batches' size, shuffled rows, Adam, analytic KL):
    the two are interleaved in one process, so load on the machine hits both alike."""

    def __init__(self, x: torch.Tensor, d: int, h: int, zd: int, batch_size: int) -> None:
        self.x, self.batch_size = x, batch_size
        self.enc, self.dec = pgm.nn.MLP(d, [h, h], 2 * zd), pgm.nn.MLP(zd, [h, h], d)
        self.opt = torch.optim.Adam([*self.enc.parameters(), *self.dec.parameters()], lr=1e-3)
        self.seconds: list[float] = []

    def on_epoch_end(self, state) -> None:
        with pyro_genmodels_rng_fork():
            order = torch.randperm(self.x.shape[0])
            start = time.perf_counter()
            for idx in order.split(self.batch_size):
                _plain_vae_step(self.enc, self.dec, self.opt, self.x[idx])
            self.seconds.append(time.perf_counter() - start)


def bench_fit_speed(dataset: str, repeats: int, batch_size: int = 128) -> list[dict]:
    """Seconds per epoch of ``pgm.fit`` as the README trains the VAE (analytic KL, every
    default: compiled loss, guard on) and with every option a user can turn on for speed
    (Pyro's validation off, torch's fused Adam), each against a plain PyTorch loop of the
    same network, batch and optimizer, interleaved epoch by epoch (medians; the first
    epoch, which traces, is left out)."""
    data = pgm.data.load(dataset, binarize=True)
    d, h, zd = data.num_dims, *((512, 32) if dataset == "mnist5k" else (256, 8))
    x = data.train
    common = {"kind": "speed", "dataset": dataset, "unit": "s/epoch", "epochs": repeats}
    common["estimator"] = f"median of {repeats} epochs, interleaved"
    rows = []
    configs = [
        ("fit as the README shows it", {}, True),
        ("fit, every speed option (validation off, fused Adam)", {"fused": True}, False),
    ]
    for name, adam, validate in configs:
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = pgm.models.VAE(d, zd, hidden_dims=(h, h), likelihood="bernoulli")
        plain = _PlainEpochs(x, d, h, zd, batch_size)
        start = time.perf_counter()
        with pyro.validation_enabled(validate):
            history = pgm.fit(
                vae.model,
                vae.guide,
                x,
                loss=pyro.infer.TraceMeanField_ELBO(),
                optim=pgm.optim.Adam({"lr": 1e-3, **adam}),
                epochs=repeats + 1,
                batch_size=batch_size,
                callbacks=[plain],
                progress=False,
            )
        ours = statistics.median(history["time"].iloc[1:])
        theirs = statistics.median(plain.seconds[1:])
        spread = [float(t) / p for t, p in zip(history["time"].iloc[1:], plain.seconds[1:])]
        common["seconds"] = time.perf_counter() - start
        rows += [
            {**common, "model": name, "value": ours},
            {**common, "model": f"plain PyTorch (vs {name})", "value": theirs},
            {**common, "model": f"ratio, {name}", "value": ours / theirs, "unit": "ratio",
             "estimator": f"median; per-epoch ratios {min(spread):.2f}-{max(spread):.2f}"},
        ]  # fmt: skip
        first = float(history["time"].iloc[0]) - ours
        rows.append({**common, "model": f"first epoch's extra seconds, {name}", "value": first,
                     "unit": "s"})  # fmt: skip
    return rows


MEMORY_CHILD = """
import json, resource, sys, torch, pyro, pyro_genmodels as pgm
k, n = int(sys.argv[1]), int(sys.argv[2])
data = pgm.data.load("mnist5k", binarize=True)
vae = pgm.models.VAE(784, 32, hidden_dims=(512, 512), likelihood="bernoulli")
x = data.test[:n]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ll = pgm.infer.log_likelihood(vae.model, vae.guide, x, num_samples=k)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
finite = bool(torch.isfinite(ll).all())
print(json.dumps({"before_kib": before, "peak_kib": peak, "finite": finite}))
"""


def bench_memory(num_samples: int, num_data: int) -> list[dict]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(num_samples), str(num_data)],
        check=True,
        capture_output=True,
        text=True,
    )
    m = json.loads(out.stdout.strip().splitlines()[-1])
    common = {
        "kind": "memory",
        "dataset": "mnist5k",
        "unit": "MiB",
        "epochs": 0,
        "estimator": f"K={num_samples}, N={num_data}",
        "seconds": time.perf_counter() - start,
    }
    return [
        {**common, "model": "log_likelihood peak RSS", "value": m["peak_kib"] / 1024},
        {**common, "model": "RSS before log_likelihood", "value": m["before_kib"] / 1024},
    ]


def _writer(out: str, done: list[dict]) -> Callable[[list], None]:
    """A ``save(rows)`` that rewrites the CSV with everything measured so far."""

    def save(rows: list[dict]) -> None:
        table = stamp(pd.DataFrame(done + rows))
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)

    return save


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny budget smoke test")
    p.add_argument("--out", default=str(RESULTS / "vae.csv"))
    p.add_argument(
        "--parts",
        default="nll,speed,memory",
        help="comma-separated subset; rows of the other parts already in --out are kept",
    )
    p.add_argument(
        "--datasets", default="digits,mnist5k", help="datasets of the nll and pythae parts"
    )
    p.add_argument(
        "--seeds",
        default="0,1,2",
        help="seeds of the pythae parts (the pythae part keeps other seeds' rows in --out and "
        "counts them in its summaries)",
    )
    p.add_argument("--recipes", default=None, help="pgm recipes of the pythae part (default: all)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # the figures are one thread's; fit picks one for these models too
    parts, datasets = set(args.parts.split(",")), set(args.datasets.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: list[dict] = []
    earlier: list[dict] = []  # the pythae part's rows of other seeds, in its summaries
    if Path(args.out).exists() and not args.quick:
        kept = pd.read_csv(args.out)
        redone = kept["kind"].isin(parts) & (
            ~kept["kind"].isin(["nll", "pythae"]) | kept["dataset"].isin(datasets)
        )
        # the pythae part redoes the seeds it runs and its summaries, keeping other seeds
        other_seed = (kept["kind"] == "pythae") & kept["seed"].notna() & ~kept["seed"].isin(seeds)
        rows = kept[~redone | other_seed].to_dict("records")
        earlier = [r for r in rows if r["kind"] == "pythae" and pd.notna(r["seed"])]
    if args.quick:
        plan = [("digits", 1, 10, 5)]
        speed, memory = {"steps": 3, "repeats": 2}, {"num_samples": 50, "num_data": 20}
    else:
        plan = [("digits", 200, 5000, 100), ("mnist5k", 60, 5000, 100)]
        speed, memory = {"steps": 50, "repeats": 7}, {"num_samples": 5000, "num_data": 1000}
    plan = [step for step in plan if step[0] in datasets or args.quick]
    for dataset, epochs, k, components in plan if "nll" in parts else []:
        rows += bench_nll(dataset, epochs, k, components, _writer(args.out, rows))
    for dataset in (
        (("digits",) if args.quick else ("digits", "mnist5k")) if "speed" in parts else ()
    ):
        rows += bench_fit_speed(dataset, repeats=2 if args.quick else 9)
        rows += bench_speed(dataset, **speed)
    if "memory" in parts:
        rows += bench_memory(**memory)
    if "pythae" in parts:
        from vae_pythae import bench_pythae  # pythae: the bench extra, imported only here

        # K per dataset: IW-5000 of 1000 mnist5k images is minutes per model on one core
        side = [("digits", 5000, None), ("mnist5k", 1000, None)]
        if args.quick:
            side = [("digits", 16, 1)]
        for dataset, k, epochs in [s for s in side if s[0] in datasets or args.quick]:
            recipes = None if args.recipes is None else args.recipes.split(",")
            before = [r for r in earlier if r["dataset"] == dataset]
            rows += bench_pythae(
                dataset, seeds, k, _writer(args.out, rows), epochs, recipes, earlier=before
            )
    if "pythae_step" in parts:
        from vae_pythae import bench_step_agreement

        rows += bench_step_agreement(sorted(datasets), seeds)
    _writer(args.out, [])(rows)
    table = pd.read_csv(args.out)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[["kind", "dataset", "model", "value", "unit", "estimator", "seconds"]])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MiB")
    print(f"wrote {args.out}")
    return table


if __name__ == "__main__":
    main()
