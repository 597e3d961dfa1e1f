"""One guarded optimization step: ``pyro.infer.SVI.step`` that never leaves non-finite parameters.

:func:`guarded_step` traces the params, calls ``loss.loss_and_grads(model,
guide, *batch)`` inside :class:`~pyro_genmodels.params.own_params`, and checks
the loss and the gradients *before* the update and the parameters *after* it;
an update that makes a parameter non-finite is undone (parameter values and
their optimizer state are copied before the update and put back). Pyro's and
torch's validation errors about NaN/inf values (a NaN in the data, a NaN
scale) become the same :class:`NonFiniteStep` failure; other validation
errors (a value outside the support) propagate unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer.util import torch_item, zero_grads

from pyro_genmodels.params import own_params

__all__ = ["NonFiniteStep", "guarded_step"]


class NonFiniteStep(Exception):
    """A step produced a non-finite loss, gradient or update; the parameters are untouched."""


def _as_floats(value: Any) -> tuple[float, ...]:
    values = value if isinstance(value, tuple | list) else (value,)
    return tuple(float(torch_item(v)) for v in values)


_NON_FINITE_WORDS = re.compile(r"\b(nan|inf)\b", re.IGNORECASE)


def guarded_step(
    model: Callable,
    guide: Callable,
    loss: Any,
    optim: pyro.optim.PyroOptim,
    batch: tuple,
    names: set[str],
    undo_buffers: dict | None = None,
) -> tuple[float, ...]:
    """``pyro.infer.SVI.step`` with non-finite checks of loss and gradients before the update
    and of the parameters after it (a non-finite update is undone). Traced names go to ``names``;
    ``undo_buffers`` (a dict kept across steps) holds the reusable copies for the undo.
    """
    with poutine.trace(param_only=True) as param_capture, own_params():
        try:
            value = loss.loss_and_grads(model, guide, *batch)
        except ValueError as e:
            _reraise_validation(e, param_capture.trace, batch)
            raise
    nodes = param_capture.trace.nodes
    names.update(nodes)
    sites: list[Any] = [site["value"] for site in nodes.values()]
    params = list(dict.fromkeys(value.unconstrained() for value in sites))
    values = _as_floats(value)
    if not all(math.isfinite(v) for v in values):
        zero_grads(params)
        shown = values[0] if len(values) == 1 else values
        raise NonFiniteStep(f"non-finite loss {shown}")
    bad = _non_finite_grads(params)
    if bad:
        zero_grads(params)
        raise NonFiniteStep(f"loss {values} has non-finite gradients for parameter(s) {bad}")
    snapshot = _Snapshot(optim, params, {} if undo_buffers is None else undo_buffers)
    optim(params)
    zero_grads(params)
    bad = _non_finite_params(params)
    if bad:
        snapshot.restore()
        raise NonFiniteStep(
            f"the update of step with loss {values} made parameter(s) {bad} non-finite "
            "(the update was undone)"
        )
    return values


def _reraise_validation(error: ValueError, trace: Any, batch: tuple) -> None:
    """Pyro's/torch's validation error about NaN/inf values as the non-finite failure."""
    message = str(error)
    if "invalid values" not in message and "nan" not in message.lower():
        return
    params = [site["value"] for site in trace.nodes.values()]
    floats = [t for t in (*params, *batch) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    non_finite = any(not bool(torch.isfinite(t.detach()).all()) for t in floats)
    if non_finite or _NON_FINITE_WORDS.search(message):
        lines = [line.strip() for line in message.strip().splitlines()]
        first = next((line for line in lines if line.startswith("Expected")), lines[0])[:300]
        raise NonFiniteStep(
            f"a distribution's validation found non-finite values ({first})"
        ) from error


class _Snapshot:
    """Copies of ``params`` and of their optimizer state, to undo one update.

    The copies go into buffers kept in ``buffers`` (one per tensor, reused from
    step to step), so taking a snapshot allocates nothing after the first step.
    """

    def __init__(
        self, optim: pyro.optim.PyroOptim, params: list[torch.Tensor], buffers: dict
    ) -> None:
        self.optim, self.params = optim, params
        self.values = [_buffer(buffers, (p, None), p) for p in params]
        with torch.no_grad():
            torch._foreach_copy_(self.values, [p.detach() for p in params])
            self.states: list[dict | None] = []
            for p in params:
                state = self._state_of(p)
                if state is None:
                    self.states.append(None)
                    continue
                saved = {}
                for key, value in state.items():
                    if isinstance(value, torch.Tensor):
                        saved[key] = _buffer(buffers, (p, key), value).copy_(value)
                    else:
                        saved[key] = value
                self.states.append(saved)

    def _optimizer_of(self, p: torch.Tensor) -> Any:
        obj = self.optim.optim_objs.get(p)
        return None if obj is None else getattr(obj, "optimizer", obj)

    def _state_of(self, p: torch.Tensor) -> dict | None:
        opt = self._optimizer_of(p)
        return None if opt is None else opt.state.get(p)

    def restore(self) -> None:
        with torch.no_grad():
            for p, value, saved in zip(self.params, self.values, self.states):
                p.copy_(value)
                opt = self._optimizer_of(p)
                if opt is None:
                    continue
                if saved is None:
                    opt.state.pop(p, None)
                else:
                    opt.state[p] = {
                        k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in saved.items()
                    }


def _buffer(buffers: dict, key: tuple, like: torch.Tensor) -> torch.Tensor:
    """A reusable tensor shaped like ``like`` (same dtype and device), cached under ``key``."""
    buffer = buffers.get(key)
    if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype:
        buffer = buffers[key] = torch.empty_like(like, memory_format=torch.contiguous_format)
    elif buffer.device != like.device:
        buffer = buffers[key] = torch.empty_like(like, memory_format=torch.contiguous_format)
    return buffer


def _non_finite_indices(tensors: list[torch.Tensor]) -> list[int]:
    """Indices of the tensors holding NaN/inf: exact, with a fast path for the common case.

    A tensor's sum is finite whenever all its entries are (a NaN or inf entry
    makes it NaN or inf), so one reduction per tensor and one sync decide the
    usual all-finite case; only a non-finite sum (an entry, or an overflow of
    huge finite entries) pays for the exact entry-wise check.
    """
    if not tensors:
        return []
    try:
        sums = torch.stack([t.detach().sum() for t in tensors])
    except RuntimeError:  # mixed dtypes or devices: no stacking
        sums = None
    if sums is not None and bool(torch.isfinite(sums).all()):
        return []
    return [i for i, t in enumerate(tensors) if not bool(torch.isfinite(t.detach()).all())]


def _non_finite_params(params: list[torch.Tensor]) -> list[str]:
    store = pyro.get_param_store()
    return [str(store.param_name(params[i])) for i in _non_finite_indices(params)]


def _non_finite_grads(params: list[torch.Tensor]) -> list[str]:
    with_grad = [p for p in params if p.grad is not None]
    grads = [p.grad for p in with_grad if p.grad is not None]
    store = pyro.get_param_store()
    return [str(store.param_name(with_grad[i])) for i in _non_finite_indices(grads)]
