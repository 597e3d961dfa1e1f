"""The model zoo: every model family the package has, trained and scored alike.

Each :class:`ZooEntry` knows how to build its model for a dataset, what to
train it on and with which loss. :func:`run` trains each with
:func:`pyro_genmodels.fit` and scores it on the test split. By default a
latent-variable model is scored by the importance-sampled ``log p(x)`` (the
guide as proposal) and by the share of test points whose PSIS k-hat exceeds
0.7 (where that estimate cannot be trusted); a family with an exact likelihood
or none (GANs) supplies its own :attr:`Setup.score`.

Families live in the modules of this package (``zoo/vae.py``, ...), each
calling :func:`register` at import; every module here is imported when the
zoo is first used, so a new family needs no edit of this file. The CLI
(``python -m pyro_genmodels zoo``) and ``benchmarks/`` iterate over :data:`ZOO`.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyro
import torch
from torch import nn

from pyro_genmodels.data import Dataset, load
from pyro_genmodels.optim import Adam as GroupedAdam

KHAT_POINTS = 100  # test points scored by PSIS k-hat (it costs as much as the NLL per point)


@dataclass
class Setup:
    """What a zoo entry builds for one dataset.

    Attributes:
        module: the ``nn.Module`` holding every parameter.
        model, guide: the Pyro programs trained by :func:`pyro_genmodels.fit`.
        train: the training data as passed to ``fit`` (a tensor or a tuple).
        test: the arguments of ``model``/``guide`` for the test split
            (per-datapoint tensors, sliced together).
        loss: the Pyro loss object.
        sample: a function ``n -> (n, D)`` of generated data (means or draws).
        note: what the score means when it is not plain ``log p(x)``.
        score: optional ``num_samples -> dict`` replacing the importance-sampled
            scoring; the dict holds ``test_nll_nats`` (NaN where a family has no
            likelihood) and ``estimator``, plus any other metric columns.
    """

    module: nn.Module
    model: Callable
    guide: Callable
    train: Any
    test: tuple[torch.Tensor, ...]
    loss: Any
    sample: Callable[[int], torch.Tensor]
    note: str = ""
    score: Callable[[int], dict] | None = None


@dataclass(frozen=True)
class ZooEntry:
    """One trainable configuration.

    Attributes:
        name: unique key (``"vae"``, ``"vae-conv"``, ...).
        family: the model family, for grouping in reports.
        description: one line for ``--help`` and reports.
        build: ``(data, **kwargs) -> Setup``.
        defaults: keyword arguments always passed to ``build``.
        binarize: the data variant the entry needs when the zoo loads a dataset
            by name (``True``: binarized, ``False``: dequantized in [0, 1]).
    """

    name: str
    family: str
    description: str
    build: Callable[..., Setup]
    defaults: dict = field(default_factory=dict)
    binarize: bool = True


ZOO: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    """Adds ``entry`` to :data:`ZOO` (names are unique)."""
    if entry.name in ZOO and ZOO[entry.name] is not entry:
        raise ValueError(f"zoo entry {entry.name!r} is already registered")
    ZOO[entry.name] = entry
    return entry


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_discover()


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
    unknown = sorted(set(kwargs) - set(options(name)))
    if unknown:
        raise ValueError(f"zoo entry {name!r} takes options {options(name)}, got {unknown}")
    return entry.build(data, **{**entry.defaults, **kwargs})


def options(name: str) -> list[str]:
    """The keyword options of zoo entry ``name``'s builder (e.g. ``["hidden", "z_dim"]``)."""
    params = inspect.signature(ZOO[name].build).parameters.values()
    return sorted(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def dataset_for(name: str, data: Dataset | str) -> Dataset:
    """The dataset entry ``name`` trains on: ``data`` itself, or loaded by name in
    the variant (binarized or dequantized) that the entry needs."""
    if isinstance(data, Dataset):
        return data
    return load(data, binarize=ZOO[name].binarize)


def evaluate(setup: Setup, num_samples: int = 1000, khat_points: int = KHAT_POINTS) -> dict:
    """Test scores of ``setup``: its own :attr:`Setup.score`, or by default the
    importance-sampled NLL (nats, mean over the test split) and PSIS k-hat.

    The module is put in eval mode while scoring (an SSVAE drops its
    classifier term). The default returns ``test_nll_nats``,
    ``khat_bad_fraction`` (share of the first ``khat_points`` test points with
    k-hat > 0.7; NaN when ``num_samples <= 20``, too few for k-hat) and ``estimator``.
    """
    from pyro_genmodels.diagnostics import psis_khat
    from pyro_genmodels.infer import log_likelihood

    was_training = setup.module.training
    setup.module.eval()
    try:
        with torch.no_grad():
            if setup.score is not None:
                return setup.score(num_samples)
            nll = -log_likelihood(setup.model, setup.guide, *setup.test, num_samples=num_samples)
            head = tuple(t[:khat_points] for t in setup.test)
            bad = float("nan")  # k-hat needs K > 20 draws for its tail fit
            if num_samples > 20:
                khat = psis_khat(setup.model, setup.guide, *head, num_samples=num_samples)
                bad = float((khat > 0.7).float().mean())
    finally:
        setup.module.train(was_training)
    estimator = f"IW-{num_samples}" + (f", {setup.note}" if setup.note else "")
    return {
        "test_nll_nats": float(nll.mean()),
        "khat_bad_fraction": bad,
        "estimator": estimator,
    }


def validation_args(name: str, data: Dataset, **kwargs: Any) -> tuple[torch.Tensor, ...] | None:
    """The validation split of ``data`` in the form entry ``name`` trains on, or ``None``.

    The entry is built a second time on ``data`` with its validation split in
    place of the test split (random states forked, so the real build is
    unaffected) and its test arguments are returned, when they have the
    structure of its training data (an SSVAE trains on ``(x, y)`` but is
    scored on ``(x,)``: no validation for it) and its loss is one number (a
    GAN's critic and generator losses are not a validation score).
    """
    import dataclasses

    from pyro_genmodels.checkpoint import get_rng_state, set_rng_state

    if data.valid is None:
        return None
    as_test = dataclasses.replace(data, test=data.valid, test_labels=data.valid_labels)
    rng, store = get_rng_state(), pyro.get_param_store()
    before = set(store.keys())
    try:
        setup = build(name, as_test, **kwargs)
        train = setup.train if isinstance(setup.train, tuple | list) else (setup.train,)
        if len(train) != len(setup.test):
            return None
        with torch.no_grad():  # a loss of several values (a GAN's) is no validation score
            probe = setup.loss.loss(setup.model, setup.guide, *(t[:2] for t in setup.test))
        if isinstance(probe, tuple | list):
            return None
    finally:
        for key in set(store.keys()) - before:  # the probe's params leave no trace
            del store[key]
        set_rng_state(rng)
    return tuple(setup.test)


def run(
    data: Dataset | str,
    names: list[str] | None = None,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 1e-3,
    num_samples: int = 1000,
    seed: int = 0,
    progress: bool | None = None,
    validation_fraction: float = 0.0,
    early_stopping: int | None = None,
    **kwargs: Any,
) -> tuple[pd.DataFrame, dict[str, tuple[Setup, pd.DataFrame, Dataset]]]:
    """Trains and scores every named zoo entry.

    ``data`` is a :class:`~pyro_genmodels.data.Dataset` used for every entry, or
    a dataset name loaded per entry in the variant it needs. Each entry gets the
    ``kwargs`` its builder accepts (see :func:`options`). With
    ``validation_fraction > 0`` a validation split is carved off the training
    split (:meth:`~pyro_genmodels.data.Dataset.split_validation`, seed ``seed``),
    scored every epoch (``val_loss``), and the best epoch is kept; with
    ``early_stopping`` (a patience in epochs) training also stops there.
    Returns a table (one row per model: name, family, test NLL in nats and
    bits/dim, the estimator, other metrics, epochs trained, best epoch, train
    and evaluation seconds) and, per model, its setup, training history and
    dataset.
    """
    from pyro_genmodels.infer import bits_per_dim
    from pyro_genmodels.train import fit

    names = list(ZOO) if names is None else names
    unknown = sorted(set(names) - set(ZOO))
    if unknown:
        raise ValueError(f"unknown models {unknown}; the zoo has {sorted(ZOO)}")
    if early_stopping is not None and not validation_fraction:
        if not (isinstance(data, Dataset) and data.valid is not None):
            raise ValueError(
                "early_stopping needs validation data: give validation_fraction > 0 or a "
                "Dataset with a valid split"
            )
    rows, runs = [], {}
    for name in names:
        dataset = dataset_for(name, data)
        if validation_fraction and dataset.valid is None:
            dataset = dataset.split_validation(validation_fraction, seed)
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        accepted = options(name)
        chosen = {k: v for k, v in kwargs.items() if k in accepted}
        setup = build(name, dataset, **chosen)
        valid = validation_args(name, dataset, **chosen)
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
            validation=valid,
            early_stopping=early_stopping if valid is not None else None,
            keep_best=valid is not None,
        )
        trained = time.perf_counter() - start
        start = time.perf_counter()
        scores = evaluate(setup, num_samples)
        nll = scores.pop("test_nll_nats")
        rows.append(
            {
                "model": name,
                "family": ZOO[name].family,
                "dataset": dataset.name,
                "test_nll_nats": nll,
                "bits_per_dim": float(bits_per_dim(nll, dataset.num_dims)),
                **scores,
                "epochs": len(history),
                "best_epoch": (
                    int(history.loc[history["val_loss"].idxmin(), "epoch"])
                    if "val_loss" in history and history["val_loss"].notna().any()
                    else float("nan")
                ),
                "train_seconds": trained,
                "eval_seconds": time.perf_counter() - start,
            }
        )
        runs[name] = (setup, history, dataset)
    return pd.DataFrame(rows), runs
