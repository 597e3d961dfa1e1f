"""BiGAN on 8x8 digits: a generator, an encoder q(z|x) and a joint critic on (x, z).

    python examples/bigan_digits.py --epochs 100

``BiGANLoss`` compares encoder pairs (x, E(x)) with generator pairs (G(z), z).
After training, the encoder is used for inference like a VAE's guide: its
codes of the training images feed a logistic-regression digit classifier
(test accuracy reported, against the same classifier on random-network
codes), and G(E(x)) reconstructs test images.
"""

from __future__ import annotations

import argparse

import pyro
import pyro.distributions as dist
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

import pyro_genmodels as pgm
from pyro_genmodels.infer import BiGANLoss, ConcatSites


def accuracy(encode, data) -> float:
    with torch.no_grad():
        f_train, f_test = encode(data.train).numpy(), encode(data.test).numpy()
    clf = LogisticRegression(max_iter=2000).fit(f_train, data.train_labels.numpy())
    return float(clf.score(f_test, data.test_labels.numpy()))


def main(epochs: int = 100, quick: bool = False) -> dict:
    """Trains; returns ``{"history", "accuracy", "random_accuracy", "reconstruction_mse"}``."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    data = pgm.data.load("digits", binarize=False)
    z_dim, hidden = 16, 256
    if quick:
        epochs, hidden = 1, 16
    x_dim = data.num_dims
    G = pgm.nn.MLP(z_dim, [hidden, hidden], x_dim, output_activation=nn.Sigmoid)
    E = pgm.nn.MLP(x_dim, [hidden, hidden], z_dim)
    D = ConcatSites(pgm.nn.MLP(x_dim + z_dim, [hidden, hidden], 1), ["x", "z"])
    random_accuracy = accuracy(E, data)  # the untrained encoder, a baseline

    def model(x):
        pyro.module("generator", G)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Delta(G(z), event_dim=1), obs=x)

    def guide(x):  # the encoder: a deterministic q(z|x), as in BiGAN
        pyro.module("encoder", E)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(E(x), event_dim=1))

    optim = pgm.optim.Adam({"lr": 2e-4, "betas": (0.5, 0.999)})
    loss = BiGANLoss(D, critic_optim=optim)
    history = pgm.fit(
        model,
        guide,
        data.train,
        loss=loss,
        optim=optim,
        epochs=epochs,
        batch_size=64,
        progress=False,
    )
    acc = accuracy(E, data)
    with torch.no_grad():
        mse = float(((G(E(data.test)) - data.test) ** 2).mean())
    print(
        f"digit accuracy of a linear classifier on encoder codes: {acc:.3f} "
        f"(untrained encoder: {random_accuracy:.3f})"
    )
    print(f"reconstruction G(E(x)) mean squared error: {mse:.4f}")
    return {
        "history": history,
        "accuracy": acc,
        "random_accuracy": random_accuracy,
        "reconstruction_mse": mse,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    args = parser.parse_args()
    main(epochs=args.epochs, quick=args.quick)
