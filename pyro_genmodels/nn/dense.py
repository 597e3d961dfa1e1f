"""Fully connected networks that parameterize distributions."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyro_genmodels._checks import check_hidden_dims, check_positive_int


class MLP(nn.Sequential):
    """A multilayer perceptron ``y = f_L(... act(W_1 x + b_1) ...)``.

    Args:
        in_dim: size of the input's last dim.
        hidden_dims: sizes of the hidden layers (may be empty).
        out_dim: size of the output's last dim.
        activation: the hidden nonlinearity, a module class.
        output_activation: an optional module class applied to the output.

    Shapes: input ``(*, in_dim)`` → output ``(*, out_dim)``.

    >>> import torch
    >>> net = MLP(8, [16, 16], 2)
    >>> net(torch.zeros(5, 8)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        output_activation: type[nn.Module] | None = None,
    ) -> None:
        self.in_dim = check_positive_int("in_dim", in_dim)
        self.out_dim = check_positive_int("out_dim", out_dim)
        dims = [in_dim, *check_hidden_dims(hidden_dims), out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(activation())
        if output_activation is not None:
            layers.append(output_activation())
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1:] != (self.in_dim,):
            raise ValueError(
                f"MLP expected input of shape (*, {self.in_dim}), got {tuple(x.shape)}"
            )
        return super().forward(x)


class Split(nn.Module):
    """Runs a network and splits its last dim into chunks of the given sizes.

    Shapes: input ``(*, in_dim)`` → tuple of ``(*, sizes[i])``.

    >>> import torch
    >>> loc, scale = Split(MLP(4, [8], 6), [3, 3])(torch.zeros(2, 4))
    >>> loc.shape, scale.shape
    (torch.Size([2, 3]), torch.Size([2, 3]))
    """

    def __init__(self, net: nn.Module, sizes: Sequence[int]) -> None:
        super().__init__()
        self.net = net
        self.sizes = list(sizes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.net(x).split(self.sizes, dim=-1))
