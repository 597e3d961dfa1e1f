"""User arrays and tensors as a :class:`~pyro_genmodels.data.Dataset`: :func:`from_tensors`.

Rows are flattened (images row-major ``C*H*W``, their shape kept), split into train and
test by a seeded permutation when no test rows are given, labels checked and moved along.
Files on disk are :mod:`pyro_genmodels.data.files`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pyro_genmodels._checks import check_image_shape, check_real
from pyro_genmodels.data.datasets import Dataset
from pyro_genmodels.data.preprocess import binarize as _binarize
from pyro_genmodels.data.validation import (
    check_bool,
    check_device,
    check_finite,
    check_float_dtype,
    check_seed,
)

ArrayLike = torch.Tensor | np.ndarray


def _as_tensor(value: object, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        try:
            return torch.from_numpy(np.ascontiguousarray(value))
        except TypeError as e:
            raise TypeError(f"{name} must hold numbers, got numpy dtype {value.dtype}") from e
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(value).__name__}")


def _flatten_images(x: torch.Tensor, name: str) -> tuple[torch.Tensor, tuple | None]:
    if x.dim() == 2:
        return x, None
    if x.dim() == 3:
        return x.reshape(x.shape[0], -1), (1, *x.shape[1:])
    if x.dim() == 4:
        return x.reshape(x.shape[0], -1), tuple(x.shape[1:])
    raise ValueError(
        f"{name} must have shape (N, D), (N, H, W) or (N, C, H, W), got shape {tuple(x.shape)}"
    )


def _prepare_data(
    value: object, name: str, binarize: bool, dtype: torch.dtype | None, device: Any
) -> tuple[torch.Tensor, tuple | None]:
    x, image_shape = _flatten_images(_as_tensor(value, name), name)
    if x.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one feature, got shape {tuple(x.shape)}")
    check_finite(x, name)
    if dtype is None:
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    x = x.to(device=device, dtype=dtype)
    if binarize:
        num_bad = int(((x < 0) | (x > 1)).sum())
        if num_bad:
            raise ValueError(
                f"{name} must lie in [0, 1] to be binarized at 0.5, but {num_bad} of "
                f"{x.numel()} values are outside"
            )
        x = _binarize(x, 0.5)
    return x, image_shape


def _prepare_labels(
    value: object, name: str, num: int, device: torch.device
) -> torch.Tensor | None:
    if value is None:
        return None
    y = _as_tensor(value, name)
    if y.shape != (num,):
        raise ValueError(f"{name} must have shape ({num},), got shape {tuple(y.shape)}")
    if y.is_complex() or (y.is_floating_point() and not torch.equal(y, torch.round(y))):
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    return y.to(device=device, dtype=torch.long)


def _split(
    x: torch.Tensor, labels: torch.Tensor | None, test_fraction: object, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    fraction = check_real("test_fraction", test_fraction)
    if not 0 < fraction < 1:
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    n = x.shape[0]
    num_test = round(n * fraction)
    if not 1 <= num_test <= n - 1:
        raise ValueError(
            f"test_fraction={test_fraction} of N={n} rows leaves {num_test} test and "
            f"{n - num_test} train rows; both must be at least 1"
        )
    perm = torch.from_numpy(np.random.RandomState(seed).permutation(n)).to(x.device)
    tr, te = perm[: n - num_test], perm[n - num_test :]
    if labels is None:
        return x[tr], x[te], None, None
    return x[tr], x[te], labels[tr], labels[te]


def from_tensors(
    train: ArrayLike,
    test: ArrayLike | None = None,
    train_labels: ArrayLike | None = None,
    test_labels: ArrayLike | None = None,
    image_shape: tuple[int, int, int] | None = None,
    binarize: bool = False,
    test_fraction: float = 0.2,
    seed: int = 0,
    name: str = "custom",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Dataset:
    """Wraps user arrays into a ``Dataset`` with flat rows ``x ∈ R^D``.

    Images ``(N, C, H, W)`` or ``(N, H, W)`` are flattened row-major and their
    ``image_shape`` inferred (``(1, H, W)`` for the latter). When ``test`` is None the
    rows are split by ``numpy.random.RandomState(seed).permutation(N)``: the last
    ``round(N * test_fraction)`` permuted rows are test, the others train. With
    ``binarize=True`` the values must lie in ``[0, 1]`` and become ``1[x > 0.5]``.

    Args:
        train: tensor or numpy array ``(N, D)``, ``(N, H, W)`` or ``(N, C, H, W)``.
        test: same layout as ``train`` with ``M`` rows, or None to split ``train``.
        train_labels: integer labels ``(N,)`` or None.
        test_labels: integer labels ``(M,)`` or None (only with ``test``).
        image_shape: ``(C, H, W)`` with ``C*H*W == D``; inferred from 3-/4-D input.
        binarize: threshold values in ``[0, 1]`` at 0.5.
        test_fraction: the test share when ``test`` is None, in ``(0, 1)``.
        seed: seed of the split's permutation.
        name: the dataset's name.
        dtype: floating dtype of the data; default keeps a floating input's dtype
            (else the default dtype).
        device: device of every tensor; default ``train``'s device.

    >>> import numpy as np
    >>> ds = from_tensors(np.zeros((10, 2, 3, 3)), train_labels=np.arange(10))
    >>> ds.train.shape, ds.test.shape, ds.image_shape
    (torch.Size([8, 18]), torch.Size([2, 18]), (2, 3, 3))
    """
    binarize = check_bool("binarize", binarize)
    seed = check_seed(seed)
    dtype = None if dtype is None else check_float_dtype(dtype)
    device = check_device(device)
    x, inferred = _prepare_data(train, "train", binarize, dtype, device)
    y = _prepare_labels(train_labels, "train_labels", x.shape[0], x.device)
    if test is None:
        if test_labels is not None:
            raise ValueError("test_labels was given without test; pass test or drop test_labels")
        x, x_test, y, y_test = _split(x, y, test_fraction, seed)
    else:
        x_test, inferred_test = _prepare_data(test, "test", binarize, x.dtype, x.device)
        if x_test.shape[-1] != x.shape[-1]:
            raise ValueError(
                f"test must have the same number of features as train, (M, {x.shape[-1]}), "
                f"got shape {tuple(x_test.shape)} after flattening"
            )
        if inferred is not None and inferred_test is not None and inferred != inferred_test:
            raise ValueError(f"test images have shape {inferred_test}, train images {inferred}")
        y_test = _prepare_labels(test_labels, "test_labels", x_test.shape[0], x.device)
    if image_shape is not None:
        c, h, w = check_image_shape(image_shape, size=x.shape[-1])
        image_shape = (c, h, w)
        if inferred is not None and image_shape != inferred:
            raise ValueError(
                f"image_shape {image_shape} disagrees with train's image shape {inferred}"
            )
    return Dataset(name, x, x_test, y, y_test, image_shape or inferred, binarize)
