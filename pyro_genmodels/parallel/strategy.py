"""How a training run is spread over processes: one process, or data-parallel ranks.

:func:`make_strategy` returns a :class:`SingleProcess` or a :class:`DataParallel`
strategy, and the training runtime asks it, never ``if world > 1``, for what differs:
the random seed of each rank, who writes files and shows progress, the loss layer
that sums gradients over the ranks, the priming before the first step, broadcasts,
gathers and barriers.

Data parallelism: one distributed step equals one single-process step on the same
global batch. Every rank evaluates the loss on its shard of the batch; the gradients
of all Pyro params and the loss values are summed over the ranks
(:class:`~pyro_genmodels.parallel.grads.DataParallelLoss`); model and guide run under
a :class:`~pyro_genmodels.parallel.shard_scale.ShardScale` that makes the ranks'
losses sum to the single-process loss of the global batch (sites outside the data
plate count ``1/W`` per rank; a subsampled plate is rescaled to the global batch).
The data plates are found by priming (:meth:`DataParallel.prime`): one loss
evaluation on the global first batch and one on this rank's shard, whose plate sizes
are compared; every param is then broadcast from rank 0 (Pyro creates params lazily,
so ranks would otherwise start apart). Every rank draws from its own random streams
(:func:`rank_seed`); stateful losses keep their state per rank, and checkpoints hold
every rank's random and loss states (:meth:`DataParallel.gather`).

Reference: Li et al., "PyTorch Distributed: Experiences on Accelerating Data
Parallel Training", VLDB 2020.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from pyro_genmodels.parallel.grads import DataParallelLoss, sorted_params
from pyro_genmodels.parallel.rows import barrier, broadcast_object
from pyro_genmodels.parallel.shard_scale import ShardScale

__all__ = ["DataParallel", "SingleProcess", "Strategy", "make_strategy", "rank_seed"]

Prime = Callable[[tuple, tuple | None], tuple[dict[str, bool], set[str]]]
"""``prime(first_batch, shard) -> (data_plates, data_sites)``: the runtime's priming."""


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random streams: ``seed + 104729·rank`` (``seed`` itself on
    rank 0, so rank 0 draws as a single process would).

    >>> rank_seed(3, 0), rank_seed(3, 1)
    (3, 104732)
    """
    return int(seed) + 104729 * int(rank)


class Strategy:
    """What differs between one process and data-parallel ranks (see the module docstring).

    Attributes:
        rank, world: this process's rank and the number of processes.
        device: the device the strategy chose (``cuda:LOCAL_RANK`` under NCCL), or ``None``.
    """

    rank = 0
    world = 1
    device: torch.device | None = None

    @property
    def writer(self) -> bool:
        """Whether this process writes files and shows progress (rank 0)."""
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """This process's seed of the run's random streams."""
        return rank_seed(seed, self.rank)

    def wrap_loss(self, loss: Any, device: torch.device) -> Any:
        """The loss this strategy steps with (one process: ``loss`` itself)."""
        return loss

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process (a collective call)."""
        return obj

    def gather(self, obj: Any) -> list[Any] | None:
        """Every process's ``obj`` in rank order on rank 0, ``None`` elsewhere (collective)."""
        return [obj]

    def own(self, states: list[Any] | None) -> Any:
        """This process's entry of a :meth:`gather` written by as many processes as now,
        else ``None``."""
        if states is None or len(states) != self.world:
            return None
        return states[self.rank]

    def prime(self, prime: Prime, loss: Any, first: tuple, shard: tuple, needed: bool) -> None:
        """Before the first step of a fresh or resumed run, with its first global batch and
        this process's shard of it: one process primes when the runtime says it is
        ``needed`` (a compiled loss, a plate-nesting guess)."""
        if needed:
            prime(first, None)

    def before_step(self, loss: Any, global_size: int, local_size: int) -> None:
        """Before each step, with the step's global batch size and this process's share."""

    def finish(self) -> None:
        """At the end of training: every process waits for the others (collective)."""


class SingleProcess(Strategy):
    """Training in one process.

    >>> s = SingleProcess(); s.rank, s.world, s.writer, s.seed(7)
    (0, 1, True, 7)
    """


class DataParallel(Strategy):
    """The ranks of an initialized ``torch.distributed`` process group (see the module).

    Args:
        device: the device chosen for this rank, or ``None``.
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.rank, self.world, self.device = dist.get_rank(), dist.get_world_size(), device

    def wrap_loss(self, loss: Any, device: torch.device) -> DataParallelLoss:
        return DataParallelLoss(loss, device)

    def broadcast(self, obj: Any) -> Any:
        return broadcast_object(obj)

    def gather(self, obj: Any) -> list[Any] | None:
        gathered: list[Any] | None = [None] * self.world if self.rank == 0 else None
        dist.gather_object(obj, gathered, dst=0)
        return gathered

    def prime(self, prime: Prime, loss: Any, first: tuple, shard: tuple, needed: bool) -> None:
        """Prime always (fresh or resumed): on the global first batch and this rank's shard
        (the data plates), set the plate scaling of the data-parallel ``loss`` and broadcast
        every param from rank 0."""
        plates, sites = prime(first, shard)
        loss.scale = ShardScale(plates, sites, self.world)
        self.broadcast_params(loss.device)

    def broadcast_params(self, device: torch.device) -> None:
        """Every Pyro param (a critic registered under ``poutine.block`` included) from rank 0."""
        with torch.no_grad():
            for name, p in sorted_params():
                if p.device.type != device.type:
                    raise ValueError(
                        f"Pyro param {name!r} is on {p.device} but training runs on {device}"
                    )
                dist.broadcast(p.data, src=0)

    def before_step(self, loss: Any, global_size: int, local_size: int) -> None:
        loss.set_step(global_size, local_size)

    def finish(self) -> None:
        barrier()  # rank 0's last checkpoint is on disk before any rank returns


def _env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def make_strategy(distributed: Any, device: torch.device | None) -> Strategy:
    """Join (or start) the process group when asked or launched by ``torchrun``.

    ``distributed=None`` means: data-parallel when a process group is initialized or
    ``torchrun`` set ``WORLD_SIZE > 1``. Without an initialized group one is initialized
    from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT``): NCCL when CUDA is available (and ``device`` is not a CPU), else
    gloo. With NCCL and no ``device`` given, each process takes ``cuda:LOCAL_RANK``.

    >>> type(make_strategy(False, None)).__name__
    'SingleProcess'
    """
    if distributed is not None and not isinstance(distributed, bool):
        raise TypeError(f"distributed must be True, False or None, got {distributed!r}")
    available = dist.is_available()
    initialized = available and dist.is_initialized()
    if distributed is None:
        distributed = initialized or _env_world_size() > 1
    if not distributed:
        return SingleProcess()
    if not available:
        raise RuntimeError("distributed=True but this torch build has no torch.distributed")
    if not initialized:
        missing = [
            k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
        ]
        if missing:
            raise ValueError(
                "distributed=True needs an initialized torch.distributed process group or "
                f"torchrun's environment variables; missing {missing}"
            )
        use_cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if device is None and dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    return DataParallel(device)
