"""Every use of a private attribute of Pyro or torch, in one place.

The package reaches into a few internals that Pyro and torch do not export:
the param store's name ↔ parameter dicts, the per-parameter machinery of
``pyro.optim.PyroOptim``, ``ELBO``'s plate-nesting guess, the
cache of ``torch.distributions.Transform``, two attributes of Pyro/torch
distributions, the subclassing helpers of ``torch.distributions.Distribution``
(``expand``'s checked instance, ``log_prob``'s sample validation), the per-chain kernel
diagnostics that ``pyro.infer.MCMC`` keeps, and torch's fused ``_foreach`` kernels. Each
is read or written only through a function here, and ``tests/test_compat.py`` checks
each one against the installed versions, so that an upgrade that moves one fails there,
loudly, naming the internal, instead of somewhere deep in training.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from typing import Any

import pyro
import torch
from pyro.distributions import MaskedDistribution, constraints
from pyro.params.param_store import ParamStoreDict
from torch.distributions import Distribution, MultivariateNormal, Transform

__all__ = [
    "checked_instance",
    "validate_sample",
    "clear_transform_cache",
    "foreach_copy_",
    "foreach_norm",
    "grad_clip_of",
    "guess_max_plate_nesting",
    "masked_distribution_mask",
    "mcmc_chain_diagnostics",
    "mvn_scale_tril",
    "optim_args_of",
    "pending_optim_state",
    "rebind_param",
    "set_transform_cache_size",
    "store_params",
    "transform_cache_size",
    "transform_cached_x_y",
    "transform_inverse",
]


# ----------------------------------------------------------------------------- param store


def store_params(store: ParamStoreDict | None = None) -> MutableMapping[str, torch.Tensor]:
    """The param store's ``{name: unconstrained parameter}`` dict itself (``store._params``).

    Unlike ``store.items()``, which returns constrained values, this is the live dict of the
    leaf tensors that optimizers update; writes go through :func:`rebind_param`.
    """
    store = pyro.get_param_store() if store is None else store
    params: MutableMapping[str, torch.Tensor] = store._params
    return params


def rebind_param(store: ParamStoreDict, name: str, param: torch.Tensor) -> None:
    """Makes ``name`` refer to the leaf tensor ``param`` (``_params`` and ``_param_to_name``);
    a name new to the store gets the constraint ``real`` (``_constraints``), so ``param`` is
    its unconstrained *and* constrained value."""
    store._constraints.setdefault(name, constraints.real)
    current = store._params.get(name)
    if current is not None:
        store._param_to_name.pop(current, None)
    store._params[name] = param
    store._param_to_name[param] = name


# ----------------------------------------------------------------------------- optimizers


def grad_clip_of(optim: pyro.optim.PyroOptim, param: torch.Tensor) -> Callable | None:
    """The gradient clipper ``PyroOptim`` applies to ``param`` (``_get_grad_clip``)."""
    # Pyro annotates the argument as the param's name; PyroOptim passes the tensor itself.
    clip: Callable | None = optim._get_grad_clip(param)  # type: ignore[arg-type]
    return clip


def optim_args_of(optim: pyro.optim.PyroOptim, param: torch.Tensor) -> dict[str, Any]:
    """The optimizer arguments ``PyroOptim`` gives ``param`` (``_get_optim_args``)."""
    args: dict[str, Any] = optim._get_optim_args(param)
    return args


def pending_optim_state(optim: pyro.optim.PyroOptim) -> dict[str, Any]:
    """``PyroOptim``'s per-name states loaded before their parameter exists
    (``_state_waiting_to_be_consumed``); the dict itself, to pop from or fill."""
    pending: dict[str, Any] = optim._state_waiting_to_be_consumed
    return pending


# ----------------------------------------------------------------------------- losses


def guess_max_plate_nesting(loss: Any, model: Callable, guide: Callable, args: tuple) -> None:
    """Sets ``loss.max_plate_nesting`` the way ``ELBO`` does on its first step
    (``ELBO._guess_max_plate_nesting``), so that a resumed run traces as the original did."""
    loss._guess_max_plate_nesting(model, guide, args, {})


# ----------------------------------------------------------------------------- transforms


def transform_cache_size(t: Any) -> int:
    """The cache size (0 or 1) of a torch ``Transform`` (``_cache_size``)."""
    size: int = t._cache_size
    return size


def transform_cached_x_y(t: Any) -> tuple[Any, Any]:
    """The last ``(x, y)`` pair a size-1 cache holds, ``(None, None)`` if none (``_cached_x_y``)."""
    cached: tuple[Any, Any] = getattr(t, "_cached_x_y", (None, None))
    return cached


def clear_transform_cache(t: Any) -> None:
    """Forgets the cached ``(x, y)`` pair of ``t`` (the next call recomputes)."""
    if t._cache_size:
        t._cached_x_y = None, None


def set_transform_cache_size(t: Any, cache_size: int) -> None:
    """Sets ``t``'s cache size in place (``_cache_size``), creating the cache slot
    (``_cached_x_y``) if ``t`` was built without one; an inverse made earlier (``_inv``) is
    kept when ``t`` holds it itself and dropped when only a weak reference remains (older
    torch), so that it is made anew."""
    t._cache_size = cache_size
    if not hasattr(t, "_cached_x_y"):
        t._cached_x_y = None, None
    if not isinstance(t._inv, Transform):
        t._inv = None


def transform_inverse(t: Any) -> Transform | None:
    """The inverse ``t`` has made and holds (``_inv``, a reference or a weak one), else None."""
    inv = t._inv
    if isinstance(inv, weakref.ref):
        inv = inv()
    return inv if isinstance(inv, Transform) else None


# ----------------------------------------------------------------------------- distributions


def masked_distribution_mask(d: MaskedDistribution) -> torch.Tensor | bool:
    """The mask of a ``MaskedDistribution`` (``_mask``)."""
    mask: torch.Tensor | bool = d._mask
    return mask


def mvn_scale_tril(d: MultivariateNormal) -> torch.Tensor:
    """A ``MultivariateNormal``'s Cholesky factor before broadcasting to its batch shape
    (``_unbroadcasted_scale_tril``)."""
    tril: torch.Tensor = d._unbroadcasted_scale_tril
    return tril


def checked_instance(d: Distribution, cls: type, instance: Any) -> Any:
    """The new instance ``expand`` fills: ``instance`` or an uninitialized ``cls``, checked
    against subclassing (``Distribution._get_checked_instance``)."""
    return d._get_checked_instance(cls, instance)


def validate_sample(d: Distribution, value: torch.Tensor) -> None:
    """torch's argument validation of a value given to ``log_prob``: type, shape against
    batch and event shapes, support (``Distribution._validate_sample``)."""
    d._validate_sample(value)


# ----------------------------------------------------------------------------- MCMC


def mcmc_chain_diagnostics(mcmc: Any) -> list[dict | None]:
    """The kernel's ``diagnostics()`` of each chain of a ``pyro.infer.MCMC`` run, as
    ``MCMC.diagnostics()`` merges them (``MCMC._diagnostics``; ``None`` for a chain not run)
    — without the effective sample sizes that ``MCMC.diagnostics()`` computes first."""
    per_chain: list[dict | None] = list(mcmc._diagnostics)
    return per_chain


# ----------------------------------------------------------------------------- torch kernels


def foreach_norm(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The 2-norm of each tensor in one fused kernel (``torch._foreach_norm``)."""
    tensors = list(tensors)
    return list(torch._foreach_norm(tensors)) if tensors else []


def foreach_copy_(targets: Sequence[torch.Tensor], sources: Iterable[torch.Tensor]) -> None:
    """``target.copy_(source)`` for each pair in one fused kernel (``torch._foreach_copy_``)."""
    targets = list(targets)
    if targets:
        torch._foreach_copy_(targets, list(sources))
