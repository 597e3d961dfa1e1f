"""Semi-supervised M2 on binarized 8x8 digits with 10% of the training labels.

    python examples/ssvae_digits.py --epochs 100

Trains ``pgm.models.SSVAE`` (Kingma et al., 2014) with
``TraceEnum_ELBO(max_plate_nesting=1)``: unknown labels (``-1``) are summed
out exactly by enumeration; known ones are observed and also train the
classifier ``q(y | x)`` through the ``alpha`` term. Prints the test accuracy
of ``q(y | x)`` (chance: 10%) and, with the classifier term switched off
(``ssvae.eval()``), the importance-sampled test NLL ``-log p(x)``.
"""

from __future__ import annotations

import argparse

import pyro
import torch
from pyro.infer import TraceEnum_ELBO

import pyro_genmodels as pgm
from pyro_genmodels.models import SSVAE


def hide_labels(labels: torch.Tensor, fraction_kept: float, seed: int = 0) -> torch.Tensor:
    """Keeps ``fraction_kept`` of the labels ``(N,)`` (chosen at random) and sets the rest to -1."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(labels), generator=g)[: round(fraction_kept * len(labels))]
    out = torch.full_like(labels, -1)
    out[keep] = labels[keep]
    return out


def main(epochs: int = 100, quick: bool = False, num_samples: int = 1000) -> dict:
    """Trains and evaluates; returns ``{"history", "test_accuracy", "test_nll"}``."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    data = pgm.data.load("digits", binarize=True)
    train, test = data.train, data.test
    y_train = hide_labels(data.train_labels, 0.1)
    hidden = (256,)
    if quick:
        epochs, num_samples, hidden = 40, 16, (32,)  # 160 steps on 256 images
        train, y_train, test = train[:256], y_train[:256], test[:64]
    ssvae = SSVAE(train.shape[1], 8, num_classes=10, hidden_dims=hidden, alpha=50.0)
    history = pgm.fit(
        ssvae.model,
        ssvae.guide,
        (train, y_train),
        loss=TraceEnum_ELBO(max_plate_nesting=1),
        optim=pyro.optim.Adam({"lr": 1e-3}),
        epochs=epochs,
        batch_size=64,
        progress=False,
    )
    ssvae.eval()  # drop the classifier term: the model is the plain generative model
    accuracy = ssvae.accuracy(test, data.test_labels[: len(test)])
    test_nll = -pgm.infer.log_likelihood(ssvae.model, ssvae.guide, test, num_samples=num_samples)
    test_nll = test_nll.mean().item()
    print(f"labeled training points: {(y_train >= 0).sum().item()} of {len(y_train)}")
    print(f"final train loss: {history['loss'].iloc[-1]:.2f} nats/image")
    print(f"test accuracy of q(y|x): {accuracy:.1%}")
    print(f"test NLL -log p(x) (K={num_samples}): {test_nll:.2f} nats/image")
    return {"history": history, "test_accuracy": accuracy, "test_nll": test_nll}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    args = parser.parse_args()
    main(epochs=args.epochs, quick=args.quick)
