"""Optimizers that keep Pyro's interface but step all parameters at once.

Pyro's :class:`~pyro.optim.PyroOptim` creates one ``torch.optim`` optimizer per
parameter tensor, so a network with ``P`` tensors pays ``P`` optimizer calls a
step. :class:`GroupedOptim` is a drop-in :class:`~pyro.optim.PyroOptim` that
steps every parameter through one optimizer (parameters sharing optimizer
arguments share a param group) while keeping Pyro's contract: parameters are
discovered as they appear, per-parameter arguments (a callable ``optim_args``)
and gradient clipping work as in Pyro, only the parameters passed to a call are
updated, and ``get_state``/``set_state`` are keyed by parameter name. For
optimizers whose update is per-element (Adam, SGD, RMSprop, ...) the
trajectory is identical to Pyro's.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable
from typing import Any

import pyro
import torch
from pyro.optim import PyroOptim

from pyro_genmodels._checks import check_real, check_real_or_tensor
from pyro_genmodels._compat import grad_clip_of, optim_args_of, pending_optim_state, store_params


def check_optim_args(args: dict, name: str = "optim_args") -> dict:
    """``args`` if every real number in it (a tuple's entries, a tensor's values included) is
    finite: optimizer hyperparameters (``lr``, ``betas``, ``eps``, ``weight_decay``, ...) have
    no meaning at NaN or inf. Bools and other kinds pass to the optimizer's own checks.

    >>> check_optim_args({"lr": float("inf")})
    Traceback (most recent call last):
    ...
    ValueError: optim_args['lr'] must be a finite real number, got inf
    """
    if not isinstance(args, dict):
        raise TypeError(f"{name} must be a dict (or return one), got {type(args).__name__}")
    for key, value in args.items():
        entries = enumerate(value) if isinstance(value, tuple | list) else [(None, value)]
        for i, v in entries:
            where = f"{name}[{key!r}]" + ("" if i is None else f"[{i}]")
            if isinstance(v, torch.Tensor):
                check_real_or_tensor(where, v)
            elif isinstance(v, numbers.Real) and not isinstance(v, bool):
                check_real(where, v)
    return args


class GroupedOptim(PyroOptim):
    """A :class:`~pyro.optim.PyroOptim` with one torch optimizer for all parameters.

    Args:
        optim_constructor: a ``torch.optim.Optimizer`` class, e.g. ``torch.optim.Adam``.
        optim_args: a dict of optimizer arguments, or a callable
            ``(param_name) -> dict`` / ``(module_name, param_name) -> dict``; a NaN or
            infinite number in it is a ``ValueError`` naming the entry (:func:`check_optim_args`).
        clip_args: optional ``{"clip_norm": ...}`` / ``{"clip_value": ...}``
            (or a callable returning them), applied per parameter as in Pyro.

    >>> import pyro, pyro.distributions as dist, torch
    >>> def model():
    ...     loc = pyro.param("loc", torch.tensor(0.0))
    ...     pyro.sample("x", dist.Normal(loc, 1.0), obs=torch.tensor(3.0))
    >>> svi = pyro.infer.SVI(model, lambda: None, GroupedOptim(torch.optim.Adam, {"lr": 0.1}),
    ...                      pyro.infer.Trace_ELBO())
    >>> for _ in range(300):
    ...     _ = svi.step()
    >>> round(pyro.param("loc").item(), 2)
    3.0
    """

    def __init__(
        self,
        optim_constructor: type[torch.optim.Optimizer],
        optim_args: dict | Callable[..., dict],
        clip_args: dict | Callable[..., dict] | None = None,
    ) -> None:
        if not (
            isinstance(optim_constructor, type)
            and issubclass(optim_constructor, torch.optim.Optimizer)
        ):
            raise TypeError(
                "optim_constructor must be a torch.optim.Optimizer class (e.g. torch.optim.Adam), "
                f"got {optim_constructor!r}"
            )
        if not (callable(optim_args) or isinstance(optim_args, dict)):
            raise TypeError(
                f"optim_args must be a dict or a callable, got {type(optim_args).__name__}"
            )
        if isinstance(optim_args, dict):
            check_optim_args(optim_args)
        super().__init__(optim_constructor, optim_args, clip_args)
        self._optimizer: torch.optim.Optimizer | None = None
        self._groups: dict[tuple, dict] = {}

    def _add(self, param: torch.Tensor) -> None:
        args = check_optim_args(optim_args_of(self, param))
        key = tuple(sorted((k, repr(v)) for k, v in args.items()))
        if self._optimizer is None:
            # Pyro annotates pt_optim_constructor as an Optimizer; it is the Optimizer class.
            self._optimizer = self.pt_optim_constructor([param], **args)  # type: ignore[operator]
            self._groups[key] = self._optimizer.param_groups[0]
        elif key in self._groups:
            self._groups[key]["params"].append(param)
        else:
            self._optimizer.add_param_group({"params": [param], **args})
            self._groups[key] = self._optimizer.param_groups[-1]
        self.optim_objs[param] = self._optimizer
        self.grad_clip[param] = grad_clip_of(self, param)
        name = pyro.get_param_store().param_name(param)
        state = None if name is None else pending_optim_state(self).pop(name, None)
        if state is not None:
            self._optimizer.state[param] = _to_device(state, param)

    def __call__(self, params: Iterable[torch.Tensor], *args: Any, **kwargs: Any) -> None:
        params = list(params)
        for p in params:
            if p not in self.optim_objs:
                self._add(p)
            if self.grad_clip[p] is not None:
                self.grad_clip[p](p)
        if self._optimizer is None:
            return
        # Only the parameters of this call move: hide the others' gradients.
        chosen = set(params)
        hidden = {p: p.grad for p in self.optim_objs if p not in chosen and p.grad is not None}
        for p in hidden:
            p.grad = None
        try:
            self._optimizer.step(*args, **kwargs)
        finally:
            for p, grad in hidden.items():
                p.grad = grad

    def get_state(self) -> dict[str, dict]:
        """Optimizer state per parameter name (``{name: per-parameter state}``)."""
        store = pyro.get_param_store()
        if self._optimizer is None:
            return {}
        states = {}
        for p in self.optim_objs:
            name = store.param_name(p)
            if name is not None and p in self._optimizer.state:
                states[name] = dict(self._optimizer.state[p])
        return states

    def set_state(self, state_dict: dict[str, dict]) -> None:
        """Restores :meth:`get_state`; parameters not yet seen pick theirs up on first use."""
        store = pyro.get_param_store()
        for name, state in state_dict.items():
            param = store_params(store).get(name)
            if self._optimizer is not None and param is not None and param in self.optim_objs:
                self._optimizer.state[param] = _to_device(state, param)
            else:
                pending_optim_state(self)[name] = state


def _to_device(state: dict, param: torch.Tensor) -> dict:
    """Moves a per-parameter state's tensors next to ``param`` (Adam's scalar ``step`` stays)."""
    moved = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            value = value.to(device=param.device, dtype=param.dtype)
        moved[key] = value
    return moved


def Adam(optim_args: dict | Callable[..., dict], clip_args: dict | None = None) -> GroupedOptim:
    """Adam (Kingma & Ba 2015) on all parameters at once: ``GroupedOptim(torch.optim.Adam, args)``.

    >>> Adam({"lr": 1e-3}).pt_optim_constructor is torch.optim.Adam
    True
    """
    return GroupedOptim(torch.optim.Adam, optim_args, clip_args)
