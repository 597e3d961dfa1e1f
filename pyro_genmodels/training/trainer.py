"""The training loop of :func:`pyro_genmodels.fit`, in named phases.

:meth:`Trainer.run` is the whole loop: :meth:`~Trainer.setup` (strategy, device,
modules, batches, callbacks, the loss's layers, the settings a resume must keep),
:meth:`~Trainer.start` (resume from ``checkpoint.pt`` or prime the first step), the
epochs (:meth:`~Trainer.epoch`: callbacks' hooks around
:func:`~pyro_genmodels.training.epoch.run_epoch`), and the end (the callbacks'
``on_train_end``, ``teardown``, the strategy's ``finish``), all with the thread count of
:mod:`~pyro_genmodels.training.threads`. Everything a feature of
``fit`` does — validation, early stopping, the best epoch, learning-rate schedules,
progress, checkpoints — is a callback (:mod:`pyro_genmodels.training.callbacks`); one
process or several differ only through the strategy
(:mod:`pyro_genmodels.parallel.strategy`).

Reference: Bingham et al., "Pyro: Deep Universal Probabilistic Programming",
JMLR 2019 (the SVI step mirrored by each step).
"""

from __future__ import annotations

import uuid
import warnings
from typing import Any

import pandas as pd
import torch

from pyro_genmodels.parallel.strategy import make_strategy
from pyro_genmodels.params import find_modules
from pyro_genmodels.training.batches import TensorBatches, make_batches
from pyro_genmodels.training.callbacks.base import fire
from pyro_genmodels.training.callbacks.best_epoch import BEST_NAME, PREVIOUS_BEST_NAME
from pyro_genmodels.training.callbacks.checkpointing import CHECKPOINT_NAME, LAST_GOOD_NAME
from pyro_genmodels.training.callbacks.validation import validation_source
from pyro_genmodels.training.config import FitConfig
from pyro_genmodels.training.epoch import StepFailed, run_epoch
from pyro_genmodels.training.files import load_checkpoint, remove_stale_temporaries
from pyro_genmodels.training.loss_stack import stack
from pyro_genmodels.training.placement import check_writable, model_dtype, resolve_device
from pyro_genmodels.training.priming import prime
from pyro_genmodels.training.protocols import guesses_plate_nesting
from pyro_genmodels.training.resume_rules import run_settings
from pyro_genmodels.training.rng import seed_all
from pyro_genmodels.training.snapshot import TRAINING_KEYS, restore
from pyro_genmodels.training.state import FitState, RunState
from pyro_genmodels.training.step import LossUndo, Step
from pyro_genmodels.training.threads import choose_threads, thread_budget

__all__ = ["RUN_FILES", "Trainer"]

RUN_FILES = (CHECKPOINT_NAME, LAST_GOOD_NAME, BEST_NAME, PREVIOUS_BEST_NAME)
"""The files a run writes into ``checkpoint_dir`` (each must be a file or absent)."""


