"""Validation inside :func:`pyro_genmodels.fit`: a held-out score, early stopping, the best epoch.

:class:`ValidationMonitor` is the callback ``fit`` adds when it is given
``validation=`` data (or ``early_stopping``/``keep_best`` on a callback
metric). At the end of every ``every``-th epoch it scores the held-out data
with the training loss's own value (``loss.loss``, per datapoint, the same
estimator as the ``loss`` column) and records ``val_loss``; it then tracks the
best value of the monitored column (lower is better), keeps that epoch's
parameters and buffers (in memory and, with a checkpoint folder, in
``best.pt``), and asks ``fit`` to stop when the column has not improved for
``patience`` epochs.

A non-finite score (a NaN validation loss) is a failed validation: a warning says so, it
is never the best, and early stopping's patience counts it (with no finite score yet,
patience counts from the start), so a run whose validation diverges stops.

``best.pt`` carries the identity of its run (``run_id``, as ``checkpoint.pt`` does) and
its epoch. It is written when the score improves; the previous best, while the last
``checkpoint.pt`` still refers to it, is kept as ``best.prev.pt`` until the next
checkpoint is written, so that a run killed at any moment finds on disk the best
epoch its checkpoint names. On resume with ``keep_best=True`` that file is required: one
that is missing, from another run or of another epoch is an error, never "the best".

The validation pass changes nothing that training depends on: modules are
put in eval mode (BatchNorm statistics and ActNorm's initialization stay as
they are), the loss's state (persistent chains) is put back, and the random
numbers it draws come from a generator seeded by ``(seed, epoch)`` inside a
fork of the RNG states, so the training trajectory with and without
validation is identical. Its state (best score and epoch, whether it stopped)
is checkpointed, so resuming mid-patience is exact.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch
from torch.utils import data as tud

from pyro_genmodels._checks import check_bool, check_int
from pyro_genmodels._compat import store_params
from pyro_genmodels.batches import DatasetBatches, make_batches
from pyro_genmodels.checkpoint import (
    FORMAT_VERSION,
    get_rng_state,
    load_checkpoint,
    payload_checksum,
    save_checkpoint,
    set_rng_state,
    to_cpu,
)
from pyro_genmodels.params import own_params, param_keys

__all__ = ["BEST_NAME", "PREVIOUS_BEST_NAME", "ValidationMonitor"]

BEST_NAME = "best.pt"
PREVIOUS_BEST_NAME = "best.prev.pt"


def _as_floats(value: Any) -> tuple[float, ...]:
    values = value if isinstance(value, tuple | list) else (value,)
    return tuple(float(v) for v in values)


class ValidationMonitor:
    """A ``fit`` callback: ``val_loss``, the best epoch's state, and early stopping.

    Args:
        tensors: validation data, tensors ``(M, ...)`` sharing ``M``, or a batch
            source of :mod:`pyro_genmodels.batches` over a ``Dataset``/``DataLoader``
            (or ``None`` to monitor a callback metric only).
        batch_size: datapoints per validation pass.
        seed: the run's seed (validation draws are seeded by ``(seed, epoch)``).
        modules: the modules whose parameters and buffers are kept for the best epoch.
        checkpoint_dir: where ``best.pt`` is written (``None``: memory only).
        writer: whether this process writes ``best.pt`` (under data parallelism rank 0
            alone does; the other ranks read it on resume where they see the folder).
        every: validate every this many epochs.
        patience: stop after this many epochs without improvement (``None``: never).
        keep_best: restore the best epoch's state at the end of training.
        monitor: the history column to minimize.
    """

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...] | DatasetBatches | None,
        batch_size: int,
        seed: int,
        modules: Sequence[torch.nn.Module],
        checkpoint_dir: Path | None,
        every: int = 1,
        patience: int | None = None,
        keep_best: bool = False,
        monitor: str = "val_loss",
        writer: bool = True,
    ) -> None:
        self.tensors, self.batch_size, self.seed = tensors, batch_size, seed
        self.writer = writer
        self.modules, self.checkpoint_dir = list(modules), checkpoint_dir
        self.every, self.patience, self.keep_best, self.monitor = (
            every,
            patience,
            keep_best,
            monitor,
        )
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.stopped = False
        self.best_state: dict[str, Any] | None = None
        self._on_disk: int | None = None  # the epoch best.pt holds, as written by this object
        self._committed: int | None = None  # the best epoch the last checkpoint.pt refers to
        self._restored = False  # load_state_dict ran: best.pt is checked at the next hook

    def settings(self) -> dict[str, Any] | None:
        """What a resumed run must keep (see :mod:`pyro_genmodels.resume_rules`): the
        validation data, how often they are scored, the patience and the monitored column;
        ``None`` when nothing is validated and nothing stops early (only ``keep_best``,
        which :func:`pyro_genmodels.fit` records on its own)."""
        source = self.tensors
        if source is None and self.patience is None:
            return None
        if source is None:
            data: Any = None
        elif isinstance(source, DatasetBatches):
            data = {"num_data": source.num_data}
        else:
            data = {
                "shapes": [list(t.shape) for t in source],
                "sha256": payload_checksum(list(source)),
            }
        return {
            "data": data,
            "every": self.every,
            "patience": self.patience,
            "monitor": self.monitor,
        }

    # ---------------------------------------------------------------- callback hooks
    def on_epoch_start(self, state: Any) -> None:
        self._check_restored(state)
        if self.stopped:  # a resumed run that had already stopped early trains no further
            state.stop = True

    def on_epoch_end(self, state: Any) -> dict[str, float]:
        epoch = state.epoch + 1
        if epoch % self.every != 0:
            return {}
        metrics = self.validate(state) if self.tensors is not None else {}
        row = {**state.row, **metrics}
        if self.monitor not in row:
            raise ValueError(
                f"monitor must name a history column, got {self.monitor!r}; the columns of "
                f"epoch {epoch} are {sorted(row)}"
            )
        score = float(row[self.monitor])
        if not math.isfinite(score):
            warnings.warn(
                f"{self.monitor} is {score} at epoch {epoch}: a failed validation, never the "
                "best epoch; early stopping's patience counts it",
                stacklevel=2,
            )
        elif self.best_score is None or score < self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self._keep(epoch, state.run_id)
        since = self.best_epoch if self.best_epoch is not None else 0
        if self.patience is not None and epoch - since >= self.patience:
            self.stopped = state.stop = True
        return metrics

    def on_checkpoint(self, state: Any) -> None:
        """``checkpoint.pt`` now refers to the current best: the previous one may go."""
        self._committed = self.best_epoch
        if self.checkpoint_dir is not None and self.writer:
            (self.checkpoint_dir / PREVIOUS_BEST_NAME).unlink(missing_ok=True)

    def on_train_end(self, state: Any) -> None:
        """With ``keep_best``, put the best epoch's parameters and buffers back."""
        self._check_restored(state)
        if not self.keep_best:
            return
        if self.best_state is None:
            warnings.warn(
                f"keep_best=True but no epoch had a finite {self.monitor}: the last epoch's "
                "parameters are kept",
                stacklevel=2,
            )
            return
        self.restore_best()

    # ---------------------------------------------------------------- the validation pass
    def validate(self, state: Any) -> dict[str, float]:
        """The loss per datapoint on the validation data; changes no parameter, buffer or RNG."""
        assert self.tensors is not None
        rng = get_rng_state()
        loss = state.loss
        loss_state = copy.deepcopy(loss.state_dict()) if _stateful(loss) else None
        modes = [m.training for m in self.modules]
        source = self.tensors
        n = source.num_data if isinstance(source, DatasetBatches) else source[0].shape[0]
        totals: list[float] = []
        try:
            for m in self.modules:
                m.eval()
            (epoch_seed,) = np.random.SeedSequence([self.seed, state.epoch, 1]).generate_state(1)
            pyro.set_rng_seed(int(epoch_seed))
            with own_params():
                for batch in self._batches():
                    values = _as_floats(loss.loss(state.model, state.guide, *batch))
                    totals = list(values) if not totals else [a + b for a, b in zip(totals, values)]
        finally:
            for m, mode in zip(self.modules, modes):
                m.train(mode)
            if loss_state is not None:
                loss.load_state_dict(loss_state)
            set_rng_state(rng)
        if len(totals) == 1:
            return {"val_loss": totals[0] / n}
        return {f"val_loss_{i}": total / n for i, total in enumerate(totals)}

    def _batches(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """The validation data in consecutive batches, every datapoint once."""
        source = self.tensors
        if isinstance(source, DatasetBatches):
            yield from source.epoch(0)
            return
        assert source is not None
        for start in range(0, source[0].shape[0], self.batch_size):
            yield tuple(t[start : start + self.batch_size] for t in source)

    # ---------------------------------------------------------------- the best epoch
    def _snapshot(self) -> dict[str, Any]:
        store = pyro.get_param_store()
        owned = param_keys(self.modules)
        return {
            "modules": [to_cpu(m.state_dict()) for m in self.modules],
            "params": {k: to_cpu(v) for k, v in store_params(store).items() if v not in owned},
        }

    def _keep(self, epoch: int, run_id: str) -> None:
        self.best_state = self._snapshot()
        if self.checkpoint_dir is None or not self.writer:
            return
        path = self.checkpoint_dir / BEST_NAME
        if self._on_disk is not None and self._on_disk == self._committed and path.is_file():
            # the last checkpoint refers to this file: keep it until the next checkpoint
            os.replace(path, self.checkpoint_dir / PREVIOUS_BEST_NAME)
        payload = {
            "format_version": FORMAT_VERSION,
            "run_id": run_id,
            "epoch": epoch,
            "monitor": self.monitor,
            "score": self.best_score,
            "module_types": [type(m).__qualname__ for m in self.modules],
            **self.best_state,
        }
        save_checkpoint(path, payload)
        self._on_disk = epoch

    def restore_best(self) -> None:
        """Put the best epoch's parameters and buffers back in place (if there is one)."""
        if self.best_state is None:
            return
        store = pyro.get_param_store()
        with torch.no_grad():
            for module, saved in zip(self.modules, self.best_state["modules"]):
                module.load_state_dict(saved)
            for name, value in self.best_state["params"].items():
                if name in store_params(store):
                    store_params(store)[name].copy_(value)

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "stopped": self.stopped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.stopped = bool(state["stopped"])
        self._committed, self._on_disk, self.best_state = self.best_epoch, None, None
        self._restored = True

    def _check_restored(self, state: Any) -> None:
        """After :meth:`load_state_dict`: find the best epoch's ``best.pt`` of this run."""
        if not self._restored:
            return
        self._restored = False
        if self.best_epoch is None or self.checkpoint_dir is None:
            return
        found, seen = None, []
        for name in (BEST_NAME, PREVIOUS_BEST_NAME):
            path = self.checkpoint_dir / name
            if not path.is_file():
                continue
            saved = load_checkpoint(path, required=("modules", "params", "epoch"))
            seen.append(f"{name} (run {saved.get('run_id')!r}, epoch {saved['epoch']})")
            if saved.get("run_id") == state.run_id and saved["epoch"] == self.best_epoch:
                found = (path, saved)
                break
        if found is None:
            if not (self.keep_best and self.writer):
                return  # the best epoch's state is not needed; a new best overwrites best.pt
            raise ValueError(
                f"resume with keep_best=True needs the best epoch's {BEST_NAME} of this run "
                f"(run {state.run_id!r}, epoch {self.best_epoch}) in "
                f"{str(self.checkpoint_dir)!r}; found "
                f"{', '.join(seen) if seen else 'none'}. Resume with keep_best=False to "
                "train on without restoring the best epoch"
            )
        path, saved = found
        if path.name == PREVIOUS_BEST_NAME and self.writer:  # a later best.pt was never saved
            os.replace(path, self.checkpoint_dir / BEST_NAME)
        self.best_state = {"modules": saved["modules"], "params": saved["params"]}
        self._on_disk = self.best_epoch


def _stateful(obj: Any) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(
        getattr(obj, "load_state_dict", None)
    )


def _check_validation_data(validation: Any, train: Sequence[torch.Tensor]) -> tuple:
    """``validation`` as tensors shaped like the training tensors (``(M, ...)``, same widths)."""
    if hasattr(validation, "valid"):  # a Dataset carrying a validation split
        if validation.valid is None:
            raise ValueError(
                "validation is a Dataset without a validation split (.valid is None); "
                "carve one with .split_validation(fraction) or pass tensors"
            )
        validation = validation.valid
    if not isinstance(validation, torch.Tensor | list | tuple):
        raise TypeError(
            "validation must be a Tensor (M, ...), a tuple/list of such tensors, a Dataset "
            "with a .valid split, a map-style torch.utils.data.Dataset or a DataLoader over "
            f"one, got {type(validation).__name__}"
        )
    tensors = (validation,) if isinstance(validation, torch.Tensor) else tuple(validation)
    if len(tensors) != len(train) or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError(
            f"validation must hold {len(train)} tensor(s) like the training data, got "
            f"{[type(t).__name__ for t in tensors]}"
        )
    lengths = {t.shape[0] if t.dim() else 0 for t in tensors}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(
            f"validation tensors must share a leading length M >= 1, got shapes "
            f"{[tuple(t.shape) for t in tensors]}"
        )
    _check_like(tensors, train)
    return tensors


def _check_like(tensors: Sequence[torch.Tensor], train: Sequence[torch.Tensor]) -> None:
    """Each validation tensor shaped ``(M, ...)`` like its training tensor, of the same kind."""
    for i, (v, t) in enumerate(zip(tensors, train)):
        if v.shape[1:] != t.shape[1:]:
            raise ValueError(
                f"validation tensor {i} must have shape (M, {', '.join(map(str, t.shape[1:]))}) "
                f"like the training data, got {tuple(v.shape)}"
            )
        if v.device.type == "meta":
            raise ValueError(
                f"validation tensor {i} must hold data to score, got a tensor on the meta device"
            )
        if v.is_floating_point() != t.is_floating_point():
            kind = "floating" if t.is_floating_point() else "integer"
            raise TypeError(
                f"validation tensor {i} must be {kind} like the training data (dtype "
                f"{t.dtype}), got dtype {v.dtype}"
            )


def _dataset_source(validation: Any, train: Sequence[torch.Tensor], batch_size: int, seed: int):
    """A ``Dataset``/``DataLoader`` as an in-order batch source on the training device and
    floating dtype, checked against the training data on its first item."""
    loader = isinstance(validation, tud.DataLoader)
    source = make_batches(validation, None if loader else batch_size, False, seed)
    if not isinstance(source, DatasetBatches):
        raise TypeError(f"validation must be a map-style Dataset, got {type(validation).__name__}")
    source.drop_last = False  # every validation datapoint is scored
    floating = [t.dtype for t in train if t.is_floating_point()]
    source.to(train[0].device, floating[0] if floating else None)
    sample = source.take(torch.arange(1))
    if len(sample) != len(train):
        raise TypeError(
            f"validation items must hold {len(train)} tensor(s) like the training data, got "
            f"{len(sample)}"
        )
    _check_like(sample, train)
    return source


def make_monitor(
    validation: Any,
    train: Sequence[torch.Tensor],
    *,
    batch_size: int,
    seed: int,
    modules: Sequence[torch.nn.Module],
    checkpoint_dir: Path | None,
    every: int,
    patience: int | None,
    keep_best: bool,
    monitor: str,
    writer: bool = True,
) -> ValidationMonitor | None:
    """The :class:`ValidationMonitor` for ``fit``'s arguments (``None`` when none is asked for).

    ``validation`` may also be a map-style ``torch.utils.data.Dataset`` or a
    ``DataLoader`` over one (its workers and ``collate_fn`` kept, its batch size
    used, every item scored once in order, ``drop_last`` ignored).
    Validation tensors on another device than the training tensors ``train``, or
    of another floating dtype, are moved to the training tensors' device and dtype
    (the rule ``fit`` applies to training data); tensors without data (the meta
    device) are a ``ValueError``.
    """
    check_int("validation_every", every, minimum=1)
    check_int("early_stopping", patience, minimum=1, allow_none=True)  # patience in epochs
    check_bool("keep_best", keep_best)
    if not isinstance(monitor, str):
        raise TypeError(f"monitor must be the name of a history column, got {monitor!r}")
    if validation is None and patience is None and not keep_best:
        return None
    if validation is None and monitor == "val_loss":
        raise ValueError(
            "early_stopping and keep_best need validation= data, or monitor= naming a metric "
            "that a callback returns"
        )
    tensors: tuple[torch.Tensor, ...] | DatasetBatches | None = None
    if isinstance(validation, tud.Dataset | tud.DataLoader) and not hasattr(validation, "valid"):
        tensors = _dataset_source(validation, train, batch_size, seed)
    elif validation is not None:
        tensors = tuple(
            v.to(device=t.device, dtype=t.dtype if t.is_floating_point() else v.dtype)
            for v, t in zip(_check_validation_data(validation, train), train)
        )
    return ValidationMonitor(
        tensors,
        batch_size,
        seed,
        modules,
        checkpoint_dir,
        every,
        patience,
        keep_best,
        monitor,
        writer,
    )
