"""An RBM on binarized mnist5k: persistent CD, filters, Gibbs samples through MCMC, AIS NLL.

    python examples/rbm_mnist5k.py --hidden 500 --epochs 50 --out figures/

The RBM is a ``PyroModule`` whose ``model`` observes ``"v"`` with an ``EnergyDistribution``
(energy: the free energy ``F(v)``, sampler: block Gibbs), so
``ContrastiveDivergenceLoss(persistent=True)`` trains it through ``pgm.fit`` with no extra
code. ``pyro.infer.MCMC(pgm.infer.BlockGibbs(rbm))`` draws visible and hidden states that
``pgm.diagnostics.from_mcmc`` turns into ArviZ data (``arviz.from_pyro`` without Pyro's
per-element ESS, whose memory grows with draws² × pixels); ``log Z`` comes from AIS
(Salakhutdinov & Murray 2008) and the test NLL is ``mean F(v_test) + log Ẑ`` in nats.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pyro
import torch

import pyro_genmodels as pgm


def main(quick: bool = False, hidden: int = 500, epochs: int = 50, out: str | None = None) -> dict:
    """Trains, samples and scores; returns the NLL, its AIS error, samples and figures."""
    data = pgm.data.load("mnist5k", binarize=True)
    ais_steps, mcmc_samples, chains = 14500, 200, 16
    if quick:
        data = dataclasses.replace(
            data,
            train=data.train[:200],
            train_labels=data.train_labels[:200],
            test=data.test[:50],
            test_labels=data.test_labels[:50],
        )
        hidden, epochs, ais_steps, mcmc_samples, chains = 16, 1, 300, 10, 4
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    rbm = pgm.models.RBM(data.num_dims, hidden)
    # as many persistent chains as the batch, so every chain advances at every step (1000
    # chains at batch 100, each moved once every ten steps, cost 15 nats in the benchmark), and no
    # momentum (0.5 cost PCD 12 nats on this data)
    loss = pgm.infer.ContrastiveDivergenceLoss(k=1, persistent=True, buffer_size=50, reinit_prob=0)
    optim = rbm.sgd(lr=0.1, momentum=0.0, batch_size=50)
    history = pgm.fit(rbm.model, rbm.guide, data.train, loss=loss, optim=optim, epochs=epochs,
                      batch_size=50, progress=not quick)  # fmt: skip

    betas = pgm.infer.salakhutdinov_murray_betas(data.train, ais_steps)
    log_z, stderr = pgm.infer.ais(rbm, num_chains=100, betas=betas, data=data.train)
    with torch.no_grad():
        nll = float(-rbm.distribution(log_normalizer=log_z).log_prob(data.test).mean())
    print(f"test NLL {nll:.2f} ± {3 * float(stderr):.2f} nats (AIS, ±3 stderr of log Z)")

    kernel = pgm.infer.BlockGibbs(rbm, batch_size=chains)
    mcmc = pyro.infer.MCMC(kernel, num_samples=mcmc_samples, warmup_steps=100, disable_progbar=True)
    mcmc.run()
    draws = mcmc.get_samples()["v"][-1]  # the last sweep of each chain
    inference = pgm.diagnostics.from_mcmc(mcmc)
    with torch.no_grad():
        filters = rbm.W.T[:64].detach()
    figures = {
        "filters": pgm.diagnostics.plot_samples(filters, data.image_shape, nrow=8, title="filters"),
        "samples": pgm.diagnostics.plot_samples(draws, data.image_shape, nrow=8, title="Gibbs"),
    }
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        for name, fig in figures.items():
            fig.savefig(Path(out) / f"rbm_mnist5k_{name}.png")
    return {"test_nll": nll, "stderr": float(stderr), "history": history,
            "samples": draws, "inference": inference, "figures": figures}  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--out", default=None)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    main(a.quick, a.hidden, a.epochs, a.out)
