"""The model zoo: every model family the package has, trained and scored alike.

Each :class:`ZooEntry` knows how to build its model for a dataset, what to
train it on, with which loss and with which budget (epochs, learning rate,
batch size: :attr:`ZooEntry.budget`, tuned per family). :func:`train_entry`
trains one entry with :func:`pyro_genmodels.fit` — the one place that assembles
that call, for the CLI's ``train`` and for :func:`run`, which trains each named
entry and scores it on the test split (:mod:`pyro_genmodels.zoo.scoring`: the
entry's likelihood, and its samples against the test split — energy distance, MMD,
class coverage and a Fréchet distance in a fixed classifier's features — so that
models with and without a likelihood meet on common terms).

The data are a bundled dataset's name (each entry gets the variant it needs) or a
:class:`~pyro_genmodels.data.Dataset` (a user's file through
:func:`~pyro_genmodels.data.load_file`), whose
:attr:`~pyro_genmodels.data.Dataset.support` decides what models it: binary data
the Bernoulli models, values in [0, 1] and real values the continuous ones (flows,
VAEs with a continuous-Bernoulli or Gaussian likelihood, energy-based models). An
entry refuses data it cannot model with a ``ValueError`` from its builder
(:func:`check_entry` asks without training).

The table's ``section`` column says which rows may be compared: ``binarized``,
``dequantized`` and ``real-valued`` (by the data an entry trains on) for models with a
likelihood, ``likelihood-free`` for those without one (NaN ``test_nll_nats``).

Families live in the modules of this package (``zoo/vae.py``, ...), each
calling :func:`register` at import; every module here is imported when the
zoo is first used, so a new family needs no edit of this file. The CLI
(``python -m pyro_genmodels zoo``) and ``benchmarks/`` iterate over :data:`ZOO`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import math
import pkgutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch
from torch import nn

from pyro_genmodels._checks import check_positive_int
from pyro_genmodels.data import Dataset, load

__all__ = [
    "DEFAULT_BUDGET",
    "KHAT_POINTS",
    "NUM_GENERATED",
    "QUICK",
    "QUICK_OPTIONS",
    "ZOO",
    "Setup",
    "Trained",
    "ZooEntry",
    "budget",
    "build",
    "check_entry",
    "dataset_for",
    "describe",
    "entry_data",
    "evaluate",
    "generated_scores",
    "isolated",
    "likelihood_for",
    "options",
    "progress_line",
    "quiet_diagnostics",
    "register",
    "run",
    "section",
    "train_entry",
    "validation_args",
    "variant",
]

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
        optim: the entry's own optimizer for a budget ``{"epochs", "lr", "batch_size"}``
            (e.g. a Boltzmann recipe's SGD with its decaying rate); None: Adam at the
            budget's ``lr`` with ``optim_args`` (:func:`~pyro_genmodels.zoo.runner.optimizer`).
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
    optim: Callable[[dict], Any] | None = None


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
            ``batch_size`` (the rest from :data:`DEFAULT_BUDGET`), and ``min_steps``: the
            least number of optimizer steps, so that a small dataset gets more epochs
            (:func:`budget` turns it into epochs for the training set's size); the
            arguments of :func:`run` (``--epochs``, ``--lr``, ``--batch-size``) override
            it for every entry.
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
    keys = {*DEFAULT_BUDGET, "min_steps"}
    unknown = sorted(set(entry.budget) - keys)
    if unknown:
        raise ValueError(
            f"zoo entry {entry.name!r}: budget takes keys {sorted(keys)}, got {unknown}"
        )
    steps = entry.budget.get("min_steps")
    check_positive_int(f"zoo entry {entry.name!r}'s budget min_steps", steps, allow_none=True)
    ZOO[entry.name] = entry
    return entry


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
    try:
        return entry.build(data, **{**entry.defaults, **kwargs})
    except ValueError as error:  # the entry refuses these data (or an option's value)
        raise ValueError(f"zoo entry {name!r} cannot train on {describe(data)}: {error}") from error


def describe(data: Dataset) -> str:
    """``data`` in a few words: name, values, features, image shape, labels.

    >>> from pyro_genmodels.data import load
    >>> describe(load("digits", binarize=True))
    "'digits' (binary values, 64 features, images (1, 8, 8), labels)"
    """
    values = {"binary": "binary values", "unit_interval": "values in [0, 1]"}
    shape = "no image shape" if data.image_shape is None else f"images {data.image_shape}"
    labels = "labels" if data.train_labels is not None else "no labels"
    kind = values.get(data.support, "real values")
    return f"{data.name!r} ({kind}, {data.num_dims} features, {shape}, {labels})"


def likelihood_for(data: Dataset) -> str:
    """The VAE likelihood of ``data``'s :attr:`~pyro_genmodels.data.Dataset.support`:
    ``"bernoulli"`` (binary), ``"continuous_bernoulli"`` (values in [0, 1]) or
    ``"gaussian"`` (real values).

    >>> from pyro_genmodels.data import load
    >>> likelihood_for(load("digits", binarize=False))
    'continuous_bernoulli'
    """
    return {"binary": "bernoulli", "unit_interval": "continuous_bernoulli"}.get(
        data.support, "gaussian"
    )


def options(name: str) -> list[str]:
    """The keyword options of zoo entry ``name``'s builder (e.g. ``["hidden", "z_dim"]``)."""
    params = inspect.signature(ZOO[name].build).parameters.values()
    return sorted(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def budget(
    name: str, quick: bool = False, num_data: int | None = None, **overrides: Any
) -> dict[str, Any]:
    """The training budget of entry ``name``: its :attr:`ZooEntry.budget` over
    :data:`DEFAULT_BUDGET`, ``epochs`` from :data:`QUICK` when ``quick``, then the
    ``overrides`` that are not None.

    An entry with ``min_steps`` trains ``max(epochs, ⌈min_steps / ⌈num_data / batch_size⌉⌉)``
    epochs on ``num_data`` training points (unless ``quick`` or an ``epochs`` override
    decides them): at least that many updates on a small dataset, its epochs on a large one.

    >>> budget("vae", epochs=2)["epochs"], sorted(budget("vae", epochs=2))
    (2, ['batch_size', 'epochs', 'lr'])
    >>> [budget("vae", num_data=n)["epochs"] for n in (1437, 4000, 60000)]
    [164, 60, 60]
    """
    spent = {**DEFAULT_BUDGET, **ZOO[name].budget}
    steps = spent.pop("min_steps", None)
    if quick:
        spent["epochs"] = QUICK["epochs"]
    spent.update({k: v for k, v in overrides.items() if v is not None})
    if steps is not None and not quick and overrides.get("epochs") is None:
        if num_data is None:
            raise ValueError(
                f"zoo entry {name!r} trains at least {steps} optimizer steps: pass num_data "
                "(the training set's size) to turn them into epochs, or give epochs"
            )
        batch = check_positive_int("batch_size", spent["batch_size"])
        per_epoch = math.ceil(check_positive_int("num_data", num_data) / batch)
        spent["epochs"] = max(spent["epochs"], math.ceil(steps / per_epoch))
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


@contextlib.contextmanager
def isolated() -> Iterator[None]:
    """Run a block (a trial build, a probe of a loss) that leaves no trace: the random
    generators are put back and the params it created leave Pyro's param store."""
    from pyro_genmodels.training.rng import get_rng_state, set_rng_state

    rng, store = get_rng_state(), pyro.get_param_store()
    before = set(store.keys())
    try:
        yield
    finally:
        for key in set(store.keys()) - before:
            del store[key]
        set_rng_state(rng)


def check_entry(name: str, data: Dataset, **kwargs: Any) -> None:
    """Raises the ``ValueError`` with which entry ``name`` refuses ``data`` (and ``kwargs``),
    if it does: the entry is built in :func:`isolated` and nothing is trained.

    >>> from pyro_genmodels.data import load
    >>> check_entry("made", load("digits", binarize=False))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: zoo entry 'made' cannot train on 'digits' (values in [0, 1], ...): \
autoregressive zoo entries need binarized data, got 'digits'
    """
    with isolated():
        build(name, data, **kwargs)


def validation_args(name: str, data: Dataset, **kwargs: Any) -> tuple[torch.Tensor, ...] | None:
    """The validation split of ``data`` in the form entry ``name`` trains on, or ``None``.

    The entry is built a second time on ``data`` with its validation split in
    place of the test split (random states forked, so the real build is
    unaffected) and its test arguments are returned, when they have the
    structure of its training data (an SSVAE trains on ``(x, y)`` but is
    scored on ``(x,)``: no validation for it) and its loss is one number (a
    GAN's critic and generator losses are not a validation score).
    """
    if data.valid is None:
        return None
    as_test = dataclasses.replace(data, test=data.valid, test_labels=data.valid_labels)
    with isolated():  # the probe's params and random draws leave no trace
        setup = build(name, as_test, **kwargs)
        train = setup.train if isinstance(setup.train, tuple | list) else (setup.train,)
        if len(train) != len(setup.test):
            return None
        with torch.no_grad():  # a loss of several values (a GAN's) is no validation score
            probe = setup.loss.loss(setup.model, setup.guide, *(t[:2] for t in setup.test))
        if isinstance(probe, tuple | list):
            return None
    return tuple(setup.test)


from pyro_genmodels.zoo.runner import Trained, entry_data, run, train_entry  # noqa: E402
from pyro_genmodels.zoo.scoring import (  # noqa: E402  (they use the names above)
    evaluate,
    generated_scores,
    progress_line,
    section,
    variant,
)


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_discover()
