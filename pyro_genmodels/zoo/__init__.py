"""The model zoo: every model family the package has, trained and scored alike.

Each :class:`ZooEntry` knows how to build its model for a dataset, what to
train it on, with which loss and with which budget (epochs, learning rate,
batch size: :attr:`ZooEntry.budget`, tuned per family). :func:`run` trains
each with :func:`pyro_genmodels.fit` and scores it on the test split. By
default a latent-variable model is scored by the importance-sampled
``log p(x)`` (the guide as proposal) and by the share of test points whose
PSIS k-hat exceeds 0.7 (where that estimate cannot be trusted); a family with
an exact likelihood, an AIS estimate or none (GANs) supplies its own
:attr:`Setup.score`. Every entry is also scored by its samples against the
test split (:func:`pyro_genmodels.diagnostics.sample_scores`: energy
distance, MMD, class coverage and a Fréchet distance in a fixed classifier's
features), so that models with and without a likelihood meet on common terms.

The table's ``section`` column says which rows may be compared: ``binarized``
and ``dequantized`` (by the data variant an entry trains on) for models with a
likelihood, ``likelihood-free`` for those without one (NaN ``test_nll_nats``).

Families live in the modules of this package (``zoo/vae.py``, ...), each
calling :func:`register` at import; every module here is imported when the
zoo is first used, so a new family needs no edit of this file. The CLI
(``python -m pyro_genmodels zoo``) and ``benchmarks/`` iterate over :data:`ZOO`.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyro
import torch
from torch import nn

from pyro_genmodels._checks import check_int, check_positive_float
from pyro_genmodels.data import Dataset, load
from pyro_genmodels.optim import Adam as GroupedAdam
from pyro_genmodels.parallel import on_main_process

KHAT_POINTS = 100  # test points scored by PSIS k-hat (it costs as much as the NLL per point)
#: The budget of an entry that does not state one (keys of :attr:`ZooEntry.budget`).
DEFAULT_BUDGET: dict[str, Any] = {"epochs": 30, "lr": 1e-3, "batch_size": 128}
#: What ``run(..., quick=True)`` changes: a smoke run of every entry in seconds.
QUICK = {"epochs": 1, "num_samples": 16, "khat_points": 16, "num_generated": 500}
#: Builder options set by ``quick`` for the entries that take them (AIS scoring budgets).
QUICK_OPTIONS = {"ais_steps": 300, "ais_betas": 100, "ais_chains": 20}
NUM_GENERATED = 1000  # samples drawn per entry for the sample scores


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
            likelihood) and ``estimator``, optionally ``test_nll_stderr`` (the
            standard error of a stochastic estimate such as AIS), plus any other
            metric columns. Sample scores are added by :func:`run` for every
            entry (they replace same-named keys, so that all rows are computed alike).
        optim_args: Adam arguments of the zoo's optimizer other than ``lr``
            (e.g. ``{"betas": (0.5, 0.999)}`` for a GAN's generator).
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
    optim_args: dict = field(default_factory=dict)


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
        budget: the entry's training budget, any of ``epochs``, ``lr`` and
            ``batch_size`` (the rest from :data:`DEFAULT_BUDGET`); the
            arguments of :func:`run` (``--epochs``, ``--lr``, ``--batch-size``)
            override it for every entry.
    """

    name: str
    family: str
    description: str
    build: Callable[..., Setup]
    defaults: dict = field(default_factory=dict)
    binarize: bool = True
    budget: dict = field(default_factory=dict)


ZOO: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    """Adds ``entry`` to :data:`ZOO` (names are unique, budget keys known)."""
    if entry.name in ZOO and ZOO[entry.name] is not entry:
        raise ValueError(f"zoo entry {entry.name!r} is already registered")
    unknown = sorted(set(entry.budget) - set(DEFAULT_BUDGET))
    if unknown:
        raise ValueError(
            f"zoo entry {entry.name!r}: budget takes keys {sorted(DEFAULT_BUDGET)}, got {unknown}"
        )
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


def budget(name: str, quick: bool = False, **overrides: Any) -> dict[str, Any]:
    """The training budget of entry ``name``: its :attr:`ZooEntry.budget` over
    :data:`DEFAULT_BUDGET`, ``epochs`` from :data:`QUICK` when ``quick``, then the
    ``overrides`` that are not None.

    >>> budget("vae", epochs=2)["epochs"], sorted(budget("vae"))
    (2, ['batch_size', 'epochs', 'lr'])
    """
    spent = {**DEFAULT_BUDGET, **ZOO[name].budget}
    if quick:
        spent["epochs"] = QUICK["epochs"]
    spent.update({k: v for k, v in overrides.items() if v is not None})
    return spent


