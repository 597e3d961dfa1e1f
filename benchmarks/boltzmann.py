"""Boltzmann machine benchmark: AIS test NLL of the recipes against scikit-learn and learnergy,
and the speed of training, Gibbs sampling, discrete Gibbs and AIS.

Writes ``benchmarks/results/boltzmann.csv`` with one row per measurement:

* ``nll``: test NLL in nats (mean over the test split) of RBMs trained by CD-1, CD-10 and
  PCD, each with :class:`pyro_genmodels.infer.RBMRecipe` (``RBMRecipe()`` is PCD as Tieleman
  2008 ran it; ``RBMRecipe.cd(k)`` CD-k at its own rate on the same schedule), of
  scikit-learn's ``BernoulliRBM`` (PCD at PCD's rate, constant) and learnergy's ``RBM`` (CD-1
  at CD-1's rate and momentum, constant) at the same hidden units, epochs and batch size,
  **scored by our AIS on their weights**, and of a DBM trained by
  :class:`~pyro_genmodels.infer.DBMRecipe` (its row is the variational bound). ``log Z``
  by AIS (base rate from the training marginals, the
  Salakhutdinov & Murray schedule, 100 chains); ``stderr`` is the AIS standard error of
  ``log Ẑ``; ``seconds`` the training time per epoch. One row per model and seed, then a
  ``mean`` row per model (``stderr``: the spread of the seeds, standard error of the mean).
  A 10-component Bernoulli mixture (EM) is fitted beside them; the VAE rows of ``vae.csv``
  are copied (``ref`` in the estimator).
* ``speed``: seconds per epoch of an RBM with 16 hidden units on digits (PCD-1, batch
  ``--speed-batch``): scikit-learn's ``BernoulliRBM.fit``, a plain PyTorch loop of the same
  updates, our loss and optimizer as ``SVI.step`` calls them (running the Pyro programs), and
  ``pgm.fit`` (a one-epoch run, setup included, and a steady epoch of a longer run: ``fit``
  takes the loss's direct step, :mod:`pyro_genmodels.infer.contrastive_direct`); the same at
  784-500 on
  mnist5k; Gibbs sweeps per second (784-500, 100 chains) of ``BlockGibbs``, a plain loop and
  ``BernoulliRBM.gibbs``; ``DiscreteGibbs`` sweeps per second on a 20-unit Ising chain
  against a plain enumeration loop of the same conditionals; AIS wall time.

Usage::

    python benchmarks/boltzmann.py                       # the table in results/ (CPU budget)
    python benchmarks/boltzmann.py --dataset digits --hidden 100 --hidden2 50 --batch 20 \\
        --epochs 60 --out results/boltzmann_digits.csv
    python benchmarks/boltzmann.py --quick               # smoke test on digits (seconds)
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyro
import torch
from _results import RESULTS, stamp  # benchmarks/_results.py
from _results import save as write_csv

import pyro_genmodels as pgm
from pyro_genmodels.infer import BoltzmannAnnealingPath, run_ais
from pyro_genmodels.infer import salakhutdinov_murray_betas as sm_betas


def _row(kind, dataset, unit, model, value, estimator, seconds=0.0, epochs=0, stderr=np.nan,
         seed=-1):  # fmt: skip
    return dict(kind=kind, dataset=dataset, unit=unit, model=model, value=value, stderr=stderr,
                estimator=estimator, seconds=seconds, epochs=epochs, seed=seed)  # fmt: skip


def _ais(machine, data, steps, chains, seed=0):
    torch.manual_seed(seed)
    return run_ais(BoltzmannAnnealingPath(machine, data=data.train), sm_betas(data.train, steps),
                   chains)  # fmt: skip


def _rbm_from(W, b, c):
    """A pgm RBM holding another library's weights ``W (D, H)``, ``b (D,)``, ``c (H,)``."""
    rbm = pgm.models.RBM(W.shape[0], W.shape[1])
    with torch.no_grad():
        for p, value in zip((rbm.W, rbm.visible_bias, rbm.hidden_bias), (W, b, c), strict=True):
            p.copy_(torch.as_tensor(value, dtype=torch.float32))
    return rbm


def train_recipe(data, recipe, hidden, seed):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    rbm = pgm.models.RBM(data.num_dims, hidden)
    recipe.initialize(rbm, data.train)
    start = time.perf_counter()
    pgm.fit(rbm.model, rbm.guide, data.train, seed=seed, progress=False,
            **recipe.fit_kwargs(rbm, data.train))  # fmt: skip
    return rbm, time.perf_counter() - start


