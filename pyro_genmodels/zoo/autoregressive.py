"""Zoo entries of the autoregressive family: exact test NLL, binarized data.

The models have no latent variable: the guide is empty, ``Trace_ELBO`` is
``-log p(x)`` and :attr:`Setup.score` is the exact test NLL.
"""

from __future__ import annotations

from typing import Any

import pyro
import torch

from pyro_genmodels.data import Dataset
from pyro_genmodels.nn.autoregressive.base import Conditioner
from pyro_genmodels.parallel import map_rows
from pyro_genmodels.zoo import Setup, ZooEntry, register

#: Training budget of the family (exact likelihoods train well at a higher rate).
BUDGET = {"epochs": 40, "lr": 3e-3, "batch_size": 100}

SCORE_CHUNK = 250  # test points per log_prob call (bounds NADE's (N, D, H) activations)


def _empty_guide(x: torch.Tensor) -> None:
    """No latent variables: the ELBO is exactly ``log p(x)``."""
    return None


_empty_guide.static_structure = True  # type: ignore[attr-defined]


def autoregressive_setup(
    net: Conditioner, data: Dataset, event_shape: tuple[int, ...], **dist_kwargs: Any
) -> Setup:
    """A :class:`Setup` for conditioner ``net`` on binarized flat data ``(N, D)``,
    viewed as events of ``event_shape`` (``(D,)``, ``(C, H, W)``)."""
    from pyro_genmodels.distributions import AutoregressiveDistribution

    if not data.binarized:
        raise ValueError(f"autoregressive zoo entries need binarized data, got {data.name!r}")

    def dist() -> AutoregressiveDistribution:
        return AutoregressiveDistribution(net, "bernoulli", **dist_kwargs)

    def model(x: torch.Tensor | None = None, num: int = 1) -> torch.Tensor:
        """``x ~ p(x)`` per row of ``x`` (N, D); with ``x=None``, ``num`` draws."""
        pyro.module("conditioner", net)
        obs = None if x is None else x.reshape((x.shape[0],) + event_shape)
        with pyro.plate("data", num if x is None else x.shape[0]):
            return pyro.sample("x", dist(), obs=obs)

    model.static_structure = True  # type: ignore[attr-defined]  # same sites every call

    def sample(n: int) -> torch.Tensor:
        return dist().sample((n,)).reshape(n, -1)

    def score(num_samples: int) -> dict:
        # under torch.distributed each rank scores its share of the test rows
        nll = -map_rows(
            lambda t: dist().log_prob(t.reshape((-1,) + event_shape)), data.test, SCORE_CHUNK
        )
        return {"test_nll_nats": float(nll.mean()), "estimator": "exact"}

    return Setup(
        net,
        model,
        _empty_guide,
        data.train,
        (data.test,),
        pyro.infer.Trace_ELBO(),
        sample,
        score=score,
    )


def _fvsbn(data: Dataset) -> Setup:
    from pyro_genmodels.nn import FVSBN

    return autoregressive_setup(FVSBN(data.num_dims), data, (data.num_dims,))


def _nade(data: Dataset, *, hidden: int = 100) -> Setup:
    from pyro_genmodels.nn import NADE

    return autoregressive_setup(NADE(data.num_dims, hidden), data, (data.num_dims,))


def _made(data: Dataset, *, hidden: int = 256, num_masks: int = 1, layers: int = 1) -> Setup:
    from pyro_genmodels.nn import MADE

    net = MADE(data.num_dims, [hidden] * layers, num_masks=num_masks)
    return autoregressive_setup(net, data, (data.num_dims,))


def _pixelcnn(data: Dataset, *, channels: int = 32, layers: int = 3, gated: bool = False) -> Setup:
    from pyro_genmodels.nn import PixelCNN

    if data.image_shape is None:
        raise ValueError(f"pixelcnn needs image data with an image_shape, got {data.name!r}")
    shape = tuple(data.image_shape)
    net = PixelCNN(shape, channels=channels, num_layers=layers, kernel_size=5, gated=gated)
    return autoregressive_setup(net, data, shape)


def _lstm(data: Dataset, *, hidden: int = 64) -> Setup:
    from pyro_genmodels.nn import RNN

    net = RNN(hidden_dim=hidden, cell="lstm")
    return autoregressive_setup(net, data, (data.num_dims,), length=data.num_dims)


for _entry in [
    ZooEntry(
        "fvsbn",
        "autoregressive",
        "FVSBN: logistic regression on preceding pixels",
        _fvsbn,
        budget=BUDGET,
    ),
    ZooEntry("nade", "autoregressive", "NADE, 100 weight-tied sigmoid units", _nade, budget=BUDGET),
    ZooEntry("made", "autoregressive", "MADE, one mask, 256 hidden units", _made, budget=BUDGET),
    ZooEntry(
        "made-ensemble",
        "autoregressive",
        "MADE, 8 masks (order-agnostic training, ensemble test NLL)",
        _made,
        {"num_masks": 8},
        budget=BUDGET,
    ),
    ZooEntry(
        "pixelcnn",
        "autoregressive",
        "PixelCNN, 3 residual masked-conv blocks",
        _pixelcnn,
        budget={**BUDGET, "epochs": 20},  # convolutions: the costliest step of the family
    ),
    ZooEntry(
        "lstm",
        "autoregressive",
        "LSTM over pixels in raster order",
        _lstm,
        budget={**BUDGET, "epochs": 20, "batch_size": 64},  # 64 sequential steps per batch
    ),
]:
    register(_entry)
