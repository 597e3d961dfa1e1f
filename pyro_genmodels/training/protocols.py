"""What the training runtime asks of a loss (or a callback), as small structural protocols.

The runtime never names a loss class: a loss declares what it needs by having the
methods or attributes below (nothing to inherit; ``isinstance`` against these
``runtime_checkable`` protocols checks their presence).

- :class:`Stateful`: ``state_dict()``/``load_state_dict()`` (a replay buffer of
  persistent chains, a critic's optimizer, a callback's best score): checkpointed
  with the run and restored on resume.
- :class:`Transactional`: ``begin_step()``/``undo_step()``: the loss records what a
  step changes of its own state and can revert it, so that a step that fails changes
  nothing (a stateful loss without them is deep-copied before every step).
- :class:`Primeable`: ``guess_plate_nesting(model, guide, *args)``, the trial pass a loss
  makes on its first call while ``max_plate_nesting`` is ``inf`` (``IWAELoss``; Pyro's
  ``TraceEnum_ELBO``, ``TraceTMC_ELBO`` and ELBOs with vectorized particles make
  theirs through ``ELBO``'s own guess): the runtime makes it before the first step,
  from forked random states.
- :class:`GradSync`: a ``critic_grad_sync`` attribute (``None`` in one process): the
  loss updates parameters inside ``loss_and_grads`` and calls the hook, under data
  parallelism, to sum their gradients over the processes first.
- :class:`Configured`: ``settings()`` returns options kept under other attribute names
  than the constructor's arguments (see :mod:`pyro_genmodels.training.resume_rules`).
- :class:`DirectStepping`: ``direct_step(model, guide, data)`` returns None or an object
  with ``params`` (the parameters it updates), ``accepts(batch)`` and
  ``__call__(batch, register=False)`` (the loss's value as a float; the gradients
  accumulated into ``params``; with ``register=True`` it reads them through Pyro's param
  store, as ``loss_and_grads`` does) that takes exactly the step of
  ``loss_and_grads(model, guide, *batch)`` without running the programs
  (:class:`~pyro_genmodels.training.step.Step` says when it is used).

And of a model or guide: ``static_structure = True`` (an attribute of the function, or
of the object a method is bound to) certifies that every call draws the same sites in
the same way, whatever the data's values — what a compiled (traced) loss needs; ``fit``
compiles by default only programs that say so (:func:`has_static_structure`). Python values
that such a program reads and that may change during a run (a VAE's ``beta``, annealed by a
callback) are constants of a trace: the program declares them by ``trace_constants()``,
and a compiled loss traces anew when they change (:func:`trace_constants`).
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import pyro.infer

__all__ = [
    "Configured",
    "DirectStepping",
    "GradSync",
    "Primeable",
    "Stateful",
    "Transactional",
    "guesses_plate_nesting",
    "has_static_structure",
    "is_stateful",
    "trace_constants",
]


@runtime_checkable
class Stateful(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...


@runtime_checkable
class Transactional(Protocol):
    def begin_step(self) -> None: ...

    def undo_step(self) -> None: ...


@runtime_checkable
class Primeable(Protocol):
    max_plate_nesting: float

    def guess_plate_nesting(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> None: ...


@runtime_checkable
class GradSync(Protocol):
    critic_grad_sync: Any


@runtime_checkable
class Configured(Protocol):
    def settings(self) -> dict[str, Any]: ...


@runtime_checkable
class DirectStepping(Protocol):
    def direct_step(self, model: Any, guide: Any, data: tuple) -> Any: ...


def is_stateful(obj: Any) -> bool:
    """Whether ``obj`` has ``state_dict()`` and ``load_state_dict()``.

    >>> import pyro, torch
    >>> is_stateful(pyro.infer.Trace_ELBO()), is_stateful(torch.nn.Linear(1, 1))
    (False, True)
    """
    return callable(getattr(obj, "state_dict", None)) and callable(
        getattr(obj, "load_state_dict", None)
    )


def guesses_plate_nesting(loss: Any) -> bool:
    """Whether ``loss`` makes a trial pass on its first call to guess its plate nesting:
    ``max_plate_nesting`` is still ``inf`` and it is :class:`Primeable`, enumerates
    (``TraceEnum_ELBO``, ``TraceTMC_ELBO``) or vectorizes its particles.

    >>> import pyro
    >>> guesses_plate_nesting(pyro.infer.TraceEnum_ELBO())
    True
    >>> guesses_plate_nesting(pyro.infer.Trace_ELBO())
    False
    """
    if getattr(loss, "max_plate_nesting", None) != math.inf:
        return False
    if callable(getattr(loss, "guess_plate_nesting", None)):
        return True
    enumerating = isinstance(loss, pyro.infer.TraceEnum_ELBO | pyro.infer.TraceTMC_ELBO)
    return enumerating or bool(getattr(loss, "vectorize_particles", False))


def has_static_structure(fn: Any) -> bool:
    """Whether ``fn`` (a model or guide) says it draws the same sites at every call:
    ``fn.static_structure`` or, for a bound method, its object's ``static_structure``.

    >>> def model(x): ...
    >>> has_static_structure(model)
    False
    >>> model.static_structure = True
    >>> has_static_structure(model)
    True
    """
    if getattr(fn, "static_structure", False) is True:
        return True
    owner = getattr(fn, "__self__", None)
    return owner is not None and getattr(owner, "static_structure", False) is True


def trace_constants(fn: Any) -> Any:
    """The Python values a trace of ``fn`` (a model or guide) holds as constants and that may
    change during a run: ``fn.trace_constants()`` or, for a bound method, its object's
    ``trace_constants()`` (hashable); None when it declares none.

    >>> from pyro_genmodels.models import VAE
    >>> vae = VAE(4, 2, hidden_dims=(8,))
    >>> trace_constants(vae.model)
    (1.0,)
    >>> vae.beta = 0.5
    >>> trace_constants(vae.guide), trace_constants(lambda x: None)
    ((0.5,), None)
    """
    for obj in (fn, getattr(fn, "__self__", None)):
        method = getattr(obj, "trace_constants", None)
        if callable(method):
            return method()
    return None
