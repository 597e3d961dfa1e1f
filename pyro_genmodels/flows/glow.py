"""Glow: steps of ActNorm, an invertible 1x1 convolution (Pyro's
``GeneralizedChannelPermute``) and an affine coupling, in a multiscale
architecture for images (squeeze, steps, split off half the channels).

References:
    Glow: Generative Flow with Invertible 1x1 Convolutions. D. P. Kingma,
    P. Dhariwal, 2018.
    Density estimation using Real NVP. L. Dinh, J. Sohl-Dickstein, S. Bengio, 2017.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from pyro.distributions import transforms as T
from pyro.distributions.torch_transform import ComposeTransformModule
from torch import nn
from torch.distributions import Transform
from torch.distributions.transforms import ReshapeTransform

from pyro_genmodels.flows._checks import check_hidden, check_int
from pyro_genmodels.flows.actnorm import ActNorm
from pyro_genmodels.flows.builders import Flow, _args, _compose, _dense, default_hidden
from pyro_genmodels.flows.multiscale import MultiscaleSplit, Squeeze


class ConvCoupling(nn.Module):
    """Hypernetwork of an image affine coupling: flat ``(*, c1 H W)`` to the shift and
    log-scale ``(*, c2 H W)`` each, through conv3x3-ReLU-conv1x1-ReLU-conv3x3 (the last
    initialized to zero, so each coupling starts as the identity)."""

    def __init__(self, in_shape: tuple[int, int, int], out_channels: int, hidden: int) -> None:
        super().__init__()
        self.in_shape = in_shape
        self.out_channels = out_channels
        self.net = nn.Sequential(
            nn.Conv2d(in_shape[0], hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, 2 * out_channels, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[:-1]
        h = self.net(x.reshape(-1, *self.in_shape))
        shift, log_scale = h.chunk(2, dim=1)
        return shift.reshape(*batch, -1), log_scale.reshape(*batch, -1)


def _flat_step(input_dim: int, context_dim, hidden: list[int]) -> list[Transform]:
    """One flat Glow step in the base-to-data order (coupling, 1x1 conv, ActNorm)."""
    d = input_dim // 2
    net = _dense(d, context_dim, hidden, [input_dim - d, input_dim - d])
    cls = T.AffineCoupling if context_dim is None else T.ConditionalAffineCoupling
    to_img = ReshapeTransform((input_dim,), (input_dim, 1, 1))
    mix = ComposeTransformModule([to_img, T.GeneralizedChannelPermute(input_dim), to_img.inv])
    return [cls(d, net), mix, ActNorm(input_dim)]


def _image_step(shape: tuple[int, int, int], hidden: int) -> list[Transform]:
    c = shape[0]
    net = ConvCoupling((c // 2, shape[1], shape[2]), c - c // 2, hidden)
    coupling = T.AffineCoupling(c // 2, net, dim=-3)
    return [coupling, T.GeneralizedChannelPermute(c), ActNorm(c, event_dim=3)]


def _level(shape: tuple[int, int, int], steps: int, hidden: int, levels: int) -> Transform:
    """Maps ``shape`` to ``shape`` (base to data): squeeze, [split off half and recurse],
    the steps in reverse, unsqueeze."""
    squeeze = Squeeze(shape)
    c2, h2, w2 = squeeze.out_shape
    parts: list[Transform] = [squeeze]
    if levels > 1:
        inner = _level((c2 // 2, h2, w2), steps, hidden, levels - 1)
        parts.append(MultiscaleSplit(inner, c2 // 2, dim=-3))
    for _ in range(steps):
        parts += _image_step(squeeze.out_shape, hidden)
    parts.append(squeeze.inv)
    return ComposeTransformModule(parts, cache_size=1)


def _check_image(image_shape: object, input_dim: int, levels: int) -> tuple[int, int, int]:
    shape = tuple(image_shape)  # type: ignore[arg-type]
    if len(shape) != 3 or math.prod(shape) != input_dim:
        raise ValueError(
            f"image_shape must be (C, H, W) with C*H*W == input_dim == {input_dim}, "
            f"got {image_shape!r}"
        )
    if shape[1] % 2**levels or shape[2] % 2**levels:
        raise ValueError(
            f"image_shape's H and W must be divisible by 2**levels = {2**levels}, got {shape}"
        )
    return shape  # type: ignore[return-value]


def glow(
    input_dim: int,
    num_layers: int = 4,
    hidden_dims: Sequence[int] | None = None,
    context_dim: int | None = None,
    image_shape: Sequence[int] | None = None,
    levels: int = 2,
) -> Flow:
    """Glow: ``num_layers`` steps ``ActNorm -> 1x1 conv -> affine coupling`` (data
    direction) per level.

    With ``image_shape=(C, H, W)`` (``C H W = D``) the flow is multiscale: each of
    ``levels`` levels squeezes, runs its steps with convolutional couplings
    (``hidden_dims[0]`` channels) and, but for the last, factors out half the
    channels. Without it the flow acts on vectors, the 1x1 convolution being an
    LU-parameterized ``D x D`` linear map; a context is supported there only.
    Shapes ``(*, D) -> (*, D)``.

    >>> glow(64, num_layers=1, hidden_dims=[8], image_shape=(1, 8, 8)).inv(torch.rand(2, 64)).shape
    torch.Size([2, 64])

    References:
        Glow: Generative Flow with Invertible 1x1 Convolutions. D. P. Kingma,
        P. Dhariwal, 2018.
    """
    _args(input_dim, num_layers, context_dim, 2)
    hidden = check_hidden(hidden_dims, default_hidden(input_dim))
    if image_shape is None:
        parts = [p for _ in range(num_layers) for p in _flat_step(input_dim, context_dim, hidden)]
        return _compose(parts, context_dim)
    if context_dim is not None:
        raise ValueError("glow with image_shape does not take a context; use image_shape=None")
    shape = _check_image(image_shape, input_dim, check_int("levels", levels))
    to_img = ReshapeTransform((input_dim,), shape)
    return _compose([to_img, _level(shape, num_layers, hidden[0], levels), to_img.inv], None)
