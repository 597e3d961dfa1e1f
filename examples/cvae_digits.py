"""A conditional VAE on binarized 8x8 digits: label-conditioned generation.

    python examples/cvae_digits.py --epochs 50

Trains ``pgm.models.CVAE`` (Sohn et al., 2015) on ``(image, label)`` pairs
with ``cvae.loss()`` (``TraceMeanField_ELBO``: the KL in closed form),
reports the importance-sampled conditional test NLL ``-log p(x | y)`` and
checks that generated images carry their label: each sample ``E[x | z, y]``
is assigned to the nearest per-class mean of the test images, and the
fraction assigned to ``y`` is printed (chance: 10%).
"""

from __future__ import annotations

import argparse

import pyro
import torch

import pyro_genmodels as pgm
from pyro_genmodels.models import CVAE


def label_consistency(
    samples: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor, ref_labels: torch.Tensor
) -> float:
    """Fraction of ``samples`` ``(S, D)`` (labels ``(S,)``) nearest in L2 to the mean of the
    ``reference`` images ``(M, D)`` of their label (``ref_labels`` ``(M,)``)."""
    means = torch.stack([reference[ref_labels == k].mean(0) for k in range(10)])
    nearest = torch.cdist(samples, means).argmin(-1)
    return (nearest == labels).float().mean().item()


def main(epochs: int = 50, quick: bool = False, num_samples: int = 1000) -> dict:
    """Trains and evaluates; returns ``{"history", "test_nll", "label_consistency"}``."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    data = pgm.data.load("digits", binarize=True)
    train, y_train, test, y_test = data.train, data.train_labels, data.test, data.test_labels
    hidden = (256, 256)
    if quick:
        epochs, num_samples, hidden = 40, 16, (32,)  # 160 steps on 256 images
        train, y_train, test, y_test = train[:256], y_train[:256], test[:64], y_test[:64]
    cvae = CVAE(train.shape[1], 8, num_classes=10, hidden_dims=hidden)
    history = pgm.fit(
        cvae.model,
        cvae.guide,
        (train, y_train),
        loss=cvae.loss(),  # the KL of the two Gaussians in closed form
        optim=pyro.optim.Adam({"lr": 1e-3}),
        epochs=epochs,
        batch_size=64,
        progress=False,
    )
    test_nll = -pgm.infer.log_likelihood(
        cvae.model, cvae.guide, test, y_test, num_samples=num_samples
    )
    test_nll = test_nll.mean().item()
    labels = torch.arange(10).repeat_interleave(20)
    consistency = label_consistency(cvae.sample(labels), labels, data.test, data.test_labels)
    print(f"final train loss: {history['loss'].iloc[-1]:.2f} nats/image")
    print(f"test conditional NLL -log p(x|y) (K={num_samples}): {test_nll:.2f} nats/image")
    print(f"generated samples nearest to their label's mean image: {consistency:.1%}")
    return {"history": history, "test_nll": test_nll, "label_consistency": consistency}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    args = parser.parse_args()
    main(epochs=args.epochs, quick=args.quick)
