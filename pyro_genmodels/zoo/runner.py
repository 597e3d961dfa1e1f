"""Training zoo entries: :func:`train_entry` (one entry, the one place that calls ``fit``
for the zoo and the CLI) and :func:`run` (every named entry, trained and scored).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyro

from pyro_genmodels._checks import check_int, check_positive_float, check_real
from pyro_genmodels.data import Dataset
from pyro_genmodels.optim import Adam as GroupedAdam
from pyro_genmodels.training.threads import choose_threads, thread_budget
from pyro_genmodels.zoo import (
    KHAT_POINTS,
    NUM_GENERATED,
    QUICK,
    QUICK_OPTIONS,
    ZOO,
    Setup,
    budget,
    build,
    check_entry,
    dataset_for,
    describe,
    options,
    quiet_diagnostics,
    validation_args,
)
from pyro_genmodels.zoo.scoring import (
    evaluate,
    generated_scores,
    progress_line,
    section,
    variant,
)

__all__ = ["Trained", "check_budget", "entry_data", "run", "train_entry"]


@dataclass
class Trained:
    """What :func:`train_entry` returns.

    Attributes:
        name: the entry.
        setup: its :class:`~pyro_genmodels.zoo.Setup`, trained (the best epoch's
            parameters when it had a validation score).
        history: ``fit``'s history.
        data: the dataset it trained on (with its validation split, if any).
        budget: the epochs, learning rate and batch size it trained with.
        seconds: the wall time of ``fit``.
    """

    name: str
    setup: Setup
    history: pd.DataFrame
    data: Dataset
    budget: dict[str, Any]
    seconds: float


def check_budget(
    epochs: Any = None,
    batch_size: Any = None,
    lr: Any = None,
    num_samples: Any = None,
    early_stopping: Any = None,
    validation_fraction: Any = 0.0,
) -> None:
    """The checks of :func:`train_entry`'s and :func:`run`'s budget arguments (``None``:
    the entry's own), made before any work.

    >>> check_budget(validation_fraction=float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: validation_fraction must be a finite real number >= 0.0, got nan
    """
    counts = {"epochs": epochs, "batch_size": batch_size, "num_samples": num_samples}
    for key, value in {**counts, "early_stopping": early_stopping}.items():
        check_int(key, value, minimum=1, allow_none=True)
    if lr is not None:
        check_positive_float("lr", lr)
    _check_fraction(validation_fraction)


def _check_fraction(value: Any) -> None:
    if check_real("validation_fraction", value, minimum=0.0) >= 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {value!r}")


def entry_data(name: str, data: Dataset | str, validation_fraction: float, seed: int) -> Dataset:
    """The dataset entry ``name`` trains on (:func:`~pyro_genmodels.zoo.dataset_for`), with
    a validation split of ``validation_fraction`` carved off by ``seed`` when it has none."""
    _check_fraction(validation_fraction)
    dataset = dataset_for(name, data)
    if validation_fraction and dataset.valid is None:
        dataset = dataset.split_validation(validation_fraction, seed)
    return dataset


def _options(name: str, quick: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs``, plus :data:`QUICK_OPTIONS` the entry takes when ``quick``."""
    if not quick:
        return dict(kwargs)
    accepted = options(name)
    return {**{k: v for k, v in QUICK_OPTIONS.items() if k in accepted}, **kwargs}


def optimizer(setup: Setup, spent: dict[str, Any]) -> Any:
    """The optimizer ``setup`` trains with under the budget ``spent``: its own
    :attr:`~pyro_genmodels.zoo.Setup.optim`, else Adam at ``spent["lr"]`` with
    :attr:`~pyro_genmodels.zoo.Setup.optim_args`."""
    if setup.optim is not None:
        return setup.optim(spent)
    return GroupedAdam({**setup.optim_args, "lr": spent["lr"]})


def train_entry(
    name: str,
    data: Dataset | str,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    quick: bool = False,
    validation_fraction: float = 0.0,
    early_stopping: int | None = None,
    require_validation: bool = True,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    **kwargs: Any,
) -> Trained:
    """Builds zoo entry ``name`` for ``data`` and trains it with :func:`pyro_genmodels.fit`.

    The one recipe of the CLI's ``train`` and of :func:`run`: the param store cleared
    and the generators seeded with ``seed``; the entry built with ``kwargs`` (and, when
    ``quick``, :data:`~pyro_genmodels.zoo.QUICK_OPTIONS` it takes); its
    :func:`~pyro_genmodels.zoo.budget` (``epochs``, ``batch_size``, ``lr`` override it;
    ``quick``: one epoch); the entry's own optimizer for that budget
    (:attr:`~pyro_genmodels.zoo.Setup.optim`: a Boltzmann recipe's SGD), else
    ``pgm.optim.Adam`` with the entry's :attr:`~pyro_genmodels.zoo.Setup.optim_args` (a GAN's
    betas) and that learning rate (:func:`optimizer`).
    With ``validation_fraction > 0`` a validation split is carved off the training rows
    (:meth:`~pyro_genmodels.data.Dataset.split_validation`, seed ``seed``; a dataset that
    has one keeps it), scored every epoch in the form the entry trains on, and the best
    epoch is kept. ``early_stopping`` (a patience) needs that score: an entry without one
    (an SSVAE, scored without labels; the GANs, with two losses) is refused with
    ``require_validation`` and trains to the end without early stopping otherwise.
    ``checkpoint_dir``, ``resume`` and ``progress`` are ``fit``'s.

    >>> trained = train_entry("fvsbn", "digits", epochs=1, progress=False)
    >>> trained.budget, len(trained.history)
    ({'epochs': 1, 'lr': 0.003, 'batch_size': 100}, 1)
    """
    from pyro_genmodels.training import fit

    if name not in ZOO:
        raise ValueError(f"unknown model {name!r}; the zoo has {sorted(ZOO)}")
    check_budget(epochs, batch_size, lr, None, early_stopping, validation_fraction)
    dataset = entry_data(name, data, validation_fraction, seed)
    if early_stopping is not None and dataset.valid is None:
        raise ValueError(
            "early_stopping needs validation data: give validation_fraction > 0 "
            "(--validation-fraction) or a Dataset with a valid split"
        )
    num_data = dataset.train.shape[0]
    spent = budget(name, quick, num_data, epochs=epochs, batch_size=batch_size, lr=lr)
    chosen = _options(name, quick, kwargs)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    setup = build(name, dataset, **chosen)
    valid = validation_args(name, dataset, **chosen)
    if early_stopping is not None and valid is None and require_validation:
        raise ValueError(
            f"early_stopping needs a validation score in the form {name!r} trains on, and it "
            "has none (an SSVAE is scored without labels, a GAN has two losses)"
        )
    start = time.perf_counter()
    history = fit(
        setup.model,
        setup.guide,
        setup.train,
        loss=setup.loss,
        optim=optimizer(setup, spent),
        epochs=spent["epochs"],
        batch_size=spent["batch_size"],
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        progress=progress,
        validation=valid,
        early_stopping=early_stopping if valid is not None else None,
        keep_best=valid is not None,
    )
    return Trained(name, setup, history, dataset, spent, time.perf_counter() - start)


def _scoring_threads(trained: Trained) -> int | None:
    """Score an entry with the thread count ``fit`` trained it with (one for a small model:
    a second thread's spinning costs more CPU than it saves on a shared machine)."""
    params = list(pyro.get_param_store().values())
    if not params:
        return None
    size = sum(p.numel() for p in params)
    return choose_threads(size, trained.budget["batch_size"], params[0].device)


def _entries(
    data: Dataset | str,
    names: list[str] | None,
    validation_fraction: float,
    seed: int,
    quick: bool,
    kwargs: dict[str, Any],
) -> tuple[list[str], dict[str, str]]:
    """The entries :func:`run` trains, and those it skips with the reason (``names=None``:
    every entry that takes the data; named entries that refuse them are an error)."""
    chosen = list(ZOO) if names is None else list(names)
    unknown = sorted(set(chosen) - set(ZOO))
    if unknown:
        raise ValueError(f"unknown models {unknown}; the zoo has {sorted(ZOO)}")
    refused: dict[str, str] = {}
    for name in chosen:
        dataset = entry_data(name, data, validation_fraction, seed)
        accepted = {k: v for k, v in kwargs.items() if k in options(name)}
        try:
            check_entry(name, dataset, **_options(name, quick, accepted))
        except ValueError as error:
            refused[name] = str(error.__cause__ or error)
    kept = [n for n in chosen if n not in refused]
    if refused and (names is not None or not kept):
        listed = "; ".join(f"{n}: {why}" for n, why in refused.items())
        what = describe(dataset) if isinstance(data, Dataset) else repr(data)
        raise ValueError(f"zoo entries refuse {what}: {listed}")
    return kept, refused


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
    """Trains (:func:`train_entry`) and scores every named zoo entry.

    ``data`` is a :class:`~pyro_genmodels.data.Dataset` used for every entry, or
    a dataset name loaded per entry in the variant it needs. With ``names=None`` every
    entry that takes the data trains (the others are listed, with the reason, in the
    table's ``attrs["skipped"]`` and in a progress line); named entries must all take
    them, or nothing trains. Each entry trains with its
    :func:`budget`; ``epochs``, ``batch_size`` and ``lr`` override it for all. ``quick``
    runs one epoch per entry and scores with :data:`QUICK`'s small sample counts and
    :data:`QUICK_OPTIONS` (a smoke run). ``num_samples`` is the importance-sample count
    K of the test NLL (1000 by default). Each entry gets the ``kwargs`` its builder
    accepts (see :func:`options`). ``progress=None`` shows tqdm bars on a terminal and
    otherwise prints one line per finished entry (:func:`progress_line`); ``False``
    prints nothing. With ``validation_fraction`` in ``(0, 1)`` a validation split is
    carved off the training split, scored every epoch (``val_loss``), and the best
    epoch is kept; with ``early_stopping`` (a patience in epochs) training also stops
    there, for the entries that have a validation score. Every argument, and every
    entry against the data, is checked before the first entry trains.

    Returns a table (one row per model: name, family, dataset, ``variant``,
    ``section``, test NLL in nats and bits/dim, the estimator, other metrics,
    the sample scores, the budget, epochs trained, best epoch, train and
    evaluation seconds) and, per model, its setup, training history and dataset.
    """
    from pyro_genmodels.infer import bits_per_dim

    check_budget(epochs, batch_size, lr, num_samples, early_stopping, validation_fraction)
    quiet_diagnostics()  # before the entries are built (an energy entry imports diagnostics)
    names, skipped = _entries(data, names, validation_fraction, seed, quick, kwargs)
    if num_samples is None:
        num_samples = QUICK["num_samples"] if quick else 1000
    khat_points = QUICK["khat_points"] if quick else KHAT_POINTS
    num_generated = QUICK["num_generated"] if quick else NUM_GENERATED
    bars = sys.stderr.isatty() if progress is None else progress
    lines = progress is None and not bars
    if progress is not False:
        for name, why in skipped.items():
            print(f"{name:16s}  skipped: {why}", flush=True)
    rows, runs = [], {}
    for name in names:
        trained = train_entry(
            name,
            data,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            quick=quick,
            validation_fraction=validation_fraction,
            early_stopping=early_stopping,
            require_validation=False,
            progress=bars,
            **{k: v for k, v in kwargs.items() if k in options(name)},
        )
        setup, history, dataset = trained.setup, trained.history, trained.data
        start = time.perf_counter()
        with thread_budget(_scoring_threads(trained)):
            scores = evaluate(setup, num_samples, khat_points)
            pyro.set_rng_seed(seed)
            scores.update(generated_scores(setup, dataset, num_generated))
        nll = scores.pop("test_nll_nats")
        row = {
            "model": name,
            "family": ZOO[name].family,
            "dataset": dataset.name,
            "variant": variant(dataset),
            "test_nll_nats": nll,
            "bits_per_dim": float(bits_per_dim(nll, dataset.num_dims)),
            **scores,
            **trained.budget,
            "epochs_trained": len(history),
            "best_epoch": (
                int(history.loc[history["val_loss"].idxmin(), "epoch"])
                if "val_loss" in history and history["val_loss"].notna().any()
                else math.nan
            ),
            "train_seconds": trained.seconds,
            "eval_seconds": time.perf_counter() - start,
        }
        row["section"] = section(row)
        rows.append(row)
        runs[name] = (setup, history, dataset)
        if lines:
            print(progress_line(row), flush=True)
    table = pd.DataFrame(rows)
    table.attrs["skipped"] = skipped
    return table, runs
