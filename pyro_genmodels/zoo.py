"""The model zoo: every model family the package has, trained and scored alike.

Each :class:`ZooEntry` knows how to build its model for a dataset, what to
train it on and with which loss. :func:`run` trains each with
:func:`pyro_genmodels.fit` and scores it on the test split: latent-variable
models by the importance-sampled ``log p(x)`` (with the guide as proposal) and
the fraction of test points whose PSIS k-hat exceeds 0.7 (where that estimate
cannot be trusted). The CLI (``python -m pyro_genmodels zoo``) and
``benchmarks/`` iterate over :data:`ZOO`; later families add entries to it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyro
import torch
from torch import nn

from pyro_genmodels.data import Dataset
from pyro_genmodels.optim import Adam as GroupedAdam

KHAT_POINTS = 100  # test points scored by PSIS k-hat (it costs as much as the NLL per point)


@dataclass
class Setup:
    """What a zoo entry builds for one dataset.

    Attributes:
        module: the ``nn.Module`` holding every parameter.
        model, guide: the Pyro programs trained by :func:`pyro_genmodels.fit`
            and scored by :func:`pyro_genmodels.infer.log_likelihood`.
        train: the training data as passed to ``fit`` (a tensor or a tuple).
        test: the arguments of ``model``/``guide`` for the test split
            (per-datapoint tensors, sliced together).
        loss: the Pyro loss object.
        sample: a function ``n -> (n, D)`` of generated data (means or draws).
        note: what the score means when it is not plain ``log p(x)``.
    """

    module: nn.Module
    model: Callable
    guide: Callable
    train: Any
    test: tuple[torch.Tensor, ...]
    loss: Any
    sample: Callable[[int], torch.Tensor]
    note: str = ""


@dataclass(frozen=True)
class ZooEntry:
    name: str
    family: str
    description: str
    build: Callable[..., Setup]
    defaults: dict = field(default_factory=dict)


def _likelihood(data: Dataset) -> str:
    return "bernoulli" if data.binarized else "continuous_bernoulli"


def _cycle_labels(n: int, k: int, data: Dataset) -> torch.Tensor:
    """Labels ``0, 1, ..., k-1, 0, ...`` of length ``n`` for class-conditional samples."""
    return torch.arange(n, device=data.train.device) % k


def _vae(
    data: Dataset, *, z_dim: int = 8, hidden: int = 256, encoder: str = "mlp", loss: str = "elbo"
) -> Setup:
    from pyro_genmodels.infer import IWAELoss
    from pyro_genmodels.models import VAE

    vae = VAE(
        data.num_dims,
        z_dim,
        hidden_dims=(hidden, hidden),
        likelihood=_likelihood(data),
        encoder=encoder,
        image_shape=data.image_shape if encoder == "conv" else None,
    )
    objective = IWAELoss(num_particles=5) if loss == "iwae" else pyro.infer.Trace_ELBO()
    return Setup(vae, vae.model, vae.guide, data.train, (data.test,), objective, vae.sample)


def _cvae(data: Dataset, *, z_dim: int = 8, hidden: int = 256) -> Setup:
    from pyro_genmodels.models import CVAE

    k = int(data.train_labels.max()) + 1
    cvae = CVAE(
        data.num_dims,
        z_dim,
        num_classes=k,
        hidden_dims=(hidden, hidden),
        likelihood=_likelihood(data),
    )

    def sample(n: int) -> torch.Tensor:
        return cvae.sample(_cycle_labels(n, k, data))

    return Setup(
        cvae,
        cvae.model,
        cvae.guide,
        (data.train, data.train_labels),
        (data.test, data.test_labels),
        pyro.infer.Trace_ELBO(),
        sample,
        note="log p(x | y)",
    )


def _ssvae(data: Dataset, *, z_dim: int = 8, hidden: int = 256, labeled: float = 0.1) -> Setup:
    from pyro_genmodels.models import SSVAE

    k = int(data.train_labels.max()) + 1
    ssvae = SSVAE(
        data.num_dims,
        z_dim,
        num_classes=k,
        hidden_dims=(hidden, hidden),
        likelihood=_likelihood(data),
    )
    n = data.train.shape[0]
    keep = torch.arange(n, device=data.train.device) < math.ceil(labeled * n)
    y = torch.where(keep, data.train_labels, torch.full_like(data.train_labels, -1))

    def sample(num: int) -> torch.Tensor:
        return ssvae.sample(_cycle_labels(num, k, data))

    return Setup(
        ssvae,
        ssvae.model,
        ssvae.guide,
        (data.train, y),
        (data.test,),
        pyro.infer.TraceEnum_ELBO(max_plate_nesting=1),
        sample,
        note=f"y latent; {labeled:.0%} labels in training",
    )


def _wae(data: Dataset, *, z_dim: int = 8, hidden: int = 256) -> Setup:
    from pyro_genmodels.models import WAE

    wae = WAE(data.num_dims, z_dim, hidden_dims=(hidden, hidden), likelihood=_likelihood(data))
    return Setup(wae, wae.model, wae.guide, data.train, (data.test,), wae.loss(), wae.sample)


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("vae", "vae", "VAE, MLP encoder/decoder, Trace_ELBO", _vae),
        ZooEntry("vae-conv", "vae", "VAE, conv encoder/decoder", _vae, {"encoder": "conv"}),
        ZooEntry("iwae", "vae", "VAE trained with IWAELoss(K=5)", _vae, {"loss": "iwae"}),
        ZooEntry("cvae", "vae", "conditional VAE on labels", _cvae),
        ZooEntry("ssvae", "vae", "semi-supervised VAE (M2), 10% labels", _ssvae),
        ZooEntry("wae", "vae", "WAE/InfoVAE through Trace_MMD", _wae),
    ]
}


def build(name: str, data: Dataset, **kwargs: Any) -> Setup:
    """Builds the zoo entry ``name`` for ``data`` (keyword overrides allowed).

    >>> from pyro_genmodels.data import load
    >>> setup = build("cvae", load("digits", binarize=True), z_dim=2, hidden=8)
    >>> setup.note, len(setup.test)
    ('log p(x | y)', 2)
    """
    if name not in ZOO:
        raise ValueError(f"unknown model {name!r}; the zoo has {sorted(ZOO)}")
    entry = ZOO[name]
    return entry.build(data, **{**entry.defaults, **kwargs})


def evaluate(setup: Setup, num_samples: int = 1000, khat_points: int = KHAT_POINTS) -> dict:
    """Test NLL (nats, mean over the test split) and PSIS k-hat of ``setup``.

    The module is put in eval mode while scoring (an SSVAE drops its
    classifier term). Returns ``test_nll_nats``, ``khat_bad_fraction`` (share
    of the first ``khat_points`` test points with k-hat > 0.7) and
    ``estimator``.
    """
    from pyro_genmodels.diagnostics import psis_khat
    from pyro_genmodels.infer import log_likelihood

    was_training = setup.module.training
    setup.module.eval()
    try:
        with torch.no_grad():
            nll = -log_likelihood(setup.model, setup.guide, *setup.test, num_samples=num_samples)
            head = tuple(t[:khat_points] for t in setup.test)
            khat = psis_khat(setup.model, setup.guide, *head, num_samples=num_samples)
    finally:
        setup.module.train(was_training)
    estimator = f"IW-{num_samples}" + (f", {setup.note}" if setup.note else "")
    return {
        "test_nll_nats": float(nll.mean()),
        "khat_bad_fraction": float((khat > 0.7).float().mean()),
        "estimator": estimator,
    }


def run(
    data: Dataset,
    names: list[str] | None = None,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 1e-3,
    num_samples: int = 1000,
    seed: int = 0,
    progress: bool | None = None,
    **kwargs: Any,
) -> tuple[pd.DataFrame, dict[str, tuple[Setup, pd.DataFrame]]]:
    """Trains and scores every named zoo entry on ``data``.

    Returns a table (one row per model: name, family, test NLL in nats and
    bits/dim, k-hat, train and evaluation seconds) and, per model, its setup
    and training history.
    """
    from pyro_genmodels.infer import bits_per_dim
    from pyro_genmodels.train import fit

    names = list(ZOO) if names is None else names
    rows, runs = [], {}
    for name in names:
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        setup = build(name, data, **kwargs)
        start = time.perf_counter()
        history = fit(
            setup.model,
            setup.guide,
            setup.train,
            loss=setup.loss,
            optim=GroupedAdam({"lr": lr}),
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            progress=progress,
        )
        trained = time.perf_counter() - start
        start = time.perf_counter()
        scores = evaluate(setup, num_samples)
        rows.append(
            {
                "model": name,
                "family": ZOO[name].family,
                "dataset": data.name,
                "test_nll_nats": scores["test_nll_nats"],
                "bits_per_dim": float(bits_per_dim(scores["test_nll_nats"], data.num_dims)),
                "khat_bad_fraction": scores["khat_bad_fraction"],
                "estimator": scores["estimator"],
                "epochs": epochs,
                "train_seconds": trained,
                "eval_seconds": time.perf_counter() - start,
            }
        )
        runs[name] = (setup, history)
    return pd.DataFrame(rows), runs
