"""Resume is exact for every entry of the zoo registry: 2 + 3 epochs equal 5 uninterrupted.

The test iterates :data:`pyro_genmodels.zoo.ZOO`, so a family registered later
is covered without an edit here. Each entry is built small (its builder's
size options, when it has them) on a few dozen digits; the resumed run is
built from another seed, so every parameter, buffer (ActNorm's data-dependent
initialization, BatchNorm statistics), optimizer moment and loss state (a
critic's optimizer, persistent chains) must come from the checkpoint.
"""

from __future__ import annotations

import pyro
import pytest
import torch

from pyro_genmodels import zoo
from pyro_genmodels.data import Dataset, load
from pyro_genmodels.optim import Adam
from pyro_genmodels.train import fit

# hidden = 64 = D: autoregressive networks (MAF) need hidden layers at least as wide as the data
SMALL = {"hidden": 64, "z_dim": 2, "channels": 4, "layers": 1, "num_layers": 2}
N_TRAIN, N_TEST, BATCH = 16, 8, 8


def _tiny(binarize: bool) -> Dataset:
    full = load("digits", binarize=binarize)
    labels = {}
    if full.train_labels is not None:
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


def _run(name: str, epochs: int, build_seed: int, **kwargs):
    pyro.clear_param_store()
    pyro.set_rng_seed(build_seed)
    options = zoo.options(name)
    setup = zoo.build(
        name, DATA[zoo.ZOO[name].binarize], **{k: v for k, v in SMALL.items() if k in options}
    )
    history = fit(
        setup.model,
        setup.guide,
        setup.train,
        loss=setup.loss,
        optim=Adam({"lr": 1e-2}),
        epochs=epochs,
        batch_size=BATCH,
        seed=0,
        progress=False,
        **kwargs,
    )
    return setup, history


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_resume_is_exact_for_every_zoo_entry(name, tmp_path):
    reference, full = _run(name, 5, build_seed=0)
    _run(name, 2, build_seed=0, checkpoint_dir=tmp_path)
    resumed, history = _run(name, 5, build_seed=1, checkpoint_dir=tmp_path, resume=True)

    expected, got = reference.module.state_dict(), resumed.module.state_dict()
    assert list(expected) == list(got)
    for key in expected:
        assert torch.equal(expected[key], got[key]), f"{name}: {key} differs after resume"
    columns = [c for c in full.columns if c.startswith("loss")]
    assert history[columns].equals(full[columns]), f"{name}: history differs after resume"
