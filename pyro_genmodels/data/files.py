"""A user's data file as a :class:`~pyro_genmodels.data.Dataset`: :func:`load_file`.

Formats, told apart by the name's suffix (IDX by its content):

- ``.npy``: one numeric array ``(N, D)``, ``(N, H, W)`` or ``(N, C, H, W)``;
- ``.npz`` and ``.pt``/``.pth`` (a tensor, or a dict of tensors): one array, or arrays
  named ``train`` (also ``x``) and optionally ``test``, ``train_labels`` (also ``y``,
  ``labels``) and ``test_labels``;
- ``.csv``: numbers separated by commas, one row per datapoint, an optional header line;
- IDX (MNIST's format, raw or gzip-compressed, any name): one array;
- a folder holding MNIST's four IDX files (train and test images and labels).

Nothing is unpickled (``allow_pickle=False``, ``weights_only=True``). Without a test
array the rows are split by :func:`~pyro_genmodels.data.from_tensors` (seeded
permutation, ``test_fraction``). Values are prepared in one of three ways, for the
models that will read them: ``binarize`` (``1[x > 0.5]`` for values in ``[0, 1]``,
``1[p/255 > 0.5]`` for uint8 pixels), ``dequantize=L`` (integer pixels ``p`` in
``{0, ..., L-1}`` become ``(p + u)/L``, :func:`~pyro_genmodels.data.dequantize`) or
``standardize`` (``(x - μ)/σ`` per feature with the training rows' ``μ``, ``σ``).
Data already binary are marked ``binarized``; integers given with none of the three are
refused (a density over them needs one). The result's
:attr:`~pyro_genmodels.data.Dataset.support` (binary, unit interval, real) decides which
zoo models it trains.

Every problem with the file is a ``ValueError`` (a missing one a ``FileNotFoundError``)
naming the file and what is wrong: an unknown format, text, rows of different lengths,
NaN or infinite values, non-numbers.
"""

from __future__ import annotations

import io
import os
import re
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyro_genmodels._checks import check_finite, check_image_shape, check_int, check_real
from pyro_genmodels.data.datasets import Dataset
from pyro_genmodels.data.idx import read_idx, read_mnist
from pyro_genmodels.data.idx_format import GZIP_MAGIC, as_path
from pyro_genmodels.data.preprocess import binarize as _binarize
from pyro_genmodels.data.preprocess import dequantize as _dequantize
from pyro_genmodels.data.tensors import from_tensors
from pyro_genmodels.data.validation import check_bool, check_float_dtype, check_seed, is_binary

__all__ = ["FORMATS", "load_file", "read_arrays"]

#: The suffixes read by name; any other file is read as IDX when it starts like one.
FORMATS = (".npy", ".npz", ".pt", ".pth", ".csv")
#: Names an ``.npz`` or a dict in a ``.pt`` may give each array.
KEYS = {
    "train": ("train", "x"),
    "test": ("test",),
    "train_labels": ("train_labels", "y", "labels"),
    "test_labels": ("test_labels",),
}
UINT8_THRESHOLD = 127.5  # 1[p/255 > 0.5] for 8-bit pixels, as for MNIST


