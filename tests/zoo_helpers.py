"""Every zoo entry built small on a few dozen digits, trained by ``fit``, and compared.

Shared by the registry-wide property tests (resume, priming): they iterate
:data:`pyro_genmodels.zoo.ZOO`, so a family registered later is covered by them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyro
import torch

from pyro_genmodels import zoo
from pyro_genmodels.data import Dataset, load
from pyro_genmodels.optim import Adam
from pyro_genmodels.training import fit

# hidden = 64 = D: autoregressive networks (MAF) need hidden layers at least as wide as the data
SMALL = {"hidden": 64, "z_dim": 2, "channels": 4, "layers": 1, "num_layers": 2}
N_TRAIN, N_TEST, BATCH = 16, 8, 8


def _tiny(binarize: bool) -> Dataset:
    full = load("digits", binarize=binarize)
    labels = {}
    if full.train_labels is not None and full.test_labels is not None:
        labels = {
            "train_labels": full.train_labels[:N_TRAIN],
            "test_labels": full.test_labels[:N_TEST],
        }
    return Dataset(
        full.name,
        full.train[:N_TRAIN],
        full.test[:N_TEST],
        image_shape=full.image_shape,
        binarized=full.binarized,
        **labels,
    )


DATA = {True: _tiny(True), False: _tiny(False)}


def build_small(name: str, seed: int = 0) -> zoo.Setup:
    """Entry ``name`` built on its tiny data variant with the builder's small size options,
    after clearing the param store and seeding the generators with ``seed``."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    options = zoo.options(name)
    small = {k: v for k, v in SMALL.items() if k in options}
    return zoo.build(name, DATA[zoo.ZOO[name].binarize], **small)


def train(setup: zoo.Setup, epochs: int, **kwargs: Any) -> pd.DataFrame:
    """``fit`` of ``setup`` with Adam(1e-2), batches of :data:`BATCH`, seed 0."""
    return fit(setup.model, setup.guide, setup.train, loss=setup.loss, optim=Adam({"lr": 1e-2}),
               epochs=epochs, batch_size=BATCH, seed=0, progress=False, **kwargs)  # fmt: skip


def assert_same_training(
    what: str,
    expected: torch.nn.Module,
    got: torch.nn.Module,
    ref: pd.DataFrame,
    hist: pd.DataFrame,
) -> None:
    """Every parameter and buffer, and the loss columns of the history, equal bit for bit."""
    e, g = expected.state_dict(), got.state_dict()
    assert list(e) == list(g)
    for key in e:
        assert torch.equal(e[key], g[key]), f"{what}: {key} differs"
    columns = [c for c in ref.columns if c.startswith("loss")]
    assert hist[columns].equals(ref[columns]), (
        f"{what}: the history differs:\n{ref[columns]}\n{hist[columns]}"
    )
