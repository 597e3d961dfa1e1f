"""Where :func:`pyro_genmodels.fit` gets minibatches: tensors, a map-style Dataset, a DataLoader.

Every source visits epoch ``e`` in the same order: the global batches are
``epoch_order(N, batch_size, shuffle, seed, e)``, a permutation drawn from a
generator seeded by ``(seed, e)`` and cut into consecutive batches. So the
batches — and the training history — are the same whether the data are
in-memory tensors, a ``torch.utils.data.Dataset`` returning the same rows, or
a ``DataLoader`` over it (its workers, pinned memory and ``collate_fn`` are
kept; its sampler is replaced by this order). The position in the data is
therefore ``(epoch, step)``, which the checkpoint holds, and a resumed run
starts at batch ``step`` of epoch ``epoch`` without replaying the others.

Under data parallelism with ``world`` ranks, every global batch is split into
``world`` contiguous shards (``torch.tensor_split``) and rank ``r`` gets
shard ``r``; concatenated in rank order the shards are the global batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils import data as tud

from pyro_genmodels.training.files import payload_checksum
from pyro_genmodels.training.placement import match_dtype

__all__ = [
    "DatasetBatches",
    "data_fingerprint",
    "TensorBatches",
    "as_tensors",
    "epoch_order",
    "make_batches",
]


def data_fingerprint(tensors: Sequence[torch.Tensor], batch_size: int, shuffle: bool) -> dict:
    """What a resumed run must share with the original: data (shapes, dtypes, SHA-256), batching.

    >>> fp = data_fingerprint([torch.zeros(3, 2)], 2, True)
    >>> fp["num_data"], fp["shapes"], fp["batch_size"]
    (3, [[2]], 2)
    """
    return {
        "num_data": int(tensors[0].shape[0]),
        "shapes": [list(t.shape[1:]) for t in tensors],
        "dtypes": [str(t.dtype) for t in tensors],
        "sha256": payload_checksum(list(tensors)),
        "batch_size": int(batch_size),
        "shuffle": bool(shuffle),
    }


def epoch_order(
    n: int, batch_size: int, shuffle: bool, seed: int, epoch: int
) -> list[torch.Tensor]:
    """Index batches ``(B,)`` of epoch ``epoch``, shuffled by a generator seeded ``(seed, epoch)``.

    >>> [b.tolist() for b in epoch_order(5, 2, False, 0, 0)]
    [[0, 1], [2, 3], [4]]
    """
    if shuffle:
        (epoch_seed,) = np.random.SeedSequence([seed, epoch]).generate_state(1)
        generator = torch.Generator().manual_seed(int(epoch_seed))
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.arange(n)
    return list(order.split(batch_size))


def as_tensors(data: Any) -> tuple[torch.Tensor, ...]:
    """``data`` as a non-empty tuple of tensors sharing their leading length ``N``.

    >>> [t.shape for t in as_tensors((torch.zeros(3, 2), torch.ones(3)))]
    [torch.Size([3, 2]), torch.Size([3])]
    """
    if not isinstance(data, torch.Tensor | list | tuple) and hasattr(data, "train"):
        data = data.train
    tensors = (data,) if isinstance(data, torch.Tensor) else data
    if not isinstance(tensors, list | tuple) or not all(
        isinstance(t, torch.Tensor) for t in tensors
    ):
        raise TypeError(
            "data must be a Tensor of shape (N, ...), a tuple/list of such tensors, a "
            "dataset with a .train attribute, a map-style torch.utils.data.Dataset or a "
            f"DataLoader over one; got {type(data).__name__}"
        )
    if len(tensors) == 0:
        raise ValueError("data must hold at least one tensor, got an empty tuple/list")
    if any(t.dim() == 0 for t in tensors):
        raise ValueError("data tensors must have a leading datapoint dim (N, ...), got a 0-dim one")
    lengths = [t.shape[0] for t in tensors]
    if len(set(lengths)) != 1:
        raise ValueError(f"data tensors must have equal leading lengths N, got lengths {lengths}")
    if lengths[0] == 0:
        raise ValueError("data must hold at least one datapoint, got N = 0")
    return tuple(tensors)


def _shard(idx: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    return idx if world == 1 else torch.tensor_split(idx, world)[rank]


class _Source:
    """Common part: the global order, this rank's shard of it, the device."""

    def __init__(
        self, num_data: int, batch_size: int, shuffle: bool, seed: int, drop_last: bool = False
    ) -> None:
        self.num_data = num_data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank, self.world = 0, 1
        self.device = torch.device("cpu")

    def set_rank(self, rank: int, world: int) -> None:
        """Serve shard ``rank`` of ``world`` of every global batch."""
        if self.batch_size < world:
            raise ValueError(
                f"batch_size must be >= the number of processes ({world}) so that every rank "
                f"gets data, got batch_size={self.batch_size}"
            )
        self.rank, self.world = rank, world

    def global_batches(self, epoch: int) -> list[torch.Tensor]:
        """The index batches ``(B,)`` of epoch ``epoch``, all ranks together (the last epoch's
        are kept: the loop asks for them more than once)."""
        key = (self.num_data, self.batch_size, self.shuffle, self.seed, epoch, self.drop_last)
        cached = self.__dict__.get("_order")
        if cached is not None and cached[0] == key:
            return list(cached[1])
        order = epoch_order(self.num_data, self.batch_size, self.shuffle, self.seed, epoch)
        if self.drop_last and len(order) > 1 and len(order[-1]) < self.batch_size:
            order = order[:-1]
        self._order = (key, order)
        return list(order)

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's rows of the global index batch ``idx``."""
        return _shard(idx, self.rank, self.world)

    def step_sizes(self, epoch: int) -> list[tuple[int, int]]:
        """``(global batch size, this rank's shard size)`` of every step of epoch ``epoch``."""
        return [(len(idx), len(self.shard(idx))) for idx in self.global_batches(epoch)]

    def num_batches(self, epoch: int) -> int:
        return len(self.global_batches(epoch))

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The rows ``idx`` of the data, all of them, on the device."""
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with this one (checked on resume): the data's
        size, shapes and dtypes, the batching; for tensors also the values' SHA-256 (a
        Dataset, which may not fit in memory, is not hashed)."""
        sample = self.take(torch.arange(1))
        fp = data_fingerprint(sample, self.batch_size, self.shuffle)
        fp["num_data"] = self.num_data
        fp["drop_last"] = self.drop_last
        del fp["sha256"]
        return fp


