"""How many intra-op threads training uses on a CPU: chosen from the work, or as told.

torch's CPU kernels split each operation over ``torch.get_num_threads()`` threads (one
per core by default), whose workers spin while waiting. For the small matrices of most
models here (a step of a few million multiply-adds) a second thread barely helps on a
quiet machine and, on a machine shared with other processes, its spinning burns CPU time
that the others need: the default zoo used 53 min of CPU over 2 h on 2 busy cores,
against 6.8 min quiet. So :func:`thread_budget` trains with **one thread** when a step's
work (parameters × batch size, a proxy for multiply-adds) is below
:data:`WORK_FOR_MORE_THREADS`, and leaves torch's count otherwise. It is honoured, not
chosen, when the user said how many: ``OMP_NUM_THREADS`` (or ``MKL_NUM_THREADS``) in the
environment, or :func:`set_threads` (the CLI's ``--threads``). The count is restored
afterwards. The choice depends on the model and batch only, so a run and its resume use
the same count (results can differ in rounding between thread counts).

>>> set_threads(1); choose_threads(10**9, 128, torch.device("cpu"))
1
>>> set_threads(None)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from pyro_genmodels._checks import check_int

__all__ = [
    "WORK_FOR_MORE_THREADS",
    "choose_threads",
    "one_thread_outside_large_steps",
    "set_threads",
    "thread_budget",
]

WORK_FOR_MORE_THREADS = 2e8
"""Parameters × batch size from which a step keeps torch's own thread count."""

_ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_told: int | None = None
_large: int | None = None  # the count for large work inside one_thread_outside_large_steps


def set_threads(count: int | None) -> None:
    """Train and evaluate with ``count`` threads from now on (``None``: choose from the work).

    >>> set_threads(2); set_threads(None)
    """
    global _told
    _told = check_int("threads", count, minimum=1, allow_none=True)


def choose_threads(parameters: int, batch_size: int, device: torch.device) -> int | None:
    """The thread count for a step on ``device`` of a model with ``parameters`` numbers at
    ``batch_size`` (``None``: leave torch's count alone)."""
    if device.type != "cpu":
        return None
    if _told is not None:
        return _told
    if any(name in os.environ for name in _ENVIRONMENT):
        return None
    return 1 if parameters * batch_size < WORK_FOR_MORE_THREADS else _large


@contextlib.contextmanager
def one_thread_outside_large_steps() -> Iterator[None]:
    """A whole program's default (the CLI's): one thread for everything in the block — data
    loading, pretraining, scoring, plots — except the training and scoring of models whose
    work reaches :data:`WORK_FOR_MORE_THREADS`, which get the count torch had when the block
    began. A no-op when the count was told (``OMP_NUM_THREADS``, :func:`set_threads`).

    The quick zoo on digits spent 60 s of CPU over 55 s of wall time with only training and
    scoring on one thread, and 99 s beside two busy processes; with everything on one thread
    59 s over 59 s quiet and 63 s beside them (``benchmarks/threads.py``).

    >>> with one_thread_outside_large_steps():
    ...     torch.get_num_threads() == 1 or "OMP_NUM_THREADS" in os.environ
    True
    """
    global _large
    if _told is not None or any(name in os.environ for name in _ENVIRONMENT):
        yield
        return
    before, _large = _large, torch.get_num_threads()
    try:
        with thread_budget(1):
            yield
    finally:
        _large = before


@contextlib.contextmanager
def thread_budget(count: int | None) -> Iterator[None]:
    """Run a block with ``count`` intra-op threads (``None``: unchanged), then restore.

    >>> before = torch.get_num_threads()
    >>> with thread_budget(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    before = torch.get_num_threads()
    if count is not None and count != before:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