class Trainer:
    """Runs one :class:`~pyro_genmodels.training.config.FitConfig` (see the module).

    >>> import pyro, pyro.distributions as dist
    >>> def model(x):
    ...     loc = pyro.param("loc", torch.zeros(1))
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("x", dist.Normal(loc, 1.0), obs=x)
    >>> config = FitConfig.from_arguments(model, lambda x: None, torch.ones(4), loss=None,
    ...     optim=None, epochs=2, batch_size=2, shuffle=None, device=None, seed=0,
    ...     checkpoint_dir=None, checkpoint_every=1, resume=False, callbacks=(),
    ...     progress=False, validation=None, validation_every=1, early_stopping=None,
    ...     keep_best=False, monitor="val_loss", precision="fp32", distributed=None, jit=None)
    >>> len(Trainer(config).run())
    2
    >>> pyro.clear_param_store()
    """

    def __init__(self, config: FitConfig) -> None:
        self.config = config

    def run(self) -> pd.DataFrame:
        """Train; returns the history, one row per epoch (all epochs on resume)."""
        run, batches, step = self.setup()
        size = sum(p.numel() for m in run.modules for p in m.parameters())
        with thread_budget(choose_threads(size, batches.batch_size, run.device)):
            self.start(run, batches, step)
            state = FitState(run)
            fire(run.callbacks, "on_train_start", state)
            try:
                for epoch in range(min(run.epoch, run.epochs), run.epochs):
                    if not self.epoch(run, state, batches, step, epoch):
                        break
                fire(run.callbacks, "on_train_end", state)
            finally:
                fire(run.callbacks, "teardown", state)
        run.strategy.finish()
        columns = None if run.history else ["epoch", "loss", "time"]
        return pd.DataFrame(run.history, columns=columns)

    def setup(self) -> tuple[RunState, Any, Step]:
        """Strategy, device, modules, batches, callbacks, the loss's layers, the settings."""
        c = self.config
        batches = make_batches(c.data, c.batch_size, c.shuffle, c.seed)
        modules = find_modules(c.model, c.guide, c.loss)
        tensors = batches.tensors if isinstance(batches, TensorBatches) else (torch.empty(0),)
        device = None if c.device is None else resolve_device(c.device, modules, tensors)
        strategy = make_strategy(c.distributed, device)
        device = resolve_device(strategy.device or device, modules, tensors)
        for module in modules:
            module.to(device)
        batches.to(device, model_dtype(modules))
        batches.set_rank(strategy.rank, strategy.world)
        if c.checkpoint_dir is not None and strategy.writer:
            check_writable(c.checkpoint_dir, files=RUN_FILES)
        first = batches.take(torch.arange(1))
        source = None
        if c.validation is not None:
            source = validation_source(c.validation, first, batches.batch_size, c.seed)
        callbacks = [*c.callbacks]
        callbacks += c.feature_callbacks(source, batches.batch_size, strategy.writer)
        run = RunState(c.model, c.guide, c.loss, c.optim, modules, callbacks, c.epochs)
        run.device, run.strategy, run.seed = device, strategy, c.seed
        run.checkpoint_dir = c.checkpoint_dir
        if c.checkpoint_dir is not None:
            run.data = batches.fingerprint()
            run.settings = self.settings(run, source)
        layers = stack(c.loss, c.compiled, c.precision, device)
        loss, undo = strategy.wrap_loss(layers, device), LossUndo(c.loss)
        data = batches.tensors if isinstance(batches, TensorBatches) else None  # on the device
        step = Step(c.model, c.guide, loss, c.optim, undo, data=data)
        run.param_names = step.names
        return run, batches, step

    def settings(self, run: RunState, source: Any) -> dict[str, Any]:
        """What a resumed run must keep (:mod:`~pyro_genmodels.training.resume_rules`)."""
        c = self.config
        return run_settings(
            seed=c.seed,
            data=run.data,
            optim=c.optim,
            loss=c.loss,
            modules=run.modules,
            validation=c.validation_settings(source),
            keep_best=c.monitor if c.keep_best else False,
            precision=c.precision,
            jit=c.compiled,
            callbacks=c.user_stateful_callbacks(),
        )

    def start(self, run: RunState, batches: Any, step: Step) -> None:
        """Seed the streams, resume from ``checkpoint.pt`` or start afresh, and prime."""
        c, strategy = self.config, run.strategy
        seed_all(strategy.seed(c.seed))  # each rank its own streams
        payload = None
        if c.resume and strategy.writer:
            payload = _load_for_resume(run.checkpoint_dir)
        if c.resume:
            payload = strategy.broadcast(payload)  # other machines need no shared file system
        if payload is not None:
            restore(
                run, payload, batches.take(torch.arange(min(batches.batch_size, batches.num_data)))
            )
        else:
            run.run_id = strategy.broadcast(uuid.uuid4().hex)  # draws from no seeded stream
        if run.epoch >= run.epochs:
            return
        idx = batches.global_batches(run.epoch)[0]
        first, shard = batches.take(idx), batches.take(batches.shard(idx))
        fresh = payload is None and (c.compiled or guesses_plate_nesting(c.loss))

        def prime_run(batch: tuple, part: tuple | None) -> tuple[dict[str, bool], set[str]]:
            return prime(c.model, c.guide, c.loss, batch, part)

        strategy.prime(prime_run, step.loss, first, shard, fresh)

    def epoch(self, run: RunState, state: FitState, batches: Any, step: Step, epoch: int) -> bool:
        """Train epoch ``epoch`` with its callbacks; returns whether training goes on."""
        run.epoch, run.epoch_step, run.row, run.checkpointed = epoch, 0, {}, False
        fire(run.callbacks, "on_epoch_start", state)
        if run.stop:  # set at epoch start: end before training this epoch
            return False
        try:
            run.row = run_epoch(run, batches, step)
        except StepFailed as failure:
            self.fail(run, state, failure)
        fire(run.callbacks, "on_epoch_end", state)
        run.history.append(run.row)
        fire(run.callbacks, "after_epoch", state)
        if run.checkpointed:
            fire(run.callbacks, "on_checkpoint", state)
        return not run.stop

    def fail(self, run: RunState, state: FitState, failure: StepFailed) -> None:
        """Raise the ``FloatingPointError`` of a failed step, with what the callbacks did."""
        notes = [n for n in fire(run.callbacks, "on_failure", state, failure.error) if n]
        where = "; ".join(notes) or "no checkpoint_dir was given, so nothing was saved"
        error = failure.error
        raise FloatingPointError(
            f"{error} at epoch {run.epoch + 1} of {run.epochs} (1-based), step "
            f"{failure.step + 1} of {failure.steps} within the epoch (1-based; global step "
            f"{run.step + 1}); the parameters were not updated by this step and {where}"
        ) from (error.__cause__ or error)


def _load_for_resume(folder: Any) -> dict[str, Any] | None:
    """The checkpoint to resume from (``None``, with a warning, when there is none)."""
    path = folder / CHECKPOINT_NAME
    remove_stale_temporaries(path)
    remove_stale_temporaries(folder / LAST_GOOD_NAME)
    if not path.is_file():
        warnings.warn(
            f"resume=True but there is no checkpoint at {str(path)!r}; starting from scratch",
            stacklevel=5,
        )
        return None
    return load_checkpoint(path, required=TRAINING_KEYS)