class TensorBatches(_Source):
    """Batches sliced from in-memory tensors ``(N, ...)`` moved once to the device.

    >>> src = TensorBatches((torch.arange(5.0),), batch_size=2, shuffle=False, seed=0)
    >>> [b[0].tolist() for b in src.epoch(0)]
    [[0.0, 1.0], [2.0, 3.0], [4.0]]
    """

    def __init__(
        self, tensors: Sequence[torch.Tensor], batch_size: int, shuffle: bool, seed: int
    ) -> None:
        self.tensors = as_tensors(tuple(tensors))
        super().__init__(self.tensors[0].shape[0], batch_size, shuffle, seed)

    def to(self, device: torch.device, dtype: torch.dtype | None = None) -> TensorBatches:
        """Move the tensors to ``device``; floating ones to ``dtype`` when given."""
        self.device = device
        self.tensors = match_dtype(tuple(t.to(device) for t in self.tensors), dtype)
        return self

    def fingerprint(self) -> dict[str, Any]:
        fp = data_fingerprint(self.tensors, self.batch_size, self.shuffle)
        fp["drop_last"] = self.drop_last
        return fp

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The rows ``idx`` (a global index batch), all of them, on the device."""
        idx = idx.to(self.device)
        return tuple(t.index_select(0, idx) for t in self.tensors)  # 3x faster than t[idx]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """This rank's batches of epoch ``epoch``, from global batch ``start`` on."""
        for idx in self.global_batches(epoch)[start:]:
            yield self.take(_shard(idx, self.rank, self.world))


class _EpochBatchSampler(tud.Sampler):
    """The batch sampler fit puts into a DataLoader: this rank's shard of each global batch."""

    def __init__(self, source: DatasetBatches) -> None:
        self.source = source
        self.epoch, self.start = 0, 0

    def __iter__(self) -> Iterator[list[int]]:
        s = self.source
        for idx in s.global_batches(self.epoch)[self.start :]:
            yield _shard(idx, s.rank, s.world).tolist()

    def __len__(self) -> int:
        return len(self.source.global_batches(self.epoch)) - self.start


