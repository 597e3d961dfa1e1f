"""The IDX file format of MNIST (and Fashion-MNIST, EMNIST): reading, writing, loading.

An IDX file is a 4-byte magic number ``0x00 0x00 T K`` (``T`` the element type,
``K`` the number of dims), ``K`` big-endian uint32 sizes, then the elements in
big-endian C order. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

import numpy as np
import torch

from pyro_genmodels.data.datasets import Dataset, pixels_to_values
from pyro_genmodels.data.idx_format import (
    CODE_TO_DTYPE,
    GZIP_MAGIC,
    KIND_TO_CODE,
    MNIST_FILES,
    as_path,
)
from pyro_genmodels.data.validation import check_bool, check_device, check_float_dtype

if TYPE_CHECKING:
    from pyro_genmodels.data.mapped import MappedMNIST

PathLike = str | os.PathLike


def read_idx(path: PathLike) -> np.ndarray:
    """Reads an IDX file (raw or gzip) into a native-byte-order numpy array.

    Element types: uint8 (0x08), int8 (0x09), int16 (0x0B), int32 (0x0C),
    float32 (0x0D), float64 (0x0E). Gzip is detected from the content, not the name.

    Args:
        path: the file.

    Returns:
        an array of the shape stored in the header, e.g. ``(60000, 28, 28)`` uint8.

    Raises:
        ValueError: bad magic number, unknown element type, or a size that does
            not match the header.

    References:
        LeCun, Cortes and Burges, "The MNIST database of handwritten digits", 1998.

    >>> import tempfile, os, numpy as np
    >>> f = os.path.join(tempfile.mkdtemp(), "a-idx2-ubyte.gz")
    >>> write_idx(f, np.arange(6, dtype=np.uint8).reshape(2, 3))
    >>> read_idx(f).tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    path = as_path(path)
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        raw = gzip.decompress(raw)
    if len(raw) < 4:
        raise ValueError(f"{path} is not an IDX file: {len(raw)} bytes, the header needs 4")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path} is not an IDX file: magic number 0x{raw[:4].hex()} must start with "
            f"two zero bytes (0x0000TTKK)"
        )
    code, ndim = raw[2], raw[3]
    if code not in CODE_TO_DTYPE:
        known = ", ".join(f"0x{c:02x}" for c in CODE_TO_DTYPE)
        raise ValueError(f"{path}: unknown IDX element type 0x{code:02x}, expected one of {known}")
    if ndim < 1:
        raise ValueError(f"{path}: IDX header declares 0 dims, expected at least 1")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = CODE_TO_DTYPE[code]
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX header promises shape {shape} ({expected} data bytes), "
            f"but the file holds {len(raw) - header}"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header, count=math.prod(shape))
    return array.reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: PathLike, array: np.ndarray | torch.Tensor) -> None:
    """Writes ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    ``read_idx(path)`` returns an equal array of the same dtype.

    Args:
        path: the file to (over)write.
        array: numpy array or tensor of any shape with 1 to 255 dims, of dtype
            uint8, int8, int16, int32, float32 or float64.

    >>> import tempfile, os, numpy as np
    >>> f = os.path.join(tempfile.mkdtemp(), "x-idx1-ubyte")
    >>> write_idx(f, np.array([1.5, -2.0]))
    >>> read_idx(f).dtype, read_idx(f).tolist()
    (dtype('float64'), [1.5, -2.0])
    """
    path = as_path(path)
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    if not isinstance(array, np.ndarray):
        raise TypeError(
            f"array must be a numpy.ndarray or torch.Tensor, got {type(array).__name__}"
        )
    code = KIND_TO_CODE.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise TypeError(
            f"array must have dtype uint8, int8, int16, int32, float32 or float64 to be "
            f"written as IDX, got {array.dtype}"
        )
    if not 1 <= array.ndim <= 255 or any(s >= 2**32 for s in array.shape):
        raise ValueError(f"array must have 1 to 255 dims each below 2**32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=CODE_TO_DTYPE[code]).tobytes()
    data = header + body
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"an MNIST folder needs {stem} or {stem}.gz in {str(root)!r}; neither exists"
    )


def read_mnist(root: PathLike) -> dict[str, np.ndarray]:
    """The four arrays of an MNIST-format folder (each file raw or ``.gz``), as stored.

    Args:
        root: the directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
            ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``.

    Returns:
        ``{"train": (N, H, W) uint8, "train_labels": (N,) int64, "test": (M, H, W) uint8,
        "test_labels": (M,) int64}``.

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> for key, stem in MNIST_FILES.items():
    ...     shape = (3, 2, 2) if key in ("train", "test") else (3,)
    ...     write_idx(f"{root}/{stem}", np.zeros(shape, dtype=np.uint8))
    >>> {k: v.shape for k, v in read_mnist(root).items()}["test"]
    (3, 2, 2)
    """
    root = as_path(root, "root")
    if not root.is_dir():
        raise NotADirectoryError(f"root must be a directory holding the MNIST files, got {root}")
    train, train_labels = _read_split(root, "train", "train_labels")
    test, test_labels = _read_split(root, "test", "test_labels")
    if test.shape[1:] != train.shape[1:]:
        raise ValueError(
            f"test images must have the train images' size {train.shape[1:]}, got {test.shape[1:]}"
        )
    return {"train": train, "train_labels": train_labels, "test": test, "test_labels": test_labels}