def train_sklearn(data, recipe, hidden, seed):
    from sklearn.neural_network import BernoulliRBM

    sk = BernoulliRBM(n_components=hidden, learning_rate=recipe.lr, batch_size=recipe.batch_size,
                      n_iter=recipe.epochs, random_state=seed)  # fmt: skip
    start = time.perf_counter()
    sk.fit(data.train.double().numpy())
    seconds = time.perf_counter() - start
    return _rbm_from(sk.components_.T, sk.intercept_visible_, sk.intercept_hidden_), seconds


def train_learnergy(data, recipe, hidden, seed):
    import logging

    from learnergy.models.bernoulli import RBM as LearnergyRBM

    logging.getLogger("learnergy").setLevel(logging.WARNING)
    torch.manual_seed(seed)
    model = LearnergyRBM(n_visible=data.num_dims, n_hidden=hidden, steps=1,
                         learning_rate=recipe.lr, momentum=recipe.momentum,
                         decay=recipe.weight_decay)  # fmt: skip
    dataset = torch.utils.data.TensorDataset(data.train, torch.zeros(len(data.train)))
    start = time.perf_counter()
    model.fit(dataset, batch_size=recipe.batch_size, epochs=recipe.epochs)
    seconds = time.perf_counter() - start
    return _rbm_from(model.W.detach(), model.a.detach(), model.b.detach()), seconds


def train_dbm(data, recipe, layers, seed):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    dbm = pgm.models.DBM(layers)
    start = time.perf_counter()
    recipe.pretrain(dbm, data.train, seed=seed)
    pgm.fit(dbm.model, dbm.guide, data.train, seed=seed, progress=False,
            **recipe.fit_kwargs(dbm, data.train))  # fmt: skip
    return dbm, time.perf_counter() - start


def save(rows: list[dict], out: str | None) -> pd.DataFrame:
    """The table so far (written to ``out`` after every row, so a cut-short run keeps its rows)."""
    table = stamp(pd.DataFrame(rows))
    if out:
        write_csv(table, out)
    return table


def nll_section(data, a, rows: list[dict]) -> list[dict]:
    est = f"AIS ({a.ais_steps} temperatures, {a.ais_chains} chains, base rate)"
    pcd = pgm.infer.RBMRecipe(lr=a.lr, batch_size=a.batch, epochs=a.epochs)
    cd1 = pgm.infer.RBMRecipe.cd(1, batch_size=a.batch, epochs=a.epochs)
    cdk = pgm.infer.RBMRecipe.cd(a.k, batch_size=a.batch, epochs=a.epochs)
    runs = [
        ("RBM CD-1", lambda s: train_recipe(data, cd1, a.hidden, s), ""),
        (f"RBM CD-{a.k}", lambda s: train_recipe(data, cdk, a.hidden, s), ""),
        ("RBM PCD", lambda s: train_recipe(data, pcd, a.hidden, s), ""),
        ("sklearn BernoulliRBM", lambda s: train_sklearn(data, pcd, a.hidden, s),
         ", our AIS on its weights; PCD at a constant rate of PCD's"),
        ("learnergy RBM (CD-1)", lambda s: train_learnergy(data, cd1, a.hidden, s),
         ", our AIS on its weights; CD-1 at a constant rate and momentum of CD-1's"),
    ]  # fmt: skip
    models = [m for m in a.models.split(",") if m]
    for name, train, note in runs:
        if models and not any(name.startswith(m) for m in models):
            continue
        for seed in range(a.seeds):
            rbm, secs = train(seed)
            res = _ais(rbm, data, a.ais_steps, a.ais_chains, seed)
            with torch.no_grad():
                nll = float(rbm.free_energy(data.test).mean() + res.log_z)
            model = f"{name}, {a.hidden} hidden"
            rows.append(_row("nll", data.name, "nats", model, nll, est + note, secs / a.epochs,
                             a.epochs, float(res.stderr), seed))  # fmt: skip
            print(rows[-1], flush=True)
            save(rows, a.save)
    if not models or any("DBM".startswith(m) or m.startswith("DBM") for m in models):
        dbm_recipe = pgm.infer.DBMRecipe(lr=a.dbm_lr, batch_size=a.batch, epochs=a.epochs,
                                         pretrain_epochs=a.pre_epochs)  # fmt: skip
        layers = [data.num_dims, a.hidden, a.hidden2]
        for seed in range(a.seeds):
            dbm, secs = train_dbm(data, dbm_recipe, layers, seed)
            res = _ais(dbm, data, a.ais_steps, a.ais_chains, seed)
            with torch.no_grad():
                bound = float(-dbm.elbo(data.test, res.log_z).mean())
            rows.append(_row("nll", data.name, "nats", f"DBM {a.hidden}-{a.hidden2}", bound,
                             "variational bound, " + est, secs / a.epochs, a.epochs,
                             float(res.stderr), seed))  # fmt: skip
            print(rows[-1], flush=True)
            save(rows, a.save)
    return rows


