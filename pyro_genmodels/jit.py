"""Compiled Pyro ELBOs for :func:`pyro_genmodels.fit` (``jit=True``): less Python per step.

Pyro's ``JitTrace_ELBO`` family traces model and guide once with
``torch.jit.trace`` and then replays the compiled graph, skipping the
per-step Python of Pyro's effect handlers. Its cache is keyed by the *number*
of arguments only, so a batch of another size (an epoch's last, smaller
batch) would replay a trace recorded for the first size, whose plate sizes are
constants. :class:`ShapeKeyedJit` keeps one compiled loss per tuple of
argument shapes instead: every batch shape is traced once.

What tracing implies: Python control flow inside model and guide runs once
per batch shape — data checks (finite, binary) run on the first batch of
each shape, not on every step — and the model must draw its random variables
in the same way at every call (as Pyro's JIT requires).

Reference: the "JIT" section of Pyro's documentation and ``pyro/infer/trace_elbo.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import torch

__all__ = ["JIT_LOSSES", "ShapeKeyedJit", "with_jit"]

JIT_LOSSES: dict[type, type] = {
    pyro.infer.Trace_ELBO: pyro.infer.JitTrace_ELBO,
    pyro.infer.TraceMeanField_ELBO: pyro.infer.JitTraceMeanField_ELBO,
    pyro.infer.TraceGraph_ELBO: pyro.infer.JitTraceGraph_ELBO,
    pyro.infer.TraceEnum_ELBO: pyro.infer.JitTraceEnum_ELBO,
}
"""Each Pyro ELBO class with a compiled counterpart, and that counterpart."""

_ELBO_OPTIONS = (
    "num_particles",
    "max_plate_nesting",
    "vectorize_particles",
    "strict_enumeration_warning",
    "retain_graph",
    "tail_adaptive_beta",
)


def _shape_key(args: tuple) -> tuple:
    return tuple(
        (tuple(a.shape), a.dtype, a.device) if isinstance(a, torch.Tensor) else type(a)
        for a in args
    )


class ShapeKeyedJit:
    """The compiled counterpart of a Pyro ELBO, compiled once per tuple of argument shapes
    (and per ``model.jit_key`` when the model carries one: the data-parallel plate
    scaling of :mod:`pyro_genmodels.shard_scale`, whose factors the trace holds as constants).

    Args:
        loss: an instance of a class in :data:`JIT_LOSSES` (exactly that class);
            its options (``num_particles``, ``max_plate_nesting``, ...) are kept.

    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x):
    ...     loc = pyro.param("loc", torch.zeros(()))
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("x", dist.Normal(loc, 1.0), obs=x)
    >>> jit = ShapeKeyedJit(pyro.infer.Trace_ELBO())
    >>> a = jit.loss_and_grads(model, lambda x: None, torch.ones(4))
    >>> b = jit.loss_and_grads(model, lambda x: None, torch.ones(3))  # a second trace
    >>> round(b / a, 6), len(jit.compiled)
    (0.75, 2)
    >>> pyro.clear_param_store()
    """

    def __init__(self, loss: Any) -> None:
        target = JIT_LOSSES.get(type(loss))
        if target is None:
            names = ", ".join(c.__name__ for c in JIT_LOSSES)
            raise ValueError(
                f"jit=True needs one of Pyro's ELBOs with a compiled counterpart ({names}), "
                f"got {type(loss).__name__}"
            )
        self.wrapped = loss
        self.options = {k: getattr(loss, k) for k in _ELBO_OPTIONS if hasattr(loss, k)}
        self.target = target
        self.compiled: dict[tuple, Any] = {}

    def _for(self, args: tuple, model: Callable) -> Any:
        # a program's ``jit_key`` (data-parallel plate scaling) holds constants of the trace
        key = (_shape_key(args), getattr(model, "jit_key", None))
        if key not in self.compiled:
            self.compiled[key] = self.target(ignore_jit_warnings=True, **self.options)
        return self.compiled[key]

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> Any:
        return self._for(args, model).loss_and_grads(model, guide, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "wrapped":
            raise AttributeError(name)
        return getattr(self.wrapped, name)


def with_jit(loss: Any, jit: Any) -> Any:
    """``loss`` itself (``jit=False``), else a :class:`ShapeKeyedJit` around it.

    >>> with_jit(pyro.infer.Trace_ELBO(), True).target.__name__
    'JitTrace_ELBO'
    """
    if not isinstance(jit, bool):
        raise TypeError(f"jit must be True or False, got {jit!r}")
    return ShapeKeyedJit(loss) if jit else loss
