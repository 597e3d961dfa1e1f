"""Sample-based scores, for every model that can sample (the only scores a GAN has).

- :func:`mmd`: unbiased squared maximum mean discrepancy with a Gaussian kernel.
- :func:`energy_distance`: ``2E‖X-Y‖ - E‖X-X'‖ - E‖Y-Y'‖`` (U-statistics).
- :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to
  two sets (FID's formula; in a classifier's feature space it is a small "FID").
- :func:`mode_coverage`: on the eight-Gaussian ring and the 25-Gaussian grid of
  :func:`pyro_genmodels.data.toy2d`, the modes covered and the share of
  high-quality samples (within ``3σ`` of a mode centre), as in VEEGAN and PacGAN.
- :class:`SampleClassifier`, :func:`classifier_for`, :func:`class_coverage`,
  :func:`sample_scores`: a fixed classifier trained once per dataset (cached),
  the classes it finds among samples, and all scores of a sample set at once.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from pyro_genmodels._checks import check_int, check_positive_float, check_positive_int, check_real

#: Mode centres and the per-coordinate std of the toy mixtures, as ``toy2d`` draws them.
_R = 1 / math.sqrt(2)
_RING = [(1, 0), (-1, 0), (0, 1), (0, -1), (_R, _R), (_R, -_R), (-_R, _R), (-_R, -_R)]
TOY2D_MODES: dict[str, tuple[list[tuple[float, float]], float]] = {
    "8gaussians": ([(4 * a / 1.414, 4 * b / 1.414) for a, b in _RING], 0.5 / 1.414),
    "25gaussians": (
        [(2 * i / 2.828, 2 * j / 2.828) for i in range(-2, 3) for j in range(-2, 3)],
        0.05 / 2.828,
    ),
}


def _check_samples(name: str, x: object, dim: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a Tensor of shape (N, D), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must have shape (N, D) with N >= 2, got {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(
            f"{name} must have shape (N, {dim}) like the other set, got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    return x


def _off_diagonal_mean(k: torch.Tensor) -> torch.Tensor:
    n = k.shape[0]
    return (k.sum() - k.diagonal().sum()) / (n * (n - 1))


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: float | None = None) -> torch.Tensor:
    """Unbiased ``MMD²(P, Q) = E k(x,x') + E k(y,y') - 2E k(x,y)``, ``k = exp(-‖a-b‖²/2h²)``.

    Args:
        x: samples of P, shape ``(N, D)``.
        y: samples of Q, shape ``(M, D)``.
        bandwidth: the kernel width ``h > 0``; default the median pairwise
            distance of the pooled samples (the median heuristic, over the
            first 1000 points of each set).

    Returns:
        A scalar tensor (can be slightly negative: the estimator is unbiased).

    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    >>> abs(float(mmd(x, y))) < 0.01, float(mmd(x, y + 3.0)) > 0.5
    (True, True)

    Reference: Gretton, Borgwardt, Rasch, Schölkopf, Smola, "A Kernel
    Two-Sample Test", JMLR 2012.
    """
    x = _check_samples("x", x)
    y = _check_samples("y", y, x.shape[1])
    if bandwidth is None:  # the median distance among the first 1000 points of each set
        h = torch.pdist(torch.cat([x[:1000], y[:1000]])).median()
    else:
        h = torch.as_tensor(
            check_positive_float("bandwidth", bandwidth), dtype=x.dtype, device=x.device
        )

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * h**2))

    return _off_diagonal_mean(k(x, x)) + _off_diagonal_mean(k(y, y)) - 2 * k(x, y).mean()


def energy_distance(x: torch.Tensor, y: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Energy distance ``2E‖X-Y‖ - E‖X-X'‖ - E‖Y-Y'‖`` (zero iff P = Q).

    Args:
        x: samples of P, shape ``(N, D)``.
        y: samples of Q, shape ``(M, D)``.
        unbiased: U-statistics for the within-set terms (unbiased; for two identical
            sets of ``N`` points it is ``-2/N`` times their mean pairwise distance);
            ``False``: V-statistics, every pair including a point with itself
            (biased, exactly 0 for identical sets).

    Returns:
        A scalar tensor.

    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(400, 1, generator=g)
    >>> round(float(energy_distance(x, x + 10.0)), 1)  # exact: 2·10 - 2·2/√π = 17.74
    17.8

    Reference: Székely, Rizzo, "Energy statistics: A class of statistics based
    on distances", J. Stat. Planning and Inference, 2013.
    """
    x = _check_samples("x", x)
    y = _check_samples("y", y, x.shape[1])
    if not isinstance(unbiased, bool):
        raise TypeError(f"unbiased must be a bool, got {type(unbiased).__name__}")
    within = _off_diagonal_mean if unbiased else torch.mean
    xy = torch.cdist(x, y).mean()
    return 2 * xy - within(torch.cdist(x, x)) - within(torch.cdist(y, y))


