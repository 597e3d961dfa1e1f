"""The dtype rule of training and scoring: floating data in the parameters' dtype.

Floating-point data are converted to the dtype of the model's parameters (float64
arrays from NumPy or scikit-learn, float16 and bfloat16 tensors all train and score a
float32 model); integer and boolean tensors (labels, counts) are kept. ``fit`` applies
it to its data (:mod:`pyro_genmodels.training.placement`), the distributions to the
values they score, and the estimators and diagnostics to the programs' inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from pyro_genmodels._compat import store_params
from pyro_genmodels.params import find_modules

__all__ = ["match_dtype", "model_dtype", "parameters_dtype", "program_inputs", "to_dtype"]


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
