"""Boltzmann machine benchmark: AIS test NLL of RBMs and a DBM, Gibbs speed, AIS wall time.

Writes ``benchmarks/results/boltzmann.csv`` with one row per measurement:

* ``nll``: test NLL (nats, mean over the test split) of RBMs trained by CD-1, CD-k and PCD
  (our ``ContrastiveDivergenceLoss`` with block Gibbs, ``RBM.sgd``: weight decay 2e-4 on
  ``W``, momentum ``--momentum``, 0 by default as sklearn's), of scikit-learn's
  ``BernoulliRBM`` trained with the same hidden units, epochs, learning rate and batch
  size and **scored by our AIS**, and of a DBM
  (greedy pretraining, then ``DBMLoss``; its row is the variational bound). ``log Z`` by AIS
  (base rate from the training marginals, Salakhutdinov & Murray's schedule shape, 100
  chains); ``stderr`` is the AIS standard error of ``log Ẑ``. The mixture and VAE rows of
  ``vae.csv`` are copied beside them (``ref`` in the estimator).
* ``speed``: Gibbs sweeps per second (100 chains, 784-500) of our kernel, of sklearn's
  ``BernoulliRBM.gibbs`` and of a plain-PyTorch loop, interleaved; AIS wall time per 1000
  temperatures and extrapolated to the default 14,500.

Usage::

    python benchmarks/boltzmann.py              # the run recorded in results/ (CPU budget)
    python benchmarks/boltzmann.py --quick      # smoke test on digits (seconds)
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyro
import torch

import pyro_genmodels as pgm
from pyro_genmodels.infer import ContrastiveDivergenceLoss, DBMLoss, run_ais
from pyro_genmodels.infer import salakhutdinov_murray_betas as sm_betas

RESULTS = Path(__file__).parent / "results"


def _row(kind, dataset, unit, model, value, estimator, seconds=0.0, epochs=0, stderr=np.nan):
    return dict(kind=kind, dataset=dataset, unit=unit, model=model, value=value,
                stderr=stderr, estimator=estimator, seconds=seconds, epochs=epochs)  # fmt: skip


def _ais(machine, data, steps, chains, seed=0):
    torch.manual_seed(seed)
    start = time.perf_counter()
    res = run_ais(machine.annealing_path(data=data.train), sm_betas(data.train, steps), chains)
    return res, time.perf_counter() - start


def _estimator(steps, chains):
    return f"AIS ({steps} temperatures, {chains} chains, base rate)"


def train_rbm(data, hidden, epochs, lr, batch, k, persistent, chains, momentum, seed=0):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    rbm = pgm.models.RBM(data.num_dims, hidden)
    with torch.no_grad():
        p = data.train.mean(0).clamp(1e-3, 1 - 1e-3)
        rbm.visible_bias.copy_(torch.log(p) - torch.log1p(-p))
    loss = ContrastiveDivergenceLoss(
        k=k, persistent=persistent, buffer_size=chains, reinit_prob=0.0
    )
    start = time.perf_counter()
    optim = rbm.sgd(lr=lr, momentum=momentum, batch_size=batch)
    pgm.fit(rbm.model, rbm.guide, data.train, loss=loss, optim=optim, epochs=epochs,
            batch_size=batch, seed=seed, progress=False)  # fmt: skip
    return rbm, time.perf_counter() - start


def train_sklearn(data, hidden, epochs, lr, batch, seed=0):
    from sklearn.neural_network import BernoulliRBM

    sk = BernoulliRBM(n_components=hidden, learning_rate=lr, batch_size=batch, n_iter=epochs,
                      random_state=seed)  # fmt: skip
    start = time.perf_counter()
    sk.fit(data.train.numpy())
    seconds = time.perf_counter() - start
    rbm = pgm.models.RBM(data.num_dims, hidden)
    with torch.no_grad():
        rbm.W.copy_(torch.as_tensor(sk.components_.T))
        rbm.visible_bias.copy_(torch.as_tensor(sk.intercept_visible_))
        rbm.hidden_bias.copy_(torch.as_tensor(sk.intercept_hidden_))
    return sk, rbm, seconds


def train_dbm(data, layers, pre_epochs, epochs, lr, batch, seed=0):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    dbm = pgm.models.DBM(layers)
    start = time.perf_counter()
    dbm.pretrain(data.train, epochs=pre_epochs, lr=lr, batch_size=batch, seed=seed)
    pgm.fit(dbm.model, dbm.guide, data.train, loss=DBMLoss(num_chains=100),
            optim=pgm.optim.Adam({"lr": 1e-3}), epochs=epochs, batch_size=batch, seed=seed,
            progress=False)  # fmt: skip
    return dbm, time.perf_counter() - start


def save(rows: list[dict], out: str | None) -> pd.DataFrame:
    """The table so far (written to ``out`` after every row, so a cut-short run keeps its rows)."""
    table = pd.DataFrame(rows)
    table["torch"], table["pyro"] = torch.__version__, pyro.__version__
    table["machine"] = f"{platform.machine()} {torch.get_num_threads()} threads"
    if out:
        table.to_csv(out, index=False)
    return table


def nll_section(data, a, done: list[dict]) -> list[dict]:
    rows, est = done, _estimator(a.ais_steps, a.ais_chains)
    runs = [("RBM CD-1", 1, False), (f"RBM CD-{a.k}", a.k, False), ("RBM PCD", 1, True)]
    for name, k, persistent in runs:
        rbm, secs = train_rbm(
            data, a.hidden, a.epochs, a.lr, a.batch, k, persistent, a.pcd_chains, a.momentum
        )
        res, ais_secs = _ais(rbm, data, a.ais_steps, a.ais_chains)
        with torch.no_grad():
            nll = float(rbm.free_energy(data.test).mean() + res.log_z)
        rows.append(_row("nll", data.name, "nats", f"{name}, {a.hidden} hidden", nll, est, secs,
                         a.epochs, float(res.stderr)))  # fmt: skip
        rows.append(_row("ais", data.name, "s", f"AIS wall time, {name}", ais_secs, est))
        print(rows[-2], flush=True)
        save(rows, a.save)
    _, sk_rbm, secs = train_sklearn(data, a.hidden, a.epochs, a.lr, a.batch)
    res, _ = _ais(sk_rbm, data, a.ais_steps, a.ais_chains)
    with torch.no_grad():
        nll = float(sk_rbm.free_energy(data.test).mean() + res.log_z)
    name = f"sklearn BernoulliRBM, {a.hidden} hidden"
    sk_est = est + ", our AIS on its weights"
    rows.append(
        _row("nll", data.name, "nats", name, nll, sk_est, secs, a.epochs, float(res.stderr))
    )
    print(rows[-1], flush=True)
    save(rows, a.save)
    layers = [data.num_dims, a.hidden, a.hidden2]
    dbm, secs = train_dbm(data, layers, a.pre_epochs, a.dbm_epochs, a.lr, a.batch)
    res, _ = _ais(dbm, data, a.ais_steps, a.ais_chains)
    with torch.no_grad():
        bound = float(-dbm.elbo(data.test, res.log_z).mean())
    name, dbm_est = f"DBM {a.hidden}-{a.hidden2}", "variational bound, " + est
    rows.append(_row("nll", data.name, "nats", name, bound, dbm_est, secs, a.dbm_epochs,
                     float(res.stderr)))  # fmt: skip
    print(rows[-1], flush=True)
    return rows


def reference_rows(dataset: str) -> list[dict]:
    path = RESULTS / "vae.csv"
    if not path.exists():
        return []
    ref = pd.read_csv(path)
    keep = ref[(ref.kind == "nll") & (ref.dataset == dataset)]
    keep = keep[keep.model.isin(["bernoulli-mixture-100", "vae", "iwae", "vae-conv"])]
    return [_row("nll", dataset, "nats", r.model, r.value, f"{r.estimator} (ref: vae.csv)",
                 r.seconds, r.epochs) for r in keep.itertuples()]  # fmt: skip


def _time(fn, repeats=5, number=20) -> float:
    fn()
    best = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best.append((time.perf_counter() - start) / number)
    return float(np.median(best))


def speed_section(D=784, H=500, chains=100) -> list[dict]:
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
        per = _time(fn)
        rows.append(_row("speed", f"{D}-{H}", "sweeps/s", name, 1 / per,
                         f"{chains} chains, median of 5x20", per * 20))  # fmt: skip
        print(rows[-1], flush=True)
    path = rbm.annealing_path(data=v0)
    torch.manual_seed(0)
    start = time.perf_counter()
    run_ais(path, sm_betas(v0, 1000), chains)
    per_1000 = time.perf_counter() - start
    rows.append(_row("speed", f"{D}-{H}", "s", "AIS wall time per 1000 temperatures", per_1000,
                     f"{chains} chains", per_1000))  # fmt: skip
    rows.append(_row("speed", f"{D}-{H}", "s", "AIS wall time, default 14500 (extrapolated)",
                     14.5 * per_1000, f"{chains} chains", per_1000))  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--hidden2", type=int, default=500)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--pre-epochs", type=int, default=5)
    p.add_argument("--dbm-epochs", type=int, default=10)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.05)
    # the loss draws persistent chains from its buffer with replacement: many more chains than
    # the batch keep their lineages apart (mnist5k, 100 hidden, 10 epochs, momentum 0.5:
    # 137 nats with 1000 chains, 154 with 50); momentum 0.5 costs PCD 12 nats (153 vs 141)
    p.add_argument(
        "--pcd-chains", type=int, default=100, help="persistent chains (= the batch: all advance)"
    )
    p.add_argument("--momentum", type=float, default=0.0, help="0 as sklearn's SGD")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--ais-steps", type=int, default=14500)
    p.add_argument("--ais-chains", type=int, default=100)
    p.add_argument("--sections", default="nll,speed")
    p.add_argument("--quick", action="store_true", help="smoke test on digits")
    p.add_argument("--out", default=str(RESULTS / "boltzmann.csv"))
    a = p.parse_args()
    if a.quick:
        a.dataset, a.hidden, a.hidden2, a.epochs, a.pre_epochs, a.dbm_epochs = (
            "digits",
            16,
            8,
            1,
            1,
            1,
        )
        a.k, a.ais_steps, a.ais_chains = 2, 200, 20
    data = pgm.data.load(a.dataset, binarize=True)
    a.save = None if a.quick else a.out
    sections = a.sections.split(",")
    redone = {"speed"} if "speed" in sections else set()
    redone |= {"nll", "ais"} if "nll" in sections else set()
    rows: list[dict] = []
    if a.save and Path(a.save).exists():  # keep the rows of the sections not re-run
        kept = pd.read_csv(a.save)
        kept = kept[~kept.kind.isin(redone)].drop(columns=["torch", "pyro", "machine"])
        rows = kept.to_dict("records")
    if "speed" in sections:
        rows += speed_section(*((64, 16, 20) if a.quick else ()))
        save(rows, a.save)
    if "nll" in sections:
        rows = nll_section(data, a, rows)
        rows += reference_rows(a.dataset)
    table = save(rows, a.save)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table.drop(columns=["torch", "pyro", "machine"]).to_string())


if __name__ == "__main__":
    main()
