"""The conditioner protocol shared by every autoregressive network.

A conditioner maps an event ``x`` to the parameters of every conditional
``p(x_d | x_<d, context)`` in one pass, in an order it declares, and offers an
incremental :meth:`Conditioner.step` for sampling one block of dimensions at a
time.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def check_positive_int(name: str, value: object) -> int:
    """Returns ``value`` if it is a positive int, else raises a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_context_dim(value: object) -> int:
    """``value`` if it is an int ``>= 0`` (0: no context); TypeError/ValueError naming it.

    >>> check_context_dim(3)
    3
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"context_dim must be an int >= 0 (0: no context), got {value!r}")
    if value < 0:
        raise ValueError(f"context_dim must be an int >= 0 (0: no context), got {value}")
    return value


def check_input_levels(value: object) -> int | None:
    """``value`` if it is ``None`` (real inputs) or an int ``K >= 2`` (integers in ``[0, K)``).

    ``K = 1`` would rescale by ``2 / (K - 1)``, a division by zero.

    >>> check_input_levels(256), check_input_levels(None)
    (256, None)
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"input_levels must be None or an int K >= 2, got {value!r}")
    if value < 2:
        raise ValueError(
            f"input_levels must be None or an int K >= 2 (inputs in [0, K) are rescaled by "
            f"2 / (K - 1)), got {value}"
        )
    return value


def check_ordering(ordering: Any, dim: int) -> torch.Tensor:
    """A permutation of ``range(dim)`` as a LongTensor (``None`` → the identity)."""
    if ordering is None:
        return torch.arange(dim)
    order = torch.as_tensor(ordering).long().flatten()
    if order.numel() != dim or not torch.equal(order.sort().values, torch.arange(dim)):
        raise ValueError(
            f"ordering must be a permutation of range({dim}), got {tuple(order.tolist())[:16]}"
        )
    return order


class Conditioner(nn.Module):
    """Base class of autoregressive conditioners ``x ↦ θ_d(x_<d, c)`` for every dimension d.

    Subclasses set :attr:`num_params` (parameters per dimension), :attr:`context_dim`
    (0 for none), :attr:`input_levels` (``K`` when inputs are integers in
    ``[0, K)``, rescaled to ``[-1, 1]`` before entering the network) and
    implement :meth:`_forward` on a flat batch ``(N, *event_shape)``; they declare
    the order through :meth:`ordering_for` (flat indices into the event, first
    to last) and may override :meth:`init_state`/:meth:`step` with an
    incremental sampler. Dimensions are produced in blocks of
    :attr:`block_size` consecutive positions of the order (1, or the feature
    size of a vector-valued sequence).

    Shapes: ``x`` ``(*batch, *event_shape)``, ``context`` ``(*batch, context_dim)``
    → params ``(*batch, *event_shape, num_params)``.

    >>> import torch
    >>> from pyro_genmodels.nn import NADE
    >>> net = NADE(3, hidden_dim=4, ordering=[2, 0, 1])
    >>> isinstance(net, Conditioner), net.ordering_for(net.event_shape_for()).tolist()
    (True, [2, 0, 1])
    >>> x = torch.zeros(5, 3)
    >>> params, state = net.step(net.init_state(x, None), x, 0, None)  # block 0 = dim 2
    >>> torch.allclose(params[:, 0], net(x)[:, 2])
    True
    """

    num_params: int = 1
    context_dim: int = 0
    input_levels: int | None = None
    block_size: int = 1
    mask_index: int = 0  # the ordering in use (see :meth:`set_ordering`)

    # ---- shape and order -------------------------------------------------------------
    def event_shape_for(self, length: int | None = None) -> torch.Size:
        """The event shape; sequence models need ``length``, fixed-shape models reject it."""
        if length is not None:
            raise ValueError(
                f"{type(self).__name__} has a fixed event shape {tuple(self.event_shape)}; "
                f"length must be None, got {length!r}"
            )
        return torch.Size(self.event_shape)

    def ordering_for(self, event_shape: torch.Size) -> torch.Tensor:
        """Flat event indices in generation order (a permutation of ``range(numel)``)."""
        return self.ordering

    @property
    def num_orderings(self) -> int:
        """How many orderings/masks the network holds (MADE ensembles have several)."""
        return 1

    def set_ordering(self, index: int) -> None:
        """Selects ordering ``index`` (``0 <= index < num_orderings``)."""
        if index != 0:
            raise ValueError(f"{type(self).__name__} has one ordering; got index {index}")

    # ---- one-pass evaluation -----------------------------------------------------------
    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """All conditionals' parameters in one pass: ``(*batch, *event, num_params)``."""
        event = self._event_of(x)
        batch = x.shape[: x.dim() - len(event)]
        flat = x.reshape((-1,) + tuple(event))
        ctx = self._flat_context(context, batch, flat)
        out = self._forward(self.encode(flat), ctx)
        return out.reshape(batch + event + (self.num_params,))

    def _forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Network input: ``x`` itself, or ``2 x / (K - 1) - 1`` when ``input_levels = K``."""
        if self.input_levels is None:
            return x
        return 2.0 * x / (self.input_levels - 1) - 1.0

    def _event_of(self, x: torch.Tensor) -> torch.Size:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects x to be a Tensor, got {type(x)}")
        event = self._infer_event_shape(x)
        if x.dim() < len(event) or x.shape[x.dim() - len(event) :] != event:
            raise ValueError(
                f"{type(self).__name__} expects x of shape (*batch, {', '.join(map(str, event))}),"
                f" got {tuple(x.shape)}"
            )
        return event

    def _infer_event_shape(self, x: torch.Tensor) -> torch.Size:
        return torch.Size(self.event_shape)

    def _flat_context(
        self, context: torch.Tensor | None, batch: torch.Size, flat: torch.Tensor
    ) -> torch.Tensor | None:
        if self.context_dim == 0:
            if context is not None:
                raise ValueError(
                    f"{type(self).__name__} was built with context_dim=0 but received a context "
                    f"of shape {tuple(context.shape)}"
                )
            return None
        if context is None or context.shape[-1:] != (self.context_dim,):
            got = None if context is None else tuple(context.shape)
            raise ValueError(
                f"{type(self).__name__} expects context of shape (*batch, {self.context_dim}), "
                f"got {got}"
            )
        ctx = context.to(flat.dtype).expand(batch + (self.context_dim,))
        return ctx.reshape(-1, self.context_dim)

    # ---- incremental sampling ----------------------------------------------------------
    def init_state(self, x: torch.Tensor, context: torch.Tensor | None) -> Any:
        """The sampler's state before the first block; ``x`` is ``(N, *event)`` of zeros."""
        return None

    def step(
        self, state: Any, x: torch.Tensor, i: int, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, Any]:
        """Parameters ``(N, block_size, num_params)`` of block ``i``, given ``x`` whose
        blocks ``< i`` are filled in (blocks ``>= i`` are ignored), and the new state.

        The default recomputes the whole network (a naive O(D) passes sampler)."""
        return self.naive_step(state, x, i, context)

    def naive_step(
        self, state: Any, x: torch.Tensor, i: int, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, Any]:
        """:meth:`step` by a full :meth:`forward` pass (the reference sampler)."""
        event = x.shape[1:]
        idx = self.ordering_for(event).to(x.device)[i * self.block_size : (i + 1) * self.block_size]
        params = self.forward(x, context).reshape(x.shape[0], -1, self.num_params)
        return params[:, idx], state
