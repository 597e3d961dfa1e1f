"""Image files larger than memory: a map-style Dataset over a memory-mapped IDX file.

:class:`IdxImages` maps an uncompressed IDX image file (MNIST's format) with
``numpy.memmap``: opening it reads only the header, and ``dataset[i]`` reads
image ``i`` from disk (through the page cache) and converts it as
:func:`pyro_genmodels.data.load_mnist` does. Pass it, or a ``DataLoader`` over
it, to :func:`pyro_genmodels.fit`. :func:`map_mnist` (also
``load_mnist(root, mmap=True)``) maps the four MNIST files of a directory at once.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pyro_genmodels._checks import check_int
from pyro_genmodels.data.datasets import pixels_to_values
from pyro_genmodels.data.idx_format import CODE_TO_DTYPE, GZIP_MAGIC, MNIST_FILES, as_path
from pyro_genmodels.data.validation import check_bool, check_float_dtype

__all__ = ["IdxImages", "MappedMNIST", "map_mnist"]


def _header(path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """(element dtype, shape, data offset) of a raw IDX file, reading only its header."""
    with open(path, "rb") as f:
        head = f.read(4)
        if head[:2] == GZIP_MAGIC:
            raise ValueError(
                f"{path} is gzip-compressed and cannot be memory-mapped; decompress it "
                "(gunzip) or read it into memory with load_mnist"
            )
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in CODE_TO_DTYPE:
            raise ValueError(f"{path} is not an IDX file: magic number 0x{head.hex()}")
        ndim = head[3]
        shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
    offset = 4 + 4 * ndim
    dtype: np.dtype = CODE_TO_DTYPE[head[2]]
    size = os.path.getsize(path) - offset
    if size != math.prod(shape) * dtype.itemsize:
        raise ValueError(
            f"{path}: IDX header promises shape {shape} "
            f"({math.prod(shape) * dtype.itemsize} data bytes), but the file holds {size}"
        )
    return dtype, shape, offset


class IdxImages(Dataset):
    """Images ``(N, H, W)`` uint8 of a raw IDX file, as flat ``x ∈ {0,1}^D`` or ``[0,1)^D``.

    Item ``i`` is ``1[p/255 > 0.5]`` (``binarize=True``, the values of
    ``load_mnist(..., binarize=True)``) or ``(p + u)/256`` with ``u ~ U[0, 1)^D``
    drawn from a generator seeded by ``(seed, i)`` (the same values at every
    access and in every worker); shape ``(H*W,)``. With ``labels`` (an IDX file of
    ``N`` integers) item ``i`` is ``(x_i, y_i)``.

    Args:
        images: path of an uncompressed IDX file of uint8 images ``(N, H, W)``.
        labels: optional path of an uncompressed IDX file of ``N`` labels.
        binarize: binarize instead of dequantizing.
        dtype: floating dtype of the items.
        seed: seed of the dequantization noise.

    >>> import tempfile, numpy as np
    >>> from pyro_genmodels.data import write_idx
    >>> path = tempfile.mkdtemp() + "/images-idx3-ubyte"
    >>> write_idx(path, np.array([[[0, 200], [255, 100]]], dtype=np.uint8))
    >>> ds = IdxImages(path, binarize=True)
    >>> len(ds), ds[0].tolist(), ds.image_shape
    (1, [0.0, 1.0, 1.0, 0.0], (1, 2, 2))
    """

    def __init__(
        self,
        images: str | os.PathLike,
        labels: str | os.PathLike | None = None,
        binarize: bool = False,
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ) -> None:
        for name, path in (("images", images), ("labels", labels)):
            if path is not None and not isinstance(path, str | os.PathLike):
                raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
        self.binarize = check_bool("binarize", binarize)
        self.dtype = check_float_dtype(dtype)
        self.seed: int = check_int("seed", seed, minimum=0)
        kind, shape, offset = _header(Path(images))
        if kind != np.dtype("u1") or len(shape) != 3:
            raise ValueError(f"images must hold uint8 images (N, H, W), got {kind} {shape}")
        self.images = np.memmap(images, dtype=np.uint8, mode="r", offset=offset, shape=shape)
        self.image_shape = (1, shape[1], shape[2])
        self.labels = None
        if labels is not None:
            lkind, lshape, loffset = _header(Path(labels))
            if lshape != shape[:1] or lkind.kind not in "iu":
                raise ValueError(
                    f"labels must hold {shape[0]} integers, got {lkind} of shape {lshape}"
                )
            self.labels = np.memmap(labels, dtype=lkind, mode="r", offset=loffset, shape=lshape)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} is out of range for {len(self)} images")
        i %= len(self)
        pixels = np.asarray(self.images[i]).reshape(1, -1)
        (noise_seed,) = np.random.SeedSequence([self.seed, i]).generate_state(1)
        generator = torch.Generator().manual_seed(int(noise_seed))
        x = pixels_to_values(pixels, 256, 127.5, self.binarize, generator, self.dtype)[0]
        if self.labels is None:
            return x
        return x, torch.tensor(int(self.labels[i]), dtype=torch.long)


@dataclass(frozen=True)
class MappedMNIST:
    """The train and test splits of MNIST-format files as memory-mapped :class:`IdxImages`.

    ``fit(model, guide, mapped)`` trains on ``mapped.train`` (a map-style Dataset, read
    through a DataLoader); the labels, ``N`` integers, are read into memory.

    Attributes:
        name: the dataset's name.
        train: :class:`IdxImages` of the training images, items ``(H*W,)``.
        test: :class:`IdxImages` of the test images, items ``(H*W,)``.
        train_labels: long tensor ``(N,)``.
        test_labels: long tensor ``(M,)``.
        image_shape: ``(1, H, W)``.
        binarized: whether the items are binarized.
    """

    name: str
    train: IdxImages
    test: IdxImages
    train_labels: torch.Tensor
    test_labels: torch.Tensor
    image_shape: tuple[int, int, int]
    binarized: bool


def _raw(root: Path, stem: str) -> Path:
    path = root / stem
    if path.is_file():
        return path
    if (root / f"{stem}.gz").is_file():
        raise ValueError(
            f"mmap=True needs the uncompressed {stem} in {root}, found only {stem}.gz (a gzip "
            "file cannot be memory-mapped; gunzip it, or load it into memory with mmap=False)"
        )
    raise FileNotFoundError(f"mmap=True needs {stem} in {root}; it does not exist")


def _labels(path: Path, n: int) -> torch.Tensor:
    kind, shape, offset = _header(path)
    if shape != (n,) or kind.kind not in "iu":
        raise ValueError(f"{path} must hold {n} integer labels, got {kind} of shape {shape}")
    values = np.memmap(path, dtype=kind, mode="r", offset=offset, shape=shape)
    return torch.from_numpy(np.asarray(values).astype(np.int64))


def map_mnist(
    root: str | os.PathLike,
    binarize: bool = False,
    dtype: torch.dtype = torch.float32,
    name: str = "mnist",
    seed: int = 0,
) -> MappedMNIST:
    """The four uncompressed MNIST-format IDX files of ``root``, memory-mapped (for files
    larger than memory): opening reads the headers and the labels only.

    Items are ``x = 1[p/255 > 0.5]`` (``binarize=True``: the values of
    ``load_mnist(root, binarize=True)``) or ``(p + u)/256`` with ``u ~ U[0, 1)^D`` drawn per
    image from a generator seeded by ``(seed, i)`` for the training images and
    ``(seed + 1, i)`` for the test images (the same values at every access; not the
    in-memory loader's single stream, so continuous values differ from ``load_mnist``'s).

    Args:
        root: the directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
            ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (not ``.gz``).
        binarize: binarize instead of dequantizing.
        dtype: floating dtype of the items.
        name: the dataset's name.
        seed: seed of the dequantization noise.

    Returns:
        a :class:`MappedMNIST`.

    >>> import tempfile, numpy as np
    >>> from pyro_genmodels.data import write_idx
    >>> root = tempfile.mkdtemp()
    >>> for key, stem in MNIST_FILES.items():
    ...     shape = (3, 2, 2) if key in ("train", "test") else (3,)
    ...     write_idx(f"{root}/{stem}", np.full(shape, 200, dtype=np.uint8))
    >>> mapped = map_mnist(root, binarize=True)
    >>> len(mapped.train), mapped.train[0].tolist(), mapped.image_shape
    (3, [1.0, 1.0, 1.0, 1.0], (1, 2, 2))
    """
    root = as_path(root, "root")
    if not root.is_dir():
        raise NotADirectoryError(f"root must be a directory holding the MNIST files, got {root}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")
    seed = check_int("seed", seed, minimum=0)
    splits = {}
    for key in ("train", "test"):
        images = IdxImages(
            _raw(root, MNIST_FILES[key]),
            binarize=binarize,
            dtype=dtype,
            seed=seed + (key == "test"),
        )
        labels = _labels(_raw(root, MNIST_FILES[f"{key}_labels"]), len(images))
        splits[key] = (images, labels)
    train, test = splits["train"][0], splits["test"][0]
    if test.image_shape != train.image_shape:
        raise ValueError(
            f"test images must have the train images' size {train.image_shape[1:]}, got "
            f"{test.image_shape[1:]}"
        )
    return MappedMNIST(
        name,
        train,
        test,
        splits["train"][1],
        splits["test"][1],
        train.image_shape,
        train.binarize,
    )
