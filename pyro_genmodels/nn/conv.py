"""Convolutional encoder and decoder blocks for image data.

Both keep the flat ``(*, C*H*W)`` interface of the dense networks, so a model
can swap an :class:`~pyro_genmodels.nn.MLP` for a conv net without touching
its shapes. Leading batch dims (e.g. vectorized particles) are flattened and
restored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(image_shape)
    if len(shape) != 3 or any(not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"image_shape must be (C, H, W) of positive ints, got {image_shape!r}")
    if shape[1] % 4 or shape[2] % 4:
        raise ValueError(
            f"image_shape (C, H, W) needs H and W divisible by 4 (two stride-2 layers), got {shape}"
        )
    return shape


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions and a linear head: ``x -> h``.

    Args:
        image_shape: ``(C, H, W)``; H and W divisible by 4.
        out_dim: size of the output.
        channels: channels of the two conv layers.

    Shapes: input ``(*, C*H*W)`` → output ``(*, out_dim)``.

    >>> import torch
    >>> ConvEncoder((1, 8, 8), 16)(torch.zeros(3, 64)).shape
    torch.Size([3, 16])
    """

    def __init__(
        self, image_shape: Sequence[int], out_dim: int, channels: Sequence[int] = (32, 64)
    ) -> None:
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        c, h, w = self.image_shape
        c1, c2 = channels
        self.convs = nn.Sequential(
            nn.Conv2d(c, c1, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.head = nn.Linear(c2 * (h // 4) * (w // 4), out_dim)
        self.in_dim = c * h * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1:] != (self.in_dim,):
            raise ValueError(
                f"ConvEncoder expected input of shape (*, {self.in_dim}) for images "
                f"{self.image_shape}, got {tuple(x.shape)}"
            )
        batch = x.shape[:-1]
        h = self.convs(x.reshape(-1, *self.image_shape))
        return self.head(h).reshape(*batch, -1)


class ConvDecoder(nn.Module):
    """A linear layer and two stride-2 transposed convolutions: ``z -> x logits``.

    Args:
        in_dim: size of the input code.
        image_shape: ``(C, H, W)`` of the output; H and W divisible by 4.
        channels: channels of the two transposed-conv layers' inputs.
        out_channels_factor: output channels per image channel (e.g. 2 for a
            location and a scale per pixel).

    Shapes: input ``(*, in_dim)`` → output ``(*, factor*C*H*W)``.

    >>> import torch
    >>> ConvDecoder(16, (1, 8, 8))(torch.zeros(2, 5, 16)).shape
    torch.Size([2, 5, 64])
    """

    def __init__(
        self,
        in_dim: int,
        image_shape: Sequence[int],
        channels: Sequence[int] = (64, 32),
        out_channels_factor: int = 1,
    ) -> None:
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        c, h, w = self.image_shape
        c1, c2 = channels
        self.in_dim = in_dim
        self.hidden_shape = (c1, h // 4, w // 4)
        self.head = nn.Sequential(nn.Linear(in_dim, c1 * (h // 4) * (w // 4)), nn.ReLU())
        self.deconvs = nn.Sequential(
            nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(c2, c * out_channels_factor, 4, stride=2, padding=1),
            nn.Flatten(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[-1:] != (self.in_dim,):
            raise ValueError(
                f"ConvDecoder expected input of shape (*, {self.in_dim}), got {tuple(z.shape)}"
            )
        batch = z.shape[:-1]
        h = self.head(z.reshape(-1, self.in_dim)).reshape(-1, *self.hidden_shape)
        return self.deconvs(h).reshape(*batch, -1)