def mean_rows(rows: list[dict]) -> list[dict]:
    """One ``mean`` row per model over its seeds (stderr: the seeds' standard error)."""
    seeded = pd.DataFrame([r for r in rows if r["kind"] == "nll" and r["seed"] >= 0])
    out = []
    for (dataset, model), g in seeded.groupby(["dataset", "model"], sort=False):
        sem = float(g.value.std(ddof=1) / math.sqrt(len(g))) if len(g) > 1 else np.nan
        out.append(_row("nll", dataset, "nats", model, float(g.value.mean()),
                        f"mean of {len(g)} seeds; stderr across seeds", float(g.seconds.mean()),
                        int(g.epochs.iloc[0]), sem, -2))  # fmt: skip
    return out


def reference_rows(data, components=10) -> list[dict]:
    from pyro_genmodels.distributions import BernoulliMixture

    torch.manual_seed(0)
    start = time.perf_counter()
    mixture = BernoulliMixture.fit_em(data.train, num_components=components, num_iters=200)
    rows = [_row("nll", data.name, "nats", f"bernoulli-mixture-{components}",
                 float(-mixture.log_prob(data.test).mean()), "exact (EM, 200 iterations)",
                 time.perf_counter() - start)]  # fmt: skip
    path = RESULTS / "vae.csv"
    if path.exists():
        ref = pd.read_csv(path)
        keep = ref[(ref.kind == "nll") & (ref.dataset == data.name)]
        keep = keep[keep.model.isin(["vae", "iwae", "vae-conv"])]
        rows += [_row("nll", data.name, "nats", r.model, r.value, f"{r.estimator} (ref: vae.csv)",
                      r.seconds, r.epochs) for r in keep.itertuples()]  # fmt: skip
    return rows


def _time(fn, repeats=5, number=1) -> float:
    fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number)
    return float(np.median(runs))


