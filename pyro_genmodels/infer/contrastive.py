"""Contrastive divergence (CD-k) and persistent CD with a replay buffer, as a Pyro loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pyro
import torch

from pyro_genmodels._checks import check_bool, check_choice, check_positive_int
from pyro_genmodels.distributions.adaptive import AdaptiveLangevinSampler
from pyro_genmodels.distributions.samplers import EnergySampler
from pyro_genmodels.infer._energy_sites import EnergyLoss, energy_sites, site_scale
from pyro_genmodels.infer.contrastive_direct import direct_rbm_step
from pyro_genmodels.infer.divergence import DivergenceMonitor
from pyro_genmodels.models.layered import LayeredBoltzmann

#: ``(k, energy_reg)`` when left None: for a real support (Langevin chains; Du & Mordatch
#: 2019's settings) and for a discrete one (block Gibbs, Hinton's CD-1).
DEFAULTS = {"real": (20, 0.1), "discrete": (1, 0.0)}


def _draw_chains(size: int, n: int, device: torch.device) -> torch.Tensor:
    """``n`` buffer indices drawn without replacement (a random permutation when ``n = size``,
    so every chain advances once); for ``n > size`` the permutations are repeated, each chain
    appearing ``⌊n/size⌋`` or ``⌈n/size⌉`` times."""
    perms = [torch.randperm(size, device=device) for _ in range(-(-n // size))]
    return torch.cat(perms)[:n]


def _contrast_backward(machine: Any, x_pos: Any, x_neg: Any, scale: Any) -> torch.Tensor | None:
    """The machine's closed-form contrast and gradient, where it has one (else None)."""
    method = getattr(machine, "contrast_backward", None)
    return None if method is None else method(x_pos, x_neg, scale)


