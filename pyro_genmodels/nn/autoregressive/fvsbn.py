"""FVSBN: the fully visible sigmoid belief network (logistic regression on preceding dims)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pyro_genmodels.nn.autoregressive.base import (
    Conditioner,
    check_context_dim,
    check_input_levels,
    check_ordering,
    check_positive_int,
)


class FVSBN(Conditioner):
    """``θ_d = b_d + Σ_{j <_π d} W_dj x_j (+ U_d c)``: a linear model of the preceding dimensions.

    With a Bernoulli likelihood this is the fully visible sigmoid belief network
    (Frey 1998; Neal 1992, "Connectionist learning of belief networks"); with
    ``num_params > 1`` each dimension gets a linear map to all its parameters.

    Args:
        input_dim: number of dimensions ``D`` (event shape ``(D,)``).
        num_params: parameters per dimension ``P`` (1 Bernoulli, K categorical, ...).
        ordering: a permutation of ``range(D)`` (generation order), identity by default.
        context_dim: size of an optional context vector ``c``.
        input_levels: ``K`` for integer inputs in ``[0, K)`` (rescaled to [-1, 1]).

    Shapes: ``x`` ``(*batch, D)``, ``context`` ``(*batch, context_dim)`` →
    ``(*batch, D, P)``. Sampling caches the pre-activations: O(D·P) per dimension.

    >>> import torch
    >>> net = FVSBN(5)
    >>> net(torch.zeros(3, 5)).shape
    torch.Size([3, 5, 1])
    """

    def __init__(
        self,
        input_dim: int,
        num_params: int = 1,
        ordering: Sequence[int] | torch.Tensor | None = None,
        context_dim: int = 0,
        input_levels: int | None = None,
    ) -> None:
        super().__init__()
        d = check_positive_int("input_dim", input_dim)
        self.num_params = check_positive_int("num_params", num_params)
        self.context_dim = context_dim = check_context_dim(context_dim)
        self.input_levels = input_levels = check_input_levels(input_levels)
        self.event_shape = torch.Size([d])
        order = check_ordering(ordering, d)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(d)
        mask = (rank[None, :] < rank[:, None]).float()  # mask[d, j] = 1 iff j precedes d
        self.register_buffer("ordering", order)
        self.register_buffer("mask", mask.repeat_interleave(self.num_params, 0))
        self.linear = nn.Linear(d, d * self.num_params)
        nn.init.zeros_(self.linear.weight)
        self.context_net = nn.Linear(context_dim, d * self.num_params) if context_dim else None

    def _weight(self) -> torch.Tensor:
        return self.linear.weight * self.mask

    def _bias(self, context: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        bias = self.linear.bias.expand(like.shape[0], -1)
        return bias if self.context_net is None else bias + self.context_net(context)

    def _forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        out = x @ self._weight().T + self._bias(context, x)
        return out.reshape(x.shape[0], -1, self.num_params)

    def init_state(self, x: torch.Tensor, context: torch.Tensor | None) -> Any:
        return {"pre": self._bias(context, x).clone(), "weight": self._weight()}

    def step(
        self, state: Any, x: torch.Tensor, i: int, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, Any]:
        p = self.num_params
        if i > 0:
            prev = int(self.ordering[i - 1])
            value = self.encode(x[:, prev])
            state["pre"] = state["pre"] + value[:, None] * state["weight"][:, prev]
        d = int(self.ordering[i])
        return state["pre"][:, d * p : (d + 1) * p].reshape(-1, 1, p), state
