"""Rows of a computation split over the processes of a ``torch.distributed`` group.

Under ``torchrun`` each process scores its contiguous share of the rows
(:func:`local_rows`) and :func:`gather_rows` puts the shares back together in
row order on every process; :func:`map_rows` does both around a function of the
rows (an exact ``log p(x)``, an energy). Random quantities that must be equal on
every process (an AIS estimate of ``log Z``, model samples) are computed by rank 0
alone and broadcast (:func:`on_main_process`). Without a process group every
function here is the plain single-process computation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "barrier",
    "broadcast_object",
    "gather_rows",
    "is_main_process",
    "local_rows",
    "map_rows",
    "on_main_process",
    "rank_and_world",
]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process (``(0, 1)`` without a process group).

    >>> rank_and_world()
    (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True unless this process is a rank other than 0 of an initialized process group.

    >>> is_main_process()
    True
    """
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def local_rows(n: int) -> slice:
    """This rank's contiguous share of ``n`` rows (all of them without a process group,
    or when ``n`` is smaller than the number of ranks); see :func:`gather_rows`.

    >>> local_rows(10)
    slice(0, 10, None)
    """
    rank, world = rank_and_world()
    if world == 1 or n < world:
        return slice(0, n)
    sizes = [len(part) for part in torch.arange(n).tensor_split(world)]
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """The ``(n, *)`` rows that the ranks computed on their :func:`local_rows` shares,
    concatenated in rank order, on every rank (``local`` itself without a process group).

    Args:
        local: ``(m, *)``, this rank's rows.
        n: the total number of rows.

    >>> gather_rows(torch.arange(3.0), 3)
    tensor([0., 1., 2.])
    """
    rank, world = rank_and_world()
    if world == 1 or n < world:
        return local
    sizes = [len(part) for part in torch.arange(n).tensor_split(world)]
    padded = local.new_zeros((sizes[0], *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


def map_rows(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int | None = None
) -> torch.Tensor:
    """``fn`` row by row: ``out[i] = fn(x[i:i+1])[0]`` for ``fn`` mapping ``(m, *)`` rows to
    ``(m, *)`` results (e.g. an exact ``log p(x)``). Under ``torch.distributed`` each rank
    evaluates its :func:`local_rows` share and the results are gathered in row order on
    every rank (:func:`gather_rows`, a collective call); ``chunk`` bounds the rows per call.

    Args:
        x: ``(n, *)``, the rows.

    >>> map_rows(lambda t: t.sum(-1), torch.ones(5, 2), chunk=2)
    tensor([2., 2., 2., 2., 2.])
    """
    n = x.shape[0]
    local = x[local_rows(n)]
    parts = [fn(t) for t in (local.split(chunk) if chunk else (local,))]
    return gather_rows(torch.cat(parts), n)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (any picklable object, e.g. a checkpoint payload) on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every rank of the process group gets here."""
    dist.barrier()


def _on_cpu(obj: Any) -> Any:
    """``obj`` with its tensors detached on the CPU (through dicts, lists and (named) tuples)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_on_cpu(v) for v in obj))
    if isinstance(obj, list | tuple):
        return type(obj)(_on_cpu(v) for v in obj)
    return obj


def on_main_process(fn: Callable[[], Any]) -> Any:
    """``fn()`` computed by rank 0 alone and broadcast to every rank (``fn()`` itself without
    a process group): for random quantities (an AIS estimate of ``log Z``, model samples)
    that must be identical on all ranks and equal to a single process's, which draws
    from rank 0's streams. Under a process group its tensors arrive on the CPU (through
    dicts, lists and named tuples). A collective call: every rank must make it.

    >>> on_main_process(lambda: 3)
    3
    """
    rank, world = rank_and_world()
    if world == 1:
        return fn()
    box: tuple[str, Any] = ("", None)
    if rank == 0:
        try:
            box = ("ok", _on_cpu(fn()))
        except Exception as e:  # the other ranks must not wait for a broadcast forever
            box = ("error", f"{type(e).__name__}: {e}")
            broadcast_object(box)
            raise
    box = broadcast_object(box)
    if box[0] == "error":
        raise RuntimeError(f"rank 0 failed computing the shared value: {box[1]}")
    return box[1]