def _sampled_hidden_energies(
    name: str, dist: Any, x_pos: torch.Tensor, x_neg: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(E(v⁺, h⁺), E(v⁻, h⁻))`` with ``h ~ p(h | v)`` drawn for both phases (no gradient
    through the draws)."""
    machine = dist.energy
    if not (
        callable(getattr(machine, "hidden_conditional", None))
        and callable(getattr(machine, "energy", None))
    ):
        raise ValueError(
            "ContrastiveDivergenceLoss(free_energy=False) needs a machine with hidden units "
            f"(energy(v, h) and hidden_conditional(v), e.g. an RBM); site {name!r} has an "
            f"energy of type {type(machine).__name__}"
        )
    with torch.no_grad():
        h_pos = machine.hidden_conditional(x_pos).sample()
        h_neg = machine.hidden_conditional(x_neg).sample()
    return machine.energy(x_pos, h_pos), machine.energy(x_neg, h_neg)


class ContrastiveDivergenceLoss(EnergyLoss):
    """``Σₙ [E(x⁺ₙ) − E(x⁻ₙ)] + α Σₙ (E(x⁺ₙ)² + E(x⁻ₙ)²)``, ``x⁻ = k`` sampler steps from ``x⁰``.

    Its gradient is the contrastive-divergence estimate of ``−∇θ Σₙ log p(xₙ)``
    (the negative samples carry no gradient). ``x⁰`` is the data (CD-k,
    Hinton 2002) or, with ``persistent=True``, draws from a replay buffer of
    past negatives (PCD, Tieleman 2008; Du & Mordatch 2019): each step draws
    its batch of chains from the buffer *without replacement* (all of them
    when ``buffer_size`` equals the batch, as in Tieleman's PCD), each drawn
    chain restarts from ``sampler.init`` with probability ``reinit_prob``, and
    the advanced chains are written back in place; while the buffer fills,
    fresh chains are started and appended. Left unset, both follow the site's
    energy: for a Boltzmann machine Tieleman's PCD (one chain per row of the
    first batch, never restarted), for other energies the replay buffer of
    Du & Mordatch (10,000 chains, 5% restarts). The buffer is the loss's
    state: ``state_dict``/``load_state_dict`` (saved in ``pgm.fit``
    checkpoints, so a resumed run continues exactly).

    **Defaults that train.** ``k`` and ``energy_reg`` left at None take 20 Langevin moves
    and ``α = 0.1`` for a real support (1 and 0 for a discrete one, as Hinton's CD-1):
    with ``k = 1`` and no energy penalty an MLP energy runs away. With ``sampler=None``
    and a site distribution built without one, each site gets the loss's own
    :class:`~pyro_genmodels.distributions.adaptive.AdaptiveLangevinSampler`, whose step
    size keeps adapting towards 0.574 acceptance across steps (checkpointed with the
    buffers). ``watch=True`` (real supports) stops a run that diverges while every value
    stays finite — energies or the gap ``mean E(x⁻) − mean E(x⁺)`` growing without bound,
    chains leaving the data's range — with an
    :class:`~pyro_genmodels.infer.divergence.EnergyDivergenceError` naming the quantity
    and the knobs (``energy_reg``, ``k``, the step size); ``monitor`` sets its bounds.

    **Base measure.** For ``EnergyDistribution(energy, base=q)`` the chains move on the
    potential ``U = E − log q`` (in a flow's latent space with the default sampler) and
    fresh chains (the buffer's, its restarts, and ``start="init"``) are drawn from ``q``.
    The base is held fixed (fit it first, e.g. by maximum likelihood): its
    ``log q(x⁺) − log q(x⁻)`` carries no gradient for the energy and is left out of the
    contrast, so the flow is never evaluated at the negatives.

    The model must observe its data at sites with an
    :class:`~pyro_genmodels.distributions.EnergyDistribution` (continuous or
    discrete: no gradient with respect to ``x`` is taken), and have no latent sites.

    For a machine with hidden units (an :class:`~pyro_genmodels.models.RBM`, whose
    site energy is the free energy ``F(v) = −log Σ_h exp(−E(v, h))``) the default
    ``free_energy=True`` takes the expectation over ``h`` exactly
    (``∇F(v) = E_{p(h|v)} ∇E(v, h)``); ``free_energy=False`` is the sampled-hidden
    form of Hinton (2002): ``E(v⁺, h⁺) − E(v⁻, h⁻)`` with ``h⁺ ~ p(h | v⁺)`` and
    ``h⁻ ~ p(h | v⁻)``, the chain's next hidden draw from its negative ``v⁻``. Its
    expected gradient equals the free-energy form's; its variance is larger. For a
    Bernoulli RBM in the free-energy form (without ``energy_reg``), ``loss_and_grads``
    (what ``SVI`` and ``pgm.fit`` call) accumulates the gradient in closed form
    (:meth:`~pyro_genmodels.models.RBM.contrast_backward`: the same gradient as autograd
    on ``differentiable_loss``, without recording a graph). ``pgm.fit`` on the machine's own
    ``rbm.model``/``rbm.guide`` takes that step without running the two programs
    (:meth:`direct_step`; the same numbers, bit for bit, for a third of the Python).

    Args:
        k: sampler transitions per step (None: 20 for a real support, 1 for a discrete one).
        persistent: PCD with a replay buffer.
        buffer_size: chains kept per site (None: see above).
        reinit_prob: probability of restarting a chain from ``sampler.init`` (None: see above).
        sampler: an :class:`~pyro_genmodels.infer.samplers.EnergySampler`; None uses
            each site distribution's own ``.sampler`` (Langevin, or an RBM's Gibbs).
        energy_reg: ``α ≥ 0`` (None: 0.1 for a real support, 0 for a discrete one).
        start: where non-persistent chains start: ``"data"`` (CD-k) or ``"init"`` (the
            sampler's fresh chains: the base ``q`` when the distribution has one —
            short-run MCMC from ``q``).
        watch: stop a diverging run (real supports).
        monitor: the :class:`~pyro_genmodels.infer.divergence.DivergenceMonitor` (bounds).
        free_energy: for machines with hidden units, the exact expectation over ``h``
            (True) or sampled hiddens (False; the energy must provide ``energy(v, h)`` and
            ``hidden_conditional(v)``, as an RBM does).

    Example:
        >>> import pyro, torch
        >>> from pyro_genmodels.distributions import EnergyDistribution
        >>> from pyro_genmodels.infer.samplers import LangevinSampler
        >>> energy = torch.nn.Linear(2, 1)
        >>> def model(x):
        ...     pyro.module("energy", energy)
        ...     with pyro.plate("data", x.shape[0]):
        ...         pyro.sample("x", EnergyDistribution(energy, (2,)), obs=x)
        >>> loss = ContrastiveDivergenceLoss(k=5, persistent=True, buffer_size=64,
        ...                                  sampler=LangevinSampler(0.01))
        >>> value = loss.loss_and_grads(model, lambda x: None, torch.randn(16, 2))
        >>> tuple(loss.state_dict()["buffer.x"].shape)
        (16, 2)

    References:
        Hinton, "Training Products of Experts by Minimizing Contrastive Divergence", 2002.
        Tieleman, "Training Restricted Boltzmann Machines using Approximations to the
        Likelihood Gradient", ICML 2008.
        Du & Mordatch, "Implicit Generation and Generalization in Energy-Based Models", 2019.
    """

    name = "ContrastiveDivergenceLoss"

    def __init__(
        self,
        k: int | None = None,
        persistent: bool = False,
        buffer_size: int | None = None,
        reinit_prob: float | None = None,
        sampler: EnergySampler | None = None,
        energy_reg: float | None = None,
        free_energy: bool = True,
        start: str = "data",
        watch: bool = True,
        monitor: DivergenceMonitor | None = None,
    ) -> None:
        super().__init__()
        self.k = check_positive_int("k", k, allow_none=True)
        if not isinstance(persistent, bool):
            raise TypeError(f"persistent must be a bool, got {type(persistent).__name__}")
        self.persistent = persistent
        self.buffer_size = check_positive_int("buffer_size", buffer_size, allow_none=True)
        if reinit_prob is not None:
            if isinstance(reinit_prob, bool) or not isinstance(reinit_prob, int | float):
                raise TypeError(
                    f"reinit_prob must be a float in [0, 1], got {type(reinit_prob).__name__}"
                )
            if not 0.0 <= reinit_prob <= 1.0:
                raise ValueError(f"reinit_prob must be in [0, 1], got {reinit_prob!r}")
            reinit_prob = float(reinit_prob)
        self.reinit_prob = reinit_prob
        if sampler is not None and not (
            callable(getattr(sampler, "run", None)) and callable(getattr(sampler, "init", None))
        ):
            raise TypeError(
                f"sampler must be an EnergySampler or None, got {type(sampler).__name__}"
            )
        self.sampler = sampler
        if energy_reg is not None:
            if isinstance(energy_reg, bool) or not isinstance(energy_reg, int | float):
                raise TypeError(
                    f"energy_reg must be a float >= 0 or None, got {type(energy_reg).__name__}"
                )
            if not (math.isfinite(energy_reg) and energy_reg >= 0):
                raise ValueError(f"energy_reg must be a finite float >= 0, got {energy_reg!r}")
            energy_reg = float(energy_reg)
        self.energy_reg = energy_reg
        self.start = check_choice("start", start, ("data", "init"))
        self.watch = check_bool("watch", watch)
        if monitor is not None and not isinstance(monitor, DivergenceMonitor):
            raise TypeError(f"monitor must be a DivergenceMonitor, got {type(monitor).__name__}")
        self.monitor = monitor
        if not isinstance(free_energy, bool):
            raise TypeError(f"free_energy must be a bool, got {type(free_energy).__name__}")
        self.free_energy = free_energy
        self.buffers: dict[str, torch.Tensor] = {}
        self.sizes: dict[str, int] = {}  # per site: the buffer size in force
        self._undo: list[tuple[str, Any, torch.Tensor | None]] = []
        self.samplers: dict[str, AdaptiveLangevinSampler] = {}  # per site, when none is given
        self._undo_steps: dict[str, dict[str, torch.Tensor]] = {}
        self._watcher = monitor or DivergenceMonitor(
            "energy_reg (e.g. 0.1), k (e.g. 20) or the sampler's step size (or the learning rate)"
        )

    def settings_for(self, dist: Any) -> tuple[int, float]:
        """``(k, energy_reg)`` for a site distribution: the given values, else :data:`DEFAULTS`."""
        k, reg = DEFAULTS["discrete" if dist.support.is_discrete else "real"]
        return (k if self.k is None else self.k), (
            reg if self.energy_reg is None else self.energy_reg
        )

    def _sampler(self, name: str, dist: Any) -> Any:
        """The loss's sampler, else the distribution's own, else one kept per site."""
        if self.sampler is not None:
            return self.sampler
        if dist.has_sampler or dist.support.is_discrete:
            return dist.sampler
        if name not in self.samplers:
            self.samplers[name] = AdaptiveLangevinSampler()
        return self.samplers[name]

    # -- persistent chains -------------------------------------------------
    def _negative_start(self, name: str, dist: Any, sampler: Any, x_pos: torch.Tensor) -> tuple:
        """``(x⁰, index)``: buffer draws (or fresh chains while it fills) of ``x_pos``'s shape."""
        if dist.context is not None:
            raise ValueError(
                "ContrastiveDivergenceLoss(persistent=True) needs an unconditional energy; "
                f"site {name!r} has a context (use persistent=False)"
            )
        batch = dist.batch_shape
        n = batch.numel()
        size, reinit = self._chain_settings(name, dist, n)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.shape[0] < size:
            return sampler.init(dist, ()).detach(), None
        if size == n and buffer.shape[0] == n and not reinit:  # Tieleman: every chain, in order
            return buffer.reshape(batch + dist.event_shape), slice(None)
        fresh = sampler.init(dist, ()).detach()
        if buffer.device != fresh.device:
            buffer = self.buffers[name] = buffer.to(fresh.device)
        index = _draw_chains(buffer.shape[0], n, buffer.device)
        start = buffer[index].to(fresh.device).reshape(fresh.shape)
        if not reinit:
            return start, index
        restart = torch.rand(batch, device=fresh.device) < reinit
        restart = restart.reshape(batch + (1,) * len(dist.event_shape))
        return torch.where(restart, fresh, start), index

    def chain_start(self, name: str, dist: Any, sampler: Any, x_pos: torch.Tensor) -> tuple:
        """``(x⁰, index)``: where the step's negative chains start for site ``name`` — buffer
        draws (:meth:`_negative_start`), the sampler's fresh chains, or the data ``x_pos`` —
        and which buffer rows they came from (None, or a slice for the whole buffer)."""
        if self.persistent:
            return self._negative_start(name, dist, sampler, x_pos)
        if self.start == "init":
            return sampler.init(dist, ()).detach(), None
        return x_pos.detach(), None

    def _chain_settings(self, name: str, dist: Any, rows: int) -> tuple[int, float]:
        """``(buffer_size, reinit_prob)`` for site ``name``: the given ones, else Tieleman's PCD
        for a Boltzmann machine (one chain per batch row, never restarted) and the replay buffer
        of Du & Mordatch for other energies (10,000 chains, 5% restarts)."""
        machine = isinstance(dist.energy, LayeredBoltzmann)
        size = self.buffer_size or self.sizes.setdefault(name, rows if machine else 10000)
        reinit = self.reinit_prob if self.reinit_prob is not None else (0.0 if machine else 0.05)
        return size, reinit

    def _update_buffer(self, name: str, x_neg: torch.Tensor, event_dim: int, index: Any) -> None:
        flat = x_neg.detach().reshape((-1,) + x_neg.shape[x_neg.dim() - event_dim :])
        buffer = self.buffers.get(name)
        if isinstance(index, slice):  # every chain advanced: the new states replace the buffer
            self._undo.append((name, None, buffer))
            self.buffers[name] = flat
        elif index is None:
            self._undo.append((name, None, buffer))  # the buffer is replaced: keep the old one
            buffer = flat if buffer is None else torch.cat([buffer, flat.to(buffer.device)])
            self.buffers[name] = buffer[-self.sizes.get(name, self.buffer_size or 10000) :].clone()
        elif buffer is not None:
            self._undo.append((name, index, buffer[index]))  # the rows written over
            buffer[index] = flat.to(buffer.device)

    def begin_step(self) -> None:
        """Start recording the chains a step writes, so that :meth:`undo_step` can put them back
        (``pgm.fit`` calls both: a step that fails leaves the buffers as they were)."""
        self._undo = []
        self._undo_steps = {k: s.state_dict() for k, s in self.samplers.items()}

    def undo_step(self) -> None:
        """Put back every chain written since :meth:`begin_step` (a failed step's chains)."""
        for name, index, old in reversed(self._undo):
            if index is None:
                if old is None:
                    self.buffers.pop(name, None)
                else:
                    self.buffers[name] = old
            else:
                self.buffers[name][index] = old
        self._undo = []
        for name in list(self.samplers):
            if name in self._undo_steps:
                self.samplers[name].load_state_dict(self._undo_steps[name])
            else:
                del self.samplers[name]

    # -- loss ----------------------------------------------------------------
    def _differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        return self._contrast(model, guide, args, kwargs, closed_form=False)

    def _loss_for_grads(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """For ``loss_and_grads``: the free-energy contrast of a Bernoulli RBM is differentiated
        in closed form (:meth:`~pyro_genmodels.models.RBM.contrast_backward`: no graph, no
        backward pass), everything else by autograd."""
        return self._contrast(model, guide, args, kwargs, closed_form=True)

    def _contrast(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict, closed_form: bool
    ) -> torch.Tensor:
        """``Σ_sites Σ s (E(x⁺) − E(x⁻) + α (E(x⁺)² + E(x⁻)²))``; with ``closed_form`` the
        terms a machine differentiates itself have their gradients already accumulated
        (their value enters detached)."""
        total: Any = 0.0
        for site in energy_sites(self.name, model, guide, args, kwargs):
            dist, x_pos, name = site["energy_dist"], site["value"], site["name"]
            sampler = self._sampler(name, dist)
            k, energy_reg = self.settings_for(dist)
            x_pos = x_pos.expand(dist.batch_shape + dist.event_shape)
            x0, index = self.chain_start(name, dist, sampler, x_pos)
            x_neg = sampler.run(dist, x0, k).detach()
            if self.persistent:
                self._update_buffer(name, x_neg, len(dist.event_shape), index)
            machine = isinstance(dist.energy, LayeredBoltzmann) and dist.context is None
            if closed_form and machine and self.free_energy and not energy_reg:
                scale = site_scale(site, x_pos[..., 0])
                with pyro.validation_enabled(False):  # checked where they entered
                    value = _contrast_backward(dist.energy, x_pos, x_neg.to(x_pos), scale)
                if value is not None:
                    total = total + value
                    continue
            if self.free_energy and machine:
                # both phases in one call (no batch-dependent layers in a Boltzmann machine);
                # the values were checked where they entered (model) or drawn by the sampler
                with pyro.validation_enabled(False):
                    e_pos, e_neg = dist.energy(torch.stack([x_pos, x_neg.to(x_pos)]))
            elif self.free_energy:
                e_pos, e_neg = dist.energy_of(x_pos), dist.energy_of(x_neg)
            else:
                e_pos, e_neg = _sampled_hidden_energies(name, dist, x_pos, x_neg)
            per_point = e_pos - e_neg
            if energy_reg:
                per_point = per_point + energy_reg * (e_pos**2 + e_neg**2)
            total = total + (site_scale(site, per_point) * per_point).sum()
            if self.watch and not dist.support.is_discrete:
                event_dim = len(dist.event_shape)
                self._watcher.observe(name, e_pos, e_neg, x_pos, x_neg, event_dim)
        return total

    def direct_step(self, model: Callable, guide: Callable, data: tuple) -> Any:
        """The step of :meth:`loss_and_grads` without running ``model`` and ``guide``, where it
        is known: a Bernoulli RBM's own ``rbm.model``/``rbm.guide``
        (:class:`~pyro_genmodels.infer.contrastive_direct.DirectRBMStep`); None elsewhere.
        ``pgm.fit`` asks for it with its training tensors ``data``."""
        if type(self)._contrast is not ContrastiveDivergenceLoss._contrast:
            return None
        return direct_rbm_step(self, model, guide, data)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The persistent buffers, ``{"buffer.<site>": (n, *event_shape)}``, and the adapted
        step size of each site's own sampler, ``{"step_size.<site>": ()}``."""
        state = {f"buffer.{name}": b.detach().clone() for name, b in self.buffers.items()}
        for name, sampler in self.samplers.items():
            state[f"step_size.{name}"] = sampler.state_dict()["step_size"]
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restores :meth:`state_dict` (tensors keep the device they are given on)."""
        buffers, samplers = {}, {}
        for key, value in state.items():
            if not key.startswith(("buffer.", "step_size.")) or not isinstance(value, torch.Tensor):
                raise ValueError(
                    "ContrastiveDivergenceLoss state entries must be 'buffer.<site>' or "
                    f"'step_size.<site>' tensors, got {key!r}"
                )
            if key.startswith("buffer."):
                buffers[key[len("buffer.") :]] = value.detach().clone()
            else:
                samplers[key[len("step_size.") :]] = AdaptiveLangevinSampler()
                samplers[key[len("step_size.") :]].load_state_dict({"step_size": value})
        self.buffers, self._undo, self.samplers = buffers, [], samplers
