"""Run a function on several gloo processes (forked, file rendezvous) and collect the results.

The data-parallel tests compare what each rank of a 2-process run returns with one process.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, body: Callable, out: str, world: int, args: tuple) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{os.path.join(out, 'rendezvous')}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),  # a mismatch fails the test instead of hanging
    )
    try:
        torch.save(body(rank, out, *args), os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_on_ranks(
    body: Callable[..., Any],
    out: Path,
    *args: Any,
    world: int = 2,
    weights_only: bool = True,
    start_method: str = "fork",
) -> list[Any]:
    """``[body(rank, out, *args) for each rank]``, each run in its own process of a
    ``world``-process gloo group. Forked by default (``body`` need not be picklable);
    ``start_method="spawn"`` for CUDA, which a forked child cannot initialize once the
    parent has (``body`` and ``args`` must then be picklable: module-level functions)."""
    args = (body, str(out), world, args)
    mp.start_processes(_entry, args=args, nprocs=world, start_method=start_method)
    return [torch.load(Path(out) / f"rank{r}.pt", weights_only=weights_only) for r in range(world)]