def quiet_diagnostics() -> None:
    """Imports :mod:`pyro_genmodels.diagnostics` without ArviZ's once-a-day refactor
    ``FutureWarning`` (a notice about ArviZ's next major version, not about this run)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing", category=FutureWarning)
        import pyro_genmodels.diagnostics  # noqa: F401


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
    quiet_diagnostics()
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
                khat = on_main_process(  # random draws: rank 0's, as in one process
                    lambda: psis_khat(setup.model, setup.guide, *head, num_samples=num_samples)
                )
                bad = float((khat > 0.7).float().mean())
    finally:
        setup.module.train(was_training)
    estimator = f"IW-{num_samples}" + (f", {setup.note}" if setup.note else "")
    return {
        "test_nll_nats": float(nll.mean()),
        "khat_bad_fraction": bad,
        "estimator": estimator,
    }


def generated_scores(setup: Setup, data: Dataset, n: int = NUM_GENERATED) -> dict[str, Any]:
    """Sample scores of ``n`` draws of ``setup.sample`` against ``data``'s test split
    (:func:`pyro_genmodels.diagnostics.sample_scores`), in eval mode; non-finite samples
    give NaN scores and a ``sample_note``. Under ``torch.distributed`` rank 0 draws and
    scores and broadcasts the scores (:func:`~pyro_genmodels.parallel.on_main_process`),
    so every rank reports what one process would."""
    return on_main_process(lambda: _generated_scores(setup, data, n))


def _generated_scores(setup: Setup, data: Dataset, n: int) -> dict[str, Any]:
    quiet_diagnostics()
    from pyro_genmodels.diagnostics import sample_scores

    was_training = setup.module.training
    setup.module.eval()
    try:
        with torch.no_grad():
            x = setup.sample(n)
    finally:
        setup.module.train(was_training)
    if not bool(torch.isfinite(x).all()):
        keys = ["energy_distance", "mmd", "class_coverage", "frechet_distance"]
        return {**dict.fromkeys(keys, math.nan), "sample_note": "non-finite samples"}
    return sample_scores(x.reshape(n, -1), data)


def section(row: dict) -> str:
    """The report section of a table row: ``"likelihood-free"`` without a test NLL,
    else its data variant (``"binarized"`` or ``"dequantized"``)."""
    nll = row.get("test_nll_nats", math.nan)
    return "likelihood-free" if nll is None or math.isnan(nll) else row["variant"]


def progress_line(row: dict) -> str:
    """One line about a finished entry: name, scores, seconds.

    >>> progress_line({"model": "vae", "test_nll_nats": 20.5, "estimator": "IW-8",
    ...                "class_coverage": 10.0, "train_seconds": 3.0, "eval_seconds": 1.0})
    'vae               NLL 20.500 nats (IW-8)  classes 10/10  4.0 s'
    """
    parts = [f"{row['model']:16s}"]
    nll = row.get("test_nll_nats", math.nan)
    if not math.isnan(nll):
        err = row.get("test_nll_stderr", math.nan)
        pm = "" if err is None or math.isnan(err) else f" ± {err:.3f}"
        parts.append(f"NLL {nll:.3f}{pm} nats ({row.get('estimator', '')})")
    for key, fmt in (
        ("energy_distance", "ED {:.4f}"),
        ("class_coverage", "classes {:.0f}/10"),
        ("frechet_distance", "FD {:.2f}"),
    ):
        value = row.get(key, math.nan)
        if value is not None and not math.isnan(value):
            parts.append(fmt.format(value))
    parts.append(f"{row.get('train_seconds', 0.0) + row.get('eval_seconds', 0.0):.1f} s")
    return "  ".join(parts)


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

    from pyro_genmodels.training.rng import get_rng_state, set_rng_state

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
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    progress: bool | None = None,
    quick: bool = False,
    validation_fraction: float = 0.0,
    early_stopping: int | None = None,
    **kwargs: Any,
) -> tuple[pd.DataFrame, dict[str, tuple[Setup, pd.DataFrame, Dataset]]]:
    """Trains and scores every named zoo entry.

    ``data`` is a :class:`~pyro_genmodels.data.Dataset` used for every entry, or
    a dataset name loaded per entry in the variant it needs. Each entry trains with its
    :func:`budget`; ``epochs``, ``batch_size`` and ``lr`` override it for all. ``quick``
    runs one epoch per entry and scores with :data:`QUICK`'s small sample counts and
    :data:`QUICK_OPTIONS` (a smoke run). ``num_samples`` is the importance-sample count
    K of the test NLL (1000 by default). Each entry gets the ``kwargs`` its builder
    accepts (see :func:`options`). ``progress=None`` shows tqdm bars on a terminal and
    otherwise prints one line per finished entry (:func:`progress_line`); ``False``
    prints nothing. With ``validation_fraction > 0`` a validation split is carved off
    the training split (:meth:`~pyro_genmodels.data.Dataset.split_validation`, seed
    ``seed``), scored every epoch (``val_loss``), and the best epoch is kept; with
    ``early_stopping`` (a patience in epochs) training also stops there.

    Returns a table (one row per model: name, family, dataset, ``variant``,
    ``section``, test NLL in nats and bits/dim, the estimator, other metrics,
    the sample scores, the budget, epochs trained, best epoch, train and
    evaluation seconds) and, per
    model, its setup, training history and dataset.
    """
    from pyro_genmodels.infer import bits_per_dim
    from pyro_genmodels.training import fit

    names = list(ZOO) if names is None else names
    unknown = sorted(set(names) - set(ZOO))
    if unknown:
        raise ValueError(f"unknown models {unknown}; the zoo has {sorted(ZOO)}")
    counts = {"epochs": epochs, "batch_size": batch_size, "num_samples": num_samples}
    for key, value in {**counts, "early_stopping": early_stopping}.items():
        check_int(key, value, minimum=1, allow_none=True)  # all checked before any training
    if lr is not None:  # validation_fraction: Dataset.split_validation, before any training
        check_positive_float("lr", lr)
    if num_samples is None:
        num_samples = QUICK["num_samples"] if quick else 1000
    khat_points = QUICK["khat_points"] if quick else KHAT_POINTS
    num_generated = QUICK["num_generated"] if quick else NUM_GENERATED
    bars = sys.stderr.isatty() if progress is None else progress
    lines = progress is None and not bars
    quiet_diagnostics()
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
        spent = budget(name, quick, epochs=epochs, batch_size=batch_size, lr=lr)
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        accepted = options(name)
        chosen = {k: v for k, v in kwargs.items() if k in accepted}
        if quick:
            chosen = {**{k: v for k, v in QUICK_OPTIONS.items() if k in accepted}, **chosen}
        setup = build(name, dataset, **chosen)
        valid = validation_args(name, dataset, **chosen)
        start = time.perf_counter()
        history = fit(
            setup.model,
            setup.guide,
            setup.train,
            loss=setup.loss,
            optim=GroupedAdam({**setup.optim_args, "lr": spent["lr"]}),
            epochs=spent["epochs"],
            batch_size=spent["batch_size"],
            seed=seed,
            progress=bars,
            validation=valid,
            early_stopping=early_stopping if valid is not None else None,
            keep_best=valid is not None,
        )
        trained = time.perf_counter() - start
        start = time.perf_counter()
        scores = evaluate(setup, num_samples, khat_points)
        pyro.set_rng_seed(seed)
        scores.update(generated_scores(setup, dataset, num_generated))
        nll = scores.pop("test_nll_nats")
        row = {
            "model": name,
            "family": ZOO[name].family,
            "dataset": dataset.name,
            "variant": "binarized" if dataset.binarized else "dequantized",
            "test_nll_nats": nll,
            "bits_per_dim": float(bits_per_dim(nll, dataset.num_dims)),
            **scores,
            **spent,
            "epochs_trained": len(history),
            "best_epoch": (
                int(history.loc[history["val_loss"].idxmin(), "epoch"])
                if "val_loss" in history and history["val_loss"].notna().any()
                else float("nan")
            ),
            "train_seconds": trained,
            "eval_seconds": time.perf_counter() - start,
        }
        row["section"] = section(row)
        rows.append(row)
        runs[name] = (setup, history, dataset)
        if lines:
            print(progress_line(row), flush=True)
    return pd.DataFrame(rows), runs
