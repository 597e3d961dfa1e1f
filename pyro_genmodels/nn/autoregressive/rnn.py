"""RNN conditioners: LSTM/GRU over sequences of tokens or real vectors, any length."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pyro_genmodels._checks import check_positive_int
from pyro_genmodels.nn.autoregressive.base import Conditioner, check_context_dim


class RNN(Conditioner):
    """``θ_t = V h_t + b``, ``h_t = cell(h_{t-1}, [e(x_{t-1}), c])``: a recurrent net over time.

    The input at step ``t`` is the previous element (a learned start vector at
    ``t = 0``): an embedding of a token when ``vocab_size`` is set, else the
    real vector itself; an optional context vector is appended at every step.
    The event is ``(T,)`` (tokens or scalars) or ``(T, F)`` (vectors of ``F``
    features, produced jointly per time step), for any length ``T``; padding
    after a sequence's end cannot affect its earlier conditionals. Sampling
    advances the hidden state one step at a time: O(T·H²).

    Args:
        hidden_dim: hidden units ``H``.
        num_params: parameters per element ``P`` (``vocab_size`` for tokens).
        cell: ``"lstm"`` or ``"gru"``.
        num_layers: stacked recurrent layers.
        vocab_size: number of token values (inputs are integers in ``[0, vocab_size)``).
        features: ``F`` for vector-valued sequences (event ``(T, F)``); ``None`` for ``(T,)``.
        context_dim: size of an optional context vector.
        embedding_dim: token embedding size (default ``min(H, 64)``).

    Shapes: ``x`` ``(*batch, T[, F])``, ``context`` ``(*batch, context_dim)`` →
    ``(*batch, T[, F], P)``.

    Reference: "Long Short-Term Memory", Hochreiter & Schmidhuber, 1997;
    "Generating Sequences With Recurrent Neural Networks", Graves, 2013.

    >>> import torch
    >>> RNN(hidden_dim=8, num_params=5, vocab_size=5)(torch.zeros(2, 7)).shape
    torch.Size([2, 7, 5])
    """

    def __init__(
        self,
        hidden_dim: int = 64,
        num_params: int = 1,
        cell: str = "lstm",
        num_layers: int = 1,
        vocab_size: int | None = None,
        features: int | None = None,
        context_dim: int = 0,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        h = check_positive_int("hidden_dim", hidden_dim)
        self.num_params = check_positive_int("num_params", num_params)
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        if vocab_size is not None and features is not None:
            raise ValueError("give vocab_size (token sequences) or features (vectors), not both")
        self.vocab_size = (
            None if vocab_size is None else check_positive_int("vocab_size", vocab_size)
        )
        self.features = None if features is None else check_positive_int("features", features)
        self.block_size = self.features or 1
        self.context_dim = context_dim = check_context_dim(context_dim)
        if self.vocab_size is not None:
            emb = embedding_dim or min(h, 64)
            self.embed = nn.Embedding(self.vocab_size + 1, emb)  # last row: start token
            in_dim = emb
        else:
            self.start = nn.Parameter(torch.zeros(self.block_size))
            in_dim = self.block_size
        rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(in_dim + context_dim, h, num_layers=num_layers, batch_first=True)
        self.out = nn.Linear(h, self.block_size * self.num_params)

    def event_shape_for(self, length: int | None = None) -> torch.Size:
        if length is None:
            raise ValueError("RNN sequences need a length: pass length=T (or lengths) to the model")
        check_positive_int("length", length)
        return torch.Size([length] if self.features is None else [length, self.features])

    def ordering_for(self, event_shape: torch.Size) -> torch.Tensor:
        return torch.arange(event_shape.numel())

    def _infer_event_shape(self, x: torch.Tensor) -> torch.Size:
        need = 1 if self.features is None else 2
        if x.dim() < need:
            raise ValueError(
                f"RNN expects x of shape (*batch, T{', F' * (need - 1)}), got {tuple(x.shape)}"
            )
        return self.event_shape_for(int(x.shape[x.dim() - need]))  # an int under tracing too

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _inputs(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """Step inputs ``(N, T, in)``: the start symbol, then ``x_0 ... x_{T-2}``."""
        n, t = x.shape[:2]
        if self.vocab_size is not None:
            start = torch.full((n, 1), self.vocab_size, dtype=torch.long, device=x.device)
            tokens = torch.cat([start, x[:, : t - 1].long()], dim=1)
            inp = self.embed(tokens)
        else:
            vec = x.reshape(n, t, self.block_size)
            inp = torch.cat([self.start.to(x.dtype).expand(n, 1, -1), vec[:, : t - 1]], dim=1)
        if context is not None:
            inp = torch.cat([inp, context[:, None, :].expand(-1, inp.shape[1], -1)], dim=-1)
        return inp

    def _forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        hidden, _ = self.rnn(self._inputs(x, context))
        return self.out(hidden).reshape(*x.shape, self.num_params)

    def step(
        self, state: Any, x: torch.Tensor, i: int, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, Any]:
        if i == 0:  # the start symbol
            inp = self._inputs(x[:, :1], context)
        else:
            inp = self._element_input(x[:, i - 1], context)
        hidden, state = self.rnn(inp, state)
        return self.out(hidden[:, 0]).reshape(x.shape[0], self.block_size, self.num_params), state

    def _element_input(self, value: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        if self.vocab_size is not None:
            inp = self.embed(value.long())[:, None]
        else:
            inp = value.reshape(value.shape[0], 1, self.block_size)
        if context is not None:
            inp = torch.cat([inp, context[:, None, :]], dim=-1)
        return inp
