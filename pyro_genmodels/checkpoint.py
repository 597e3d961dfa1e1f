"""Atomic training checkpoints that load with ``torch.load(path, weights_only=True)``.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and
dicts — no numpy arrays, no pickled objects — so that loading it never runs
arbitrary code. It is written atomically: to a temporary file in the same
folder, flushed and fsynced, then moved over the target with ``os.replace``,
so a crash mid-save leaves the previous checkpoint intact and no temporary
file behind.

Random number generator states (torch CPU, torch CUDA, numpy, Python
``random``) are converted to such plain types by :func:`get_rng_state` and
restored by :func:`set_rng_state`.

:func:`training_payload` gathers the whole training state (Pyro param store,
optimizer, RNGs, history, and the ``state_dict`` of a stateful loss or
callback) and :func:`restore_training_state` puts it back, so that
:func:`pyro_genmodels.train.fit` resumes exactly.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch
from pyro import poutine

FORMAT_VERSION = 1
"""Version of the checkpoint layout written by :func:`pyro_genmodels.train.fit`."""


def to_cpu(obj: Any) -> Any:
    """A copy of a nest of dicts/lists/tuples whose tensors are detached and on the CPU.

    Args:
        obj: any nest of containers; tensors of any shape ``(*)`` are copied.

    >>> to_cpu({"a": [torch.ones(2, requires_grad=True)], "b": 3})
    {'a': [tensor([1., 1.])], 'b': 3}
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, Mapping):
        return {key: to_cpu(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu(value) for value in obj)
    return obj


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
            torch.as_tensor(key.astype(np.int64)),
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


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (temp file, flush, fsync, ``os.replace``).

    The payload must contain only what ``torch.load(..., weights_only=True)``
    accepts: tensors, numbers, strings, ``None`` and dicts/lists/tuples of them.
    If anything fails, the temporary file is removed, the previous file at
    ``path`` (if any) is untouched, and the error propagates.

    Args:
        path: destination file; its folder is created if missing.
        payload: a mapping of plain values and tensors (any shapes).

    Returns:
        The destination path.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = save_checkpoint(d / "c.pt", {"format_version": FORMAT_VERSION, "x": torch.ones(2)})
    >>> load_checkpoint(d / "c.pt")["x"]
    tensor([1., 1.])
    """
    if not isinstance(payload, Mapping):
        raise TypeError(f"payload must be a mapping, got {type(payload).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(payload), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable where the platform allows syncing a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``, on CPU).

    Args:
        path: the file.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a checkpoint of format version ``FORMAT_VERSION``.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.pt"
    >>> _ = save_checkpoint(p, {"format_version": FORMAT_VERSION, "epoch": 3})
    >>> load_checkpoint(p)["epoch"]
    3
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {str(path)!r}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise ValueError(
            f"{str(path)!r} is not a pyro_genmodels checkpoint: expected a dict with a "
            f"'format_version' entry, got {type(payload).__name__}"
        )
    version = payload["format_version"]
    if version != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {str(path)!r} has format version {version!r}; this version of "
            f"pyro_genmodels reads format version {FORMAT_VERSION}"
        )
    return payload


def _stateful(obj: Any) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(
        getattr(obj, "load_state_dict", None)
    )


def training_payload(
    *,
    epoch: int,
    step: int,
    history: Sequence[Mapping[str, Any]],
    seed: int,
    optim: pyro.optim.PyroOptim,
    loss: Any = None,
    callbacks: Sequence[Any] = (),
    epoch_step: int | None = None,
) -> dict[str, Any]:
    """The training state as a checkpoint payload (everything detached, on the CPU).

    Keys: ``format_version``, ``epoch`` (epochs completed), ``step`` (global
    steps), ``epoch_step`` (steps completed inside an unfinished epoch, or
    ``None``), ``params`` (param store name → unconstrained tensor),
    ``optim`` (``optim.get_state()``), ``rng`` (:func:`get_rng_state`),
    ``history``, ``seed``, ``loss_state`` and ``callback_states`` (their
    ``state_dict()`` where they have ``state_dict``/``load_state_dict``).

    >>> import pyro
    >>> pyro.clear_param_store(); _ = pyro.param("w", torch.ones(2))
    >>> payload = training_payload(epoch=1, step=3, history=[], seed=0, optim=pyro.optim.Adam({}))
    >>> payload["params"], payload["epoch"]
    ({'w': tensor([1., 1.])}, 1)
    >>> pyro.clear_param_store()
    """
    store = pyro.get_param_store()
    return {
        "format_version": FORMAT_VERSION,
        "epoch": int(epoch),
        "step": int(step),
        "epoch_step": epoch_step,
        "params": {name: to_cpu(p) for name, p in store._params.items()},
        "optim": to_cpu(optim.get_state()),
        "rng": get_rng_state(),
        "history": [dict(row) for row in history],
        "seed": int(seed),
        "loss_state": to_cpu(loss.state_dict()) if _stateful(loss) else None,
        "callback_states": [to_cpu(cb.state_dict()) if _stateful(cb) else None for cb in callbacks],
    }


def _create_params(model: Callable, guide: Callable, loss: Any, batch: tuple, names: set) -> None:
    """Run guide and model (and, if params are still missing, the loss) once on ``batch``."""
    store = pyro.get_param_store()
    with torch.no_grad(), poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*batch)
        poutine.replay(model, trace=guide_trace)(*batch)
        if names - set(store._params) and callable(getattr(loss, "loss", None)):
            loss.loss(model, guide, *batch)
    missing = sorted(names - set(store._params))
    if missing:
        raise ValueError(f"checkpoint params {missing} are not created by this model/guide/loss")


def _set_optim_state(optim: pyro.optim.PyroOptim, state: Mapping[str, Any]) -> None:
    """``optim.set_state(state)``, also for params this optimizer has already stepped.

    Pyro's base ``set_state`` only queues states for params it has not seen; if
    the same optimizer object is reused, states of seen params are loaded now
    and entries for params no longer in the param store are dropped.
    """
    state = dict(state)
    if type(optim).set_state is pyro.optim.PyroOptim.set_state and optim.optim_objs:
        store = pyro.get_param_store()
        for param in list(optim.optim_objs):
            name = store.param_name(param)
            if name is None:
                del optim.optim_objs[param]
                optim.grad_clip.pop(param, None)
            elif name in state:
                _load_optimizer_state(optim.optim_objs[param], state.pop(name))
    optim.set_state(state)


def _load_optimizer_state(optimizer: Any, state: Mapping[str, Any]) -> None:
    if hasattr(optimizer, "optimizer"):  # an LR scheduler wrapping its optimizer
        optimizer.load_state_dict(state["scheduler"])
        optimizer.optimizer.load_state_dict(state["optimizer"])
    else:
        optimizer.load_state_dict(state)


def restore_training_state(
    payload: Mapping[str, Any],
    model: Callable,
    guide: Callable,
    loss: Any,
    optim: pyro.optim.PyroOptim,
    callbacks: Sequence[Any],
    batch: tuple,
    seed: int,
) -> None:
    """Put a :func:`training_payload` back: params (in place), optimizer, extra and RNG states.

    Params are created by running ``guide`` and ``model`` once on ``batch`` (a
    tuple of tensors ``(B, ...)``), then the saved unconstrained values are
    copied *in place* into the param store's tensors, so modules registered
    with ``pyro.module`` or as ``PyroModule`` stay in sync with the store.

    >>> import pyro
    >>> model = lambda x: pyro.param("w", torch.zeros(2))
    >>> pyro.clear_param_store(); _ = model(None)
    >>> with torch.no_grad(): _ = pyro.param("w").unconstrained().fill_(5.0)
    >>> payload = training_payload(epoch=1, step=1, history=[], seed=0, optim=pyro.optim.Adam({}))
    >>> pyro.clear_param_store()
    >>> optim, guide = pyro.optim.Adam({}), lambda x: None
    >>> restore_training_state(payload, model, guide, None, optim, [], (None,), 0)
    >>> pyro.param("w")
    tensor([5., 5.], requires_grad=True)
    >>> pyro.clear_param_store()
    """
    if payload["seed"] != seed:
        raise ValueError(
            f"seed must match the checkpoint's to resume exactly: the checkpoint was written with "
            f"seed={payload['seed']}, got seed={seed}"
        )
    saved = payload["params"]
    _create_params(model, guide, loss, batch, set(saved))
    store = pyro.get_param_store()
    with torch.no_grad():
        for name, value in saved.items():
            target = store._params[name]
            if target.shape != value.shape:
                raise ValueError(
                    f"checkpoint param {name!r} has shape {tuple(value.shape)} but the model's "
                    f"has shape {tuple(target.shape)}"
                )
            target.copy_(value)
    _set_optim_state(optim, payload["optim"])
    if payload.get("loss_state") is not None and _stateful(loss):
        loss.load_state_dict(payload["loss_state"])
    for cb, state in zip(callbacks, payload.get("callback_states") or []):
        if state is not None and _stateful(cb):
            cb.load_state_dict(state)
    set_rng_state(payload["rng"])