def _read_split(root: Path, images_key: str, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = (
        _find(root, MNIST_FILES[images_key]),
        _find(root, MNIST_FILES[labels_key]),
    )
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{images_path} must hold uint8 images of shape (N, H, W), got {images.dtype} "
            f"of shape {images.shape}"
        )
    if labels.shape != images.shape[:1] or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{labels_path} must hold integer labels of shape ({images.shape[0]},), got "
            f"{labels.dtype} of shape {labels.shape}"
        )
    return images, labels.astype(np.int64)


@overload
def load_mnist(
    root: PathLike,
    binarize: bool = ...,
    dtype: torch.dtype = ...,
    device: torch.device | str | None = ...,
    name: str = ...,
    mmap: Literal[False] = ...,
) -> Dataset: ...


@overload
def load_mnist(
    root: PathLike,
    binarize: bool = ...,
    dtype: torch.dtype = ...,
    device: torch.device | str | None = ...,
    name: str = ...,
    *,
    mmap: Literal[True],
) -> MappedMNIST: ...


def load_mnist(
    root: PathLike,
    binarize: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    name: str = "mnist",
    mmap: bool = False,
) -> Dataset | MappedMNIST:
    """Loads MNIST-format IDX files from a local directory as a flat ``Dataset``.

    Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each raw or ``.gz``)
    from ``root``, e.g. MNIST (60000/10000 images 28×28) or Fashion-MNIST. Binarized:
    ``x = 1[p/255 > 0.5]``; continuous: ``x = (p + u)/256`` with ``u ~ U[0, 1)`` from
    ``torch.Generator().manual_seed(0)`` (train first, then test), as in ``load``.
    Nothing is downloaded.

    Args:
        root: the directory holding the four files.
        binarize: binarize instead of dequantizing.
        dtype: floating dtype of the data (labels are long).
        device: device of every tensor.
        name: the dataset's name.
        mmap: for files larger than memory: memory-map the (uncompressed) files instead
            of reading them, and return a
            :class:`~pyro_genmodels.data.mapped.MappedMNIST` whose ``train`` and ``test``
            are map-style :class:`~pyro_genmodels.data.IdxImages` datasets (see
            :func:`~pyro_genmodels.data.mapped.map_mnist`; items on the CPU, so ``device``
            must be ``None``; binarized items equal the in-memory ones). ``fit`` accepts it
            as ``data`` and trains on ``train``.

    Returns:
        a ``Dataset`` with train ``(N, H*W)``, test ``(M, H*W)``, image shape ``(1, H, W)``
        (``mmap=False``), else a ``MappedMNIST``.

    References:
        LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to
        document recognition", 1998.

    >>> import tempfile, numpy as np
    >>> root = tempfile.mkdtemp()
    >>> for key, stem in MNIST_FILES.items():
    ...     shape = (3, 2, 2) if key in ("train", "test") else (3,)
    ...     write_idx(f"{root}/{stem}.gz", np.full(shape, 200, dtype=np.uint8))
    >>> load_mnist(root, binarize=True).train.tolist()[0]
    [1.0, 1.0, 1.0, 1.0]
    """
    if check_bool("mmap", mmap):
        from pyro_genmodels.data.mapped import map_mnist

        if device is not None:
            raise ValueError(
                "mmap=True serves the items from disk on the CPU (fit moves each batch to "
                f"its device), so device must be None; got device={device!r}"
            )
        return map_mnist(root, binarize=binarize, dtype=dtype, name=name)
    binarize = check_bool("binarize", binarize)
    dtype, device = check_float_dtype(dtype), check_device(device)
    arrays = read_mnist(root)
    train, test = arrays["train"], arrays["test"]
    train_labels, test_labels = arrays["train_labels"], arrays["test_labels"]
    generator = torch.Generator().manual_seed(0)
    values = [
        pixels_to_values(p.reshape(p.shape[0], -1), 256, 127.5, binarize, generator, dtype)
        for p in (train, test)
    ]
    return Dataset(
        name,
        train=values[0].to(device=device, dtype=dtype),
        test=values[1].to(device=device, dtype=dtype),
        train_labels=torch.from_numpy(train_labels).to(device),
        test_labels=torch.from_numpy(test_labels).to(device),
        image_shape=(1, *train.shape[1:]),
        binarized=binarize,
    )
