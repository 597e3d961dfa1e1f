"""An energy-based loss's step on an :class:`~pyro_genmodels.models.EnergyModel`, without
running its program.

``loss.loss_and_grads(ebm.model, ebm.guide, x)`` runs the guide and the model under Pyro's
effect handlers (``pyro.module``'s parameter messages, the plate, the site) to find the
energy site, then computes the loss on it. For ``ebm.model`` the program is known: one
observed site ``"x"`` of ``ebm.distribution()`` under a plate of the batch's rows, scale 1.
:class:`DirectEnergyStep` computes the same per-datapoint loss on that distribution
directly — the same function of the same random draws, summed by the same operations, so
the same numbers — and skips about 0.2 ms of Python a step (a tenth of a denoising
score-matching step on a 2-128-128-1 MLP at batch 256).

Losses with a direct step: :class:`~pyro_genmodels.infer.ScoreMatchingLoss` and
:class:`~pyro_genmodels.infer.NCELoss`. ``pgm.fit`` asks a loss for such a step
(``direct_step(model, guide, data)``, see :mod:`pyro_genmodels.training.protocols`) and
uses it only where it is equivalent: one process, no compiled or autocast layer, no Pyro
handler around the step, and the parameters it names (the module's) being exactly those
its first step — a full one — reads through Pyro's param store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro.infer.util import torch_item
from pyro.poutine.runtime import _PYRO_STACK
from pyro.util import warn_if_nan

from pyro_genmodels.distributions.energy import unchecked_energies
from pyro_genmodels.infer.contrastive_direct import own_program
from pyro_genmodels.models.energy import EnergyModel

__all__ = ["DirectEnergyStep", "direct_energy_step"]

#: what the direct step does in its own way (a subclass that changes one gets the full step)
_REPLACED = ("model", "guide", "distribution")
#: the loss's methods that make its step from the per-point loss (the direct step replaces them)
_LOSS_STEP = ("_differentiable_loss", "_loss_for_grads", "loss_and_grads")


def direct_energy_step(
    loss: Any,
    cls: type,
    model: Callable,
    guide: Callable,
    data: tuple,
    per_point: Callable[[Any, torch.Tensor], torch.Tensor],
) -> DirectEnergyStep | None:
    """A :class:`DirectEnergyStep` of ``loss`` on ``(model, guide)``, or None where it would
    not take exactly the step of ``loss.loss_and_grads`` (see the module).

    Args:
        loss: the energy-based loss.
        cls: the loss class whose ``loss_and_grads`` sums ``per_point`` over the energy sites
            (a subclass of it that changes its step gets the full step).
        model, guide: the programs ``pgm.fit`` trains.
        data: the training tensors, as the loop batches them (one tensor ``(N, *event)``).
        per_point: ``per_point(dist, x) -> (N,)``, the loss's value per datapoint of the
            site's distribution ``dist`` (batch shape ``(N,)``) at ``x`` ``(N, *event)``,
            as the loss's ``loss_and_grads`` computes it for a site of scale 1.
    """
    if any(getattr(type(loss), name) is not getattr(cls, name) for name in _LOSS_STEP):
        return None  # a subclass whose step is not the per-point loss summed
    ebm = own_program(model, guide, data, EnergyModel, _REPLACED)
    if ebm is None or len(data) != 1 or ebm.support.is_discrete:
        return None  # the full step reports what is wrong
    (x,) = data
    event = ebm.event_shape
    if not isinstance(x, torch.Tensor) or x.dim() != len(event) + 1 or x.shape[1:] != event:
        return None
    params: list[torch.Tensor] = list(ebm.parameters())
    if any(p.dtype != x.dtype or p.device != x.device for p in params):
        return None
    return DirectEnergyStep(loss, ebm, model, guide, params, per_point)


class DirectEnergyStep:
    """The step of ``loss.loss_and_grads(ebm.model, ebm.guide, x)`` on the module's parameters.

    Attributes:
        params: the parameters whose gradients a call accumulates (``ebm.parameters()``,
            what ``pyro.module`` registers).
    """

    def __init__(
        self,
        loss: Any,
        ebm: EnergyModel,
        model: Callable,
        guide: Callable,
        params: list[torch.Tensor],
        per_point: Callable[[Any, torch.Tensor], torch.Tensor],
    ) -> None:
        self.loss, self.ebm, self.model, self.guide = loss, ebm, model, guide
        self.params, self.per_point = params, per_point

    def accepts(self, batch: tuple) -> bool:
        """Whether ``batch`` takes this step: no Pyro handler (a scale, a mask) is active to
        change the program."""
        return not _PYRO_STACK

    def __call__(self, batch: tuple, register: bool = False) -> float:
        """The loss's value on ``batch`` (one tensor ``(B, *event)``); the gradients are
        accumulated into :attr:`params`. ``register=True`` takes the full step, which reads
        the parameters through Pyro's param store (the same numbers)."""
        if register:
            return self.loss.loss_and_grads(self.model, self.guide, *batch)
        (x,) = batch
        dist = self.ebm.distribution().expand(x.shape[:1])
        with unchecked_energies():  # a unit site's add_site_loss: the same operations
            loss = self.per_point(dist, x).sum()
        value = torch_item(loss)
        warn_if_nan(value, "loss")
        if loss.requires_grad:
            loss.backward()
        return value
