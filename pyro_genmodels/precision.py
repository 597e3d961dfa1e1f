"""Mixed precision for Pyro losses: bf16 autocast around a step, fp32 master weights.

``precision="bf16"`` runs a loss's forward computation (model and guide
networks, ``log_prob`` terms) under ``torch.autocast(device_type,
dtype=torch.bfloat16)``: matrix products and convolutions run in bfloat16,
reductions and ``log``/``exp``/``softplus``-type ops that autocast keeps in
float32 stay in float32. Parameters, gradients and optimizer state remain
float32 (the "master weights"), so the update is the usual float32 update of
a gradient computed in mixed precision. bfloat16 has float32's exponent range,
so no loss scaling is needed (unlike float16).

On CUDA this is the fast path of tensor-core GPUs. On the CPU, ``bf16`` uses
``torch.autocast("cpu", dtype=torch.bfloat16)``: numerically the same recipe,
useful to test a model's mixed-precision behaviour without a GPU, but usually
*slower* than float32 on CPUs without native bfloat16 units.

Reference: Kalamkar et al., "A Study of BFLOAT16 for Deep Learning Training",
2019; Micikevicius et al., "Mixed Precision Training", ICLR 2018.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

__all__ = ["PRECISIONS", "AutocastLoss", "autocast", "check_precision", "with_precision"]

PRECISIONS = ("fp32", "bf16")
"""The precisions :func:`pyro_genmodels.fit` accepts."""

_AUTOCAST_DEVICES = ("cuda", "cpu")


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


class AutocastLoss:
    """A Pyro loss whose ``loss_and_grads`` runs under :func:`autocast`.

    Every other attribute (``loss``, ``state_dict``, ``load_state_dict``,
    ``critic_optim``, ...) is the wrapped loss's, so stateful losses keep their
    checkpoint state. Gradients land in the float32 parameters' ``.grad``.

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
        if not callable(getattr(loss, "loss_and_grads", None)):
            raise TypeError(f"loss must have a loss_and_grads method, got {type(loss).__name__}")
        self.wrapped = loss
        self.precision = check_precision(precision)
        self.device = torch.device(device)

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> Any:
        with autocast(self.precision, self.device):
            return self.wrapped.loss_and_grads(model, guide, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "wrapped":  # not yet set (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.wrapped, name)


def with_precision(loss: Any, precision: str, device: torch.device | str) -> Any:
    """``loss`` itself for ``"fp32"``, else an :class:`AutocastLoss` around it.

    >>> import pyro
    >>> elbo = pyro.infer.Trace_ELBO()
    >>> with_precision(elbo, "fp32", "cpu") is elbo
    True
    """
    if check_precision(precision) == "fp32":
        return loss
    return AutocastLoss(loss, precision, device)
