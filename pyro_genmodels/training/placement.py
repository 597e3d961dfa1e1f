"""Where and in which dtype :func:`pyro_genmodels.fit` trains, and where it may write.

Rules: an explicit ``device`` must exist (``"cuda"`` without a CUDA device is a
``ValueError``, not torch's assertion); by default training happens where the
modules' parameters live. Floating-point data are converted to the dtype of
the model's parameters (float64 arrays from NumPy or scikit-learn, float16 and
bfloat16 tensors all train a float32 model); integer tensors (labels) are
kept. A checkpoint folder is checked writable before any training.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pyro_genmodels._compat import store_params

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


def model_dtype(modules: Sequence[torch.nn.Module]) -> torch.dtype | None:
    """The floating dtype of the first floating parameter (modules first, then param store)."""
    tensors: list[torch.Tensor] = [p for m in modules for p in m.parameters()]
    tensors += list(store_params().values())
    for t in tensors:
        if t.is_floating_point():
            return t.dtype
    return None


def match_dtype(tensors: tuple, dtype: torch.dtype | None) -> tuple:
    """Floating data in the parameters' dtype (the documented rule); other tensors unchanged."""
    if dtype is None:
        return tensors
    return tuple(t.to(dtype) if t.is_floating_point() else t for t in tensors)


def check_writable(folder: Path, name: str = "checkpoint_dir") -> None:
    """Fail now, not after training, when ``folder`` (the argument ``name``) cannot hold
    checkpoints or outputs."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(f"{name} must be a writable folder, got {str(folder)!r} ({e})") from e
