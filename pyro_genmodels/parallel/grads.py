"""Gradients summed over the processes of a ``torch.distributed`` group, after backward.

Every process evaluates the loss on its shard of the global batch; the ``.grad`` of
every Pyro param — taken in the order of their names, so every process reduces the
same tensors in the same order — is then **summed** with ``all_reduce`` (one flat
buffer per dtype), together with the loss value in the small collective of the
gradient flags. Reducing after ``backward`` rather than in autograd hooks (as
``DistributedDataParallel`` does) keeps losses that differentiate through ``∇ₓ``
(score matching: double backward) exact. A param that no process gave a gradient
keeps ``grad=None``, as in one process.

Reference: Sergeev & Del Balso, "Horovod: fast and easy distributed deep learning in
TensorFlow", 2018 (``pyro.optim.horovod``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from pyro_genmodels._compat import store_params
from pyro_genmodels.parallel.shard_scale import ShardScale

__all__ = ["DataParallelLoss", "all_reduce_grads", "innermost", "reduce_grads", "sorted_params"]


def sorted_params() -> list[tuple[str, torch.Tensor]]:
    """The param store's ``(name, unconstrained tensor)`` pairs in name order."""
    params = store_params()
    return [(name, params[name]) for name in sorted(params)]


def reduce_grads(
    params: list[torch.Tensor], device: torch.device, extra: torch.Tensor | None = None
) -> torch.Tensor | None:
    """Sum the ``.grad`` of ``params`` over all ranks (a param without a gradient on some
    rank counts zeros there; one without a gradient on every rank keeps ``None``), and
    the float64 vector ``extra`` with them; returns ``extra`` summed."""
    n = len(params)
    flags = torch.zeros(n + (0 if extra is None else extra.numel()), dtype=torch.float64)
    flags[:n] = torch.tensor([p.grad is not None for p in params], dtype=torch.float64)
    if extra is not None:
        flags[n:] = extra.detach().reshape(-1).to("cpu", torch.float64)
    flags = flags.to(device)
    dist.all_reduce(flags)
    has = flags[:n].tolist()
    for p, flag in zip(params, has):
        if flag and p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is not None:
            by_dtype.setdefault(p.grad.dtype, []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])  # type: ignore[union-attr]
        dist.all_reduce(flat)
        for p, g in zip(group, flat.split([p.numel() for p in group])):
            p.grad.copy_(g.view_as(p.grad))  # type: ignore[union-attr]
    return None if extra is None else flags[n:]


def all_reduce_grads(device: torch.device, skip: set[int] | None = None, value: Any = None) -> Any:
    """Sum the ``.grad`` of every Pyro param over all ranks (params in name order), except
    those whose ``id`` is in ``skip`` (already reduced, e.g. a critic's); with ``value``
    (a loss value: a number, a tensor, or a tuple/list of them), also sum it over the
    ranks in the same small collective as the gradient flags and return it as floats
    (of ``value``'s container type).

    A param keeps ``grad=None`` only if it has none on every rank; otherwise a
    missing local gradient counts as zeros.
    """
    params = [p for _, p in sorted_params() if skip is None or id(p) not in skip]
    if not params and value is None:
        return None
    values = value if isinstance(value, tuple | list) else (value,)
    floats = [float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for v in values]
    extra = None if value is None else torch.tensor(floats, dtype=torch.float64)
    total = reduce_grads(params, device, extra)
    if total is None:
        return None
    out = [float(v) for v in total.tolist()]
    return type(value)(out) if isinstance(value, tuple | list) else out[0]


def innermost(loss: Any) -> Any:
    """The loss under its layers: each layer (compiled, autocast, data-parallel) has
    ``unwrap()`` returning the loss it wraps.

    >>> import pyro
    >>> elbo = pyro.infer.Trace_ELBO()
    >>> innermost(DataParallelLoss(elbo, torch.device("cpu"))) is elbo
    True
    """
    while callable(getattr(type(loss), "unwrap", None)):
        loss = loss.unwrap()
    return loss


class DataParallelLoss:
    """A Pyro loss whose gradients and value are summed over the ranks of a process group.

    ``loss_and_grads`` evaluates the wrapped loss on this rank's shard — model and
    guide run under ``scale`` (a :class:`~pyro_genmodels.parallel.shard_scale.ShardScale`,
    set by :meth:`DataParallel.prime`, so that the
    ranks' losses sum to the single-process loss of the global batch) — then
    :func:`all_reduce_grads`, and returns the loss summed over ranks (floats).

    A loss that updates parameters itself inside ``loss_and_grads`` (an
    adversarial loss's inner critic updates) declares a ``critic_grad_sync``
    attribute (``None`` in one process). For the duration of the call it is set
    to a function ``sync(loss, params) -> loss summed over ranks`` that sums the
    ``.grad`` of ``params`` over the ranks; the loss calls it after each inner
    backward and before its finite check and update, so every rank takes the same
    decision and the same step. Those params are then left out of the final
    reduction (their gradients are summed once).

    Every other attribute (``loss``, ``state_dict``, ...) is the wrapped loss's:
    a stateful loss (persistent chains) keeps its own state per rank
    (see :meth:`DataParallel.gather`).

    Args:
        loss: a Pyro loss with ``loss_and_grads(model, guide, *args)``.
        device: where the reductions run (a CUDA device for NCCL).
        scale: the plate scaling of model and guide, or ``None`` (none).
    """

    def __init__(self, loss: Any, device: torch.device, scale: ShardScale | None = None) -> None:
        if not callable(getattr(loss, "loss_and_grads", None)):
            raise TypeError(f"loss must have a loss_and_grads method, got {type(loss).__name__}")
        self.wrapped = loss
        self.device = device
        self.scale = scale
        self._synced: set[int] = set()

    def set_step(self, global_size: int, local_size: int) -> None:
        """The coming step's global batch size and this rank's shard size (for the scale)."""
        if self.scale is not None:
            self.scale.set_step(global_size, local_size)

    def _sync_critic(self, loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
        self._synced.update(id(p) for p in params)
        total = reduce_grads(params, self.device, loss.detach().reshape(1))
        assert total is not None
        return total[0].to(loss.dtype)

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> Any:
        if self.scale is not None:
            model, guide = self.scale.wrap(model), self.scale.wrap(guide)
        inner = innermost(self.wrapped)
        hook = hasattr(inner, "critic_grad_sync")
        self._synced = set()
        if hook:
            inner.critic_grad_sync = self._sync_critic
        try:
            value = self.wrapped.loss_and_grads(model, guide, *args, **kwargs)
        finally:
            if hook:
                inner.critic_grad_sync = None
        return all_reduce_grads(self.device, skip=self._synced, value=value)

    def unwrap(self) -> Any:
        """The loss this layer wraps."""
        return self.wrapped

    def __getattr__(self, name: str) -> Any:
        if name == "wrapped":
            raise AttributeError(name)
        return getattr(self.wrapped, name)