def epoch_speed(data, hidden, batch, repeats=5) -> list[dict]:
    """Seconds per epoch of PCD-1 at ``batch``: sklearn, a plain loop, our loss, ``pgm.fit``."""
    from sklearn.neural_network import BernoulliRBM

    X, D, H = data.train, data.num_dims, hidden
    n = X.shape[0]
    torch.manual_seed(0)
    rbm = pgm.models.RBM(D, H)
    W, b, c = (t.detach().clone() for t in (rbm.W, rbm.visible_bias, rbm.hidden_bias))
    state = {"chains": torch.bernoulli(torch.full((batch, D), 0.5))}

    def plain():  # the same updates as the recipe: PCD-1, rate per datapoint, decay on W
        order = torch.randperm(n)
        for i in range(0, n, batch):
            v = X[order[i : i + batch]]
            chains = state["chains"][: v.shape[0]]
            h = torch.bernoulli(torch.sigmoid(chains @ W + c))
            chains = torch.bernoulli(torch.sigmoid(h @ W.T + b))
            ph, phn = torch.sigmoid(v @ W + c), torch.sigmoid(chains @ W + c)
            W.add_((v.T @ ph - chains.T @ phn) / len(v) - 1e-4 * W, alpha=0.01)
            b.add_((v - chains).mean(0), alpha=0.01)
            c.add_((ph - phn).mean(0), alpha=0.01)
            state["chains"][: v.shape[0]] = chains

    recipe = pgm.infer.RBMRecipe(lr=0.01, batch_size=batch, epochs=10**6)
    kw = recipe.fit_kwargs(rbm, X)
    loss, optim = kw["loss"], kw["optim"]

    def svi_like():  # our loss and optimizer, as SVI.step calls them (the full step), no fit
        order = torch.randperm(n)
        for i in range(0, n, batch):
            v = X[order[i : i + batch]]
            with pyro.poutine.trace(param_only=True) as tape:
                loss.loss_and_grads(rbm.model, rbm.guide, v)
            params = [s["value"].unconstrained() for s in tape.trace.nodes.values()]
            optim(params)
            pyro.infer.util.zero_grads(params)

    def fit(epochs=1):
        pgm.fit(rbm.model, rbm.guide, X, loss=loss, optim=optim, epochs=epochs,
                batch_size=batch, progress=False)  # fmt: skip

    sk = BernoulliRBM(n_components=H, learning_rate=0.01, batch_size=batch, n_iter=1,
                      random_state=0)  # fmt: skip
    Xd = X.double().numpy()
    sk.fit(Xd)

    def sklearn():  # one epoch (fit restarts from fresh weights: the updates are the same)
        sk.fit(Xd)

    extra = 5  # a steady epoch of fit: (fit of 1 + extra epochs - fit of 1) / extra
    runs = {"sklearn BernoulliRBM.fit (1 epoch)": sklearn, "plain PyTorch loop": plain,
            "pgm loss + optimizer as SVI calls them": svi_like, "pgm.fit (1 epoch)": fit,
            "pgm loss + optimizer as SVI calls them, validation off": svi_like,
            "fit longer": lambda: fit(extra + 1)}  # fmt: skip
    seconds: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeats + 1):  # interleaved rounds (load hits every row alike); a warm-up
        for label, fn in runs.items():
            with pyro.validation_enabled(not label.endswith("validation off")):
                start = time.perf_counter()
                fn()
                seconds[label].append(time.perf_counter() - start)
    seconds = {label: values[1:] for label, values in seconds.items()}
    longer, one = np.array(seconds.pop("fit longer")), np.array(seconds["pgm.fit (1 epoch)"])
    seconds["pgm.fit, steady epoch"] = list((longer - one) / extra)
    sk = np.array(seconds["sklearn BernoulliRBM.fit (1 epoch)"])
    plain_s = np.array(seconds["plain PyTorch loop"])
    rows = []
    name = f"{data.name} {D}-{H}, batch {batch}"
    for label, values in seconds.items():
        per = float(np.median(values))
        ratios = (np.median(np.array(values) / sk), np.median(np.array(values) / plain_s))
        note = (f"median of {repeats} interleaved rounds; {ratios[0]:.2f}x sklearn, "
                f"{ratios[1]:.2f}x plain (medians of the rounds' ratios)")  # fmt: skip
        if label == "pgm.fit, steady epoch":
            note += f"; (fit of {extra + 1} epochs - fit of 1) / {extra}"
        rows.append(_row("speed", name, "s/epoch", label, per, note, per))
        print(rows[-1], flush=True)
    return rows


def gibbs_speed(D=784, H=500, chains=100) -> list[dict]:
    from sklearn.neural_network import BernoulliRBM

    torch.manual_seed(0)
    rbm = pgm.models.RBM(D, H, init_scale=0.1)
    v0 = torch.bernoulli(torch.full((chains, D), 0.5))
    kernel = pgm.infer.BlockGibbs(rbm, batch_size=chains)
    kernel.setup(0)
    state = {"p": kernel.initial_params}

    def ours():
        state["p"] = kernel.sample(state["p"])

    W, b, c = (t.detach().clone() for t in (rbm.W, rbm.visible_bias, rbm.hidden_bias))
    vt = {"v": v0.clone()}

    def plain():
        h = torch.bernoulli(torch.sigmoid(vt["v"] @ W + c))
        vt["v"] = torch.bernoulli(torch.sigmoid(h @ W.T + b))

    sk = BernoulliRBM(n_components=H, random_state=0)
    sk.components_ = W.T.double().numpy().copy()
    sk.intercept_hidden_, sk.intercept_visible_ = c.double().numpy(), b.double().numpy()
    sk.random_state_ = np.random.RandomState(0)
    vs = {"v": v0.double().numpy()}

    def sklearn():
        vs["v"] = sk.gibbs(vs["v"])

    rows = []
    for name, fn in [("pgm BlockGibbs (MCMC kernel)", ours), ("plain PyTorch loop", plain),
                     ("sklearn BernoulliRBM.gibbs", sklearn)]:  # fmt: skip
        per = _time(fn, 5, 20)
        rows.append(_row("speed", f"{D}-{H}", "sweeps/s", name, 1 / per,
                         f"{chains} chains, median of 5x20", per))  # fmt: skip
        print(rows[-1], flush=True)
    torch.manual_seed(0)
    start = time.perf_counter()
    run_ais(BoltzmannAnnealingPath(rbm, data=v0), sm_betas(v0, 1000), chains)
    per_1000 = time.perf_counter() - start
    rows.append(_row("speed", f"{D}-{H}", "s", "AIS wall time per 1000 temperatures", per_1000,
                     f"{chains} chains", per_1000))  # fmt: skip
    return rows


