"""Two-dimensional toy densities, generated as in FFJORD's ``lib/toy_data.py``.

Each generator draws from a local ``numpy.random.RandomState(seed)`` (never the
global state) and returns exactly ``n`` points, shuffled so that any prefix is a
representative subsample.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from pyro_genmodels.data.validation import (
    check_device,
    check_float_dtype,
    check_positive_int,
    check_seed,
)

Generator = Callable[[np.random.RandomState, int], np.ndarray]


def _moons(rng: np.random.RandomState, n: int) -> np.ndarray:
    from sklearn.datasets import make_moons

    x = make_moons(n_samples=n, noise=0.1, random_state=rng)[0]
    return x * 2 + np.array([-1.0, -0.2])


def _eight_gaussians(rng: np.random.RandomState, n: int) -> np.ndarray:
    r = 1 / math.sqrt(2)
    units = [(1, 0), (-1, 0), (0, 1), (0, -1), (r, r), (r, -r), (-r, r), (-r, -r)]
    centers = 4.0 * np.array(units)
    x = rng.randn(n, 2) * 0.5 + centers[rng.randint(8, size=n)]
    return x / 1.414


def _twenty_five_gaussians(rng: np.random.RandomState, n: int) -> np.ndarray:
    grid = np.arange(-2, 3)
    centers = 2.0 * np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(25, 2)
    x = rng.randn(n, 2) * 0.05 + centers[rng.randint(25, size=n)]
    return x / 2.828


def _checkerboard(rng: np.random.RandomState, n: int) -> np.ndarray:
    x1 = rng.rand(n) * 4 - 2
    x2 = rng.rand(n) - rng.randint(0, 2, n) * 2 + np.floor(x1) % 2
    return np.stack([x1, x2], 1) * 2


def _pinwheel(rng: np.random.RandomState, n: int) -> np.ndarray:
    radial_std, tangential_std, num_classes, rate = 0.3, 0.1, 5, 0.25
    rads = np.linspace(0, 2 * np.pi, num_classes, endpoint=False)
    features = rng.randn(n, 2) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    labels = np.arange(n) % num_classes
    angles = rads[labels] + rate * np.exp(features[:, 0])
    rotations = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)])
    rotations = rotations.T.reshape(-1, 2, 2)
    return 2 * np.einsum("ti,tij->tj", features, rotations)


def _rings(rng: np.random.RandomState, n: int) -> np.ndarray:
    sizes = [n // 4] * 3 + [n - 3 * (n // 4)]
    parts = []
    for radius, size in zip((1.0, 0.75, 0.5, 0.25), sizes):
        angles = np.linspace(0, 2 * np.pi, size, endpoint=False)
        parts.append(radius * np.stack([np.cos(angles), np.sin(angles)], 1))
    x = rng.permutation(np.concatenate(parts) * 3.0)
    return x + rng.normal(scale=0.08, size=x.shape)


def _spirals(rng: np.random.RandomState, n: int) -> np.ndarray:
    m = (n + 1) // 2
    t = np.sqrt(rng.rand(m, 1)) * 540 * (2 * np.pi) / 360
    d1x = -np.cos(t) * t + rng.rand(m, 1) * 0.5
    d1y = np.sin(t) * t + rng.rand(m, 1) * 0.5
    d1 = np.hstack([d1x, d1y])
    x = np.vstack([d1, -d1])[:n] / 3
    return x + rng.randn(*x.shape) * 0.1


_GENERATORS: dict[str, Generator] = {
    "two_moons": _moons,
    "moons": _moons,
    "8gaussians": _eight_gaussians,
    "25gaussians": _twenty_five_gaussians,
    "checkerboard": _checkerboard,
    "pinwheel": _pinwheel,
    "rings": _rings,
    "2spirals": _spirals,
    "spirals": _spirals,
}

#: Differential entropies (nats) of the toy densities that have a known value:
#: checkerboard exactly log 32; the Gaussian mixtures by 2-D quadrature (8gaussians)
#: or as log K + log(2πeσ²), exact to 1e-6 for well-separated modes (25gaussians).
TOY2D_ENTROPY: dict[str, float] = {
    "checkerboard": math.log(32.0),
    "8gaussians": 2.83188,
    "25gaussians": math.log(25.0) + 1.0 + math.log(2 * math.pi * (0.05 / 2.828) ** 2),
}


def toy2d(
    name: str,
    n: int,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draws ``n`` points ``x_i ~ p_name`` of a 2-D toy density, as FFJORD does.

    Densities (after FFJORD, Grathwohl et al. 2019, ``lib/toy_data.py``):

    - ``"two_moons"``/``"moons"``: sklearn ``make_moons(noise=0.1)``, then ``2x + (-1, -0.2)``.
    - ``"8gaussians"``: equal-weight mixture of ``N(4c_k/1.414, (0.5/1.414)^2 I)``,
      ``c_k`` the 8 unit vectors at angles ``kπ/4``. Entropy ≈ 2.8319 nats (quadrature;
      ``log 8 + log(2πeσ²) = 2.8382`` is its upper bound).
    - ``"25gaussians"``: equal-weight mixture of ``N(2(i, j)/2.828, (0.05/2.828)^2 I)``,
      ``i, j ∈ {-2..2}`` (Gulrajani et al. 2017). Entropy
      ``log 25 + log(2πeσ²) ≈ -2.0139`` nats.
    - ``"checkerboard"``: uniform on the 8 black cells (2×2 each) of a 4×4 board on
      ``[-4, 4]^2``: support area 32, so density ``1/32`` and entropy ``log 32 ≈ 3.4657``.
    - ``"pinwheel"``: 5 curved arms (radial std 0.3, tangential std 0.1, rate 0.25), ×2.
    - ``"rings"``: 4 concentric circles of radii 3, 2.25, 1.5, 0.75 with equally spaced
      angles (``n//4`` points each, the rest on the smallest) plus ``N(0, 0.08²)`` noise.
    - ``"2spirals"``/``"spirals"``: two interleaved spirals, /3, plus ``N(0, 0.1²)`` noise.

    The known entropies are also in ``TOY2D_ENTROPY``. The pinwheel and spirals are
    adapted to return exactly ``n`` points (FFJORD rounds down to a multiple of 5 or 2).

    Args:
        name: one of the names above.
        n: the number of points.
        seed: seed of the local ``numpy.random.RandomState``.
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        a tensor of shape ``(n, 2)``.

    References:
        Grathwohl, Chen, Bettencourt, Sutskever and Duvenaud, "FFJORD: Free-form
        continuous dynamics for scalable reversible generative models", 2019.
        Gulrajani, Ahmed, Arjovsky, Dumoulin and Courville, "Improved training of
        Wasserstein GANs", 2017.

    >>> x = toy2d("checkerboard", 1000)
    >>> x.shape, bool(x.abs().max() <= 4)
    (torch.Size([1000, 2]), True)
    """
    if not isinstance(name, str) or name.lower() not in _GENERATORS:
        raise ValueError(f"name must be one of {sorted(_GENERATORS)}, got {name!r}")
    n = check_positive_int("n", n)
    dtype, device = check_float_dtype(dtype), check_device(device)
    rng = np.random.RandomState(check_seed(seed))
    x = _GENERATORS[name.lower()](rng, n)
    if name.lower() not in ("rings", "moons", "two_moons"):  # those two are shuffled already
        x = rng.permutation(x)
    return torch.tensor(x, dtype=dtype, device=device)
