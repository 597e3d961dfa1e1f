"""Atomic, checksummed checkpoints that load with ``torch.load(path, weights_only=True)``.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and
dicts — no numpy arrays, no pickled objects — so that loading it never runs
arbitrary code. It is written atomically: to a temporary file in the same
folder, flushed and fsynced, then moved over the target with ``os.replace``,
so a crash mid-save leaves the previous checkpoint intact. A temporary file
left by a process killed mid-write (``.NAME.*.tmp``) is removed by the next
save to the same file (and when :func:`pyro_genmodels.fit` resumes).

Every checkpoint stores a SHA-256 ``checksum`` of its payload (every tensor's
bytes, dtype and shape, every key and plain value), which :func:`load_checkpoint`
verifies: a file changed after writing is refused, like one that is empty,
truncated or not a checkpoint at all, with a :class:`CheckpointError` naming
the file and what is wrong.

What goes into a training checkpoint and how it is put back is
:mod:`pyro_genmodels.training.snapshot`; the random generators' states are
:mod:`pyro_genmodels.training.rng`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 2
"""Version of the checkpoint layout (2: checksummed, modules' parameters and buffers)."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: empty, truncated, corrupted, or of another kind.

    The message names the file and what is wrong with it.
    """


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


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` and its checksum to ``path`` atomically (temp file, fsync, ``os.replace``).

    The payload must contain only what ``torch.load(..., weights_only=True)``
    accepts: tensors, numbers, strings, ``None`` and dicts/lists/tuples of them.
    A ``checksum`` entry (:func:`payload_checksum`) is added. If anything
    fails, the temporary file is removed, the previous file at ``path`` (if
    any) is untouched, and the error propagates. Temporary files of earlier,
    killed writes of the same ``path`` are removed first.

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
    remove_stale_temporaries(path)
    body = {key: value for key, value in payload.items() if key != "checksum"}
    body["checksum"] = payload_checksum(body)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(body, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove ``.NAME.*.tmp`` files next to ``path`` (left by a write that was killed).

    Returns the removed paths. Only one process should write a given
    checkpoint file at a time (as :func:`pyro_genmodels.fit` does).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / ".c.pt.x1.tmp").write_bytes(b"")
    >>> [p.name for p in remove_stale_temporaries(d / "c.pt")]
    ['.c.pt.x1.tmp']
    """
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            try:
                tmp.unlink()
            except FileNotFoundError:
                continue
            removed.append(tmp)
    return removed


def payload_checksum(payload: Any) -> str:
    """SHA-256 (hex) of a nest of dicts/lists/tuples of tensors and plain values.

    Every tensor contributes its dtype, shape and raw bytes; dicts their keys
    in order; plain values their type and ``repr``.

    >>> payload_checksum({"a": torch.zeros(2)}) == payload_checksum({"a": torch.zeros(2)})
    True
    >>> payload_checksum({"a": torch.zeros(2)}) == payload_checksum({"a": torch.ones(2)})
    False
    """
    digest = hashlib.sha256()
    _feed(digest, payload)
    return digest.hexdigest()


def _feed(digest: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"T{t.dtype}{tuple(obj.shape)};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, Mapping):
        digest.update(f"D{len(obj)};".encode())
        for key, value in obj.items():
            _feed(digest, key)
            _feed(digest, value)
    elif isinstance(obj, list | tuple):
        digest.update(f"L{len(obj)};".encode())
        for value in obj:
            _feed(digest, value)
    else:
        digest.update(f"{type(obj).__name__}:{obj!r};".encode())


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


def load_checkpoint(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load and verify a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Args:
        path: the file.
        required: entries the caller needs (e.g. the training state's keys).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: (a ``ValueError``) the file is empty, truncated, not a
            torch file, holds objects other than tensors and plain containers,
            is of another format version, fails its checksum, or lacks a
            ``required`` entry; the message names the file.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.pt"
    >>> _ = save_checkpoint(p, {"format_version": FORMAT_VERSION, "epoch": 3})
    >>> load_checkpoint(p)["epoch"]
    3
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {str(path)!r}")
    where = f"checkpoint {str(path)!r}"
    if path.stat().st_size == 0:
        raise CheckpointError(f"{where} is empty (0 bytes); it is not a checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - every reader failure means the same thing here
        text = str(error)
        detail = _reader_detail(error)
        if "Unsupported global" in text:
            raise CheckpointError(
                f"{where} holds objects other than tensors and plain containers and is "
                f"refused (torch.load(weights_only=True): {detail})"
            ) from error
        raise CheckpointError(
            f"{where} cannot be read: it is truncated, corrupted or not a torch checkpoint "
            f"({detail})"
        ) from error
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(
            f"{where} is not a pyro_genmodels checkpoint: expected a dict with a "
            f"'format_version' entry, got {type(payload).__name__}"
        )
    version = payload["format_version"]
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{where} has format version {version!r}; this version of "
            f"pyro_genmodels reads format version {FORMAT_VERSION}"
        )
    stored = payload.get("checksum")
    body = {key: value for key, value in payload.items() if key != "checksum"}
    if not isinstance(stored, str) or stored != payload_checksum(body):
        raise CheckpointError(
            f"{where} fails its checksum: its content changed after it was written "
            "(a corrupted or edited file)"
        )
    missing = [key for key in required if key not in payload]
    if missing:
        raise CheckpointError(f"{where} lacks the entries {missing}; it is not of this kind")
    return body


def _reader_detail(error: Exception) -> str:
    """The informative line of a ``torch.load`` failure (the unpickler's, not torch's advice)."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else 'no message'}"[:300]
