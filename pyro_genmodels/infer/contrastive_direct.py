"""Contrastive divergence on a Bernoulli RBM's own program, without running it.

``ContrastiveDivergenceLoss.loss_and_grads(rbm.model, rbm.guide, v)`` runs the guide and
the model under Pyro's effect handlers to find the site ``"v"``, reads the parameters
through the param store, then takes ``k`` Gibbs sweeps and the closed-form free-energy
contrast. For ``rbm.model`` that program is known: one observed site ``"v"`` of the
machine's own distribution, scale 1, under a plate of the batch's rows.
:class:`DirectRBMStep` takes the same step on the machine's parameters directly — the same
sweeps (the sampler's ``sweeps``, the same random draws in the same order), the same
persistent-chain bookkeeping (the loss's ``chain_start`` and ``_update_buffer``, so its
undo, ``state_dict`` and checkpoints are unchanged), the same contrast
(:func:`~pyro_genmodels.models.boltzmann.free_energy_contrast`) — and so the same numbers,
for about a third of the Python. On a 64-16 RBM the Pyro program costs more than the
arithmetic of a step.

``pgm.fit`` asks a loss for such a step (``direct_step(model, guide, data)``, see
:mod:`pyro_genmodels.training.protocols`) and uses it only where it is equivalent: one
process, data in the parameters' dtype and no autocast, no Pyro handler around the step,
and the parameters it names being exactly those its first step reads through Pyro's param
store (as the full step reads them). The training data are checked once, as a whole,
instead of batch by batch.

References:
    Hinton, "Training Products of Experts by Minimizing Contrastive Divergence", 2002.
    Tieleman, "Training Restricted Boltzmann Machines using Approximations to the
    Likelihood Gradient", ICML 2008.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro.infer.util import torch_item
from pyro.poutine.runtime import _PYRO_STACK

from pyro_genmodels.data.validation import is_binary
from pyro_genmodels.models.boltzmann import RBM, free_energy_contrast
from pyro_genmodels.models.layered import BoltzmannGibbsSampler

__all__ = ["DirectRBMStep", "direct_rbm_step", "own_program"]

_SITE = "v"  # the observed site of RBM.model
#: what the direct step does in its own way (a subclass that changes one gets the full step)
_REPLACED = (
    "model",
    "guide",
    "check_visible",
    "_distribution",
    "contrast_backward",
    "gibbs_params",
)


def _bound_to(fn: Callable, name: str) -> Any:
    """The object ``fn`` is the method ``name`` of (None when it is not that method)."""
    owner = getattr(fn, "__self__", None)
    if owner is None or getattr(fn, "__func__", None) is not getattr(type(owner), name, None):
        return None
    return owner


def own_program(
    model: Callable, guide: Callable, data: Any, cls: type, replaced: tuple[str, ...]
) -> Any:
    """The object whose own ``model`` and ``guide`` methods ``model`` and ``guide`` are, if it
    is a ``cls`` whose class changes none of the methods ``replaced``; else None. A
    ``TypeError`` unless ``data`` (the training tensors) is a tuple."""
    if not isinstance(data, tuple | list):
        raise TypeError(f"data must be a tuple of training tensors, got {type(data).__name__}")
    owner = _bound_to(model, "model")
    if not isinstance(owner, cls) or _bound_to(guide, "guide") is not owner:
        return None
    if any(getattr(type(owner), name) is not getattr(cls, name) for name in replaced):
        return None  # a subclass that changes what the step does
    return owner


def direct_rbm_step(loss: Any, model: Callable, guide: Callable, data: tuple) -> Any:
    """A :class:`DirectRBMStep` for ``loss`` on ``(model, guide)``, or None where it would not
    take exactly the step of ``loss.loss_and_grads`` (see the module).

    ``data``: the training tensors, ``(N, D)`` each, as the loop batches them.
    """
    machine: RBM | None = own_program(model, guide, data, RBM, _REPLACED)
    if machine is None:
        return None
    if machine.visible != "bernoulli" or len(data) != 1 or not loss.free_energy:
        return None
    dist = machine._distribution(None)
    sampler = loss._sampler(_SITE, dist)
    k, energy_reg = loss.settings_for(dist)
    if (
        energy_reg
        or not isinstance(sampler, BoltzmannGibbsSampler)
        or sampler.machine is not machine
    ):
        return None
    params = (machine.W, machine.visible_bias, machine.hidden_bias)
    (x,) = data
    if (
        not isinstance(x, torch.Tensor)
        or x.dtype != params[0].dtype
        or x.device != params[0].device
    ):
        return None
    if x.dim() != 2 or x.shape[1] != machine.num_visible or not is_binary(x):
        return None  # the full step reports the data's error
    return DirectRBMStep(loss, machine, k, params)


class DirectRBMStep:
    """The step of ``loss.loss_and_grads(machine.model, machine.guide, v)`` on known params.

    Args:
        loss: the :class:`~pyro_genmodels.infer.ContrastiveDivergenceLoss`.
        machine: the Bernoulli :class:`~pyro_genmodels.models.RBM`.
        k: Gibbs sweeps per step.
        params: ``(W, b, c)``, the machine's own parameters.

    Attributes:
        params: the parameters whose gradients a call accumulates.
    """

    def __init__(self, loss: Any, machine: RBM, k: int, params: tuple[torch.Tensor, ...]) -> None:
        self.loss, self.machine, self.k = loss, machine, k
        self.params = list(params)
        self._dists: dict[int, Any] = {}  # the site's distribution per batch size

    def accepts(self, batch: tuple) -> bool:
        """Whether ``batch`` (one tensor ``(B, D)``) takes this step: no Pyro handler (a scale,
        a mask) is active to change the program."""
        return not _PYRO_STACK

    def __call__(self, batch: tuple, register: bool = False) -> float:
        """The loss's value on ``batch``; the gradients are accumulated into :attr:`params`.
        ``register=True`` takes the contrast through
        :meth:`~pyro_genmodels.models.RBM.contrast_backward`, which reads the parameters
        through Pyro's param store as the loss does (the same numbers)."""
        (v,) = batch
        loss, machine, rows = self.loss, self.machine, v.shape[0]
        machine._note_batch(v)
        dist = self._dists.get(rows)
        if dist is None:
            dist = self._dists[rows] = machine._distribution(None).expand((rows,))
        sampler = dist.sampler
        x0, index = loss.chain_start(_SITE, dist, sampler, v)
        W, b, c = self.params
        x_neg = sampler.sweeps(x0, self.k, ([W.detach()], [b.detach(), c.detach()], None)).to(v)
        if loss.persistent:
            loss._update_buffer(_SITE, x_neg, 1, index)
        if register:
            return torch_item(machine.contrast_backward(v, x_neg))
        coef = machine._neg_coef(rows, x_neg.shape[0], 1.0, v)
        return torch_item(free_energy_contrast((W, b, c), v, x_neg, coef))