class DatasetBatches(_Source):
    """Batches of a map-style ``Dataset``, read through a ``DataLoader``.

    The items (a tensor, or a tuple/list of tensors) are collated by the
    loader's ``collate_fn`` (default: stacked); a batch is passed to the model
    as ``model(*batch)`` (``model(batch)`` for single tensors). With pinned
    memory the copies to the device are non-blocking.

    Args:
        dataset: a map-style ``torch.utils.data.Dataset`` with ``__len__``.
        batch_size, shuffle, seed: the order (see :func:`epoch_order`).
        loader: a ``DataLoader`` whose workers, ``collate_fn``, ``pin_memory``,
            ``drop_last``, ``timeout``, ``worker_init_fn``, ``prefetch_factor``,
            ``persistent_workers`` and ``multiprocessing_context`` are kept.

    >>> ds = tud.TensorDataset(torch.arange(5.0))
    >>> [b[0].tolist() for b in DatasetBatches(ds, 2, False, 0).epoch(0, start=1)]
    [[2.0, 3.0], [4.0]]
    """

    def __init__(
        self,
        dataset: tud.Dataset,
        batch_size: int,
        shuffle: bool,
        seed: int,
        loader: tud.DataLoader | None = None,
    ) -> None:
        if isinstance(dataset, tud.IterableDataset) or not hasattr(dataset, "__len__"):
            raise TypeError(
                "data must be a map-style torch.utils.data.Dataset (with __len__ and "
                f"__getitem__) or a DataLoader over one, got {type(dataset).__name__}"
            )
        n = len(dataset)
        if n == 0:
            raise ValueError("data must hold at least one datapoint, got a Dataset of length 0")
        drop_last = bool(loader.drop_last) if loader is not None else False
        super().__init__(n, batch_size, shuffle, seed, drop_last)
        self.dtype: torch.dtype | None = None
        self.sampler = _EpochBatchSampler(self)
        self.generator = torch.Generator()
        kwargs: dict[str, Any] = {}
        if loader is not None:
            kwargs = {
                "num_workers": loader.num_workers,
                "collate_fn": loader.collate_fn,
                "pin_memory": loader.pin_memory,
                "timeout": loader.timeout,
                "worker_init_fn": loader.worker_init_fn,
                "multiprocessing_context": loader.multiprocessing_context,
            }
            if loader.num_workers > 0:
                kwargs["prefetch_factor"] = loader.prefetch_factor
                kwargs["persistent_workers"] = loader.persistent_workers
        self.loader = tud.DataLoader(
            dataset, batch_sampler=self.sampler, generator=self.generator, **kwargs
        )

    def to(self, device: torch.device, dtype: torch.dtype | None = None) -> DatasetBatches:
        """Deliver batches on ``device``, floating tensors in ``dtype`` when given."""
        self.device = device
        self.dtype = dtype
        return self

    def _on_device(self, batch: Any) -> tuple[torch.Tensor, ...]:
        items = (batch,) if isinstance(batch, torch.Tensor) else batch
        if not isinstance(items, list | tuple) or not all(
            isinstance(t, torch.Tensor) for t in items
        ):
            raise TypeError(
                "a collated batch must be a Tensor or a tuple/list of Tensors, got "
                f"{type(batch).__name__}"
            )
        return match_dtype(
            tuple(
                t.to(self.device, non_blocking=t.is_pinned() and self.device.type == "cuda")
                for t in items
            ),
            self.dtype,
        )

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The rows ``idx`` (a global index batch), all of them, collated, on the device."""
        collate = self.loader.collate_fn
        dataset = self.loader.dataset
        return self._on_device(collate([dataset[i] for i in idx.tolist()]))

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """This rank's batches of epoch ``epoch``, from global batch ``start`` on.

        Worker processes are seeded from ``(seed, epoch)`` (base seed drawn from a
        generator seeded so), never from the global torch generator.
        """
        self.sampler.epoch, self.sampler.start = epoch, start
        (epoch_seed,) = np.random.SeedSequence([self.seed, epoch, 1]).generate_state(1)
        self.generator.manual_seed(int(epoch_seed))
        for batch in self.loader:
            yield self._on_device(batch)


def make_batches(
    data: Any, batch_size: int | None, shuffle: bool | None, seed: int
) -> TensorBatches | DatasetBatches:
    """The batch source for ``fit``'s ``data``: tensors, a map-style Dataset or a DataLoader.

    ``batch_size``/``shuffle`` of ``None`` mean: the DataLoader's own (its
    ``batch_size``; shuffled when its sampler is a ``RandomSampler``), else 128 / True.

    A dataset object whose ``.train`` is a map-style Dataset (``load_mnist(root,
    mmap=True)``) is read through that Dataset.

    >>> make_batches(torch.zeros(10, 2), None, None, 0).batch_size
    128
    """
    if not isinstance(data, torch.Tensor | list | tuple | tud.Dataset) and isinstance(
        getattr(data, "train", None), tud.Dataset
    ):
        data = data.train
    if isinstance(data, tud.DataLoader):
        if data.batch_size is None:
            raise ValueError(
                "a DataLoader passed to fit must be built with batch_size (fit draws the "
                "batches itself), got one with batch_size=None (a custom batch_sampler)"
            )
        if not isinstance(data.sampler, tud.RandomSampler | tud.SequentialSampler):
            raise ValueError(
                "a DataLoader passed to fit must use shuffle=True or shuffle=False (fit draws "
                "a reproducible order itself), got a custom sampler "
                f"{type(data.sampler).__name__}"
            )
        own_shuffle = isinstance(data.sampler, tud.RandomSampler)
        if batch_size is not None and batch_size != data.batch_size:
            raise ValueError(
                f"batch_size={batch_size} differs from the DataLoader's batch_size="
                f"{data.batch_size}; pass batch_size=None to use the loader's"
            )
        size = data.batch_size
        return DatasetBatches(
            data.dataset, size, own_shuffle if shuffle is None else shuffle, seed, loader=data
        )
    size = 128 if batch_size is None else batch_size
    order = True if shuffle is None else shuffle
    if isinstance(data, tud.Dataset):
        return DatasetBatches(data, size, order, seed)
    return TensorBatches(as_tensors(data), size, order, seed)
