"""Energy-based family benchmark: 2-D toys by grid normalization against the entropy
floor and a flow, the same objectives in torchebm, dequantized digits by AIS, and the
Langevin kernel against NUTS.

Rows of ``benchmarks/results/energy.csv`` (``section``):

* ``toy``: test NLL (nats) on two_moons, 8gaussians, checkerboard for CD and PCD, exact,
  sliced and denoising score matching and NCE, each with the loss's own defaults (NCE's
  noise a Gaussian 1.5× the data's scale), one :class:`~pyro_genmodels.nn.EnergyMLP`
  each, the README's (2-128-128-1, SiLU, Gaussian confinement ``c = 2``, reading 64
  random Fourier features windowed at ``ρ = 1.5``), ``--steps`` Adam steps (lr 1e-3,
  batch 256); ``log Z`` by a 600×600 grid on ``[-12, 12]²``; ``floor`` is the data's
  entropy, ``gap = nll - floor``; ``flow-spline`` is a ``pgm.flows`` neural-spline
  FlowDensity with the same steps (exact NLL); ``ebm-flow-nce`` is an energy on that
  trained flow (``EnergyDistribution(energy, base=flow)``, the 2-128-128-1 ``EnergyMLP``
  on 64 random Fourier features, without confinement and with a zeroed last layer, so
  that it starts as the flow),
  trained by ``NCELoss`` with the frozen flow as its noise for the same steps after the
  flow's, ``log Z`` of ``q e^{-E}`` by the same grid; ``base_nll`` is the flow's own NLL;
  ``ebm-pcd, as the README shows it`` runs the README's example (``pgm.fit``, 25 epochs).
  Target: each loss's defaults within 0.25 nats of the floor, the best EBM within 0.1.
* ``peer``: ours computing torchebm's estimator (raw-data exact and sliced score matching,
  one-sided denoising, PCD-20 with ``energy_reg`` 0.1 and its fixed-step Langevin sampler)
  beside torchebm 0.8.9 (it has no NCE) on the same network (same initial weights: the
  plain 2-128-128-1 MLP reading ``x``, as before the Fourier energy), data
  batches and steps; ``nll_vs_peer``
  = ours − peer (target ≤ 0.01 nats: no worse up to float32 noise) and ``time_ratio``
  = ours / peer seconds per step (target ≤ 1.1) (whole-run averages
  after 10 untimed warm-up steps, the two trainings stepped in turn on each batch with
  their own random streams, so that both see the same load; the machine was shared, so
  only ratios mean much);
  ``cpu_time_ratio`` is the same ratio in process CPU time, which other processes on a
  loaded machine disturb less. Ours trains through ``pyro.infer.SVI`` with
  ``pgm.optim.Adam`` (one torch Adam for all parameters, the same trajectory as
  ``pyro.optim.Adam``; ``--pyro-optim`` uses Pyro's per-parameter Adam instead), the
  peer with ``torch.optim.Adam``. ``time_ratio_before`` and ``cpu_time_ratio_before``
  (with ``--before CSV``) are the ratios of the same rows in an earlier run's CSV.
* ``digits``: AIS test NLL (pixel space ``[0, 17)^64``, with the AIS standard error)
  of the zoo's energies (PCD, denoising and sliced SM, NCE: on the logit of the pixels, on
  a Gaussian base; ``base_nll`` is the base's exact NLL), beside ``FlowDensity``
  (RealNVP, exact), a 10-component full-covariance Gaussian mixture (sklearn) on the same
  dequantized data (the target: every EBM row below it) and mixtures of 1, 3 and 10
  components on the logit scale the EBMs model; samples in
  ``results/energy_digits_samples.png``.
* ``mcmc``: effective samples per second (ArviZ ESS, minimum over coordinates) of
  ``pgm.infer.Langevin`` (MALA, adapted step) and Pyro's NUTS on a 10-D Gaussian with
  scales 0.5…2, a 10-D Neal funnel and the unit-scale 2-D banana (whose rows also give
  ``max_variance_error``, the largest relative error of the draws' variances).
* ``digits`` also holds the base-measure rows ``ebm-flow-nce`` and ``ebm-flow-pcd``
  (residual energies on a RealNVP flow, AIS from the flow) with ``base_nll``, the flow's
  own exact NLL.

``target`` states each section's target and ``meets_target`` whether it is met.

Usage::

    python benchmarks/energy.py                  # everything (~20 minutes on 2 cores)
    python benchmarks/energy.py --sections mcmc  # one section (replaces its rows)
    python benchmarks/energy.py --quick          # smoke run
    python benchmarks/energy.py --sections toy --objectives denoising --steps 1000
                                                 # some objectives (replaces their rows)
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import arviz as az
import pandas as pd
import pyro
import pyro.distributions as dist
import torch

import pyro_genmodels as pgm
from pyro_genmodels.data import TOY2D_ENTROPY
from pyro_genmodels.distributions import EnergyDistribution
from pyro_genmodels.infer import (
    ContrastiveDivergenceLoss,
    LangevinSampler,
    NCELoss,
    ScoreMatchingLoss,
)
from pyro_genmodels.nn import EnergyMLP

RESULTS = Path(__file__).resolve().parent / "results" / "energy.csv"
FLOORS = {"two_moons": 2.39, "8gaussians": TOY2D_ENTROPY["8gaussians"]}
FLOORS["checkerboard"] = TOY2D_ENTROPY["checkerboard"]
TOYS = ("two_moons", "8gaussians", "checkerboard")
OBJECTIVES = ("cd", "pcd", "exact", "sliced", "denoising", "nce")
PEER_OBJECTIVES = ("pcd", "exact", "sliced", "denoising")  # what torchebm has
K, BATCH, SIGMA, REG, CONFINE = 20, 256, 0.1, 0.1, 2.0
FOURIER = {"fourier_features": 64, "fourier_window": 1.5}  # the README's toy energy
DEFAULTS_TARGET = 0.25  # nats: every loss's defaults train the README's energy this close
WARMUP = 10  # steps trained but not timed (first-call costs), for ours and the peer alike


# ---------------------------------------------------------------- toys


def grid_nll(energy, x_test, half=12.0, n=600):
    """``mean E(x_test) + log Z`` with ``Z`` by the midpoint rule on ``[-half, half]²``."""
    h = 2 * half / n
    axis = torch.linspace(-half + h / 2, half - h / 2, n)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        e = torch.cat([energy(g) for g in grid.split(40000)])
        log_z = torch.logsumexp(-e, 0) + 2 * math.log(h)
        return (energy(x_test).mean() + log_z).item()


def _batches(x, steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [x[torch.randint(len(x), (BATCH,), generator=gen)] for _ in range(steps)]


def ours(objective, net, x, step, pyro_optim=False, like_peer=False):
    """A step function training ``net`` in place with our loss through ``pyro.infer.SVI``.

    With ``like_peer`` the loss computes what torchebm's does (raw-data exact and sliced
    score matching, one-sided denoising, PCD with torchebm's fixed-step Langevin sampler);
    without it every loss runs with its own defaults (``NCELoss`` needs its noise; CD's
    ``k``, ``energy_reg`` and adaptive MALA sampler are the defaults for a real support)."""
    pyro.clear_param_store()
    sampler = LangevinSampler(step, K, init_loc=x.mean(0), init_scale=x.std(0))
    sampler = sampler if like_peer else None
    log_z = torch.nn.Parameter(torch.zeros(()))

    def model(xb):
        pyro.module("energy", net)
        lz = pyro.param("log_z", log_z.data) if objective == "nce" else None
        with pyro.plate("data", xb.shape[0]):
            pyro.sample(
                "x", EnergyDistribution(net, (2,), log_normalizer=lz, sampler=sampler), obs=xb
            )

    raw = {"noise_scale": 0.0} if like_peer else {}
    cd = {"k": K, "energy_reg": REG} if like_peer else {}
    loss = {
        "cd": lambda: ContrastiveDivergenceLoss(**cd),
        "pcd": lambda: ContrastiveDivergenceLoss(persistent=True, **cd),
        "exact": lambda: ScoreMatchingLoss("exact", **raw),
        "sliced": lambda: ScoreMatchingLoss("sliced", **raw),
        "denoising": lambda: ScoreMatchingLoss(
            "denoising", noise_scale=SIGMA, antithetic=not like_peer
        ),
        "nce": lambda: NCELoss(dist.Normal(x.mean(0), 1.5 * x.std(0)).to_event(1), noise_ratio=4),
    }[objective]()
    adam = pyro.optim.Adam if pyro_optim else pgm.optim.Adam
    svi = pyro.infer.SVI(model, lambda xb: None, adam({"lr": 1e-3}), loss)
    return svi.step


def torchebm_peer(objective, net, x, step):
    """A step function for the same training in torchebm (its losses average over the
    batch)."""
    from torchebm.core import BaseModel
    from torchebm.losses import (
        ContrastiveDivergence,
        DenoisingScoreMatching,
        ScoreMatching,
        SlicedScoreMatching,
    )
    from torchebm.samplers import LangevinDynamics

    class Wrapped(BaseModel):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, v):
            return self.inner(v)

    model = Wrapped(net)
    if objective == "pcd":
        sampler = LangevinDynamics(model, step_size=step, noise_scale=1.0)
        loss = ContrastiveDivergence(
            model, sampler, k_steps=K, persistent=True, energy_reg_weight=REG, init_steps=0
        )
    elif objective == "exact":
        loss = ScoreMatching(model, hessian_method="exact")
    elif objective == "sliced":
        loss = SlicedScoreMatching(model, n_projections=1)
    else:
        loss = DenoisingScoreMatching(model, noise_scale=SIGMA)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def train_step(xb):
        out = loss(xb)
        value = out[0] if isinstance(out, tuple) else out
        opt.zero_grad()
        value.backward()
        opt.step()

    return train_step


def lockstep(steppers, batches, seed=1):
    """Runs the step functions in turn on each batch, each with its own random stream
    (seeded alike, so each run draws what it would alone); (wall, CPU) seconds per step for
    each, after ``WARMUP`` untimed steps. Interleaving makes the ratios robust to the load of
    a shared machine, which changes between whole runs."""
    torch.manual_seed(seed)
    states = [torch.get_rng_state() for _ in steppers]
    wall, cpu = [0.0] * len(steppers), [0.0] * len(steppers)
    for i, xb in enumerate(batches):
        for j, train_step in enumerate(steppers):
            torch.set_rng_state(states[j])
            w, c = time.perf_counter(), time.process_time()
            train_step(xb)
            if i >= min(WARMUP, len(batches) - 1):
                wall[j] += time.perf_counter() - w
                cpu[j] += time.process_time() - c
            states[j] = torch.get_rng_state()
    n = len(batches) - min(WARMUP, len(batches) - 1)
    return [(a / n, b / n) for a, b in zip(wall, cpu, strict=True)]


def flow_run(x, x_test, batches):
    """``(test NLL, seconds per step, the trained flow)`` of the neural-spline flow."""
    from pyro_genmodels.models import FlowDensity

    pyro.clear_param_store()
    flow = FlowDensity(2, "spline", num_layers=4, hidden_dims=[128, 128], bound=5.0)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    start = time.perf_counter()
    for xb in batches:
        loss = -flow.log_prob(xb).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    per_step = (time.perf_counter() - start) / len(batches)
    with torch.no_grad():
        return -flow.log_prob(x_test).mean().item(), per_step, flow


def flow_base_run(flow, x, x_test, batches):
    """``(test NLL, seconds per step)`` of an energy on the frozen ``flow``, trained by NCE
    with the flow as its noise (the zoo's ``ebm-flow-nce`` recipe), ``log Z`` by the grid."""
    pyro.clear_param_store()
    flow.requires_grad_(False)
    q = flow.distribution()
    # E = 0 at the start: the model starts as the flow
    energy = EnergyMLP(2, [128, 128], x.mean(0), x.std(0), confine=None, fourier_features=64,
                       zero_init=True)  # fmt: skip
    net = torch.nn.ModuleDict({"energy": energy})
    net.register_parameter("log_z", torch.nn.Parameter(torch.zeros(())))

    def model(xb):
        pyro.module("ebm", net)
        with pyro.plate("data", xb.shape[0]):
            pyro.sample("x", EnergyDistribution(energy, base=q, log_normalizer=net.log_z), obs=xb)

    svi = pyro.infer.SVI(
        model, lambda xb: None, pgm.optim.Adam({"lr": 1e-3}), NCELoss(noise_ratio=4)
    )
    ((sec, _),) = lockstep([svi.step], batches)
    target = EnergyDistribution(energy, base=q)
    return grid_nll(target.potential, x_test), sec


def peer_row(name, objective, init, x, x_test, batches, step, pyro_optim):
    """Ours with torchebm's estimator and torchebm, from the same weights, in lockstep."""
    net, peer_net = copy.deepcopy(init), copy.deepcopy(init)
    steppers = [ours(objective, net, x, step, pyro_optim, like_peer=True),
                torchebm_peer(objective, peer_net, x, step)]  # fmt: skip
    (sec, cpu), (psec, pcpu) = lockstep(steppers, batches)
    nll, pnll = grid_nll(net, x_test), grid_nll(peer_net, x_test)
    return dict(section="peer", dataset=name, model=f"ebm-{objective}", peer="torchebm 0.8.9",
                nll=nll, nll_peer=pnll, nll_vs_peer=nll - pnll, sec_per_step=sec,
                sec_per_step_peer=psec, time_ratio=sec / psec, cpu_time_ratio=cpu / pcpu,
                steps=len(batches), target="nll_vs_peer <= 0.01 and time_ratio <= 1.1",
                meets_target=bool(nll - pnll <= 0.01 and sec / psec <= 1.1))  # fmt: skip


def toy_section(
    steps, n_train, peers=True, objectives=OBJECTIVES + ("flow", "flow-nce"), pyro_optim=False
):
    rows = []
    for name in TOYS:
        x = pgm.data.toy2d(name, n_train, seed=0)
        x_test = pgm.data.toy2d(name, 5000, seed=1)
        batches = _batches(x, steps)
        step = 0.01 * float(x.std(0).mean()) ** 2
        torch.manual_seed(0)  # the peers' plain MLP (their rows predate the Fourier energy)
        peer_init = EnergyMLP(2, [128, 128], x.mean(0), x.std(0), confine=CONFINE)
        torch.manual_seed(0)
        init = EnergyMLP(2, [128, 128], x.mean(0), x.std(0), confine=CONFINE, **FOURIER)
        floor = FLOORS[name]
        for objective in [o for o in OBJECTIVES if o in objectives]:
            net = copy.deepcopy(init)
            ((sec, _),) = lockstep([ours(objective, net, x, step, pyro_optim)], batches)
            nll = grid_nll(net, x_test)
            row = dict(section="toy", dataset=name, model=f"ebm-{objective}", nll=nll,
                       floor=floor, gap=nll - floor, sec_per_step=sec, steps=steps,
                       settings="the loss's defaults")  # fmt: skip
            print(row, flush=True)
            rows.append(row)
            if peers and objective in PEER_OBJECTIVES:
                rows.append(
                    peer_row(name, objective, peer_init, x, x_test, batches, step, pyro_optim)
                )
                print(rows[-1], flush=True)
        if not {"flow", "flow-nce"} & set(objectives):
            continue
        flow_nll, sec, flow = flow_run(x, x_test, batches)
        rows.append(dict(section="toy", dataset=name, model="flow-spline", nll=flow_nll,
                         floor=floor, gap=flow_nll - floor, sec_per_step=sec,
                         steps=steps))  # fmt: skip
        print(rows[-1], flush=True)
        if "flow-nce" in objectives:
            nll, sec = flow_base_run(flow, x, x_test, batches)
            rows.append(dict(section="toy", dataset=name, model="ebm-flow-nce", nll=nll,
                             floor=floor, gap=nll - floor, sec_per_step=sec, steps=steps,
                             base_nll=flow_nll, settings="NCE with the trained flow as "
                             "noise, the same steps after the flow's"))  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def readme_row():
    """The README's energy example as written: PCD with the loss's defaults on the README's
    energy through ``pgm.fit`` (25 epochs of 10 000 points in batches of 256: 1000 steps)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    x = pgm.data.toy2d("8gaussians", 10000)
    energy = EnergyMLP(2, [128, 128], x.mean(0), x.std(0), confine=2.0, **FOURIER)
    ebm = pgm.models.EnergyModel(energy, event_shape=(2,))

    start = time.perf_counter()
    history = pgm.fit(ebm.model, ebm.guide, x, loss=ContrastiveDivergenceLoss(persistent=True),
                      epochs=25, batch_size=256, progress=False)  # fmt: skip
    seconds = time.perf_counter() - start
    nll = grid_nll(energy, pgm.data.toy2d("8gaussians", 5000, seed=1))
    floor = FLOORS["8gaussians"]
    return dict(section="toy", dataset="8gaussians", model="ebm-pcd, as the README shows it",
                nll=nll, floor=floor, gap=nll - floor, train_seconds=seconds, epochs=25,
                steps=25 * math.ceil(len(x) / 256), settings="the loss's defaults",
                sec_per_step=seconds / (len(history) * math.ceil(len(x) / 256)))  # fmt: skip


def toy_targets(table):
    """Sets each toy row's target: a loss with its defaults within 0.25 nats of the floor
    (``DEFAULTS_TARGET``); every other row, the best EBM gap of its dataset within 0.1."""
    toy = table["section"] == "toy"
    defaults = toy & table["settings"].eq("the loss's defaults")
    for name in table.loc[toy, "dataset"].unique():
        rows = toy & (table["dataset"] == name)
        best = table.loc[rows & table["model"].str.startswith("ebm"), "gap"].min()
        table.loc[rows, "target"] = "best EBM gap <= 0.1 nats"
        table.loc[rows, "meets_target"] = bool(best <= 0.1)
    table.loc[defaults, "target"] = f"gap <= {DEFAULTS_TARGET} nats with the loss's defaults"
    table.loc[defaults, "meets_target"] = table.loc[defaults, "gap"] <= DEFAULTS_TARGET
    return table


# ---------------------------------------------------------------- digits


DIGITS_EBMS = ("ebm-pcd", "ebm-dsm", "ebm-ssm", "ebm-nce", "ebm-flow-nce", "ebm-flow-pcd")


def digits_section(epochs, ais_chains, ais_betas, names=DIGITS_EBMS):
    from sklearn.mixture import GaussianMixture

    from pyro_genmodels.zoo import ZOO, build, evaluate, run

    data = pgm.data.load("digits")
    rows = []
    for name in names:
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        setup = build(name, data, ais_chains=ais_chains, ais_betas=ais_betas)
        start = time.perf_counter()
        lr = ZOO[name].budget.get("lr", 1e-3)
        pgm.fit(setup.model, setup.guide, setup.train, loss=setup.loss, epochs=epochs,
                batch_size=128, optim=pgm.optim.Adam({"lr": lr}), progress=False)  # fmt: skip
        trained = time.perf_counter() - start
        scores = evaluate(setup)
        rows.append(dict(section="digits", dataset="digits", model=name,
                         nll=scores["test_nll_nats"], nll_stderr=scores["test_nll_stderr"],
                         estimator=scores["estimator"],
                         energy_distance=scores.get("energy_distance"),
                         base_nll=scores.get("base_test_nll_nats"),
                         epochs=epochs, train_seconds=trained))  # fmt: skip
        print(rows[-1], flush=True)
        if name == names[0]:
            _sample_grid(setup.sample(64), name)
    table, _ = run(data, ["flow-realnvp"], epochs=epochs, progress=False)
    rows.append(dict(section="digits", dataset="digits", model="flow-realnvp",
                     nll=float(table["test_nll_nats"][0]), estimator=table["estimator"][0],
                     epochs=epochs, train_seconds=float(table["train_seconds"][0])))  # fmt: skip
    gmm = GaussianMixture(10, covariance_type="full", random_state=0, reg_covar=1e-4)
    gmm.fit(data.train.double().numpy())
    nll = -gmm.score(data.test.double().numpy()) + 64 * math.log(17)
    rows.append(dict(section="digits", dataset="digits", model="gaussian-mixture-10",
                     nll=nll, estimator="exact, pixel space [0, 17)"))  # fmt: skip
    mixture = nll
    # the same mixtures on the logit scale the image EBMs model (their base: one component)
    logit = pgm.flows.LogitTransform(0.01)
    x_train, x_test = data.train.double(), data.test.double()
    y_train, y_test = logit.inv(x_train), logit.inv(x_test)
    log_det = float(logit.log_abs_det_jacobian(y_test, x_test).sum(-1).mean())
    for components in (1, 3, 10):
        gmm = GaussianMixture(components, covariance_type="full", random_state=0, reg_covar=1e-2)
        gmm.fit(y_train.numpy())
        nll = -gmm.score(y_test.numpy()) + log_det + 64 * math.log(17)
        rows.append(dict(section="digits", dataset="digits",
                         model=f"gaussian-mixture-{components}, logit scale", nll=nll,
                         estimator="exact, logit scale α = 0.01, pixel space [0, 17)"))  # fmt: skip
    best_other = min(r["nll"] for r in rows if not r["model"].startswith("ebm"))
    for r in rows:
        print(r, flush=True)
        if r["model"].startswith("ebm"):
            r["target"] = "below the 10-component mixture (raw pixels)"
            r["meets_target"] = bool(r["nll"] < mixture)
        else:
            r["target"] = "reference (no target)"
    rows[0]["nll_vs_best_baseline"] = rows[0]["nll"] - best_other
    return rows


def _sample_grid(x, name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(8, 8, figsize=(6, 6))
    for ax, img in zip(axes.flat, x.detach().reshape(-1, 8, 8)):
        ax.imshow(img.clamp(0, 1).numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.axis("off")
    fig.suptitle(f"{name} on digits: MALA samples")
    fig.savefig(RESULTS.parent / "energy_digits_samples.png", dpi=80)
    plt.close(fig)


# ---------------------------------------------------------------- MCMC


SCALES = torch.linspace(0.5, 2.0, 10)


def gauss10():
    pyro.sample("z", dist.Normal(torch.zeros(10), SCALES).to_event(1))


def funnel10():
    v = pyro.sample("v", dist.Normal(0.0, 3.0))
    pyro.sample("x", dist.Normal(torch.zeros(9), (v / 2).exp()).to_event(1))


def banana2():
    """Unit-scale banana: x₁ ~ N(0, 1), x₂ | x₁ ~ N(0.8 (x₁² − 1), 1); variances 1 and 2.28."""
    x1 = pyro.sample("x1", dist.Normal(0.0, 1.0))
    pyro.sample("x2", dist.Normal(0.8 * (x1**2 - 1), 1.0))


TARGETS = {"gaussian-10d": gauss10, "funnel-10d": funnel10, "banana-2d": banana2}
#: the true variances the banana rows are checked against
BANANA_VARIANCES = {"x1": 1.0, "x2": 2.28}


def mcmc_section(num_samples, warmup, targets=tuple(TARGETS)):
    rows = []
    for target, model in ((t, TARGETS[t]) for t in targets):
        for name, kernel in (
            ("langevin-mala", lambda m: pgm.infer.Langevin(m, step_size=0.1, adjust=True)),
            ("nuts", lambda m: pyro.infer.NUTS(m)),
        ):
            pyro.set_rng_seed(0)
            mcmc = pyro.infer.MCMC(kernel(model), num_samples, warmup_steps=warmup,
                                   disable_progbar=True)  # fmt: skip
            start = time.perf_counter()
            mcmc.run()
            sec = time.perf_counter() - start
            ess = az.ess(az.from_pyro(mcmc))
            min_ess = min(float(ess[v].min()) for v in ess.data_vars)
            row = dict(section="mcmc", dataset=target, model=name, min_ess=min_ess,
                       seconds=sec, ess_per_second=min_ess / sec,
                       steps=num_samples + warmup)  # fmt: skip
            if target == "banana-2d":
                draws = mcmc.get_samples()
                row["max_variance_error"] = max(
                    abs(float(draws[k].var()) / v - 1) for k, v in BANANA_VARIANCES.items()
                )
            rows.append(row)
            print(rows[-1], flush=True)
    for target in targets:
        by = {r["model"]: r for r in rows if r["dataset"] == target}
        ratio = by["langevin-mala"]["ess_per_second"] / by["nuts"]["ess_per_second"]
        for r in by.values():
            r["ess_per_second_ratio_langevin_over_nuts"] = ratio
            r["target"] = "reported (no numeric target)"
    return rows


# ---------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", nargs="+", default=["toy", "digits", "mcmc"])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--digits-epochs", type=int, default=30)
    parser.add_argument("--digits-models", nargs="+", default=list(DIGITS_EBMS))
    parser.add_argument("--mcmc-targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument(
        "--objectives",
        nargs="+",
        default=list(OBJECTIVES) + ["flow", "flow-nce", "readme"],
        choices=list(OBJECTIVES) + ["flow", "flow-nce", "readme"],
    )
    parser.add_argument("--pyro-optim", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--before", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    if "toy" in args.sections:
        steps = 20 if args.quick else args.steps
        n_train = 1000 if args.quick else args.n_train
        rows += toy_section(steps, n_train, not args.no_peers, args.objectives, args.pyro_optim)
        if "readme" in args.objectives and not args.quick:
            rows.append(readme_row())
            print(rows[-1], flush=True)
    if "digits" in args.sections:
        if args.quick:
            rows += digits_section(1, 10, 20, args.digits_models)
        else:
            rows += digits_section(args.digits_epochs, 100, 1000, args.digits_models)
    if "mcmc" in args.sections:
        steps = (100, 50) if args.quick else (1000, 500)
        rows += mcmc_section(*steps, args.mcmc_targets)
    new = pd.DataFrame(rows)
    key = ["section", "dataset", "model"]
    if args.before is not None:
        before = pd.read_csv(args.before).set_index(key)
        for col in ("time_ratio", "cpu_time_ratio"):
            old_col = before[col] if col in before else pd.Series(dtype=float)
            new[f"{col}_before"] = [old_col.get(tuple(k)) for k in new[key].itertuples(index=False)]
    if args.quick:
        print(new.to_string())
        return
    if args.out.exists():
        old = pd.read_csv(args.out)  # replace only the rows this run produced
        replaced = pd.MultiIndex.from_frame(new[key])
        old = old[~pd.MultiIndex.from_frame(old[key]).isin(replaced)]
        new = pd.concat([old, new], ignore_index=True)
    new = toy_targets(new) if "toy" in set(new["section"]) else new
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new.to_csv(args.out, index=False)
    print(new.to_string())


if __name__ == "__main__":
    main()
