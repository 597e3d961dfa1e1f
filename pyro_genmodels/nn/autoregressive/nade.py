"""NADE: the neural autoregressive distribution estimator (weight-tied hidden layer)."""

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


class NADE(Conditioner):
    """``h_d = σ(c + W_{:,<d} x_{<d})``, ``θ_d = V_d h_d + b_d``: one hidden layer shared by all d.

    The pre-activation ``a_d = c + W_{:,<d} x_{<d}`` grows by one column per
    dimension, so :meth:`forward` costs O(D·H) (a cumulative sum) and so does
    sampling (one O(H) update per dimension), against O(D²·H) for D passes.

    Args:
        input_dim: number of dimensions ``D`` (event shape ``(D,)``).
        hidden_dim: hidden units ``H``.
        num_params: parameters per dimension ``P``.
        ordering: a permutation of ``range(D)``, identity by default.
        context_dim: size of an optional context vector (added to ``c`` and ``b``).
        input_levels: ``K`` for integer inputs in ``[0, K)`` (rescaled to [-1, 1]).

    Shapes: ``x`` ``(*batch, D)``, ``context`` ``(*batch, context_dim)`` → ``(*batch, D, P)``.

    Reference: "The Neural Autoregressive Distribution Estimator", Larochelle &
    Murray, AISTATS 2011.

    >>> import torch
    >>> NADE(6, hidden_dim=4)(torch.zeros(2, 6)).shape
    torch.Size([2, 6, 1])
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 100,
        num_params: int = 1,
        ordering: Sequence[int] | torch.Tensor | None = None,
        context_dim: int = 0,
        input_levels: int | None = None,
    ) -> None:
        super().__init__()
        d = check_positive_int("input_dim", input_dim)
        h = check_positive_int("hidden_dim", hidden_dim)
        self.num_params = p = check_positive_int("num_params", num_params)
        self.context_dim = context_dim = check_context_dim(context_dim)
        self.input_levels = input_levels = check_input_levels(input_levels)
        self.event_shape = torch.Size([d])
        self.register_buffer("ordering", check_ordering(ordering, d))
        self.W = nn.Parameter(torch.randn(h, d) / d**0.5)
        self.c = nn.Parameter(torch.zeros(h))
        self.V = nn.Parameter(torch.randn(d, p, h) / h**0.5)
        self.b = nn.Parameter(torch.zeros(d, p))
        self.context_hidden = nn.Linear(context_dim, h, bias=False) if context_dim else None
        self.context_out = nn.Linear(context_dim, d * p, bias=False) if context_dim else None

    def _start(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        a = self.c.expand(x.shape[0], -1)
        return a if context is None else a + self.context_hidden(context)

    def _out_bias(self, context: torch.Tensor | None) -> torch.Tensor:
        if context is None:
            return self.b
        return self.b + self.context_out(context).reshape(-1, *self.b.shape)

    def _forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        order = self.ordering
        xw = x[:, order, None] * self.W.T[order]  # (N, D, H) contributions in order
        a = torch.cumsum(xw, dim=1) - xw  # exclusive cumulative sum: dims strictly before
        h = torch.sigmoid(a + self._start(x, context)[:, None, :])
        out = torch.einsum("ndh,dph->ndp", h, self.V[order])
        result = torch.empty_like(out)
        result[:, order] = out
        return result + self._out_bias(context)

    def init_state(self, x: torch.Tensor, context: torch.Tensor | None) -> Any:
        return {"a": self._start(x, context).clone(), "b": self._out_bias(context)}

    def step(
        self, state: Any, x: torch.Tensor, i: int, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, Any]:
        if i > 0:
            prev = int(self.ordering[i - 1])
            state["a"] = state["a"] + self.encode(x[:, prev])[:, None] * self.W[:, prev]
        d = int(self.ordering[i])
        bias = state["b"][..., d, :]
        return (torch.sigmoid(state["a"]) @ self.V[d].T + bias)[:, None, :], state
