"""Validation inside :func:`pyro_genmodels.fit`: the loss on held-out data, ``val_loss``.

:class:`Validation` is the callback ``fit`` adds when it is given ``validation=`` data.
At the end of every ``every``-th epoch it scores the held-out data with the training
loss's own value (``loss.loss``, per datapoint, the same estimator as the ``loss``
column) and records ``val_loss`` (``val_loss_0, ...`` for a loss of several values).
Early stopping and the best epoch follow a history column, ``val_loss`` or another
(:mod:`.early_stopping`, :mod:`.best_epoch`).

The validation pass changes nothing that training depends on: modules are put in eval
mode (BatchNorm statistics and ActNorm's initialization stay as they are), the loss's
state (persistent chains) is put back, and the random numbers it draws come from a
generator seeded by ``(seed, epoch)`` inside a fork of the random states, so the
training trajectory with and without validation is identical.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils import data as tud

from pyro_genmodels.params import own_params
from pyro_genmodels.training.batches import DatasetBatches, make_batches
from pyro_genmodels.training.callbacks.base import Callback
from pyro_genmodels.training.files import payload_checksum
from pyro_genmodels.training.history import add_values, loss_columns
from pyro_genmodels.training.protocols import is_stateful
from pyro_genmodels.training.rng import get_rng_state, seed_all, set_rng_state

__all__ = ["Validation", "validation_source"]


def _as_floats(value: Any) -> tuple[float, ...]:
    values = value if isinstance(value, tuple | list) else (value,)
    return tuple(float(v) for v in values)


class Validation(Callback):
    """A ``fit`` callback: ``val_loss`` every ``every`` epochs (see the module docstring).

    Args:
        source: validation tensors ``(M, ...)`` or a batch source over a
            ``Dataset``/``DataLoader`` (:func:`validation_source`).
        batch_size: datapoints per validation pass (tensors).
        every: validate every this many epochs.
    """

    def __init__(
        self, source: tuple[torch.Tensor, ...] | DatasetBatches, batch_size: int, every: int = 1
    ) -> None:
        self.source, self.batch_size, self.every = source, batch_size, every

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must validate on: shapes and digest (tensors), or the size."""
        if isinstance(self.source, DatasetBatches):
            return {"num_data": self.source.num_data}
        return {
            "shapes": [list(t.shape) for t in self.source],
            "sha256": payload_checksum(list(self.source)),
        }

    def on_epoch_end(self, state: Any) -> dict[str, float] | None:
        if (state.epoch + 1) % self.every != 0:
            return None
        return self.validate(state)

    def validate(self, state: Any) -> dict[str, float]:
        """The loss per datapoint on the validation data; changes no parameter, buffer or RNG."""
        rng = get_rng_state()
        loss = state.loss
        loss_state = copy.deepcopy(loss.state_dict()) if is_stateful(loss) else None
        modules = list(state.modules)
        modes = [m.training for m in modules]
        source = self.source
        n = source.num_data if isinstance(source, DatasetBatches) else source[0].shape[0]
        totals: list[float] = []
        try:
            for m in modules:
                m.eval()
            (epoch_seed,) = np.random.SeedSequence([state.seed, state.epoch, 1]).generate_state(1)
            seed_all(int(epoch_seed))
            with own_params():
                for batch in self._batches():
                    values = _as_floats(loss.loss(state.model, state.guide, *batch))
                    totals = add_values(totals, values)
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)
            if loss_state is not None:
                loss.load_state_dict(loss_state)
            set_rng_state(rng)
        return loss_columns(totals, n, "val_loss")

    def _batches(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """The validation data in consecutive batches, every datapoint once."""
        source = self.source
        if isinstance(source, DatasetBatches):
            yield from source.epoch(0)
            return
        for start in range(0, source[0].shape[0], self.batch_size):
            yield tuple(t[start : start + self.batch_size] for t in source)


def validation_source(
    validation: Any, train: Sequence[torch.Tensor], batch_size: int, seed: int
) -> tuple[torch.Tensor, ...] | DatasetBatches:
    """``validation`` checked against the training data ``train`` (tensors ``(N, ...)``) and
    moved to their device and floating dtype.

    ``validation`` may be tensors ``(M, ...)`` shaped like ``train``, a ``Dataset`` with a
    ``.valid`` split, a map-style ``torch.utils.data.Dataset`` or a ``DataLoader`` over
    one (its workers and ``collate_fn`` kept, its batch size used, every item scored once
    in order, ``drop_last`` ignored). Tensors on another device or of another floating
    dtype are moved to the training tensors' (the rule ``fit`` applies to training data);
    tensors without data (the meta device) are a ``ValueError``.

    >>> [tuple(t.shape) for t in validation_source(torch.ones(3, 2), (torch.ones(5, 2),), 2, 0)]
    [(3, 2)]
    """
    if isinstance(validation, tud.Dataset | tud.DataLoader) and not hasattr(validation, "valid"):
        return _dataset_source(validation, train, batch_size, seed)
    return tuple(
        v.to(device=t.device, dtype=t.dtype if t.is_floating_point() else v.dtype)
        for v, t in zip(_check_validation_data(validation, train), train)
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
