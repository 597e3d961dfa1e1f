"""A deep Boltzmann machine on binarized 8x8 digits: pretraining, mean field + PCD, AIS bound.

    python examples/dbm_digits.py --epochs 60 --out figures/

``pgm.models.DBM([64, 100, 50])`` is a Pyro model over ``v, h1, h2`` with a mean-field
guide; ``pgm.infer.DBMRecipe`` is Salakhutdinov & Hinton's (2009) training: ``pretrain``
stacks CD-1 RBMs with doubled inputs at the bottom and top, then ``pgm.fit`` trains the
mean-field positive phase against persistent Gibbs chains (``DBMLoss``) with SGD at a rate
decaying to 0. ``log Z`` comes from AIS over the model with ``h1`` summed out; the reported
number is the variational bound ``-ELBO`` (nats), an upper bound on the test NLL, beside an
RBM trained by ``pgm.infer.RBMRecipe`` (PCD) on the same budget and scored the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pyro
import torch

import pyro_genmodels as pgm


def main(quick: bool = False, epochs: int = 60, out: str | None = None) -> dict:
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
    budget = {"lr": 0.2, "batch_size": 20, "epochs": epochs}  # the zoo's digits budget
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    dbm = pgm.models.DBM(layers)
    recipe = pgm.infer.DBMRecipe(pretrain_epochs=pre_epochs, **budget)
    recipe.pretrain(dbm, data.train)
    pgm.fit(dbm.model, dbm.guide, data.train, progress=not quick,
            **recipe.fit_kwargs(dbm, data.train))  # fmt: skip
    betas = pgm.infer.salakhutdinov_murray_betas(data.train, ais_steps)
    log_z, stderr = pgm.infer.ais(dbm, num_chains=100, betas=betas, data=data.train)
    with torch.no_grad():
        bound = float(-dbm.elbo(data.test, log_z).mean())
    print(f"DBM {layers}: test NLL <= {bound:.2f} ± {3 * float(stderr):.2f} nats (bound, AIS)")

    pyro.clear_param_store()
    rbm = pgm.models.RBM(64, layers[1])
    rbm_recipe = pgm.infer.RBMRecipe(**budget)
    rbm_recipe.initialize(rbm, data.train)
    pgm.fit(rbm.model, rbm.guide, data.train, progress=False,
            **rbm_recipe.fit_kwargs(rbm, data.train))  # fmt: skip
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
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--out", default=None)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    main(a.quick, a.epochs, a.out)
