"""Assembly helpers shared by the flow builders (not public API): argument checks,
compositions that carry the cache size to every layer, coupling stacks with their
masks, and the hypernetworks.

Every builder module (:mod:`~pyro_genmodels.flows.builders`,
:mod:`~pyro_genmodels.flows.glow`) imports these; the registry of builders
(:mod:`~pyro_genmodels.flows.registry`) imports the builders.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import torch
from pyro.distributions import constraints
from pyro.distributions import transforms as T
from pyro.distributions.conditional import ConditionalComposeTransformModule
from pyro.distributions.torch_transform import ComposeTransformModule
from pyro.nn import AutoRegressiveNN, ConditionalAutoRegressiveNN, ConditionalDenseNN, DenseNN
from torch import nn
from torch.distributions import Transform

from pyro_genmodels.flows._checks import check_cache_size, check_int
from pyro_genmodels.flows.actnorm import ActNorm
from pyro_genmodels.flows.basic import EvenOdd, Flip, Inverse, set_cache_size

Flow = ComposeTransformModule | ConditionalComposeTransformModule
NORMS = (None, "actnorm", "batchnorm")
MASKS = ("alternate", "halves")


def default_hidden(input_dim: int) -> list[int]:
    """Two hidden layers of ``min(512, max(64, 4 D))`` units."""
    return [min(512, max(64, 4 * input_dim))] * 2


def check_args(input_dim: object, num_layers: object, context_dim: object, least: int = 1) -> None:
    """The arguments every builder takes (``input_dim >= least``)."""
    check_int("input_dim", input_dim, least)
    check_int("num_layers", num_layers)
    if context_dim is not None:
        check_int("context_dim", context_dim)


def check_own_samples_cache(name: str, cache_size: object) -> int:
    """A flow without a closed-form inverse scores only its own samples, which it
    finds in its cache: ``cache_size`` must be 1."""
    if check_cache_size(cache_size) != 1:
        raise ValueError(
            f"cache_size must be 1 for {name}: it has no closed-form inverse, so the "
            f"density of its own samples is read from the cache; got {cache_size!r}"
        )
    return 1


class Compose(ComposeTransformModule):
    """Pyro's composition with its domain and codomain computed once: its parts are
    fixed, and torch recomputes both (recursively) at every access, several times per
    ``log_prob``."""

    @cached_property
    def domain(self) -> constraints.Constraint:
        return ComposeTransformModule.domain.fget(self)

    @cached_property
    def codomain(self) -> constraints.Constraint:
        return ComposeTransformModule.codomain.fget(self)


class ConditionalCompose(ConditionalComposeTransformModule):
    """Pyro's conditional composition whose conditioned flows carry the cache size
    on every layer."""

    def condition(self, context: torch.Tensor) -> ComposeTransformModule:
        parts = [t.condition(context) for t in self.transforms]
        return set_cache_size(Compose(parts), self._cache_size)


def compose(parts: list, context_dim: int | None, cache_size: int = 1) -> Flow:
    """The composition of ``parts`` (base to data order), conditional when
    ``context_dim`` is given, with ``cache_size`` set on every layer. The parts are
    not asked for ``with_cache`` (Pyro's ``BatchNorm`` has none)."""
    if context_dim is None:
        return set_cache_size(Compose(parts), cache_size)
    return set_cache_size(ConditionalCompose(parts, cache_size=cache_size), cache_size)


def couplings(input_dim: int, num_layers: int, mask: str, layer: Callable) -> list[Transform]:
    """``layer(split_dim)`` (a list of transforms) ``num_layers`` times, reversals
    between. ``mask="halves"`` splits at ``D // 2``; ``"alternate"`` wraps the stack in
    :class:`EvenOdd`, so the layers condition on the even and the odd entries in turn
    (split sizes alternate for odd ``D``)."""
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
    d, parts = input_dim // 2, []
    for i in range(num_layers):
        # the density direction meets the layers last to first, each after a reversal
        evens_first = mask == "alternate" and (num_layers - 1 - i) % 2 == 1
        parts += [*layer(input_dim - d if evens_first else d), Flip()]
    if mask == "halves" or input_dim == 2:  # EvenOdd is the identity on pairs
        return parts
    return [EvenOdd(), *parts, Inverse(EvenOdd())]


def dense(in_dim: int, context_dim: int | None, hidden: list[int], out: list[int]) -> nn.Module:
    """A coupling's hypernetwork ``(*, in_dim) [, context] -> out`` (Pyro's MLPs)."""
    if context_dim is None:
        return DenseNN(in_dim, hidden, out)
    return ConditionalDenseNN(in_dim, context_dim, hidden, out)


def arn(input_dim: int, context_dim: int | None, hidden: list[int], out: list[int], i: int):
    """A MADE with the identity order on even layers and the reversed one on odd layers."""
    order = torch.arange(input_dim)
    order = order.flip(0) if i % 2 else order
    if context_dim is None:
        return AutoRegressiveNN(input_dim, hidden, out, permutation=order)
    return ConditionalAutoRegressiveNN(input_dim, context_dim, hidden, out, permutation=order)


def norm_layers(norm: str | None, input_dim: int) -> list[Transform]:
    """``[]``, ``[ActNorm]`` or ``[BatchNorm]`` for ``norm`` in :data:`NORMS`."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if norm == "actnorm":
        return [ActNorm(input_dim)]
    return [T.BatchNorm(input_dim)] if norm == "batchnorm" else []
