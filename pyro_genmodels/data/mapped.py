"""Image files larger than memory: a map-style Dataset over a memory-mapped IDX file.

:class:`IdxImages` maps an uncompressed IDX image file (MNIST's format) with
``numpy.memmap``: opening it reads only the header, and ``dataset[i]`` reads
image ``i`` from disk (through the page cache) and converts it as
:func:`pyro_genmodels.data.load_mnist` does. Pass it, or a ``DataLoader`` over
it, to :func:`pyro_genmodels.fit`.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pyro_genmodels.data.datasets import pixels_to_values
from pyro_genmodels.data.idx import _CODE_TO_DTYPE, _GZIP_MAGIC
from pyro_genmodels.data.validation import check_bool, check_float_dtype

__all__ = ["IdxImages"]


def _header(path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """(element dtype, shape, data offset) of a raw IDX file, reading only its header."""
    with open(path, "rb") as f:
        head = f.read(4)
        if head[:2] == _GZIP_MAGIC:
            raise ValueError(
                f"{path} is gzip-compressed and cannot be memory-mapped; decompress it "
                "(gunzip) or read it into memory with load_mnist"
            )
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _CODE_TO_DTYPE:
            raise ValueError(f"{path} is not an IDX file: magic number 0x{head.hex()}")
        ndim = head[3]
        shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
    offset = 4 + 4 * ndim
    dtype: np.dtype = _CODE_TO_DTYPE[head[2]]  # type: ignore[assignment]
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
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.seed = seed
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