def mode_coverage(
    samples: torch.Tensor, name: str, num_std: float = 3.0, min_fraction: float = 0.2
) -> dict[str, float]:
    """Modes covered and high-quality fraction of 2-D samples of a toy Gaussian mixture.

    A sample is *high quality* when it lies within ``num_std`` standard
    deviations (Euclidean) of its nearest mode centre; a mode is *covered* when
    it receives at least ``min_fraction`` of the high-quality samples it would
    get under the true mixture, ``min_fraction · N / K`` (PacGAN's rule of 20
    of 2500 samples on the 25-mode grid is ``min_fraction = 0.2``).

    Args:
        samples: generated points, shape ``(N, 2)``.
        name: ``"8gaussians"`` or ``"25gaussians"`` (the densities of
            :func:`pyro_genmodels.data.toy2d`).
        num_std: radius of a mode, in standard deviations.
        min_fraction: share of a mode's expected count it needs to be covered.

    Returns:
        ``{"modes": covered modes, "num_modes": K, "high_quality": fraction of
        high-quality samples, "expected_high_quality": that fraction under the
        true mixture, 1 - exp(-num_std²/2)}``.

    >>> from pyro_genmodels.data import toy2d
    >>> scores = mode_coverage(toy2d("25gaussians", 2500), "25gaussians")
    >>> scores["modes"], scores["high_quality"] > 0.97
    (25, True)

    References:
        Srivastava, Valkov, Russell, Gutmann, Sutton, "VEEGAN: Reducing Mode
        Collapse in GANs using Implicit Variational Learning", NeurIPS 2017.
        Lin, Khetan, Fanti, Oh, "PacGAN: The power of two samples in
        generative adversarial networks", NeurIPS 2018.
    """
    if not isinstance(name, str) or name not in TOY2D_MODES:
        raise ValueError(f"name must be one of {sorted(TOY2D_MODES)}, got {name!r}")
    x = _check_samples("samples", samples, 2)
    num_std = check_positive_float("num_std", num_std)
    min_fraction = check_positive_float("min_fraction", min_fraction)
    centers, std = TOY2D_MODES[name]
    c = torch.tensor(centers, dtype=x.dtype, device=x.device)
    dist, nearest = torch.cdist(x, c).min(dim=1)
    good = dist <= num_std * std
    counts = torch.bincount(nearest[good], minlength=len(centers))
    covered = int((counts >= min_fraction * x.shape[0] / len(centers)).sum())
    return {
        "modes": covered,
        "num_modes": len(centers),
        "high_quality": float(good.float().mean()),
        "expected_high_quality": 1 - math.exp(-(num_std**2) / 2),
    }


