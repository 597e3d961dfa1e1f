"""Where and in which dtype data meet the parameters (training and scoring), and where
:func:`pyro_genmodels.fit` may write.

Rules: an explicit ``device`` must exist (``"cuda"`` without a CUDA device is a
``ValueError``, not torch's assertion); by default training happens where the
modules' parameters live. Floating-point data are converted to the dtype of
the model's parameters (float64 arrays from NumPy or scikit-learn, float16 and
bfloat16 tensors all train a float32 model); integer tensors (labels) are
kept. Scoring follows the same rule (:func:`to_dtype`): every distribution's
``log_prob`` and every estimator converts floating data to its parameters' dtype,
so data that trained a model also score it. A checkpoint folder is checked
writable before any training.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from pyro_genmodels._compat import store_params
from pyro_genmodels.params import find_modules

__all__ = [
    "check_writable",
    "match_dtype",
    "model_dtype",
    "parameters_dtype",
    "program_inputs",
    "resolve_device",
    "to_dtype",
]


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


def parameters_dtype(obj: Any) -> torch.dtype | None:
    """The dtype of the first floating parameter of ``obj`` when it is an ``nn.Module``
    (None for a module without one, or any other object).

    >>> parameters_dtype(torch.nn.Linear(2, 1).double()), parameters_dtype(len)
    (torch.float64, None)
    """
    if isinstance(obj, torch.nn.Module):
        for p in obj.parameters():
            if p.is_floating_point():
                return p.dtype
    return None


def model_dtype(modules: Sequence[torch.nn.Module]) -> torch.dtype | None:
    """The floating dtype of the first floating parameter (modules first, then param store)."""
    for module in modules:
        dtype = parameters_dtype(module)
        if dtype is not None:
            return dtype
    for t in store_params().values():
        if t.is_floating_point():
            return t.dtype
    return None


def to_dtype(value: Any, dtype: torch.dtype | None) -> Any:
    """The rule of training and scoring for one value: a floating tensor in ``dtype``;
    integer and boolean tensors (labels, counts), non-tensors and ``dtype=None`` unchanged.

    >>> to_dtype(torch.zeros(2, dtype=torch.float64), torch.float32).dtype
    torch.float32
    >>> to_dtype(torch.zeros(2, dtype=torch.long), torch.float32).dtype
    torch.int64
    """
    if dtype is None or not isinstance(value, torch.Tensor) or not value.is_floating_point():
        return value
    return value if value.dtype == dtype else value.to(dtype)


def match_dtype(tensors: tuple, dtype: torch.dtype | None) -> tuple:
    """Floating data in the parameters' dtype (the documented rule); other tensors unchanged."""
    return tuple(to_dtype(t, dtype) for t in tensors)


def program_inputs(
    model: Callable, guide: Callable, args: tuple, kwargs: dict
) -> tuple[tuple, dict]:
    """``args`` and ``kwargs`` of a ``model``/``guide`` call outside ``fit`` (the estimators,
    the diagnostics) under ``fit``'s rule: floating tensors in the dtype of the parameters
    the programs use (:func:`~pyro_genmodels.params.find_modules`, then the param store).

    >>> net = torch.nn.Linear(2, 1)
    >>> def model(x):
    ...     return net(x)
    >>> args, _ = program_inputs(model, model, (torch.zeros(3, 2, dtype=torch.float64),), {})
    >>> args[0].dtype
    torch.float32
    """
    dtype = model_dtype(find_modules(model, guide))
    return match_dtype(args, dtype), {k: to_dtype(v, dtype) for k, v in kwargs.items()}


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
