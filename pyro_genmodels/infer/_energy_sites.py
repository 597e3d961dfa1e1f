"""The observed ``EnergyDistribution`` sites of a model: what the energy-based losses train on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer.elbo import ELBO
from pyro.infer.util import torch_item
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from pyro.util import warn_if_nan

from pyro_genmodels.distributions.energy import EnergyDistribution, unchecked_energies
from pyro_genmodels.infer.energy_direct import direct_energy_step


def _base(fn: Any) -> Any:
    """The EnergyDistribution under Pyro's wrappers (``expand``/``mask``/``to_event``)."""
    while not isinstance(fn, EnergyDistribution) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


class _SampleSites(Messenger):
    """Records the sample sites of one run, by name, and nothing else.

    What :func:`energy_sites` reads of a trace, without the cost of Pyro's ``Trace`` (its
    graph, its input and return nodes, its param sites): about half of a small model's
    ``poutine.trace``. Two sample sites with one name are an error, as in ``poutine.trace``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sites: dict[str, Any] = {}

    def _pyro_post_sample(self, msg: Any) -> None:
        name = msg["name"]
        if name in self.sites:
            raise RuntimeError(f"Multiple sample sites named '{name}'")
        self.sites[name] = msg.copy()


def _run_recorded(fn: Callable, args: tuple, kwargs: dict) -> dict[str, Any]:
    with _SampleSites() as recorder:
        fn(*args, **kwargs)
    return recorder.sites


def energy_sites(
    loss_name: str, model: Callable, guide: Callable, args: tuple, kwargs: dict
) -> list[Any]:
    """Runs ``guide`` then ``model``; returns the observed sites with an EnergyDistribution.

    Each returned site (a dict as in a Pyro trace: ``name``, ``fn``, ``value``, ``scale``,
    ``mask``, ...) gets ``site["energy_dist"]`` (the unwrapped distribution). The guide's
    subsample sites, if any, are replayed into the model. A guide with sample sites, a model
    with latent sites or with no energy site, or any other observed distribution raises a
    ``ValueError`` naming the site.
    """
    guide_sites = _run_recorded(guide, args, kwargs)
    latent = [n for n, s in guide_sites.items() if not site_is_subsample(s)]
    if latent:
        raise ValueError(
            f"{loss_name} trains energy-based models without latent variables; the guide "
            f"has sample sites {latent} (use a guide such as `lambda *args: None`)"
        )
    if guide_sites:  # the guide's subsample indices, replayed into the model
        guide_trace = poutine.Trace()
        for name, site in guide_sites.items():
            guide_trace.add_node(name, **site)
        model = poutine.replay(model, trace=guide_trace)
    model_sites = _run_recorded(model, args, kwargs)
    sites: list[Any] = []
    for name, site in model_sites.items():
        if site_is_subsample(site):
            continue
        base = _base(site["fn"])
        if not site["is_observed"]:
            raise ValueError(
                f"{loss_name} requires a model whose only sample sites are observed "
                f"EnergyDistribution sites; site {name!r} is latent"
            )
        if not isinstance(base, EnergyDistribution):
            raise ValueError(
                f"{loss_name} requires observed sites with an EnergyDistribution; site "
                f"{name!r} has {type(base).__name__}"
            )
        if isinstance(site["fn"], EnergyDistribution):
            dist = site["fn"]
        else:
            dist = base.expand(site["fn"].batch_shape)
        value: Any = site["value"]
        event = dist.event_shape
        if value.dim() < len(event) or value.shape[value.dim() - len(event) :] != event:
            raise ValueError(
                f"site {name!r}: EnergyDistribution expects x of shape (*, "
                f"{', '.join(map(str, event))}), got data of shape {tuple(value.shape)}"
            )
        site["energy_dist"] = dist
        sites.append(site)
    if not sites:
        raise ValueError(
            f"{loss_name} requires the model to observe data at a site with an "
            "EnergyDistribution (pyro.sample(name, EnergyDistribution(...), obs=x)); found none"
        )
    return sites


def site_scale(site: dict[str, Any], like: torch.Tensor) -> torch.Tensor | float:
    """The site's ``scale`` (e.g. from subsampling) times its mask, broadcastable to ``like``."""
    scale = site["scale"]
    mask = site["mask"]
    if mask is not None:
        mask = mask.to(like.dtype) if isinstance(mask, torch.Tensor) else float(mask)
        return scale * mask
    return scale


