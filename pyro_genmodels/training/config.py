"""``fit``'s arguments, checked once, and what they turn into: callbacks and loss layers.

:meth:`FitConfig.from_arguments` applies every argument check of
:func:`pyro_genmodels.fit` (the package's validation policy: ``TypeError`` for the wrong
kind, ``ValueError`` for a wrong value, each naming the argument) and fills in the
defaults. The config then maps the keywords to the runtime's pieces: ``validation``,
``early_stopping``, ``keep_best``, the optimizer's schedule, ``progress`` and
``checkpoint_dir`` to callbacks (:meth:`FitConfig.feature_callbacks`, placed after the
user's), ``jit`` and ``precision`` to loss layers (:meth:`FitConfig.compile`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import pyro.optim

from pyro_genmodels._checks import check_bool, check_int, check_programs
from pyro_genmodels.optim import Adam as GroupedAdam
from pyro_genmodels.training.batches import DatasetBatches
from pyro_genmodels.training.callbacks.base import check_callbacks
from pyro_genmodels.training.callbacks.best_epoch import BestEpoch
from pyro_genmodels.training.callbacks.checkpointing import Checkpointing
from pyro_genmodels.training.callbacks.early_stopping import EarlyStopping
from pyro_genmodels.training.callbacks.lr_schedule import LRSchedule
from pyro_genmodels.training.callbacks.progress import Progress
from pyro_genmodels.training.callbacks.validation import Validation
from pyro_genmodels.training.loss_stack import can_compile, check_precision
from pyro_genmodels.training.protocols import has_static_structure

__all__ = ["FitConfig"]


def _check_objects(model: Any, guide: Any, loss: Any, optim: Any, progress: Any) -> None:
    check_programs(model, guide)
    if not callable(getattr(loss, "loss_and_grads", None)):
        raise TypeError(
            "loss must have a loss_and_grads(model, guide, *args) method (e.g. "
            f"pyro.infer.Trace_ELBO()), got {type(loss).__name__}"
        )
    if not isinstance(optim, pyro.optim.PyroOptim):
        raise TypeError(
            "optim must be a pyro.optim.PyroOptim (e.g. pyro.optim.Adam({'lr': 1e-3})) or a "
            f"pyro.optim.PyroLRScheduler, got {type(optim).__name__}"
        )
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")


def _check_jit(jit: Any, loss: Any, precision: str, programs: tuple) -> bool:
    """Whether the loss is compiled: ``jit=None`` compiles, in fp32, the losses that can be
    compiled for programs that declare a static structure (the package's models do)."""
    if jit is not None and not isinstance(jit, bool):
        raise TypeError(f"jit must be True, False or None, got {jit!r}")
    if jit is None:
        static = all(has_static_structure(fn) for fn in programs)
        return can_compile(loss) and precision == "fp32" and static
    if jit and precision != "fp32":
        raise ValueError(f"jit=True runs in float32 only, got precision={precision!r}")
    if jit and not can_compile(loss):
        raise ValueError(
            "jit=True needs one of Pyro's ELBOs with a compiled counterpart (Trace_ELBO, "
            f"TraceMeanField_ELBO, TraceGraph_ELBO, TraceEnum_ELBO), got {type(loss).__name__}"
        )
    return jit


def _check_monitoring(
    validation: Any, every: Any, patience: Any, keep_best: Any, monitor: Any
) -> None:
    check_int("validation_every", every, minimum=1)
    check_int("early_stopping", patience, minimum=1, allow_none=True)  # patience in epochs
    check_bool("keep_best", keep_best)
    if not isinstance(monitor, str):
        raise TypeError(f"monitor must be the name of a history column, got {monitor!r}")
    if validation is None and monitor == "val_loss" and (patience is not None or keep_best):
        raise ValueError(
            "early_stopping and keep_best need validation= data, or monitor= naming a metric "
            "that a callback returns"
        )


@dataclass(frozen=True)
class FitConfig:
    """The checked arguments of :func:`pyro_genmodels.fit` (see its docstring for each).

    ``compiled`` is the decision ``jit`` stands for (``None``: compile Pyro's ELBOs that
    have a compiled counterpart, in fp32, for a model and guide that declare a static
    structure, as the package's models do; see
    :func:`~pyro_genmodels.training.protocols.has_static_structure`).
    """

    model: Callable
    guide: Callable
    data: Any
    loss: Any
    optim: pyro.optim.PyroOptim
    epochs: int
    batch_size: int | None
    shuffle: bool | None
    device: Any
    seed: int
    checkpoint_dir: Path | None
    checkpoint_every: int
    resume: bool
    callbacks: tuple[Any, ...]
    progress: bool | None
    validation: Any
    validation_every: int
    early_stopping: int | None
    keep_best: bool
    monitor: str
    precision: str
    distributed: bool | None
    compiled: bool

    @classmethod
    def from_arguments(
        cls, model: Callable, guide: Callable, data: Any, **kwargs: Any
    ) -> FitConfig:
        """Check ``fit``'s arguments and fill in its defaults (a ``Trace_ELBO`` loss, this
        package's grouped Adam with ``lr=1e-3``)."""
        kw = dict(kwargs)
        loss = pyro.infer.Trace_ELBO() if kw["loss"] is None else kw["loss"]
        optim = GroupedAdam({"lr": 1e-3}) if kw["optim"] is None else kw["optim"]
        _check_objects(model, guide, loss, optim, kw["progress"])
        if kw["shuffle"] is not None and not isinstance(kw["shuffle"], bool):
            raise TypeError(f"shuffle must be True, False or None, got {kw['shuffle']!r}")
        check_bool("resume", kw["resume"])
        if kw["resume"] and kw["checkpoint_dir"] is None:
            raise ValueError(
                "resume=True needs checkpoint_dir (the folder holding checkpoint.pt), got None"
            )
        precision = check_precision(kw["precision"])
        _check_monitoring(
            kw["validation"],
            kw["validation_every"],
            kw["early_stopping"],
            kw["keep_best"],
            kw["monitor"],
        )
        folder = kw["checkpoint_dir"]
        return cls(
            model=model,
            guide=guide,
            data=data,
            loss=loss,
            optim=optim,
            epochs=check_int("epochs", kw["epochs"], 0),
            batch_size=check_int("batch_size", kw["batch_size"], 1, allow_none=True),
            shuffle=kw["shuffle"],
            device=kw["device"],
            seed=check_int("seed", kw["seed"], 0),
            checkpoint_dir=None if folder is None else Path(folder),
            checkpoint_every=check_int("checkpoint_every", kw["checkpoint_every"], 1),
            resume=kw["resume"],
            callbacks=tuple(check_callbacks(kw["callbacks"])),
            progress=kw["progress"],
            validation=kw["validation"],
            validation_every=kw["validation_every"],
            early_stopping=kw["early_stopping"],
            keep_best=kw["keep_best"],
            monitor=kw["monitor"],
            precision=precision,
            distributed=kw["distributed"],
            compiled=_check_jit(kw["jit"], loss, precision, (model, guide)),
        )

    @property
    def monitoring(self) -> bool:
        """Whether a column is followed (validation, early stopping or the best epoch)."""
        return self.validation is not None or self.early_stopping is not None or self.keep_best

    def validation_settings(self, source: Any) -> dict[str, Any] | None:
        """What a resumed run must keep of validation and early stopping (``None``: none)."""
        if source is None and self.early_stopping is None:
            return None
        data = None if source is None else Validation(source, 1).fingerprint()
        return {
            "data": data,
            "every": self.validation_every,
            "patience": self.early_stopping,
            "monitor": self.monitor,
        }

    def feature_callbacks(
        self, source: tuple | DatasetBatches | None, batch_size: int, writer: bool
    ) -> list[Any]:
        """The runtime's callbacks for this config, in their order after the user's:
        validation, early stopping, the best epoch, the schedule, progress, checkpoints.

        Args:
            source: the checked validation data (or ``None``).
            batch_size: the training batch size (validation batches of tensors).
            writer: whether this process shows progress (rank 0).
        """
        found: list[Any] = []
        every, monitor = self.validation_every, self.monitor
        if source is not None:
            found.append(Validation(source, batch_size, every))
        if self.early_stopping is not None:
            found.append(EarlyStopping(self.early_stopping, monitor, every))
        if self.monitoring:
            found.append(BestEpoch(monitor, every, self.keep_best))
        found.append(LRSchedule(monitor if self.monitoring else None))
        found.append(Progress(self.progress if writer else False))
        if self.checkpoint_dir is not None:
            found.append(Checkpointing(self.checkpoint_every))
        return found

    def user_stateful_callbacks(self) -> Sequence[Any]:
        """The user's callbacks that have a state (recorded for resume)."""
        from pyro_genmodels.training.protocols import is_stateful

        return [cb for cb in self.callbacks if is_stateful(cb)]
