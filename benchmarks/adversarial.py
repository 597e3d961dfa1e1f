"""Adversarial objectives on the 8-Gaussian ring and the 25-Gaussian grid, and their step cost.

    python benchmarks/adversarial.py            # the full run (about 15 minutes on 2 loaded cores)
    python benchmarks/adversarial.py --quick    # a seconds-long smoke run
    python benchmarks/adversarial.py --datasets 25gaussians --steps 10000 --seeds 0,1,2 \
        --objectives "gan (r1 0.1, 2-d z, lr decay)" \
        --out benchmarks/results/adversarial_grid25.csv   # a subset over seeds, no timing

Quality: each objective trains the same generator MLP(8 → 128 → 128 → 2) and
critic MLP(2 → 128 → 128 → 1) (PacGAN: MLP(2·m → 128 → 128 → 1) on packs of m
samples; "lr decay": the rate falls geometrically to the stated share of its
start, 1% or 10%; "2-d z": a 2-dimensional latent instead of 8; "r1 γ": the
non-saturating GAN with Mescheder et al.'s R1 penalty ``GANLoss(r1_weight=γ)``) for a
fixed budget of generator steps (batch 256, one SVI step each, data drawn from
100k training points), then scores 2500 samples: modes covered and high-quality fraction
(:func:`pgm.diagnostics.mode_coverage`: within 3σ of a centre, a mode needs 20%
of its expected share) and energy distance / MMD to 2500 held-out points.

Speed: seconds per training step of ``svi.step`` with :class:`GANLoss`
(alternating, shared ``pgm.optim.Adam``) and :class:`WGANGPLoss` (n_critic=5)
against a plain-PyTorch loop of the same networks, batch and algorithm,
interleaved in this process; the ratio is pgm / torch.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import pandas as pd
import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F

import pyro_genmodels as pgm
from pyro_genmodels.infer import GANLoss, LSGANLoss, WGANGPLoss, WGANLoss

RESULTS = Path(__file__).resolve().parent / "results" / "adversarial.csv"
Z_DIM, WIDTH, BATCH = 8, 128, 256


def networks(seed: int = 0, pack: int = 1, z_dim: int = Z_DIM):
    """Generator ``MLP(z_dim → 128 → 128 → 2)`` and critic ``MLP(2·pack → 128 → 128 → 1)``
    (on packs of ``pack`` samples: PacGAN's critic, :class:`PackedCritic`)."""
    from pyro_genmodels.zoo.adversarial import PackedCritic

    torch.manual_seed(seed)
    G, D = pgm.nn.MLP(z_dim, [WIDTH, WIDTH], 2), pgm.nn.MLP(2 * pack, [WIDTH, WIDTH], 1)
    return G, (D if pack == 1 else PackedCritic(D, pack))


def make_model(G):
    z_dim = G.in_dim

    def generator(x):
        pyro.module("generator", G)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Delta(G(z), event_dim=1), obs=x)

    return generator


def adam(lr, betas=(0.5, 0.999)):
    return pgm.optim.Adam({"lr": lr, "betas": betas})


# name -> (loss factory (D, optim) -> loss, optimizer factory, generator-step share[,
# network options])
OBJECTIVES = {
    "gan (non-saturating)": (lambda D, o: GANLoss(D, critic_optim=o), lambda: adam(1e-3), 1),
    "gan (minimax)": (
        lambda D, o: GANLoss(D, "js", "minimax", critic_optim=o),
        lambda: adam(1e-3),
        1,
    ),
    "gan (simultaneous)": (lambda D, o: GANLoss(D), lambda: adam(1e-3), 1),
    "lsgan": (lambda D, o: LSGANLoss(D, critic_optim=o), lambda: adam(1e-3), 1),
    "f-gan kl": (lambda D, o: GANLoss(D, "kl", critic_optim=o), lambda: adam(1e-3), 1),
    "f-gan reverse_kl": (
        lambda D, o: GANLoss(D, "reverse_kl", critic_optim=o),
        lambda: adam(1e-3),
        1,
    ),
    "f-gan pearson": (lambda D, o: GANLoss(D, "pearson", critic_optim=o), lambda: adam(1e-3), 1),
    "f-gan hellinger": (
        lambda D, o: GANLoss(D, "hellinger", critic_optim=o),
        lambda: adam(1e-3),
        1,
    ),
    "wgan (clip 0.01, n_critic=5)": (
        lambda D, o: WGANLoss(D, o, 0.01, n_critic=5),
        lambda: pyro.optim.RMSprop({"lr": 5e-4}),
        2,
    ),
    "wgan-gp (n_critic=5)": (
        lambda D, o: WGANGPLoss(D, n_critic=5, critic_optim=o),
        lambda: adam(1e-3, (0.5, 0.9)),
        2,
    ),
    "gan (pacgan2)": (lambda D, o: GANLoss(D, critic_optim=o), lambda: adam(1e-3), 1, {"pack": 2}),
    "gan (pacgan4)": (lambda D, o: GANLoss(D, critic_optim=o), lambda: adam(1e-3), 1, {"pack": 4}),
    "gan (r1 0.1, lr decay)": (
        lambda D, o: GANLoss(D, r1_weight=0.1, critic_optim=o),
        lambda: adam(1e-3),
        1,
        {"decay": 0.1},
    ),
    "gan (r1 0.1, 2-d z, lr decay)": (
        lambda D, o: GANLoss(D, r1_weight=0.1, critic_optim=o),
        lambda: adam(1e-3),
        1,
        {"decay": 0.1, "z_dim": 2},
    ),
    "gan (2-d z, lr decay)": (
        lambda D, o: GANLoss(D, critic_optim=o),
        lambda: adam(1e-3),
        1,
        {"decay": 0.1, "z_dim": 2},
    ),
    "gan (pacgan2, lr decay)": (
        lambda D, o: GANLoss(D, critic_optim=o),
        lambda: adam(1e-3),
        1,
        {"pack": 2, "decay": 0.01},
    ),
}
QUICK_OBJECTIVES = ["gan (non-saturating)", "wgan-gp (n_critic=5)"]