def add_site_loss(total: torch.Tensor | None, site: dict[str, Any], per_point: torch.Tensor) -> Any:
    """``total + Σ scale · per_point`` over the site's datapoints (``total`` None: the first
    site's sum). A site of unit scale and no mask adds ``per_point.sum()``, without the product:
    the same operations as a loss's direct step, which is then the same to the last bit (a
    product by 1 changes the order in which autograd sums a parameter's gradients)."""
    scale = site_scale(site, per_point)
    unit = isinstance(scale, float) and scale == 1.0
    term = (per_point if unit else scale * per_point).sum()
    return term if total is None else total + term


def check_real_support(loss_name: str, site: dict[str, Any]) -> None:
    """``ValueError`` for a discrete site (score matching needs ``∇ₓ``)."""
    if site["energy_dist"].support.is_discrete:
        raise ValueError(
            f"{loss_name} needs gradients with respect to x and cannot train the discrete "
            f"site {site['name']!r}; use ContrastiveDivergenceLoss"
        )


def replayed_traces(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> Any:
    """``(model_trace, guide_trace)``: the guide traced, then the model replayed against it."""
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    return model_trace, guide_trace


class EnergyLoss(ELBO):
    """Shared ``loss``/``differentiable_loss``/``loss_and_grads`` over ``_differentiable_loss``.

    Subclasses implement ``_differentiable_loss(model, guide, *args, **kwargs) -> Tensor``
    (a scalar summed over datapoints) and set ``name``. Energies are not checked for
    finiteness inside a loss: a non-finite value makes a non-finite loss, which
    ``pgm.fit``'s guard reports (``FloatingPointError``, last good state kept).
    """

    name = "EnergyLoss"

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> Any:
        """The ``(model_trace, guide_trace)`` pair (no particles are drawn)."""
        return replayed_traces(model, guide, args, kwargs)

    def _differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        raise NotImplementedError

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """The loss as a scalar tensor to differentiate."""
        with unchecked_energies():
            loss = self._differentiable_loss(model, guide, *args, **kwargs)
        warn_if_nan(loss, "loss")
        return loss

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """The loss as a float (no gradients)."""
        with unchecked_energies():
            value = torch_item(self._differentiable_loss(model, guide, *args, **kwargs))
        warn_if_nan(value, "loss")
        return value

    def direct_step(self, model: Callable, guide: Callable, data: tuple) -> Any:
        """The step of :meth:`loss_and_grads` without running ``model`` and ``guide``, where it
        is known: an :class:`~pyro_genmodels.models.EnergyModel`'s own ``ebm.model``/
        ``ebm.guide``, for a loss whose step sums its ``_per_point(dist, x)`` over the energy
        sites (:class:`~pyro_genmodels.infer.ScoreMatchingLoss`,
        :class:`~pyro_genmodels.infer.NCELoss`;
        :class:`~pyro_genmodels.infer.energy_direct.DirectEnergyStep`); None elsewhere.
        ``pgm.fit`` asks for it with its training tensors ``data``."""
        per_point = getattr(self, "_per_point", None)
        owner = next(  # the class whose _differentiable_loss sums _per_point
            (
                c
                for c in type(self).__mro__
                if "_per_point" in vars(c) and "_differentiable_loss" in vars(c)
            ),
            None,
        )
        if per_point is None or owner is None:
            return None
        return direct_energy_step(self, owner, model, guide, data, per_point)

    def _loss_for_grads(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """What ``loss_and_grads`` differentiates: ``_differentiable_loss``, unless a subclass
        accumulates some gradients itself (then those terms enter detached)."""
        return self._differentiable_loss(model, guide, *args, **kwargs)

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """The loss as a float; gradients are accumulated on the parameters by ``backward``."""
        with unchecked_energies():
            loss = self._loss_for_grads(model, guide, *args, **kwargs)
        value = torch_item(loss)  # one float, checked as Pyro's ELBOs check theirs
        warn_if_nan(value, "loss")
        if loss.requires_grad:
            loss.backward()
        return value
