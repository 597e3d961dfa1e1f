"""Data-parallel training with ``torch.distributed`` (launched by ``torchrun``).

- :mod:`~pyro_genmodels.parallel.strategy`: :class:`SingleProcess` or :class:`DataParallel`,
  the only place where one process and several differ;
- :mod:`~pyro_genmodels.parallel.grads`: gradients summed over the processes after
  backward (:class:`DataParallelLoss`);
- :mod:`~pyro_genmodels.parallel.shard_scale`: each process's share of the global loss;
- :mod:`~pyro_genmodels.parallel.rows`: rows of an evaluation split over the processes
  (:func:`map_rows`) and values computed once and broadcast (:func:`on_main_process`).

The training runtime (:func:`pyro_genmodels.fit`) uses them; nothing here imports it.

>>> import pyro_genmodels as pgm
>>> pgm.parallel.is_main_process()
True
"""

from pyro_genmodels.parallel.grads import DataParallelLoss, all_reduce_grads, innermost
from pyro_genmodels.parallel.rows import (
    barrier,
    broadcast_object,
    gather_rows,
    is_main_process,
    local_rows,
    map_rows,
    on_main_process,
    rank_and_world,
)
from pyro_genmodels.parallel.shard_scale import SCALE_KEY, PlateRecorder, ShardScale
from pyro_genmodels.parallel.strategy import (
    DataParallel,
    SingleProcess,
    Strategy,
    make_strategy,
    rank_seed,
)

__all__ = [
    "SCALE_KEY",
    "DataParallel",
    "DataParallelLoss",
    "PlateRecorder",
    "ShardScale",
    "SingleProcess",
    "Strategy",
    "all_reduce_grads",
    "barrier",
    "broadcast_object",
    "gather_rows",
    "innermost",
    "is_main_process",
    "local_rows",
    "make_strategy",
    "map_rows",
    "on_main_process",
    "rank_and_world",
    "rank_seed",
]
