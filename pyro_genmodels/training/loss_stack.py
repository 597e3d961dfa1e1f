"""The layers the runtime puts around a loss: compiled, mixed precision, data-parallel.

``fit`` steps with ``stack(loss)``: optionally a :class:`CompiledLoss` (Pyro's
``torch.jit``-compiled ELBOs), then an :class:`AutocastLoss` (bf16), then the
strategy's data-parallel layer (:class:`~pyro_genmodels.parallel.grads.DataParallelLoss`).
Each layer has ``loss_and_grads(model, guide, *args)`` and ``unwrap()``, which returns
the loss it wraps; nothing else is forwarded: the runtime asks the loss itself
(:func:`~pyro_genmodels.parallel.grads.innermost`) for its state and protocols.

**Compiled.** Pyro's ``JitTrace_ELBO`` family traces model and guide once with
``torch.jit.trace`` and then replays the compiled graph, skipping the per-step Python
of Pyro's effect handlers, the model's data checks and module look-ups. Pyro keys its
cache by the *number* of arguments only, so an epoch's smaller last batch would replay
the first batch's trace, whose plate sizes are constants: :class:`CompiledLoss` keeps
one compiled loss per tuple of argument shapes. (Pyro's ``JitTraceMeanField_ELBO``
rebuilds its compiled function at every call, tracing anew each step; the compiled
mean-field ELBO here keeps it.) Tracing runs model and guide an extra time; it runs
from forked random states with the modules' buffers (BatchNorm statistics) put back,
so the step that traces draws and updates exactly as every later step, and a resumed
run that traces anew continues exactly. A model that cannot be traced falls back to
the loss itself, with a one-line warning. What tracing implies: Python control flow
inside model and guide runs once per batch shape (data checks run on the first batch
of each shape), the model must draw its random variables in the same way at every
call, and a Python value the programs read (a VAE's ``beta``) is a constant of the trace
unless the program declares it by ``trace_constants()``.

**bf16.** :class:`AutocastLoss` runs each loss evaluation under
``torch.autocast(dtype=torch.bfloat16)``; parameters, gradients and optimizer state
stay float32 (master weights); no loss scaling is needed (bfloat16 has float32's
exponent range). On CUDA the fast path of tensor-core GPUs; on a CPU the same recipe,
useful to check a model's numerics, usually slower than float32.

References: the "JIT" section of Pyro's documentation and ``pyro/infer/trace_elbo.py``;
Kalamkar et al., "A Study of BFLOAT16 for Deep Learning Training", 2019.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pyro
import torch

from pyro_genmodels._compat import store_params
from pyro_genmodels.params import find_modules
from pyro_genmodels.training.priming import kept_buffers
from pyro_genmodels.training.protocols import trace_constants
from pyro_genmodels.training.rng import forked_rng

__all__ = [
    "JIT_LOSSES",
    "PRECISIONS",
    "AutocastLoss",
    "CompiledLoss",
    "LossLayer",
    "autocast",
    "can_compile",
    "check_precision",
    "stack",
]

PRECISIONS = ("fp32", "bf16")
"""The precisions :func:`pyro_genmodels.fit` accepts."""

_AUTOCAST_DEVICES = ("cuda", "cpu")


class _JitTraceMeanField(pyro.infer.JitTraceMeanField_ELBO):
    """``JitTraceMeanField_ELBO`` that compiles once (Pyro's checks an attribute it never
    sets and so traces at every call)."""

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any):
        compiled = getattr(self, "_compiled_loss", None)
        if compiled is None:
            value = super().differentiable_loss(model, guide, *args, **kwargs)
            self._compiled_loss = self._differentiable_loss
            return value
        kwargs["_pyro_model_id"] = id(model)
        kwargs["_pyro_guide_id"] = id(guide)
        return compiled(*args, **kwargs)


JIT_LOSSES: dict[type, type] = {
    pyro.infer.Trace_ELBO: pyro.infer.JitTrace_ELBO,
    pyro.infer.TraceMeanField_ELBO: _JitTraceMeanField,
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


def can_compile(loss: Any) -> bool:
    """Whether ``loss`` is one of Pyro's ELBOs with a compiled counterpart (exactly).

    >>> can_compile(pyro.infer.Trace_ELBO()), can_compile(pyro.infer.RenyiELBO())
    (True, False)
    """
    return type(loss) in JIT_LOSSES


def _shape_key(args: tuple) -> tuple:
    return tuple(
        (tuple(a.shape), a.dtype, a.device) if isinstance(a, torch.Tensor) else type(a)
        for a in args
    )


class LossLayer:
    """A layer around a loss: ``loss_and_grads`` and ``unwrap()`` (the loss it wraps)."""

    def __init__(self, loss: Any) -> None:
        if not callable(getattr(loss, "loss_and_grads", None)):
            raise TypeError(f"loss must have a loss_and_grads method, got {type(loss).__name__}")
        self.wrapped = loss

    def unwrap(self) -> Any:
        return self.wrapped

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class CompiledLoss(LossLayer):
    """The compiled counterpart of a Pyro ELBO, compiled once per tuple of argument shapes
    (and per ``model.jit_key`` when the model carries one: the data-parallel plate
    scaling, whose factors the trace holds as constants), and traced anew when the values
    that model or guide declare by ``trace_constants()`` change (a VAE's ``beta``, which
    :class:`~pyro_genmodels.training.KLAnnealing` changes epoch by epoch; see
    :func:`~pyro_genmodels.training.protocols.trace_constants`); a model that cannot be
    traced falls back to the uncompiled loss with a warning.

    Args:
        loss: an instance of a class in :data:`JIT_LOSSES` (exactly that class); its
            options (``num_particles``, ``max_plate_nesting``, ...) are kept.

    >>> import pyro, pyro.distributions as dist, torch
    >>> def model(x):
    ...     loc = pyro.param("loc", torch.zeros(()))
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("x", dist.Normal(loc, 1.0), obs=x)
    >>> jit = CompiledLoss(pyro.infer.Trace_ELBO())
    >>> a = jit.loss_and_grads(model, lambda x: None, torch.ones(4))
    >>> b = jit.loss_and_grads(model, lambda x: None, torch.ones(3))  # a second trace
    >>> round(b / a, 6), len(jit.compiled)
    (0.75, 2)
    >>> pyro.clear_param_store()
    """

    def __init__(self, loss: Any) -> None:
        super().__init__(loss)
        target = JIT_LOSSES.get(type(loss))
        if target is None:
            names = ", ".join(c.__name__ for c in JIT_LOSSES)
            raise ValueError(
                f"jit=True needs one of Pyro's ELBOs with a compiled counterpart ({names}), "
                f"got {type(loss).__name__}"
            )
        self.options = {k: getattr(loss, k) for k in _ELBO_OPTIONS if hasattr(loss, k)}
        self.target = target
        self.compiled: dict[tuple, Any] = {}
        self.fallback: str | None = None  # why the model could not be compiled

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> Any:
        if self.fallback is not None:
            return self.wrapped.loss_and_grads(model, guide, *args, **kwargs)
        # On a CPU the graph runs without the profiling executor's specializing passes:
        # they cost seconds on the first calls and gain nothing for these graphs here.
        gpu = any(isinstance(a, torch.Tensor) and a.device.type != "cpu" for a in args)
        with torch.jit.optimized_execution(gpu):
            return self._call(model, guide, args, kwargs)

    def _call(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> Any:
        # a program's ``jit_key`` (data-parallel plate scaling) holds constants of the trace
        key = (_shape_key(args), getattr(model, "jit_key", None))
        # values the trace holds as constants and a callback may change (a VAE's beta under
        # a KL warm-up): a change traces anew, replacing the trace of the old values
        constants = (trace_constants(model), trace_constants(guide))
        entry = self.compiled.get(key)
        if entry is not None and entry[0] == constants:
            return entry[1].loss_and_grads(model, guide, *args, **kwargs)
        compiled = self.target(ignore_jit_warnings=True, **self.options)
        try:  # trace from forked random states: tracing runs the model an extra time
            with forked_rng(), kept_buffers(find_modules(model, guide)), warnings.catch_warnings():
                # Pyro's JIT is built on torch.jit.trace, which torch >= 2.10 marks deprecated
                warnings.filterwarnings("ignore", "`torch.jit.trace` is deprecated")
                compiled.loss_and_grads(model, guide, *args, **kwargs)
        except (RuntimeError, NotImplementedError, TypeError, AssertionError) as error:
            self.fallback = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            warnings.warn(
                f"the loss could not be compiled for this model ({self.fallback}); training "
                "with the uncompiled loss (pass jit=False to silence this)",
                stacklevel=2,
            )
            compiled = self.wrapped
        for p in store_params().values():  # the trial's gradients
            p.grad = None
        if self.fallback is None:
            self.compiled[key] = (constants, compiled)
        return compiled.loss_and_grads(model, guide, *args, **kwargs)


def check_precision(precision: Any) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a TypeError/ValueError.

    >>> check_precision("bf16")
    'bf16'
    """
    if not isinstance(precision, str):
        raise TypeError(f"precision must be a str, one of {PRECISIONS}, got {precision!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """A context running ops at ``precision`` on ``device``'s type (no-op for ``"fp32"``).

    Args:
        precision: ``"fp32"`` or ``"bf16"``.
        device: the device the computation runs on (``cuda`` or ``cpu`` for ``bf16``).

    >>> with autocast("bf16", "cpu"):
    ...     y = torch.ones(2, 3) @ torch.ones(3, 4)
    >>> y.dtype
    torch.bfloat16
    """
    precision = check_precision(precision)
    device = torch.device(device)
    if precision == "fp32":
        yield
        return
    if device.type not in _AUTOCAST_DEVICES:
        raise ValueError(
            f"precision='bf16' needs a device of type {_AUTOCAST_DEVICES}, got {str(device)!r}"
        )
    with torch.autocast(device.type, dtype=torch.bfloat16):
        yield


class AutocastLoss(LossLayer):
    """A Pyro loss whose ``loss_and_grads`` runs under :func:`autocast`; gradients land in
    the float32 parameters' ``.grad``.

    Args:
        loss: a Pyro loss with ``loss_and_grads(model, guide, *args)``.
        precision: ``"fp32"`` or ``"bf16"``.
        device: the device training runs on.

    >>> import pyro, pyro.distributions as dist
    >>> def model(x):
    ...     w = pyro.param("w", torch.ones(3, 1))
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("x", dist.Normal((x @ w).squeeze(-1), 1.0), obs=x.sum(-1))
    >>> loss = AutocastLoss(pyro.infer.Trace_ELBO(), "bf16", "cpu")
    >>> value = loss.loss_and_grads(model, lambda x: None, torch.ones(4, 3))
    >>> pyro.param("w").grad.dtype
    torch.float32
    >>> pyro.clear_param_store()
    """

    def __init__(self, loss: Any, precision: str, device: torch.device | str) -> None:
        super().__init__(loss)
        self.precision = check_precision(precision)
        self.device = torch.device(device)

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> Any:
        with autocast(self.precision, self.device):
            return self.wrapped.loss_and_grads(model, guide, *args, **kwargs)


def stack(loss: Any, jit: bool, precision: str, device: torch.device) -> Any:
    """``loss`` with a :class:`CompiledLoss` (``jit``) and an :class:`AutocastLoss` (``bf16``)
    around it, as ``fit`` steps with them (the strategy adds its own layer).

    >>> elbo = pyro.infer.Trace_ELBO()
    >>> stack(elbo, False, "fp32", torch.device("cpu")) is elbo
    True
    """
    if jit:
        loss = CompiledLoss(loss)
    if check_precision(precision) != "fp32":
        loss = AutocastLoss(loss, precision, device)
    return loss