def _fit_gaussian(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.double()
    mu = x.mean(0)
    c = x - mu
    return mu, c.T @ c / (x.shape[0] - 1)


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def gaussian_frechet_distance(
    mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor
) -> torch.Tensor:
    """``‖μ₁-μ₂‖² + tr(Σ₁ + Σ₂ - 2(Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2})``: the squared 2-Wasserstein
    distance between ``N(μ₁, Σ₁)`` and ``N(μ₂, Σ₂)``.

    Args:
        mu1, mu2: means, shape ``(D,)``.
        cov1, cov2: positive semi-definite covariances, shape ``(D, D)``.

    Returns:
        A float64 scalar tensor.

    >>> eye = torch.eye(2, dtype=torch.float64)
    >>> float(gaussian_frechet_distance(torch.zeros(2), eye, torch.ones(2), 4 * eye))
    4.0

    Reference: Dowson, Landau, "The Fréchet distance between multivariate
    normal distributions", J. Multivariate Analysis, 1982.
    """
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    s1 = _sqrtm_psd(cov1)
    cross = torch.linalg.eigvalsh(s1 @ cov2 @ s1).clamp(min=0).sqrt().sum()
    return (mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * cross


def frechet_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fréchet distance between Gaussians fitted to two sets (the formula of FID).

    ``‖μx-μy‖² + tr(Σx + Σy - 2(Σx^{1/2} Σy Σx^{1/2})^{1/2})`` with sample means and
    covariances; zero for identical sets. Computed in float64.

    Args:
        x: one set, shape ``(N, D)`` (e.g. classifier features of samples).
        y: the other set, shape ``(M, D)``.

    Returns:
        A scalar tensor of ``x``'s dtype.

    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(20000, 2, generator=g, dtype=torch.float64)
    >>> round(float(frechet_distance(x, 2 * x + 1)), 1)  # 2·1² + 2·(2-1)² = 4
    4.0

    Reference: Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter, "GANs
    Trained by a Two Time-Scale Update Rule Converge to a Local Nash
    Equilibrium", NeurIPS 2017.
    """
    x = _check_samples("x", x)
    y = _check_samples("y", y, x.shape[1])
    return gaussian_frechet_distance(*_fit_gaussian(x), *_fit_gaussian(y)).to(x.dtype)


class SampleClassifier(nn.Module):
    """A fixed MLP classifier ``x ↦ softmax(W₃ f(x))``, ``f(x) = relu(W₂ relu(W₁ x))``, whose
    features ``f`` (``feature_dim`` wide) give a Fréchet distance and whose labels give
    :func:`class_coverage`.

    Build it with :meth:`fit` (or the cached :func:`classifier_for`). Attributes after
    fitting: ``class_probs`` (training class frequencies, shape ``(K,)``) and
    ``test_accuracy`` (on the dataset's test split, ``nan`` if none was given).

    Args:
        in_dim: data dimension ``D``; inputs have shape ``(N, D)``.
        num_classes: number of classes ``K``.
        hidden: width of the first hidden layer.
        feature_dim: width of the feature layer.

    >>> clf = SampleClassifier(4, 3, hidden=8, feature_dim=5)
    >>> clf.features(torch.zeros(2, 4)).shape, clf(torch.zeros(2, 4)).shape
    (torch.Size([2, 5]), torch.Size([2, 3]))
    """

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 128, feature_dim: int = 32):
        super().__init__()
        for name, v in (("in_dim", in_dim), ("hidden", hidden), ("feature_dim", feature_dim)):
            check_positive_int(name, v)
        check_int("num_classes", num_classes, minimum=2)
        self.body = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, feature_dim), nn.ReLU()
        )
        self.head = nn.Linear(feature_dim, num_classes)
        self.class_probs: torch.Tensor
        self.register_buffer("class_probs", torch.full((num_classes,), 1.0 / num_classes))
        self.test_accuracy = math.nan

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations ``f(x)``, shape ``(N, feature_dim)``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape ``(N, K)``."""
        return self.head(self.body(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Most probable class per row, shape ``(N,)``."""
        return self(x).argmax(-1)

    @classmethod
    def fit(
        cls,
        x: torch.Tensor,
        y: torch.Tensor,
        test: tuple[torch.Tensor, torch.Tensor] | None = None,
        steps: int = 150,
        seed: int = 0,
    ) -> SampleClassifier:
        """Trains on ``x`` ``(N, D)`` in ``[0, 1]`` and labels ``y`` ``(N,)``, full batch, Adam.

        Each step sees the images and their binarization ``x > 1/2`` (so that grey
        model means, binary draws and dequantized data are all in distribution),
        with weight decay. The global RNG is left untouched (``seed`` seeds the
        initialization). ``test = (x_test, y_test)`` sets :attr:`test_accuracy`.
        """
        x = _check_samples("x", x)
        if not isinstance(y, torch.Tensor) or y.shape != x.shape[:1] or y.is_floating_point():
            raise ValueError(f"y must be integer labels of shape ({x.shape[0]},), got {y!r:.60}")
        k = int(y.max()) + 1
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            clf = cls(x.shape[1], max(k, 2)).to(device=x.device, dtype=x.dtype)
            inputs = torch.cat([x, (x > 0.5).to(x.dtype)])
            labels = torch.cat([y, y])
            opt = torch.optim.Adam(clf.parameters(), lr=1e-2, weight_decay=1e-4)
            for _ in range(steps):
                opt.zero_grad()
                nn.functional.cross_entropy(clf(inputs), labels).backward()
                opt.step()
        clf.eval().requires_grad_(False)
        clf.class_probs = torch.bincount(y, minlength=clf.head.out_features).to(x.dtype) / len(y)
        if test is not None:
            clf.test_accuracy = float((clf.predict(test[0]) == test[1]).to(x.dtype).mean())
        return clf


_CLASSIFIERS: dict[tuple, SampleClassifier] = {}


def classifier_for(data: Any) -> SampleClassifier:
    """The :class:`SampleClassifier` of a labelled dataset, trained once per process and
    dataset (name, variant, device, dtype) and then taken from a cache.

    ``data`` is a :class:`pyro_genmodels.data.Dataset` with ``train_labels``.

    >>> from pyro_genmodels.data import load
    >>> clf = classifier_for(load("digits", binarize=False))
    >>> clf is classifier_for(load("digits", binarize=False)), clf.test_accuracy > 0.9
    (True, True)
    """
    labels = getattr(data, "train_labels", None)
    if labels is None:
        raise ValueError(f"data must be a labelled Dataset (with train_labels), got {data!r:.60}")
    x = data.train
    key = (data.name, data.binarized, x.shape, str(x.device), x.dtype)
    if key not in _CLASSIFIERS:
        test = None if data.test_labels is None else (data.test, data.test_labels)
        _CLASSIFIERS[key] = SampleClassifier.fit(x, labels, test)
    return _CLASSIFIERS[key]


def class_coverage(
    samples: torch.Tensor, classifier: SampleClassifier, min_fraction: float = 0.2
) -> dict[str, Any]:
    """Classes a fixed classifier finds among samples, each with enough of its share.

    Class ``k`` is covered when at least ``min_fraction · N · p_k`` of the ``N``
    samples are labelled ``k``, ``p_k`` the class's training frequency.

    Args:
        samples: generated data, shape ``(N, D)``.
        classifier: a fitted :class:`SampleClassifier`.
        min_fraction: share of the expected count a class needs.

    Returns:
        ``{"classes": covered classes, "num_classes": K, "counts": list of N_k}``.

    >>> from pyro_genmodels.data import load
    >>> data = load("digits", binarize=False)
    >>> class_coverage(data.test, classifier_for(data))["classes"]
    10
    """
    x = _check_samples("samples", samples)
    min_fraction = check_real("min_fraction", min_fraction, minimum=0.0, strict=True, maximum=1.0)
    probs = classifier.class_probs
    counts = torch.bincount(classifier.predict(x), minlength=probs.shape[0])
    covered = counts.to(probs.dtype) >= min_fraction * x.shape[0] * probs
    return {
        "classes": int(covered.sum()),
        "num_classes": int(probs.shape[0]),
        "counts": counts.tolist(),
    }


def sample_scores(samples: torch.Tensor, data: Any, max_points: int = 2000) -> dict[str, float]:
    """Every sample score of ``samples`` ``(N, D)`` against ``data``'s test split.

    Returns ``energy_distance``, ``mmd`` (first ``max_points`` of each set),
    ``class_coverage`` (classes covered, see :func:`class_coverage`) and
    ``frechet_distance`` in the features of :func:`classifier_for` ``(data)``
    (a digits "FID", not the Inception FID) when the data have labels.
    """
    x = _check_samples("samples", samples, data.num_dims).to(data.test.dtype)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("samples must be finite; got non-finite values from the model")
    test = data.test
    scores = {
        "energy_distance": float(energy_distance(test[:max_points], x[:max_points])),
        "mmd": float(mmd(test[:max_points], x[:max_points])),
    }
    if getattr(data, "train_labels", None) is not None:
        clf = classifier_for(data)
        scores["class_coverage"] = float(class_coverage(x, clf)["classes"])
        with torch.no_grad():
            scores["frechet_distance"] = float(
                frechet_distance(clf.features(test), clf.features(x))
            )
    return scores
