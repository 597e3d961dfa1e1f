"""An energy-based model as a Pyro program: ``model(x)`` observes ``x`` at one energy site."""

from __future__ import annotations

from typing import Any

import pyro
import torch
from torch import nn
from torch.distributions import constraints

from pyro_genmodels._checks import check_event
from pyro_genmodels.distributions.energy import EnergyDistribution

__all__ = ["EnergyModel"]


class EnergyModel(nn.Module):
    """``p(x) ∝ q(x) exp(−E_θ(x))`` as a model/guide pair: the program every energy-based
    loss trains, written once.

    ``model(x)`` registers the module's parameters (``pyro.module(name, self)``) and observes
    the rows of ``x`` at the site ``"x"`` of :meth:`distribution` under
    ``pyro.plate("data", N)``; ``guide(x)`` has no sites (an energy-based model has no
    latent variables). It is the program one would write by hand::

        def model(x):
            pyro.module("energy", energy)
            with pyro.plate("data", x.shape[0]):
                pyro.sample("x", EnergyDistribution(energy, event_shape), obs=x)

    and trains the same way with ``pgm.fit``, ``pyro.infer.SVI`` and every energy-based
    loss (:class:`~pyro_genmodels.infer.ContrastiveDivergenceLoss`,
    :class:`~pyro_genmodels.infer.ScoreMatchingLoss`, :class:`~pyro_genmodels.infer.NCELoss`).
    Because the program is known, :class:`~pyro_genmodels.infer.ScoreMatchingLoss` and
    :class:`~pyro_genmodels.infer.NCELoss` take their steps in ``pgm.fit`` without running it
    (the same numbers, without the Pyro program's few hundred microseconds a step: see
    :mod:`~pyro_genmodels.infer.energy_direct`).

    Args:
        energy: an ``nn.Module``, ``E(x) -> (*,)`` or ``(*, 1)`` for ``x (*, *event_shape)``.
        event_shape: the shape of one datapoint, e.g. ``(2,)``.
        base: ``q``, a distribution of batch shape ``()`` and this event shape, or None
            (see :class:`~pyro_genmodels.distributions.EnergyDistribution`); not a module:
            ``ebm.to(device)`` moves the energy and ``log_normalizer``, the base stays on
            the device it was built on.
        log_normalizer: ``log Z``, a scalar tensor or None (unnormalized); an
            ``nn.Parameter`` is registered and learned (by
            :class:`~pyro_genmodels.infer.NCELoss`).
        sampler: the distribution's sampler (an ``EnergySampler``), or None for its default.
        support: a constraint on one element (``constraints.real`` by default).
        name: the prefix of the parameters' names in Pyro's param store.

    Example:
        >>> import pyro_genmodels as pgm, torch
        >>> energy = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.SiLU(),
        ...                              torch.nn.Linear(16, 1))
        >>> ebm = EnergyModel(energy, (2,))
        >>> x = torch.randn(64, 2)
        >>> loss = pgm.infer.ScoreMatchingLoss("denoising")
        >>> history = pgm.fit(ebm.model, ebm.guide, x, loss=loss, epochs=2, progress=False)
        >>> tuple(ebm.distribution().energy_of(x).shape)
        (64,)

    References:
        LeCun, Chopra, Hadsell, Ranzato & Huang, "A Tutorial on Energy-Based Learning", 2006.
    """

    #: every call draws the same site in the same way (see ``pgm.training.protocols``)
    static_structure = True

    def __init__(
        self,
        energy: nn.Module,
        event_shape: Any,
        *,
        base: Any = None,
        log_normalizer: torch.Tensor | None = None,
        sampler: Any = None,
        support: constraints.Constraint = constraints.real,
        name: str = "energy",
    ) -> None:
        super().__init__()
        if not isinstance(energy, nn.Module):
            raise TypeError(
                f"energy must be an nn.Module (its parameters are trained), got "
                f"{type(energy).__name__}"
            )
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        self.energy = energy
        if isinstance(log_normalizer, nn.Parameter):
            self.log_normalizer = log_normalizer  # registered: learned with the energy
        else:
            self.register_buffer("log_normalizer", log_normalizer)
        self.base, self.sampler, self.support, self.name = base, sampler, support, name
        checked = EnergyDistribution(  # the arguments are checked by the distribution
            energy, event_shape, log_normalizer, sampler, support=support, base=base
        )
        self.event_shape = checked.event_shape

    def distribution(self) -> EnergyDistribution:
        """The :class:`~pyro_genmodels.distributions.EnergyDistribution` at the site ``"x"``
        (batch shape ``()``): sample it, score it, or estimate its ``log Z`` with
        :func:`~pyro_genmodels.infer.ais`."""
        return EnergyDistribution(
            self.energy,
            self.event_shape,
            log_normalizer=self.log_normalizer,
            sampler=self.sampler,
            support=self.support,
            base=self.base,
        )

    def model(self, x: torch.Tensor) -> None:
        """Observes ``x`` ``(N, *event_shape)``, one datapoint a row: floating point for a real
        support, in the dtype and on the device of the module's parameters."""
        check_event(x, "x", self.event_shape)
        if x.dim() != len(self.event_shape) + 1:
            shape = ", ".join(str(s) for s in self.event_shape)
            raise ValueError(f"x must have shape (N, {shape}), got {tuple(x.shape)}")
        if not self.support.is_discrete and not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor (a real support), got {x.dtype}")
        like = next(
            (t for t in (*self.parameters(), *self.buffers()) if t.is_floating_point()), None
        )
        if (
            like is not None
            and x.is_floating_point()
            and (x.dtype, x.device) != (like.dtype, like.device)
        ):
            raise ValueError(
                f"x must have the energy's dtype and device ({like.dtype} on {like.device}), "
                f"got {x.dtype} on {x.device}"
            )
        pyro.module(self.name, self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", self.distribution(), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        """No latent variables: nothing to infer."""
