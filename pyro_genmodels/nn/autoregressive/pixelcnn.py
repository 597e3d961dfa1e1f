"""PixelCNN: masked convolutions over images in raster order, channels R→G→B."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pyro_genmodels.nn.autoregressive.base import (
    Conditioner,
    check_context_dim,
    check_input_levels,
    check_positive_int,
)


def pixelcnn_mask(
    out_channels: int, in_channels: int, kernel_size: int, num_colors: int, mask_type: str
) -> torch.Tensor:
    """Mask ``(out, in, k, k)``: rows above, pixels to the left, and at the centre the
    colour groups before (type "A") or up to and including (type "B") the output's.

    Channel ``o`` belongs to colour group ``o % num_colors`` (R, G, B, ...).
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    k = kernel_size
    mask = torch.zeros(out_channels, in_channels, k, k)
    mask[:, :, : k // 2] = 1
    mask[:, :, k // 2, : k // 2] = 1
    g_out = torch.arange(out_channels)[:, None] % num_colors
    g_in = torch.arange(in_channels)[None, :] % num_colors
    centre = g_in < g_out if mask_type == "A" else g_in <= g_out
    mask[:, :, k // 2, k // 2] = centre.float()
    return mask


class MaskedConv2d(nn.Conv2d):
    """A 'same'-padded convolution whose kernel is multiplied by :func:`pixelcnn_mask`.

    ``repeat`` stacks the mask that many times along the output channels (for gates).
    Shapes: ``(N, in_channels, H, W)`` → ``(N, out_channels * repeat, H, W)``.

    >>> import torch
    >>> conv = MaskedConv2d(1, 4, 3, num_colors=1, mask_type="A")
    >>> conv.mask[0, 0].tolist()  # rows above and pixels to the left only
    [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        num_colors: int,
        mask_type: str,
        repeat: int = 1,
    ) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels * repeat, kernel_size, padding=kernel_size // 2)
        mask = pixelcnn_mask(out_channels, in_channels, kernel_size, num_colors, mask_type)
        self.register_buffer("mask", mask.repeat(repeat, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class _Block(nn.Module):
    """Residual masked-B block: ``h + conv(relu(h))`` or the gated ``h + tanh(a) σ(g)``."""

    def __init__(self, channels: int, kernel: int, colors: int, gated: bool, context_dim: int):
        super().__init__()
        self.gated = gated
        reps = 2 if gated else 1
        self.conv = MaskedConv2d(channels, channels, kernel, colors, "B", repeat=reps)
        self.context = nn.Linear(context_dim, channels * reps, bias=False) if context_dim else None

    def forward(self, h: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        a = self.conv(h if self.gated else F.relu(h))
        if context is not None:
            a = a + self.context(context)[:, :, None, None]
        if self.gated:
            value, gate = a.chunk(2, dim=1)
            return h + torch.tanh(value) * torch.sigmoid(gate)
        return h + a


class PixelCNN(Conditioner):
    """``θ_{c,i,j} = f(x_{<(i,j)}, x_{<c,(i,j)})``: masked convolutions in raster order.

    A type-A ``k×k`` masked convolution, ``num_layers`` residual type-B 3×3
    blocks (plain ReLU or gated ``tanh ⊙ σ``), and two 1×1 type-B layers. The
    order is raster over pixels and, within a pixel, channels R → G → B. With a
    context (class one-hot or vector) every block gets a learned bias
    ``V c`` (the conditional PixelCNN). This is the original PixelCNN stack, so
    it keeps the known blind spot of stacked masked kernels (still a valid
    autoregressive model).

    Args:
        image_shape: ``(C, H, W)``.
        channels: hidden feature maps (a multiple of ``C`` keeps colour groups balanced).
        num_layers: residual blocks.
        num_params: parameters per sub-pixel (1 Bernoulli, 256 categorical, 3M DMoL).
        kernel_size: size of the first (type A) kernel.
        gated: gated residual blocks.
        context_dim: size of an optional context vector.
        input_levels: ``K`` for integer pixels in ``[0, K)`` (rescaled to [-1, 1]).

    Shapes: ``x`` ``(*batch, C, H, W)``, ``context`` ``(*batch, context_dim)`` →
    ``(*batch, C, H, W, P)``. Sampling runs the network once per sub-pixel for
    a whole batch of images, on the rows above and including the current one.

    Reference: "Pixel Recurrent Neural Networks", van den Oord, Kalchbrenner &
    Kavukcuoglu, ICML 2016; "Conditional Image Generation with PixelCNN
    Decoders", van den Oord et al., NeurIPS 2016.

    >>> import torch
    >>> PixelCNN((1, 4, 4), channels=8, num_layers=1)(torch.zeros(2, 1, 4, 4)).shape
    torch.Size([2, 1, 4, 4, 1])
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: int = 32,
        num_layers: int = 3,
        num_params: int = 1,
        kernel_size: int = 7,
        gated: bool = False,
        context_dim: int = 0,
        input_levels: int | None = None,
    ) -> None:
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
        c, h, w = (check_positive_int("image_shape[i]", int(s)) for s in image_shape)
        check_positive_int("channels", channels)
        if not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f"num_layers must be an int >= 0, got {num_layers!r}")
        self.num_params = p = check_positive_int("num_params", num_params)
        self.context_dim = context_dim = check_context_dim(context_dim)
        self.input_levels = input_levels = check_input_levels(input_levels)
        self.event_shape = torch.Size([c, h, w])
        raster = torch.arange(c * h * w).reshape(c, h, w).permute(1, 2, 0).flatten()
        self.register_buffer("ordering", raster)
        self.first = MaskedConv2d(c, channels, kernel_size, c, "A")
        self.first_context = nn.Linear(context_dim, channels, bias=False) if context_dim else None
        self.blocks = nn.ModuleList(
            _Block(channels, 3, c, gated, context_dim) for _ in range(num_layers)
        )
        self.head = MaskedConv2d(channels, channels, 1, c, "B")
        self.out = MaskedConv2d(channels, c * p, 1, c, "B")

    def _forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        h = self.first(x)
        if context is not None:
            h = h + self.first_context(context)[:, :, None, None]
        for block in self.blocks:
            h = block(h, context)
        out = self.out(F.relu(self.head(F.relu(h))))  # (N, P*C, H', W), channel p*C + c
        n, _, rows, cols = out.shape
        c = self.event_shape[0]
        return out.reshape(n, self.num_params, c, rows, cols).permute(0, 2, 3, 4, 1)

    def step(
        self, state: Any, x: torch.Tensor, i: int, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, Any]:
        c, _, w = self.event_shape
        row, col, colour = i // (w * c), (i // c) % w, i % c
        # Masks never look below the current row, so the rows above suffice.
        params = self._forward(self.encode(x[:, :, : row + 1]), context)
        return params[:, colour, row, col][:, None, :], state
