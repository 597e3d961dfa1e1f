"""Priming: the work a run does once before its first step, leaving training unchanged.

Pyro creates params lazily, at a model's or guide's first call; some losses guess
their plate nesting on their first call (a trial pass); some modules initialize
themselves from their first batch (ActNorm). :func:`prime` makes one loss evaluation
on the first batch that does all of this, and puts back what a first training step
would not have changed: the random generators, a stateful loss's state, the modules'
other buffers (BatchNorm statistics). ``fit`` after a prime equals ``fit`` without it,
bit for bit (``tests/test_prime_zoo.py`` checks every zoo entry). Data-parallel
training primes on the global first batch and on this rank's shard of it, to find
the data plates (:meth:`~pyro_genmodels.parallel.strategy.DataParallel.prime`); a
compiled loss is primed so that the param store holds the modules' own parameters
before it is traced; a plate-nesting loss (:func:`prime_loss`) makes its trial pass
from forked random states.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from pyro import poutine

from pyro_genmodels._compat import guess_max_plate_nesting
from pyro_genmodels.parallel.shard_scale import PlateRecorder, find_data_plates
from pyro_genmodels.params import find_modules, own_params
from pyro_genmodels.training.protocols import guesses_plate_nesting, is_stateful
from pyro_genmodels.training.rng import forked_rng, get_rng_state, set_rng_state

__all__ = ["kept_buffers", "prime", "prime_loss"]


def prime_loss(loss: Any, model: Callable, guide: Callable, batch: tuple) -> None:
    """Make now the first-call work of ``loss`` (its plate-nesting trial pass), if it has
    any, from forked random states, so that the random numbers it draws do not shift
    the training steps (a resumed run makes it before restoring the generators; a fresh
    run before its first step).

    >>> import pyro
    >>> elbo = pyro.infer.TraceEnum_ELBO()
    >>> prime_loss(elbo, lambda x: None, lambda x: None, (torch.zeros(2),))
    >>> elbo.max_plate_nesting
    0
    """
    if not guesses_plate_nesting(loss):
        return
    with forked_rng(), torch.no_grad(), poutine.block(), own_params():
        guess = getattr(loss, "guess_plate_nesting", None)
        if callable(guess):
            guess(model, guide, *batch)
        else:
            guess_max_plate_nesting(loss, model, guide, batch)


def _run_loss(model: Callable, guide: Callable, loss: Any, batch: tuple) -> PlateRecorder:
    """One loss evaluation on ``batch`` (no backward), recording its plates."""
    recorder = PlateRecorder()
    model, guide = recorder(model), recorder(guide)
    if callable(getattr(loss, "loss", None)):
        loss.loss(model, guide, *batch)
    else:
        guide_trace = poutine.trace(guide).get_trace(*batch)
        poutine.replay(model, trace=guide_trace)(*batch)
    return recorder


def prime(
    model: Callable, guide: Callable, loss: Any, batch: tuple, shard: tuple | None = None
) -> tuple[dict[str, bool], set[str]]:
    """Create every lazily made Pyro param by one loss evaluation on ``batch`` (tensors
    ``(B, ...)``), leaving training as if it had not run; needs no process group.

    The evaluation runs inside ``poutine.block`` (no backward pass) and
    :class:`~pyro_genmodels.params.own_params` (the param store holds the modules' own
    parameters, as during training), with the random number generators, a stateful
    loss's state (persistent chains) and the buffers of the modules that model, guide
    and loss use (:func:`~pyro_genmodels.params.find_modules`: BatchNorm's running
    statistics) restored afterwards. What it leaves behind is what the first training
    step on ``batch`` would have done to the modules before its update: the params
    created, data-dependent initializations made from ``batch`` (the parameters and
    buffers of modules with ``data_dependent_init = True``, such as
    :class:`~pyro_genmodels.flows.ActNorm`), a loss's plate nesting guessed. ``fit``
    trained after ``prime`` therefore equals ``fit`` without it, bit for bit, when its
    first batch is ``batch`` (``tests/test_prime_zoo.py`` checks every zoo entry), except
    for a ``pyro.param`` initialized *lazily* from the random generators
    (``pyro.param("w", lambda: torch.randn(3))``): a run that creates it at its first
    step draws its initial value there, which shifts that step's later draws, while a
    primed run does not draw it again. (An initial value given as a tensor,
    ``pyro.param("w", torch.randn(3))``, is drawn at every call, so both runs agree.)

    With ``shard`` (a part of ``batch``'s rows) the loss is evaluated on it too, and the
    plates whose size changes are returned as ``(data_plates, data_sites)``
    (:func:`~pyro_genmodels.parallel.shard_scale.find_data_plates`; empty without ``shard``).

    >>> import pyro, pyro.distributions as pdist
    >>> def model(x):
    ...     loc = pyro.param("loc", torch.zeros(()))
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("x", pdist.Normal(loc, 1.0), obs=x)
    >>> pyro.clear_param_store()
    >>> prime(model, lambda x: None, pyro.infer.Trace_ELBO(), (torch.zeros(4),))
    ({}, set())
    >>> "loc" in pyro.get_param_store()
    True
    >>> pyro.clear_param_store()
    """
    rng = get_rng_state()
    loss_state = loss.state_dict() if is_stateful(loss) else None
    buffers = _BufferSnapshot(find_modules(model, guide, loss))
    found: tuple[dict[str, bool], set[str]] = ({}, set())
    with poutine.block(), own_params():  # losses through ∇ₓ (score matching) need autograd here
        whole = _run_loss(model, guide, loss, batch)
        if shard is not None:
            set_rng_state(rng)
            found = find_data_plates(whole, _run_loss(model, guide, loss, shard))
    set_rng_state(rng)
    buffers.restore()
    if loss_state is not None:
        loss.load_state_dict(loss_state)
    return found


@contextlib.contextmanager
def kept_buffers(modules: list[torch.nn.Module]) -> Iterator[None]:
    """Run a block, then put back the buffers of ``modules`` (BatchNorm's statistics) but
    for those of data-dependent initializations (ActNorm's), as :func:`prime` does."""
    saved = _BufferSnapshot(modules)
    try:
        yield
    finally:
        saved.restore()


class _BufferSnapshot:
    """The buffers of ``modules`` (and their submodules) as they are now, to be put back —
    but for those of modules with ``data_dependent_init = True`` (ActNorm), whose first
    training batch sets them once."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self.saved = [
            (sub, name, buf, buf.clone())
            for module in modules
            for sub in module.modules()
            if not getattr(sub, "data_dependent_init", False)
            for name, buf in sub.named_buffers(recurse=False)
        ]

    @torch.no_grad()
    def restore(self) -> None:
        for sub, name, buf, value in self.saved:
            buf.copy_(value)
            if getattr(sub, name) is not buf:  # replaced, not updated in place
                setattr(sub, name, buf)