def train_one(name: str, dataset: str, steps: int, num_eval: int, seed: int = 0) -> dict:
    make_loss, make_optim, share, *more = OBJECTIVES[name]
    options = dict(more[0]) if more else {}
    decay = options.pop("decay", None)  # final learning rate / initial, reached geometrically
    steps = max(1, steps // share)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    G, D = networks(seed, **options)
    optim = make_optim()
    loss = make_loss(D, optim)
    svi = pyro.infer.SVI(make_model(G), lambda x: None, optim, loss=loss)
    train = pgm.data.toy2d(dataset, 100_000, seed=seed)
    test = pgm.data.toy2d(dataset, num_eval, seed=seed + 1)
    g = torch.Generator().manual_seed(seed)
    start, status = time.perf_counter(), "ok"
    for step in range(steps):
        if decay is not None:  # both players share ``optim``: one rate for all its Adams
            for opt in optim.optim_objs.values():
                for group in opt.param_groups:
                    group.setdefault("initial_lr", group["lr"])
                    group["lr"] = group["initial_lr"] * decay ** (step / steps)
        values = svi.step(train[torch.randint(len(train), (BATCH,), generator=g)])
        if not all(math.isfinite(v) for v in values):
            status = "diverged (non-finite loss)"
            break
    seconds = time.perf_counter() - start
    with torch.no_grad():
        fake = G(torch.randn(num_eval, G.in_dim, generator=g))
    finite = bool(torch.isfinite(fake).all())
    scores = pgm.diagnostics.mode_coverage(fake, dataset) if finite else {}
    row = {
        "kind": "quality",
        "dataset": dataset,
        "objective": name,
        "generator_steps": steps,
        "critic_steps": steps * loss.n_critic,
        "modes": scores.get("modes", 0),
        "num_modes": len(pgm.diagnostics.TOY2D_MODES[dataset][0]),
        "high_quality": scores.get("high_quality", float("nan")),
        "energy_distance": float(pgm.diagnostics.energy_distance(test, fake))
        if finite
        else math.nan,
        "mmd": float(pgm.diagnostics.mmd(test, fake)) if finite else math.nan,
        "seconds": seconds,
        "status": status,
    }
    return row


# ----------------------------------------------------------------------------- speed


def torch_gan_step(G, D, opt_g, opt_d, x, gp_weight=None, n_critic=1):
    """One step of the plain-PyTorch loop: n_critic critic updates, then one generator update."""
    for _ in range(n_critic):
        fake = G(torch.randn(x.shape[0], Z_DIM))
        out_real, out_fake = D(x).squeeze(-1), D(fake.detach()).squeeze(-1)
        if gp_weight is None:
            d_loss = F.softplus(-out_real).sum() + F.softplus(out_fake).sum()
        else:
            eps = torch.rand(x.shape[0], 1)
            mixed = (eps * x + (1 - eps) * fake.detach()).requires_grad_(True)
            (grad,) = torch.autograd.grad(D(mixed).sum(), mixed, create_graph=True)
            gp = gp_weight * ((grad.norm(dim=-1) - 1) ** 2).sum()
            d_loss = out_fake.sum() - out_real.sum() + gp
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
    out = D(fake).squeeze(-1)
    g_loss = F.softplus(-out).sum() if gp_weight is None else -out.sum()
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()


def time_steps(step, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def speed(name: str, steps: int, rounds: int) -> dict:
    wgan = name.startswith("wgan")
    x = pgm.data.toy2d("25gaussians", BATCH, seed=0)
    G0, D0 = networks(0)
    G1, D1 = copy.deepcopy(G0), copy.deepcopy(D0)
    opt_g = torch.optim.Adam(G1.parameters(), lr=1e-4, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(D1.parameters(), lr=1e-4, betas=(0.5, 0.9))
    pyro.clear_param_store()
    optim = pgm.optim.Adam({"lr": 1e-4, "betas": (0.5, 0.9)})
    loss = (
        WGANGPLoss(D0, n_critic=5, critic_optim=optim) if wgan else GANLoss(D0, critic_optim=optim)
    )
    svi = pyro.infer.SVI(make_model(G0), lambda x: None, optim, loss=loss)
    n_critic = 5 if wgan else 1
    gp = 10.0 if wgan else None
    plain = lambda: torch_gan_step(G1, D1, opt_g, opt_d, x, gp, n_critic)  # noqa: E731
    ours = lambda: svi.step(x)  # noqa: E731
    time_steps(plain, 5), time_steps(ours, 5)  # warm up
    t_torch, t_pgm = [], []
    for _ in range(rounds):  # interleaved, so load changes hit both
        t_torch.append(time_steps(plain, steps))
        t_pgm.append(time_steps(ours, steps))
    a, b = sorted(t_pgm)[len(t_pgm) // 2], sorted(t_torch)[len(t_torch) // 2]
    return {
        "kind": "speed",
        "objective": name,
        "seconds_per_step_pgm": a,
        "seconds_per_step_torch": b,
        "ratio": a / b,
    }


def main(
    quick: bool = False,
    steps: int = 3000,
    out: Path | None = RESULTS,
    objectives: list[str] | None = None,
    datasets: tuple[str, ...] = ("8gaussians", "25gaussians"),
    timing: bool = True,
    seeds: tuple[int, ...] = (0,),
) -> pd.DataFrame:
    torch.set_num_threads(1)
    names = QUICK_OBJECTIVES if quick else list(OBJECTIVES)
    names = names if objectives is None else objectives
    steps, num_eval = (10, 500) if quick else (steps, 2500)
    rows = []
    for dataset in datasets:
        for name in names:
            for seed in seeds:
                rows.append({**train_one(name, dataset, steps, num_eval, seed), "seed": seed})
                r = rows[-1]
                print(
                    f"{dataset:12s} {name:30s} seed {seed} modes {r['modes']:2d}/{r['num_modes']} "
                    f"hq {r['high_quality']:.3f} ed {r['energy_distance']:.4f} "
                    f"{r['seconds']:.0f}s {r['status']}",
                    flush=True,
                )
    for name in ("gan (non-saturating, alternating)", "wgan-gp (n_critic=5)") if timing else ():
        rows.append(speed(name, 10 if quick else 200, 1 if quick else 5))
    table = pd.DataFrame(rows)
    speed_columns = ["seconds_per_step_pgm", "seconds_per_step_torch", "ratio"]
    quality = table[table["kind"] == "quality"].drop(
        columns=["kind", *(c for c in speed_columns if c in table)]
    )
    counts = ["seed", "generator_steps", "critic_steps", "modes", "num_modes"]
    quality = quality.astype(dict.fromkeys(counts, int))
    print(quality.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if timing:
        print(
            table[table["kind"] == "speed"][["objective", *speed_columns]].to_string(
                index=False, float_format=lambda v: f"{v:.5f}"
            )
        )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--steps", type=int, default=3000, help="generator steps per objective")
    parser.add_argument(
        "--objectives", default=None, help="';'-separated subset of: " + "; ".join(OBJECTIVES)
    )
    parser.add_argument("--datasets", default="8gaussians,25gaussians")
    parser.add_argument("--seeds", default="0", help="','-separated seeds of every quality run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="CSV written by a full run")
    args = parser.parse_args()
    subset = args.objectives.split(";") if args.objectives else None
    unknown = sorted(set(subset or []) - set(OBJECTIVES))
    if unknown:
        parser.error(f"unknown objectives {unknown}")
    main(
        quick=args.quick,
        steps=args.steps,
        out=None if args.quick else args.out,
        objectives=subset,
        datasets=tuple(args.datasets.split(",")),
        timing=subset is None,
        seeds=tuple(int(v) for v in args.seeds.split(",")),
    )
