"""The states of every global random number generator, as checkpoint-safe plain types.

Random number generator states (torch CPU, torch CUDA, numpy, Python ``random``)
are converted to tensors, numbers and lists by :func:`get_rng_state` (so that a
checkpoint loads with ``torch.load(..., weights_only=True)``) and restored by
:func:`set_rng_state`; :func:`forked_rng` runs a block whose draws leave the
generators as they were.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyro
import torch

from pyro_genmodels.data.validation import check_seed

__all__ = ["forked_rng", "get_rng_state", "seed_all", "set_rng_state"]


def seed_all(seed: int) -> None:
    """Seed every global generator as ``pyro.set_rng_seed(seed)`` does: torch (its CPU
    generator and any accelerator's), numpy and Python's ``random``. ``seed`` is an int in
    ``[0, 2**32)`` (numpy's range; anything else is a ``TypeError``/``ValueError``).

    On a machine without an accelerator only the CPU generator is seeded: there
    ``torch.manual_seed`` queues a lazy seed for each accelerator type torch was built for,
    capturing a stack trace each time (about 0.3 ms a call, once per ``fit`` and per
    validation pass). With an accelerator present it is ``pyro.set_rng_seed``.

    >>> seed_all(0); a = torch.rand(1); seed_all(0)
    >>> bool(torch.rand(1) == a)
    True
    """
    seed = check_seed(seed)
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    if accelerator is None or accelerator.is_available():
        pyro.set_rng_seed(seed)
        return
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def get_rng_state() -> dict[str, Any]:
    """All global random number generator states, as ``weights_only``-loadable plain types.

    Returns a dict with ``"torch"`` (uint8 tensor), ``"cuda"`` (list of uint8
    tensors, empty without CUDA), ``"numpy"`` (the MT19937 state with its key
    as an int64 tensor) and ``"python"`` (``random.getstate()`` as lists).

    >>> state = get_rng_state(); a = torch.rand(1)
    >>> set_rng_state(state); bool(torch.rand(1) == a)
    True
    """
    kind, key, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {
        "torch": torch.get_rng_state(),
        "cuda": [s.cpu() for s in cuda],
        "numpy": [
            str(kind),
            torch.as_tensor(np.asarray(key, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "python": [int(version), list(internal), gauss_next],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generator states returned by :func:`get_rng_state`.

    CUDA states are restored only when CUDA is available and the device count
    matches; the others always.

    >>> set_rng_state(get_rng_state())
    """
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    kind, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


@contextlib.contextmanager
def forked_rng() -> Iterator[None]:
    """Run a block, then put every generator back as it was before it.

    >>> a = torch.rand(1)
    >>> with forked_rng():
    ...     _ = torch.rand(5)
    >>> state = get_rng_state(); b = torch.rand(1); set_rng_state(state)
    >>> with forked_rng():
    ...     _ = torch.rand(3)
    >>> bool(torch.rand(1) == b)
    True
    """
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)
