"""The IDX file format's constants (MNIST's format), shared by the readers and the writer.

``CODE_TO_DTYPE`` maps the header's element-type code to a big-endian numpy dtype
(``KIND_TO_CODE`` back); a file starting with ``GZIP_MAGIC`` is gzip-compressed;
``MNIST_FILES`` names MNIST's four files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["CODE_TO_DTYPE", "GZIP_MAGIC", "KIND_TO_CODE", "MNIST_FILES", "as_path"]

CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
KIND_TO_CODE = {(dt.kind, dt.itemsize): code for code, dt in CODE_TO_DTYPE.items()}
GZIP_MAGIC = b"\x1f\x8b"

MNIST_FILES = {
    "train": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def as_path(path: object, name: str = "path") -> Path:
    """``path`` as a ``Path``; a ``TypeError`` naming ``name`` unless it is a str or PathLike.

    >>> as_path("a/b").name
    'b'
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)
