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

import copy
import math
import re
from collections.abc import Callable
from typing import Any

import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer.util import torch_item, zero_grads

from pyro_genmodels.optim import OptimSnapshot
from pyro_genmodels.params import own_params

__all__ = ["LossUndo", "NonFiniteStep", "guarded_step", "is_stateful"]


class NonFiniteStep(Exception):
    """A step produced a non-finite loss, gradient or update; the parameters are untouched."""


def _as_floats(value: Any) -> tuple[float, ...]:
    values = value if isinstance(value, tuple | list) else (value,)
    return tuple(float(torch_item(v)) for v in values)


_NON_FINITE_WORDS = re.compile(r"\b(nan|inf)\b", re.IGNORECASE)


def is_stateful(obj: Any) -> bool:
    """Whether ``obj`` has ``state_dict()`` and ``load_state_dict()`` (a loss with chains,
    a callback with a best score): its state is checkpointed and a failed step undone."""
    return callable(getattr(obj, "state_dict", None)) and callable(
        getattr(obj, "load_state_dict", None)
    )


class LossUndo:
    """Puts a stateful loss back as it was before a step that failed.

    A loss that changes its own state inside ``loss_and_grads`` (a replay buffer of
    persistent chains, a critic updated by inner steps) either declares the two methods
    ``begin_step()`` (start recording the step's changes) and ``undo_step()`` (revert
    them) — cheap: it keeps only what the step overwrites — or, if it only has
    ``state_dict``/``load_state_dict``, a deep copy of its state is taken before every step.
    A stateless loss costs nothing.

    Args:
        loss: the training loss (wrappers forward the methods to the loss they wrap).
    """

    def __init__(self, loss: Any) -> None:
        self.loss = loss
        self.transactional = callable(getattr(loss, "begin_step", None)) and callable(
            getattr(loss, "undo_step", None)
        )
        self.stateful = is_stateful(loss)
        self.saved: Any = None

    def begin(self) -> None:
        if self.transactional:
            self.loss.begin_step()
        elif self.stateful:
            self.saved = copy.deepcopy(self.loss.state_dict())

    def rollback(self) -> None:
        if self.transactional:
            self.loss.undo_step()
        elif self.saved is not None:
            self.loss.load_state_dict(self.saved)


def guarded_step(
    model: Callable,
    guide: Callable,
    loss: Any,
    optim: pyro.optim.PyroOptim,
    batch: tuple,
    names: set[str],
    undo_buffers: dict | None = None,
    loss_undo: LossUndo | None = None,
) -> tuple[float, ...]:
    """``pyro.infer.SVI.step`` with non-finite checks of loss and gradients before the update
    and of the parameters after it (a non-finite update is undone). Traced names go to ``names``;
    ``undo_buffers`` (a dict kept across steps) holds the reusable copies for the undo;
    ``loss_undo`` (default: made for ``loss``) puts a stateful loss's state back when the
    step fails, so that a failed step changes nothing at all.
    """
    undo = LossUndo(loss) if loss_undo is None else loss_undo
    undo.begin()
    try:
        return _step(model, guide, loss, optim, batch, names, undo_buffers)
    except BaseException:
        undo.rollback()
        raise


def _step(
    model: Callable,
    guide: Callable,
    loss: Any,
    optim: pyro.optim.PyroOptim,
    batch: tuple,
    names: set[str],
    undo_buffers: dict | None,
) -> tuple[float, ...]:
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
    snapshot = OptimSnapshot(optim, params, {} if undo_buffers is None else undo_buffers)
    optim(params)
    zero_grads(params)
    bad = _non_finite_params(params)
    moments = [] if bad else _non_finite_optim_state(optim, params)
    if bad or moments:
        snapshot.restore()
        what = f"parameter(s) {bad}" if bad else f"the optimizer state of {moments}"
        raise NonFiniteStep(
            f"the update of step with loss {values} made {what} non-finite (the update was undone)"
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


def _non_finite_optim_state(optim: pyro.optim.PyroOptim, params: list[torch.Tensor]) -> list[str]:
    """Names of the params whose optimizer state (Adam's moments, ...) holds NaN/inf."""
    owners, tensors = [], []
    for p in params:
        obj = optim.optim_objs.get(p)
        state = None if obj is None else getattr(obj, "optimizer", obj).state.get(p)
        for value in (state or {}).values():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                owners.append(p)
                tensors.append(value)
    store = pyro.get_param_store()
    bad = dict.fromkeys(owners[i] for i in _non_finite_indices(tensors))
    return [str(store.param_name(p)) for p in bad]


def _non_finite_grads(params: list[torch.Tensor]) -> list[str]:
    with_grad = [p for p in params if p.grad is not None]
    grads = [p.grad for p in with_grad if p.grad is not None]
    store = pyro.get_param_store()
    return [str(store.param_name(with_grad[i])) for i in _non_finite_indices(grads)]
