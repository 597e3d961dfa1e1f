"""Where :func:`pyro_genmodels.fit` trains, in which dtype, and where it may write.

Rules: an explicit ``device`` must exist (``"cuda"`` without a CUDA device is a
``ValueError``, not torch's assertion); by default training happens where the
modules' parameters live. Floating-point data are converted to the dtype of
the model's parameters (the rule of :mod:`pyro_genmodels._dtypes`, which scoring
follows too: every distribution's ``log_prob`` and every estimator converts floating
data to its parameters' dtype, so data that trained a model also score it). A
checkpoint folder is checked writable before any training.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pyro_genmodels._compat import store_params
from pyro_genmodels._dtypes import match_dtype, model_dtype

__all__ = ["check_writable", "match_dtype", "model_dtype", "resolve_device"]


def resolve_device(
    device: Any, modules: Sequence[torch.nn.Module], tensors: Sequence[torch.Tensor]
) -> torch.device:
    if device is not None:
        try:
            chosen = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(
                f"device must be a torch.device or a string like 'cpu', got {device!r}"
            ) from e
        if chosen.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0 or (chosen.index is not None and chosen.index >= count):
                raise ValueError(
                    f"device={device!r} needs a CUDA device, but this process sees {count} "
                    f"(torch.cuda.is_available() is {torch.cuda.is_available()}); use "
                    "device='cpu' or leave device=None"
                )
        return chosen
    for module in modules:
        for p in module.parameters():
            return p.device
    for stored in store_params().values():
        return stored.device
    return tensors[0].device


def check_writable(folder: Path, name: str = "checkpoint_dir", files: Sequence[str] = ()) -> None:
    """Fail now, not after training, when ``folder`` (the argument ``name``) cannot hold
    checkpoints or outputs: it is created when missing and must accept a new file, and
    each of ``files`` (names inside it that the run will write) must be a file or absent.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> (out / "model.pt").mkdir()
    >>> check_writable(out / "new" / "folder", "--out")  # created
    >>> check_writable(out, "--out", files=["model.pt"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --out: '.../model.pt' is a directory, where the run writes a file; ...
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(f"{name} must be a writable folder, got {str(folder)!r} ({e})") from e
    for file in files:
        path = folder / file
        if path.exists() and not path.is_file():
            kind = "a directory" if path.is_dir() else "not a regular file"
            raise ValueError(
                f"{name}: {str(path)!r} is {kind}, where the run writes a file; remove it or "
                f"choose another {name}"
            )
