"""A deep Boltzmann machine on binarized 8x8 digits: pretraining, mean field + PCD, AIS bound.

    python examples/dbm_digits.py --epochs 100 --out figures/

``pgm.models.DBM([64, 100, 50])`` is a Pyro model over ``v, h1, h2`` with a mean-field
guide; ``dbm.pretrain`` stacks CD-1 RBMs (Salakhutdinov & Hinton 2009), then
``pgm.fit(dbm.model, dbm.guide, loss=pgm.infer.DBMLoss())`` trains the mean-field
positive phase against persistent Gibbs chains. ``log Z`` comes from AIS over the model
with ``h1`` summed out; the reported number is the variational bound ``-ELBO`` (nats),
an upper bound on the test NLL, beside an RBM trained by PCD and scored the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pyro
import torch

import pyro_genmodels as pgm


def main(quick: bool = False, epochs: int = 100, out: str | None = None) -> dict:
    """Trains the DBM and an RBM; returns their test NLL figures and a samples figure."""
    data = pgm.data.load("digits", binarize=True)
    layers, pre_epochs, ais_steps, sweeps = [64, 100, 50], 20, 14500, 1000
    if quick:
        data = dataclasses.replace(
            data,
            train=data.train[:200],
            train_labels=data.train_labels[:200],
            test=data.test[:50],
            test_labels=data.test_labels[:50],
        )
        layers, epochs, pre_epochs, ais_steps, sweeps = [64, 8, 4], 1, 1, 300, 5
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    dbm = pgm.models.DBM(layers)
    dbm.pretrain(data.train, epochs=pre_epochs)
    pgm.fit(dbm.model, dbm.guide, data.train, loss=pgm.infer.DBMLoss(num_chains=100),
            optim=pgm.optim.Adam({"lr": 1e-3}), epochs=epochs, batch_size=100,
            progress=not quick)  # fmt: skip
    betas = pgm.infer.salakhutdinov_murray_betas(data.train, ais_steps)
    log_z, stderr = pgm.infer.ais(dbm, num_chains=100, betas=betas, data=data.train)
    with torch.no_grad():
        bound = float(-dbm.elbo(data.test, log_z).mean())
    print(f"DBM {layers}: test NLL <= {bound:.2f} ± {3 * float(stderr):.2f} nats (bound, AIS)")

    pyro.clear_param_store()
    rbm = pgm.models.RBM(64, layers[1])
    loss = pgm.infer.ContrastiveDivergenceLoss(k=1, persistent=True, buffer_size=100, reinit_prob=0)
    pgm.fit(rbm.model, rbm.guide, data.train, loss=loss, optim=rbm.sgd(lr=0.05),
            epochs=epochs, batch_size=100, progress=False)  # fmt: skip
    rbm_log_z, rbm_se = pgm.infer.ais(rbm, num_chains=100, betas=betas, data=data.train)
    with torch.no_grad():
        rbm_nll = float(rbm.free_energy(data.test).mean() + rbm_log_z)
    print(f"RBM (PCD, {layers[1]} hidden): test NLL {rbm_nll:.2f} ± {3 * float(rbm_se):.2f} nats")

    kernel = pgm.infer.BlockGibbs(dbm, batch_size=32)
    kernel.setup(0)
    state = kernel.initial_params
    for _ in range(sweeps):
        state = kernel.sample(state)
    fig = pgm.diagnostics.plot_samples(state["v"], data.image_shape, nrow=8, title="DBM Gibbs")
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        fig.savefig(Path(out) / "dbm_digits_samples.png")
    return {"dbm_bound": bound, "dbm_stderr": float(stderr), "rbm_nll": rbm_nll,
            "samples": state["v"], "figure": fig}  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--out", default=None)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    main(a.quick, a.epochs, a.out)
