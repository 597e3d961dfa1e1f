"""The best epoch: its parameters kept in memory and in ``best.pt``, restored at the end.

:class:`BestEpoch` follows the monitored history column (``val_loss`` or a callback's
metric; lower is better). At every improvement it keeps the parameters and buffers of
the modules (and the param store's other params) in memory and, with a checkpoint
folder, in ``best.pt``; with ``keep_best=True`` it puts them back at the end of
training. A non-finite value is a failed validation: a warning says so, and it is never
the best; with ``keep_best=True`` and no finite value at all, the last epoch is kept,
with a warning.

``best.pt`` carries the identity of its run (``run_id``, as ``checkpoint.pt`` does) and
its epoch. The previous best, while the last ``checkpoint.pt`` still refers to it, is
kept as ``best.prev.pt`` until the next checkpoint is written, so that a run killed at
any moment finds on disk the best epoch its checkpoint names. On resume with
``keep_best=True`` that file is required: one that is missing, from another run or of
another epoch is an error, never "the best". Under data parallelism rank 0 alone
writes; the other ranks read it where they see the folder.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import pyro
import torch

from pyro_genmodels._compat import store_params
from pyro_genmodels.params import param_keys
from pyro_genmodels.training.callbacks.early_stopping import Monitored
from pyro_genmodels.training.files import FORMAT_VERSION, load_checkpoint, save_checkpoint, to_cpu

__all__ = ["BEST_NAME", "PREVIOUS_BEST_NAME", "BestEpoch"]

BEST_NAME = "best.pt"
PREVIOUS_BEST_NAME = "best.prev.pt"


class BestEpoch(Monitored):
    """Keep (and with ``keep_best`` restore) the best epoch (see the module docstring).

    Args:
        monitor: the history column to minimize.
        every: look at it every this many epochs.
        keep_best: put the best epoch's parameters and buffers back at the end.

    >>> best = BestEpoch("score", keep_best=True)
    >>> best.best_epoch is None
    True
    """

    def __init__(self, monitor: str = "val_loss", every: int = 1, keep_best: bool = False) -> None:
        super().__init__(monitor, every)
        self.keep_best = keep_best
        self.best_state: dict[str, Any] | None = None
        self._on_disk: int | None = None  # the epoch best.pt holds, as written by this object
        self._committed: int | None = None  # the best epoch the last checkpoint.pt refers to
        self._restored = False  # load_state_dict ran: best.pt is checked at the next hook

    def on_epoch_start(self, state: Any) -> None:
        self._check_restored(state)

    def on_epoch_end(self, state: Any) -> None:
        before = self.best_epoch
        score = self.observe(state)
        if score is not None and not math.isfinite(score):
            warnings.warn(
                f"{self.monitor} is {score} at epoch {state.epoch + 1}: a failed validation, "
                "never the best epoch; early stopping's patience counts it",
                stacklevel=2,
            )
        if self.best_epoch != before:
            self._keep(state)

    def on_checkpoint(self, state: Any) -> None:
        """``checkpoint.pt`` now refers to the current best: the previous one may go."""
        self._committed = self.best_epoch
        if state.checkpoint_dir is not None and state.strategy.writer:
            (state.checkpoint_dir / PREVIOUS_BEST_NAME).unlink(missing_ok=True)

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
        self.restore_best(state.modules)

    def _snapshot(self, modules: list[torch.nn.Module]) -> dict[str, Any]:
        store = pyro.get_param_store()
        owned = param_keys(modules)
        return {
            "modules": [to_cpu(m.state_dict()) for m in modules],
            "params": {k: to_cpu(v) for k, v in store_params(store).items() if v not in owned},
        }

    def _keep(self, state: Any) -> None:
        self.best_state = self._snapshot(state.modules)
        folder = state.checkpoint_dir
        if folder is None or not state.strategy.writer:
            return
        path = folder / BEST_NAME
        if self._on_disk is not None and self._on_disk == self._committed and path.is_file():
            # the last checkpoint refers to this file: keep it until the next checkpoint
            os.replace(path, folder / PREVIOUS_BEST_NAME)
        payload = {
            "format_version": FORMAT_VERSION,
            "run_id": state.run_id,
            "epoch": self.best_epoch,
            "monitor": self.monitor,
            "score": self.best_score,
            "module_types": [type(m).__qualname__ for m in state.modules],
            **self.best_state,
        }
        save_checkpoint(path, payload)
        self._on_disk = self.best_epoch

    def restore_best(self, modules: list[torch.nn.Module]) -> None:
        """Put the best epoch's parameters and buffers back in place (if there is one)."""
        if self.best_state is None:
            return
        store = store_params()
        with torch.no_grad():
            for module, saved in zip(modules, self.best_state["modules"]):
                module.load_state_dict(saved)
            for name, value in self.best_state["params"].items():
                if name in store:
                    store[name].copy_(value)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._committed, self._on_disk, self.best_state = self.best_epoch, None, None
        self._restored = True

    def _check_restored(self, state: Any) -> None:
        """After :meth:`load_state_dict`: find the best epoch's ``best.pt`` of this run."""
        if not self._restored:
            return
        self._restored = False
        folder, writer = state.checkpoint_dir, state.strategy.writer
        if self.best_epoch is None or folder is None:
            return
        found, seen = None, []
        for name in (BEST_NAME, PREVIOUS_BEST_NAME):
            path = folder / name
            if not path.is_file():
                continue
            saved = load_checkpoint(path, required=("modules", "params", "epoch"))
            seen.append(f"{name} (run {saved.get('run_id')!r}, epoch {saved['epoch']})")
            if saved.get("run_id") == state.run_id and saved["epoch"] == self.best_epoch:
                found = (path, saved)
                break
        if found is None:
            if not (self.keep_best and writer):
                return  # the best epoch's state is not needed; a new best overwrites best.pt
            raise ValueError(
                f"resume with keep_best=True needs the best epoch's {BEST_NAME} of this run "
                f"(run {state.run_id!r}, epoch {self.best_epoch}) in {str(folder)!r}; found "
                f"{', '.join(seen) if seen else 'none'}. Resume with keep_best=False to "
                "train on without restoring the best epoch"
            )
        path, saved = found
        if path.name == PREVIOUS_BEST_NAME and writer:  # a later best.pt was never checkpointed
            os.replace(path, folder / BEST_NAME)
        self.best_state = {"modules": saved["modules"], "params": saved["params"]}
        self._on_disk = self.best_epoch
