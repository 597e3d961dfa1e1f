"""A progress bar over epochs (tqdm), with the epoch's losses.

:class:`Progress` is the callback ``fit`` adds: a bar from the epoch the run starts at
(after a resume, the restored one) to ``epochs``, updated after every epoch with its
loss columns, closed at the end (also after a failure). ``progress=None`` shows it
only when stderr is a terminal; under data parallelism rank 0 alone shows it.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

from pyro_genmodels.training.callbacks.base import Callback

__all__ = ["Progress"]


class Progress(Callback):
    """A tqdm bar over epochs (see the module docstring).

    Args:
        show: ``True``, ``False``, or ``None`` (when stderr is a terminal).
    """

    def __init__(self, show: bool | None = None) -> None:
        self.show = sys.stderr.isatty() if show is None else show
        self.bar: Any = None

    def on_train_start(self, state: Any) -> None:
        if not self.show:  # no bar at all: a disabled tqdm still formats every epoch's postfix
            return
        start = min(state.epoch, state.epochs)
        self.bar = tqdm(total=state.epochs, initial=start, desc="fit", unit="epoch")

    def after_epoch(self, state: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                {k: f"{v:.4g}" for k, v in state.row.items() if k.startswith("loss")}
            )

    def teardown(self, state: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
