"""The model zoo: every model family the package has, trained and scored alike.

Each :class:`ZooEntry` knows how to build its model for a dataset, what to
train it on, with which loss, and how to score it on the test split. The CLI
(``python -m pyro_genmodels zoo``) and ``benchmarks/`` iterate over
:data:`ZOO`; later families append their entries here.
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


@dataclass
class Setup:
    """What a zoo entry builds for one dataset.

    Attributes:
        module: the ``nn.Module`` holding every parameter.
        model, guide: the Pyro programs trained by :func:`pyro_genmodels.fit`.
        train: the training data as passed to ``fit`` (a tensor or a tuple).
        loss: the Pyro loss object.
        test_nll: a function returning the test negative log-likelihood per
            datapoint, in nats, shape ``(N,)``.
        sample: a function ``n -> (n, D)`` of generated data (means or draws).
        estimator: how ``test_nll`` is computed, for the report.
    """

    module: nn.Module
    model: Callable
    guide: Callable
    train: Any
    loss: Any
    test_nll: Callable[[], torch.Tensor]
    sample: Callable[[int], torch.Tensor]
    estimator: str


@dataclass(frozen=True)
class ZooEntry:
    name: str
    family: str
    description: str
    build: Callable[..., Setup]
    defaults: dict = field(default_factory=dict)


def _iw_nll(model: Callable, guide: Callable, *args: torch.Tensor, num_samples: int):
    from pyro_genmodels.infer import log_likelihood

    def nll() -> torch.Tensor:
        return -log_likelihood(model, guide, *args, num_samples=num_samples)

    return nll


def _vae(
    data: Dataset,
    *,
    z_dim: int = 8,
    hidden: int = 256,
    encoder: str = "mlp",
    loss: str = "elbo",
    num_samples: int = 1000,
) -> Setup:
    from pyro_genmodels.infer import IWAELoss
    from pyro_genmodels.models import VAE

    likelihood = "bernoulli" if data.binarized else "continuous_bernoulli"
    vae = VAE(
        data.num_dims,
        z_dim,
        hidden_dims=(hidden, hidden),
        likelihood=likelihood,
        encoder=encoder,
        image_shape=data.image_shape if encoder == "conv" else None,
    )
    objective = IWAELoss(num_particles=5) if loss == "iwae" else pyro.infer.Trace_ELBO()
    return Setup(
        vae,
        vae.model,
        vae.guide,
        data.train,
        objective,
        _iw_nll(vae.model, vae.guide, data.test, num_samples=num_samples),
        vae.sample,
        f"IW-{num_samples}",
    )


def _cvae(data: Dataset, *, z_dim: int = 8, hidden: int = 256, num_samples: int = 1000) -> Setup:
    from pyro_genmodels.models import CVAE

    likelihood = "bernoulli" if data.binarized else "continuous_bernoulli"
    k = int(data.train_labels.max()) + 1
    cvae = CVAE(
        data.num_dims, z_dim, num_classes=k, hidden_dims=(hidden, hidden), likelihood=likelihood
    )

    def sample(n: int) -> torch.Tensor:
        labels = torch.arange(n, device=data.train.device) % k
        return cvae.sample(labels)

    return Setup(
        cvae,
        cvae.model,
        cvae.guide,
        (data.train, data.train_labels),
        pyro.infer.Trace_ELBO(),
        _iw_nll(cvae.model, cvae.guide, data.test, data.test_labels, num_samples=num_samples),
        sample,
        f"IW-{num_samples}, log p(x | y)",
    )


def _ssvae(
    data: Dataset,
    *,
    z_dim: int = 8,
    hidden: int = 256,
    labeled: float = 0.1,
    num_samples: int = 1000,
) -> Setup:
    from pyro_genmodels.models import SSVAE

    likelihood = "bernoulli" if data.binarized else "continuous_bernoulli"
    k = int(data.train_labels.max()) + 1
    ssvae = SSVAE(
        data.num_dims, z_dim, num_classes=k, hidden_dims=(hidden, hidden), likelihood=likelihood
    )
    n = data.train.shape[0]
    keep = torch.arange(n, device=data.train.device) < math.ceil(labeled * n)
    y = torch.where(keep, data.train_labels, torch.full_like(data.train_labels, -1))

    def nll() -> torch.Tensor:
        ssvae.eval()
        try:
            return _iw_nll(ssvae.model, ssvae.guide, data.test, num_samples=num_samples)()
        finally:
            ssvae.train()

    return Setup(
        ssvae,
        ssvae.model,
        ssvae.guide,
        (data.train, y),
        pyro.infer.TraceEnum_ELBO(max_plate_nesting=1),
        nll,
        ssvae.sample,
        f"IW-{num_samples}, y latent",
    )


def _wae(data: Dataset, *, z_dim: int = 8, hidden: int = 256, num_samples: int = 1000) -> Setup:
    from pyro_genmodels.models import WAE

    likelihood = "bernoulli" if data.binarized else "continuous_bernoulli"
    wae = WAE(data.num_dims, z_dim, hidden_dims=(hidden, hidden), likelihood=likelihood)
    return Setup(
        wae,
        wae.model,
        wae.guide,
        data.train,
        wae.loss(),
        _iw_nll(wae.model, wae.guide, data.test, num_samples=num_samples),
        wae.sample,
        f"IW-{num_samples}",
    )


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("vae", "vae", "VAE, MLP encoder/decoder, Trace_ELBO", _vae),
        ZooEntry(
            "vae-conv", "vae", "VAE, conv encoder/decoder, Trace_ELBO", _vae, {"encoder": "conv"}
        ),
        ZooEntry("iwae", "vae", "VAE trained with IWAELoss(K=5)", _vae, {"loss": "iwae"}),
        ZooEntry("cvae", "vae", "conditional VAE on labels", _cvae),
        ZooEntry("ssvae", "vae", "semi-supervised VAE (M2), 10% labels", _ssvae),
        ZooEntry("wae", "vae", "WAE/InfoVAE through Trace_MMD", _wae),
    ]
}


def build(name: str, data: Dataset, **kwargs: Any) -> Setup:
    """Builds the zoo entry ``name`` for ``data`` (keyword overrides allowed).

    >>> from pyro_genmodels.data import load
    >>> setup = build("vae", load("digits", binarize=True), z_dim=2, hidden=8)
    >>> setup.estimator
    'IW-1000'
    """
    if name not in ZOO:
        raise ValueError(f"unknown model {name!r}; the zoo has {sorted(ZOO)}")
    entry = ZOO[name]
    return entry.build(data, **{**entry.defaults, **kwargs})


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
    bits/dim, train and evaluation seconds) and, per model, its setup and
    training history.
    """
    from pyro_genmodels.infer import bits_per_dim
    from pyro_genmodels.train import fit

    names = list(ZOO) if names is None else names
    rows, runs = [], {}
    for name in names:
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        setup = build(name, data, num_samples=num_samples, **kwargs)
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
        with torch.no_grad():
            nll = float(setup.test_nll().mean())
        rows.append(
            {
                "model": name,
                "family": ZOO[name].family,
                "dataset": data.name,
                "test_nll_nats": nll,
                "bits_per_dim": float(bits_per_dim(nll, data.num_dims)),
                "estimator": setup.estimator,
                "epochs": epochs,
                "train_seconds": trained,
                "eval_seconds": time.perf_counter() - start,
            }
        )
        runs[name] = (setup, history)
    return pd.DataFrame(rows), runs
