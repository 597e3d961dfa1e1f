"""One training step: ``pyro.infer.SVI.step`` that never leaves a non-finite value behind.

:class:`Step` traces the params, calls ``loss.loss_and_grads(model, guide, *batch)``
inside :class:`~pyro_genmodels.params.own_params`, checks the loss, and lets the
:class:`~pyro_genmodels.training.guard.UpdateGuard` check the gradients and make the
update (an update that is not provably finite is undone when it turns out non-finite,
optimizer state included). Pyro's and torch's validation errors about NaN/inf values
(a NaN in the data, a NaN scale) become the same
:class:`~pyro_genmodels.training.guard.NonFiniteStep` failure; other validation errors
(a value outside the support) propagate unchanged. A loss with state of its own (replay
buffers, a critic it updates itself) is put back as it was before a step that fails
(:class:`LossUndo`), so a failed step changes nothing at all.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from typing import Any

import pyro.optim
import torch
from pyro.infer.util import torch_item

from pyro_genmodels.params import own_params
from pyro_genmodels.training.guard import NonFiniteStep, UpdateGuard
from pyro_genmodels.training.protocols import DirectStepping, Transactional, is_stateful

__all__ = ["LossUndo", "NonFiniteStep", "Step"]


def _as_floats(value: Any) -> tuple[float, ...]:
    values = value if isinstance(value, tuple | list) else (value,)
    return tuple(float(torch_item(v)) for v in values)


_NON_FINITE_WORDS = re.compile(r"\b(nan|inf)\b", re.IGNORECASE)


class LossUndo:
    """Puts a stateful loss back as it was before a step that failed.

    A loss that changes its own state inside ``loss_and_grads`` (a replay buffer of
    persistent chains, a critic updated by inner steps) either is
    :class:`~pyro_genmodels.training.protocols.Transactional` — ``begin_step()`` starts
    recording the step's changes, ``undo_step()`` reverts them; cheap: it keeps only
    what a step overwrites — or, if it only has ``state_dict``/``load_state_dict``, a
    deep copy of its state is taken before every step. A stateless loss costs nothing.

    Args:
        loss: the loss itself (not a runtime layer around it).
    """

    def __init__(self, loss: Any) -> None:
        self.loss = loss
        self.transactional = isinstance(loss, Transactional)
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


class Step:
    """One guarded step of ``loss`` (the runtime's layers around the user's loss).

    Args:
        model, guide: the Pyro programs, called as ``model(*batch)``.
        loss: what the step calls ``loss_and_grads`` on (compiled, autocast, data-parallel
            layers around the loss).
        optim: the Pyro optimizer.
        undo: the :class:`LossUndo` of the user's loss.
        data: the training tensors, when the loop batches tensors: a loss that is stepped
            bare (no compiled, autocast or data-parallel layer) and offers a direct step
            for them (:class:`~pyro_genmodels.training.protocols.DirectStepping`) takes it.

    **Direct steps.** A loss that knows what ``model`` and ``guide`` compute can take its
    step without running them (contrastive divergence on an RBM's own program:
    :mod:`~pyro_genmodels.infer.contrastive_direct`; score matching and NCE on an
    :class:`~pyro_genmodels.models.EnergyModel`'s: :mod:`~pyro_genmodels.infer.energy_direct`),
    on the batches it accepts. Its first
    step reads the parameters through Pyro's param store (``register=True``), traced as a
    full step is; later ones use them directly only if that trace found exactly the
    parameters it names (else every later step is a full one). The guard, the update and
    the loss's undo are the same on both paths.

    Attributes:
        names: the param-store names the steps traced.
        guard: the :class:`~pyro_genmodels.training.guard.UpdateGuard`.
        direct_steps: how many steps took the direct path (for tests and benchmarks).
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        loss: Any,
        optim: pyro.optim.PyroOptim,
        undo: LossUndo,
        data: tuple | None = None,
    ) -> None:
        self.model, self.guide, self.loss, self.undo = model, guide, loss, undo
        self.guard = UpdateGuard(optim)
        self.names: set[str] = set()
        self._graded: set[torch.Tensor] = set()  # params that had a gradient at some step
        self.direct: Any = None
        if data is not None and loss is undo.loss and isinstance(loss, DirectStepping):
            self.direct = loss.direct_step(model, guide, data)
        self._direct_params: list[torch.Tensor] | None = None  # what the first step traced
        self.direct_steps = 0

    def __call__(self, batch: tuple) -> tuple[float, ...]:
        """Take one step on ``batch`` (tensors ``(B, ...)``); returns the loss value(s)."""
        self.undo.begin()
        try:
            return self._step(batch)
        except BaseException:
            self.undo.rollback()
            raise

    def _step(self, batch: tuple) -> tuple[float, ...]:
        direct = self.direct
        params: list[torch.Tensor]
        values: tuple[float, ...]
        if direct is not None and direct.accepts(batch):
            self.direct_steps += 1
            if self._direct_params is not None:
                params, values = self._direct_params, (direct(batch),)
            else:  # the first one reads the parameters through Pyro, as the full step does
                params, values = self._traced(lambda: direct(batch, register=True), batch)
        else:
            params, values = self._traced(
                lambda: self.loss.loss_and_grads(self.model, self.guide, *batch), batch
            )
        try:
            if not all(math.isfinite(v) for v in values):
                raise NonFiniteStep(f"non-finite loss {values[0] if len(values) == 1 else values}")
            self._zero_missing_grads(params)
            try:
                self.guard.update(params)
            except NonFiniteStep as error:
                raise NonFiniteStep(f"{error} (the step's loss: {values})") from error
        finally:
            for p in params:  # what SVI's zeroed gradients are, without writing zeros
                p.grad = None
        return values

    def _traced(
        self, loss_and_grads: Callable[[], Any], batch: tuple
    ) -> tuple[list[torch.Tensor], tuple[float, ...]]:
        """``(params, values)`` of a step whose loss and gradients ``loss_and_grads()`` makes,
        with the params it reads through Pyro's param store, as ``SVI.step`` traces them."""
        with _OwnedParams() as capture:
            try:
                value = loss_and_grads()
            except ValueError as e:
                _reraise_validation(e, capture.params, batch)
                raise
        self.names.update(capture.params)
        values_ = capture.params.values()
        params = list(dict.fromkeys(v.unconstrained() for v in values_ if v is not None))
        if self.direct is not None:  # the direct step serves only the parameters traced here
            same = {id(p) for p in params} == {id(p) for p in self.direct.params}
            self._direct_params = params if same else None
            if not same:
                self.direct = None
        return params, _as_floats(value)

    def _zero_missing_grads(self, params: list[torch.Tensor]) -> None:
        """Pyro's SVI keeps a param's gradient as zeros after its first step, so that a step
        whose loss does not reach it still updates it (Adam's momentum); the step sets
        gradients to ``None`` instead (no memory to clear) and gives such a param zeros."""
        for p in params:
            if p.grad is not None:
                self._graded.add(p)
            elif p in self._graded:
                p.grad = torch.zeros_like(p)


class _OwnedParams(own_params):
    """:class:`~pyro_genmodels.params.own_params` that also records each param site's value
    by name, in first-use order: what ``poutine.trace(param_only=True)`` gives ``SVI.step``,
    in one handler and without a trace graph."""

    def __enter__(self) -> _OwnedParams:
        self.params: dict[str, Any] = {}
        return super().__enter__()

    def _pyro_post_param(self, msg: dict) -> None:
        self.params[msg["name"]] = msg["value"]


def _reraise_validation(error: ValueError, found: dict[str, Any], batch: tuple) -> None:
    """Pyro's/torch's validation error about NaN/inf values as the non-finite failure."""
    message = str(error)
    if "invalid values" not in message and "nan" not in message.lower():
        return
    params = list(found.values())
    floats = [t for t in (*params, *batch) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    non_finite = any(not bool(torch.isfinite(t.detach()).all()) for t in floats)
    if non_finite or _NON_FINITE_WORDS.search(message):
        lines = [line.strip() for line in message.strip().splitlines()]
        first = next((line for line in lines if line.startswith("Expected")), lines[0])[:300]
        raise NonFiniteStep(
            f"a distribution's validation found non-finite values ({first})"
        ) from error
