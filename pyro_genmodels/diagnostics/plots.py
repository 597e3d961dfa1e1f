"""Seaborn/matplotlib plots for generative models: curves, image grids, latents, 2-D densities.

Every function builds and returns a fresh :class:`matplotlib.figure.Figure`
(created directly, not through ``pyplot``: no global figure state, no window,
never ``plt.show()``); save it with ``fig.savefig(path)`` or display it in a
notebook. Images are FLAT tensors ``(N, C*H*W)`` with an ``image_shape`` of
``(C, H, W)`` (``C`` in ``{1, 3}``) or ``(H, W)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure

from pyro_genmodels._checks import check_image_shape, check_int

_NOT_METRICS = ("epoch", "step", "time")


def _check_tensor(name: str, value: object, shape: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape {shape}, got {type(value).__name__}"
        )
    return value


def _check_image_shape(image_shape: Sequence[int], dim: int, name: str) -> tuple[int, ...]:
    shape = check_image_shape(image_shape, size=dim, lengths=(2, 3))
    if len(shape) == 3 and shape[0] not in (1, 3):
        raise ValueError(
            f"image_shape must be (C, H, W) with C in {{1, 3}} or (H, W), got {image_shape!r}"
        )
    return shape


def _images(name: str, images: object, image_shape: Sequence[int]) -> np.ndarray:
    """``(N, D)`` tensor → ``(N, H, W)`` or ``(N, H, W, 3)`` float array."""
    images = _check_tensor(name, images, "(N, C*H*W)")
    if images.dim() != 2 or images.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, C*H*W), got shape {tuple(images.shape)}")
    shape = _check_image_shape(image_shape, images.shape[1], name)
    array = images.detach().cpu().double().numpy().reshape(-1, *shape)
    if len(shape) == 3:
        array = array[:, 0] if shape[0] == 1 else array.transpose(0, 2, 3, 1)
    return array


def _grid(images: np.ndarray, nrow: int, pad: int = 1) -> np.ndarray:
    """Tiles ``(N, H, W[, 3])`` images into rows of ``nrow``, separated by ``pad`` pixels of NaN."""
    n, h, w = images.shape[:3]
    ncol = min(nrow, n)
    rows = math.ceil(n / ncol)
    grid = np.full((rows * (h + pad) - pad, ncol * (w + pad) - pad, *images.shape[3:]), np.nan)
    for i, image in enumerate(images):
        r, c = divmod(i, ncol)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = image
    return grid


def _show(ax, grid: np.ndarray, lo: float, hi: float) -> None:
    if grid.ndim == 3:  # RGB: imshow takes [0, 1] floats
        grid = np.clip((grid - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
        ax.imshow(grid, interpolation="nearest")
    else:
        ax.imshow(grid, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_axis_off()


def _range(*arrays: np.ndarray) -> tuple[float, float]:
    """``[0, 1]`` when the pixels lie in it, else their min and max."""
    lo = min(float(np.nanmin(a)) for a in arrays)
    hi = max(float(np.nanmax(a)) for a in arrays)
    return (0.0, 1.0) if 0.0 <= lo and hi <= 1.0 else (lo, hi)


#: Titles of ``fit``'s history columns (``loss_<i>``/``val_loss_<i>`` are named by the loss).
_TITLES = {"loss": "training loss", "val_loss": "validation loss", "lr": "learning rate"}


def curve_title(column: str, loss: object = None) -> str:
    """A readable title for a ``fit`` history column: ``loss_<i>`` (``val_loss_<i>``) is the
    i-th of ``loss.loss_parts`` (the names a loss of several values gives them, e.g. a
    GAN's discriminator and generator losses); ``loss``, ``val_loss`` and ``lr`` are spelled
    out; any other column keeps its name.

    >>> from pyro_genmodels.infer import GANLoss
    >>> loss = GANLoss(torch.nn.Linear(2, 1))
    >>> curve_title("loss_1", loss), curve_title("val_loss_0", loss), curve_title("lr")
    ('generator loss', 'validation discriminator loss', 'learning rate')
    """
    parts = getattr(loss, "loss_parts", None) or ()
    stem, _, index = column.rpartition("_")
    if stem in ("loss", "val_loss") and index.isdigit() and int(index) < len(parts):
        return ("validation " if stem == "val_loss" else "") + parts[int(index)]
    return _TITLES.get(column, column)


def informative_columns(history: pd.DataFrame) -> tuple[list[str], dict[str, float]]:
    """The metrics of a ``fit`` history (numeric columns except ``epoch``, ``step`` and
    ``time``) split into those that change over the epochs, worth a curve, and those that
    do not (``{column: value}``, NaN when the column holds none): a constant learning rate,
    or every metric of a one-epoch history.

    >>> h = pd.DataFrame({"epoch": [1, 2], "loss": [3.0, 2.0], "lr": [1e-3, 1e-3]})
    >>> informative_columns(h)
    (['loss'], {'lr': 0.001})
    """
    numeric = history.select_dtypes("number").columns
    varying, constant = [], {}
    for column in (c for c in numeric if c not in _NOT_METRICS):
        values = history[column].dropna()
        if values.nunique() > 1:
            varying.append(column)
        else:
            constant[column] = float(values.iloc[0]) if len(values) else math.nan
    return varying, constant


def plot_history(
    history: pd.DataFrame, columns: Sequence[str] | None = None, loss: object = None
) -> Figure:
    """Training curves ``metric(epoch)``, one panel per metric, titled by :func:`curve_title`.

    Args:
        history: the ``DataFrame`` returned by ``pgm.fit`` (one row per epoch); the
            x axis is its ``"epoch"`` column when present, else its row number.
        columns: the metrics to plot; by default those that change over the epochs
            (:func:`informative_columns`: a constant learning rate is no curve), or every
            metric when none does (a one-epoch history).
        loss: the loss that was trained, whose ``loss_parts`` (if any) name the columns
            ``loss_0, loss_1, ...`` (e.g. a GAN's discriminator and generator losses).

    >>> import pandas as pd
    >>> fig = plot_history(pd.DataFrame({"epoch": [0, 1, 2], "loss": [3.0, 2.0, 1.5]}))
    >>> [ax.get_title() for ax in fig.axes]
    ['training loss']
    """
    if not isinstance(history, pd.DataFrame):
        raise TypeError(f"history must be a pandas.DataFrame, got {type(history).__name__}")
    if len(history) == 0:
        raise ValueError("history must have at least one row (epoch), got an empty DataFrame")
    if columns is None:
        varying, constant = informative_columns(history)
        columns = varying or list(constant)
    columns = list(columns)
    missing = [c for c in columns if c not in history.columns]
    if missing or not columns:
        raise ValueError(
            f"columns must name numeric columns of history {list(history.columns)}, got "
            f"{columns if not missing else missing}"
        )
    frame = history.reset_index(drop=True)
    x = frame["epoch"] if "epoch" in frame.columns else pd.Series(frame.index, name="epoch")
    fig = Figure(figsize=(4 * len(columns), 3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(columns)))
    for ax, column in zip(axes, columns):
        sns.lineplot(x=x.to_numpy(), y=frame[column].to_numpy(dtype=float), ax=ax, marker="o")
        ax.set(xlabel=x.name, ylabel=column, title=curve_title(column, loss))
    return fig


def plot_samples(
    images: torch.Tensor, image_shape: Sequence[int], nrow: int = 8, title: str | None = None
) -> Figure:
    """A grid of images, ``nrow`` per row, 1-pixel gaps.

    Args:
        images: shape ``(N, C*H*W)``; shown on ``[0, 1]`` when they lie in it,
            otherwise on their own range.
        image_shape: ``(C, H, W)`` with ``C in {1, 3}``, or ``(H, W)``.
        nrow: images per row.
        title: an optional title.

    >>> import torch
    >>> fig = plot_samples(torch.rand(10, 64), (1, 8, 8), nrow=5)
    >>> fig.axes[0].images[0].get_array().shape  # 2 rows, 5 columns of 8x8 images
    (17, 44)
    """
    check_int("nrow", nrow, minimum=1)
    array = _images("images", images, image_shape)
    grid = _grid(array, nrow)
    fig = Figure(figsize=(0.8 * min(nrow, len(array)) + 0.4, 0.8 * math.ceil(len(array) / nrow)))
    ax = fig.subplots()
    _show(ax, grid, *_range(array))
    if title is not None:
        ax.set_title(title)
    return fig


def plot_reconstructions(
    x: torch.Tensor, x_rec: torch.Tensor, image_shape: Sequence[int], n: int = 8
) -> Figure:
    """Two rows: the first ``n`` data images ``x`` above their reconstructions ``x_rec``.

    Args:
        x: the data, shape ``(N, C*H*W)``.
        x_rec: the reconstructions, the same shape as ``x``.
        image_shape: ``(C, H, W)`` with ``C in {1, 3}``, or ``(H, W)``.
        n: the number of pairs shown (at most ``N``).

    >>> import torch
    >>> x = torch.rand(4, 64)
    >>> fig = plot_reconstructions(x, x.round(), (8, 8), n=3)
    >>> [ax.get_title() for ax in fig.axes]
    ['data', 'reconstruction']
    """
    check_int("n", n, minimum=1)
    _check_tensor("x", x, "(N, C*H*W)")
    _check_tensor("x_rec", x_rec, "(N, C*H*W)")
    if x.shape != x_rec.shape:
        raise ValueError(
            f"x_rec must have the shape of x {tuple(x.shape)}, got {tuple(x_rec.shape)}"
        )
    data = _images("x", x[:n], image_shape)
    rec = _images("x_rec", x_rec[:n], image_shape)
    lo, hi = _range(data, rec)
    fig = Figure(figsize=(0.8 * len(data) + 0.4, 2.0), layout="constrained")
    for ax, array, title in zip(fig.subplots(2, 1), (data, rec), ("data", "reconstruction")):
        _show(ax, _grid(array, len(array)), lo, hi)
        ax.set_title(title)
    return fig


def plot_latents(
    z: torch.Tensor, labels: torch.Tensor | Sequence | None = None, projection: str = "pca"
) -> Figure:
    """Scatter plot of latent codes ``z_n`` in 2-D, coloured by ``labels``.

    When ``D > 2`` the codes are projected: ``projection="pca"`` (default) onto
    their first two principal components (scikit-learn ``PCA``),
    ``projection="first"`` onto their first two dims.

    Args:
        z: latent codes, shape ``(N, D)`` with ``D >= 2`` (e.g. guide means).
        labels: optional class labels, length ``N``.
        projection: ``"pca"`` or ``"first"``.

    >>> import torch
    >>> fig = plot_latents(torch.randn(20, 3), labels=torch.arange(20) % 2)
    >>> fig.axes[0].get_xlabel()
    'PC 1'
    """
    z = _check_tensor("z", z, "(N, D) with D >= 2")
    if z.dim() != 2 or z.shape[1] < 2 or z.shape[0] < 1:
        raise ValueError(f"z must have shape (N, D) with D >= 2, got shape {tuple(z.shape)}")
    if projection not in ("pca", "first"):
        raise ValueError(f"projection must be 'pca' or 'first', got {projection!r}")
    points = z.detach().cpu().double().numpy()
    names = ("z_0", "z_1")
    if points.shape[1] > 2 and projection == "pca":
        from sklearn.decomposition import PCA

        points = PCA(n_components=2).fit_transform(points)
        names = ("PC 1", "PC 2")
    hue = None
    if labels is not None:
        hue = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels
        hue = np.asarray(hue)
        if hue.ndim != 1 or len(hue) != len(points):
            raise ValueError(
                f"labels must have shape (N,) = ({len(points)},) like z, got shape {hue.shape}"
            )
    fig = Figure(figsize=(5, 4.5), layout="constrained")
    ax = fig.subplots()
    palette = "tab10" if hue is not None and len(np.unique(hue)) <= 10 else None
    sns.scatterplot(x=points[:, 0], y=points[:, 1], hue=hue, palette=palette, s=12, ax=ax)
    ax.set(xlabel=names[0], ylabel=names[1])
    return fig


def _log_density_grid(
    log_prob_fn: Callable[[torch.Tensor], torch.Tensor] | torch.distributions.Distribution,
    bounds: tuple[tuple[float, float], tuple[float, float]],
    grid: int,
    like: torch.Tensor | None,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
) -> np.ndarray:
    """``log p`` on a ``grid x grid`` lattice, rows indexed by y (ascending)."""
    if isinstance(log_prob_fn, torch.distributions.Distribution):
        log_prob_fn = log_prob_fn.log_prob
    if device is None and like is not None:
        device = like.device
    if dtype is None and like is not None and like.is_floating_point():
        dtype = like.dtype
    (x0, x1), (y0, y1) = bounds
    xs = torch.linspace(x0, x1, grid, device=device, dtype=dtype)
    ys = torch.linspace(y0, y1, grid, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([xx, yy], -1).reshape(-1, 2)
    with torch.no_grad():
        log_p = log_prob_fn(points)
    if not isinstance(log_p, torch.Tensor) or log_p.shape != (grid * grid,):
        got = tuple(log_p.shape) if isinstance(log_p, torch.Tensor) else type(log_p).__name__
        raise ValueError(
            f"log_prob_fn must map points of shape (M, 2) to log densities of shape (M,), got "
            f"{got} for M = {grid * grid}"
        )
    return log_p.detach().cpu().double().numpy().reshape(grid, grid)


def plot_density_2d(
    log_prob_fn: Callable[[torch.Tensor], torch.Tensor] | torch.distributions.Distribution,
    data: torch.Tensor | None = None,
    bounds: tuple[tuple[float, float], tuple[float, float]] = ((-4.0, 4.0), (-4.0, 4.0)),
    grid: int = 200,
    log: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Figure:
    """Heatmap of a 2-D density ``p(x) = exp(log_prob_fn(x))`` with an optional sample scatter.

    Args:
        log_prob_fn: maps points ``(M, 2)`` to ``log p`` of shape ``(M,)``; a torch
            ``Distribution`` is accepted and its ``log_prob`` used.
        data: optional samples to overlay, shape ``(N, 2)``.
        bounds: ``((x_min, x_max), (y_min, y_max))`` of the plotted square.
        grid: points per axis (``grid**2`` evaluations, one batch).
        log: show ``log p`` instead of ``p``.
        device, dtype: of the evaluation points; by default those of ``data``,
            else torch's defaults.

    >>> import torch
    >>> normal = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    >>> fig = plot_density_2d(normal, data=torch.randn(50, 2), grid=50)
    >>> fig.axes[0].images[0].get_array().shape
    (50, 50)
    """
    check_int("grid", grid, minimum=2)
    try:
        (x0, x1), (y0, y1) = ((float(a), float(b)) for a, b in bounds)
        ok = x0 < x1 and y0 < y1 and all(math.isfinite(b) for b in (x0, x1, y0, y1))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            "bounds must be ((x_min, x_max), (y_min, y_max)) of finite reals with min < max, "
            f"got {bounds!r}"
        )
    if data is not None:
        _check_tensor("data", data, "(N, 2)")
        if data.dim() != 2 or data.shape[1] != 2:
            raise ValueError(f"data must have shape (N, 2), got shape {tuple(data.shape)}")
    if not callable(log_prob_fn) and not isinstance(log_prob_fn, torch.distributions.Distribution):
        raise TypeError(
            f"log_prob_fn must be a callable or a Distribution, got {type(log_prob_fn).__name__}"
        )
    values = _log_density_grid(log_prob_fn, ((x0, x1), (y0, y1)), grid, data, device, dtype)
    fig = Figure(figsize=(5, 4.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(
        values if log else np.exp(values),
        origin="lower",
        extent=(x0, x1, y0, y1),
        aspect="auto",
        cmap="viridis",
    )
    fig.colorbar(image, ax=ax, label="log p(x)" if log else "p(x)")
    if data is not None:
        points = data.detach().cpu().double().numpy()
        sns.scatterplot(x=points[:, 0], y=points[:, 1], s=6, color="white", alpha=0.6, ax=ax)
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="x_0", ylabel="x_1")
    return fig