def discrete_gibbs_speed(n=20, sweeps=20) -> list[dict]:
    """DiscreteGibbs on an Ising chain ``p(z) ∝ exp(J Σ s_i s_{i+1} + h Σ s_i)``, ``s = 2z - 1``
    (one Bernoulli ``.to_event(1)`` site of ``n`` units), against a plain loop that draws each
    unit from the same full conditional."""
    import pyro.distributions as dist

    J, h = 0.5, 0.1

    def model():
        z = pyro.sample("z", dist.Bernoulli(torch.full((n,), 0.5)).to_event(1))
        s = 2 * z - 1
        pyro.factor("ising", J * (s[1:] * s[:-1]).sum() + h * s.sum())

    kernel = pgm.infer.DiscreteGibbs(model)
    kernel.setup(0)
    state = {"p": kernel.initial_params}

    def ours():
        state["p"] = kernel.sample(state["p"])

    s = {"z": torch.bernoulli(torch.full((n,), 0.5))}

    def plain():
        z = s["z"]
        for i in range(n):
            spin = (2 * z[i - 1] - 1 if i > 0 else 0) + (2 * z[i + 1] - 1 if i < n - 1 else 0)
            z[i] = torch.bernoulli(torch.sigmoid(2 * (J * spin + h)))

    rows = []
    for name, fn in [("pgm DiscreteGibbs (MCMC kernel)", ours), ("plain enumeration loop", plain)]:
        per = _time(fn, 5, sweeps)
        rows.append(_row("speed", f"Ising chain, {n} units", "sweeps/s", name, 1 / per,
                         f"median of 5x{sweeps}", per))  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--hidden2", type=int, default=500)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--pre-epochs", type=int, default=20)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--lr", type=float, default=pgm.infer.RBMRecipe.lr)
    p.add_argument("--dbm-lr", type=float, default=pgm.infer.DBMRecipe.lr)
    p.add_argument("--batch", type=int, default=pgm.infer.RBMRecipe.batch_size)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--models", default="", help="comma-separated name prefixes (default: all)")
    p.add_argument("--speed-batch", type=int, default=100)
    p.add_argument("--ais-steps", type=int, default=14500)
    p.add_argument("--ais-chains", type=int, default=100)
    p.add_argument("--sections", default="nll,speed")
    p.add_argument("--quick", action="store_true", help="smoke test on digits")
    p.add_argument("--out", default=str(RESULTS / "boltzmann.csv"))
    a = p.parse_args()
    if a.quick:
        a.dataset, a.hidden, a.hidden2, a.epochs, a.pre_epochs, a.seeds = "digits", 16, 8, 1, 1, 1
        a.k, a.ais_steps, a.ais_chains = 2, 200, 20
    data = pgm.data.load(a.dataset, binarize=True)
    a.save = None if a.quick else a.out
    sections = a.sections.split(",")
    rows: list[dict] = []
    models = [m for m in a.models.split(",") if m]
    if a.save and Path(a.save).exists():  # keep the rows of the sections (and models) not re-run
        kept = pd.read_csv(a.save)
        drop = kept.kind.eq("speed") & ("speed" in sections)
        if "nll" in sections:
            chosen = kept.model.apply(lambda m: not models or any(m.startswith(x) for x in models))
            redo = chosen | (kept.seed < 0)  # the chosen models, the means and the references
            drop |= kept.kind.eq("nll") & kept.dataset.eq(data.name) & redo
        rows = kept[~drop].to_dict("records")
    if "speed" in sections:
        digits = pgm.data.load("digits", binarize=True)
        rows += epoch_speed(digits, 16, a.speed_batch, 3 if a.quick else 7)
        if not a.quick:
            rows += epoch_speed(pgm.data.load("mnist5k", binarize=True), 500, 100, 9)
        rows += gibbs_speed(*((64, 16, 20) if a.quick else ()))
        rows += discrete_gibbs_speed(sweeps=2 if a.quick else 20)
        save(rows, a.save)
    if "nll" in sections:
        rows = nll_section(data, a, rows)
        rows += mean_rows([r for r in rows if r["dataset"] == data.name]) + reference_rows(data)
    table = save(rows, a.save)
    with pd.option_context("display.width", 220, "display.max_colwidth", 60):
        print(table.drop(columns=["torch", "pyro", "machine"]).to_string())


if __name__ == "__main__":
    main()