def read_arrays(path: str | os.PathLike) -> dict[str, Any]:
    """The arrays of a data file (see the module docstring), as stored.

    Returns:
        ``{"train": array}`` plus ``"test"``, ``"train_labels"``, ``"test_labels"`` where
        the file holds them (numpy arrays or tensors).

    >>> import tempfile, numpy as np
    >>> f = tempfile.mkdtemp() + "/x.csv"
    >>> _ = open(f, "w").write("a,b\\n1,2\\n3,4.5\\n")
    >>> read_arrays(f)["train"].tolist()
    [[1.0, 2.0], [3.0, 4.5]]
    """
    path = as_path(path, "path")
    if path.is_dir():
        return read_mnist(path)
    if not path.is_file():
        raise FileNotFoundError(f"no data file at {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return {"train": _numpy(path)}
    if suffix == ".npz":
        return _named(path, _numpy(path))
    if suffix in (".pt", ".pth"):
        return _named(path, _torch(path))
    if suffix == ".csv":
        return {"train": _csv(path)}
    with path.open("rb") as f:
        head = f.read(4)
    if head[:2] == GZIP_MAGIC or (len(head) == 4 and head[:2] == b"\x00\x00"):
        try:
            return {"train": read_idx(path)}
        except (OSError, EOFError, zlib.error) as error:  # a broken gzip stream
            raise ValueError(f"{str(path)!r} is not a readable IDX file ({error})") from error
    raise ValueError(
        f"{str(path)!r} is not a data file this package reads: expected a name ending in "
        f"{', '.join(FORMATS)}, an IDX file (MNIST's format, raw or .gz) or a folder of "
        "MNIST's four IDX files"
    )


_NUMPY_MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK"}  # an .npz is a zip archive


def _numpy(path: Path) -> Any:
    magic = _NUMPY_MAGIC[path.suffix.lower()]
    with path.open("rb") as f:
        if f.read(len(magic)) != magic:
            raise ValueError(
                f"{str(path)!r} is not a readable numpy file (it lacks the {path.suffix} header)"
            )
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as error:
        if "allow_pickle" in str(error) or "Object arrays" in str(error):
            raise ValueError(
                f"{str(path)!r} holds Python objects (rows of different lengths?), not an "
                "array of numbers"
            ) from error
        raise ValueError(f"{str(path)!r} is not a readable numpy file ({error})") from error
    except (OSError, EOFError) as error:
        raise ValueError(f"{str(path)!r} is not a readable numpy file ({error})") from error


def _torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - every reader failure means the same here
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise ValueError(
            f"{str(path)!r} is not a torch file of tensors ({type(error).__name__}: {reason})"
        ) from error


def _named(path: Path, stored: Any) -> dict[str, Any]:
    """The arrays of an ``.npz`` or ``.pt`` under :data:`KEYS`' names."""
    if isinstance(stored, np.ndarray | torch.Tensor):
        return {"train": stored}
    if not isinstance(stored, Mapping) and not hasattr(stored, "files"):
        raise ValueError(
            f"{str(path)!r} must hold a tensor or a dict of tensors, got {type(stored).__name__}"
        )
    names = list(stored.files if hasattr(stored, "files") else stored.keys())
    if len(names) == 1:
        return {"train": stored[names[0]]}
    found: dict[str, Any] = {}
    for key, aliases in KEYS.items():
        given = [a for a in aliases if a in names]
        if len(given) > 1:
            raise ValueError(f"{str(path)!r} holds both {given}: give the {key} array once")
        if given:
            found[key] = stored[given[0]]
    unknown = sorted(set(names) - {a for aliases in KEYS.values() for a in aliases})
    if "train" not in found or unknown:
        raise ValueError(
            f"{str(path)!r} holds the arrays {sorted(map(str, names))}; name the training data "
            "'train' (or 'x') and, optionally, 'test', 'train_labels' (or 'y') and "
            "'test_labels'"
        )
    return found


_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$|^\s*[-+]?(nan|inf)\s*$", re.I)


def _csv(path: Path) -> np.ndarray:
    """A numeric CSV (commas, an optional header line) as a float64 array ``(N, D)``."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as error:
        raise ValueError(f"{str(path)!r} is not a text file of numbers ({error})") from error
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise ValueError(f"{str(path)!r} holds no rows")
    header = int(not all(_NUMBER.match(field) for field in first.split(",")))
    try:
        return np.loadtxt(io.StringIO(text), delimiter=",", skiprows=header, ndmin=2)
    except ValueError as error:
        raise ValueError(_csv_problem(path, lines, header) or f"{path}: {error}") from error


def _csv_problem(path: Path, lines: list[str], header: int) -> str | None:
    """The first line of ``lines`` that is not a row of numbers as long as the first row."""
    width = None
    for number, line in enumerate(lines, start=1):
        if number <= header or not line.strip():
            continue
        fields = line.split(",")
        bad = next((f for f in fields if not _NUMBER.match(f)), None)
        if bad is not None:
            what = "an empty field" if not bad.strip() else f"{bad.strip()[:40]!r}"
            return f"{str(path)!r} line {number}: {what} is not a number"
        if width is None:
            width = len(fields)
        elif len(fields) != width:
            return (
                f"{str(path)!r} line {number}: {len(fields)} values, but the rows above have "
                f"{width} (rows of different lengths)"
            )
    return None


def load_file(
    path: str | os.PathLike,
    binarize: bool = False,
    dequantize: int | None = None,
    standardize: bool = False,
    image_shape: tuple[int, ...] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Dataset:
    """Loads a user's data file (see the module docstring) as a flat ``Dataset``.

    Args:
        path: the file (``.npy``, ``.npz``, ``.pt``, ``.csv``, IDX) or an MNIST folder.
        binarize: ``1[x > 0.5]`` (values in ``[0, 1]``) or ``1[p/255 > 0.5]`` (uint8).
        dequantize: the number of levels ``L`` of integer pixels in ``{0, ..., L-1}``:
            ``(p + u)/L`` with ``u ~ U[0, 1)`` from ``torch.Generator().manual_seed(0)``,
            train rows first.
        standardize: ``(x - μ)/σ`` per feature, ``μ`` and ``σ`` of the training rows.
        image_shape: ``(C, H, W)`` (or ``(H, W)``) of flat rows, when the file holds images
            as rows; 3-D and 4-D arrays carry their own.
        test_fraction: the test share of the rows when the file holds no test array.
        seed: the seed of that split's permutation.
        dtype: the floating dtype of the data.

    Returns:
        a ``Dataset`` named after the file (``path``'s name), ``binarized`` when every value
        is 0 or 1.

    >>> import tempfile, numpy as np
    >>> f = tempfile.mkdtemp() + "/pixels.npy"
    >>> np.save(f, np.arange(40, dtype=np.uint8).reshape(10, 2, 2))
    >>> ds = load_file(f, dequantize=40)
    >>> ds.train.shape, ds.test.shape, ds.image_shape, ds.support
    (torch.Size([8, 4]), torch.Size([2, 4]), (1, 2, 2), 'unit_interval')
    """
    path = as_path(path, "path")
    binarize, standardize = check_bool("binarize", binarize), check_bool("standardize", standardize)
    dequantize = check_int("dequantize", dequantize, minimum=2, allow_none=True)
    chosen = [k for k, v in (("binarize", binarize), ("dequantize", dequantize),
                             ("standardize", standardize)) if v]  # fmt: skip
    if len(chosen) > 1:
        raise ValueError(f"give at most one of binarize, dequantize and standardize, got {chosen}")
    if check_real("test_fraction", test_fraction) <= 0 or test_fraction >= 1:
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    seed, dtype = check_seed(seed), check_float_dtype(dtype)
    if image_shape is not None:
        image_shape = check_image_shape(image_shape, lengths=(2, 3))
        image_shape = image_shape if len(image_shape) == 3 else (1, *image_shape)
    arrays = read_arrays(path)
    where = str(path)
    try:
        values = _prepare(arrays, binarize, dequantize)
        ds = from_tensors(
            values["train"],
            values.get("test"),
            arrays.get("train_labels"),
            arrays.get("test_labels"),
            image_shape=image_shape,  # type: ignore[arg-type]
            binarize=values["binary"],
            test_fraction=test_fraction,
            seed=seed,
            name=path.name,
            dtype=dtype,
        )
        return ds.standardize() if standardize else ds
    except ValueError as error:  # the arguments are checked: the file's content is wrong
        raise ValueError(f"{where!r}: {error}") from error


def _prepare(arrays: dict[str, Any], binarize: bool, levels: int | None) -> dict:
    """The data arrays as float64 values, prepared; ``"binary"`` whether all are 0 or 1."""
    raw = {k: _numeric(arrays[k], k) for k in ("train", "test") if k in arrays}
    generator = torch.Generator().manual_seed(0)
    out: dict[str, Any] = {}
    for key, x in raw.items():
        if x.is_floating_point():
            check_finite(x, key)
        if levels is not None:
            try:
                out[key] = _dequantize(x, levels, generator, torch.float64)
            except ValueError as error:
                raise ValueError(f"dequantize={levels}: {error}".replace("x_int", key)) from None
        elif binarize:
            out[key] = _binarize(x.double(), _threshold(x, key))
        elif not x.is_floating_point() and not is_binary(x):
            raise ValueError(
                f"{key} holds integers ({x.dtype}, values in [{x.min().item()}, "
                f"{x.max().item()}]): dequantize them (dequantize=LEVELS, --dequantize) for "
                "continuous models or binarize them (--binarize) for binary ones"
            )
        else:
            out[key] = x.double()
    out["binary"] = all(is_binary(x) for x in out.values())
    return out


def _numeric(a: Any, key: str) -> torch.Tensor:
    if isinstance(a, np.ndarray):
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{key} must hold numbers, got numpy dtype {a.dtype}")
        a = torch.from_numpy(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("=")))
    if not isinstance(a, torch.Tensor):
        raise ValueError(f"{key} must be an array of numbers, got {type(a).__name__}")
    if a.is_complex():
        raise ValueError(f"{key} must hold real numbers, got dtype {a.dtype}")
    return a.to(torch.uint8) if a.dtype == torch.bool else a


def _threshold(x: torch.Tensor, key: str) -> float:
    if x.dtype == torch.uint8:
        return UINT8_THRESHOLD
    if bool(((x >= 0) & (x <= 1)).all()):
        return 0.5
    raise ValueError(
        f"binarize needs {key} in [0, 1] or uint8 pixels (0-255), got {x.dtype} values in "
        f"[{x.min().item():.4g}, {x.max().item():.4g}]"
    )
