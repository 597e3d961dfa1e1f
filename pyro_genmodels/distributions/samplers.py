"""Batched samplers for energy-based distributions: chains are a batch dimension.

The sampler protocol lives beside the distribution that calls it: every sampler
subclasses :class:`EnergySampler` (``init``, ``run``, ``sample``), and
:meth:`EnergyDistribution.sample <pyro_genmodels.distributions.EnergyDistribution.sample>`,
the losses of :mod:`pyro_genmodels.infer` and the AIS paths use only that interface, so
a block-Gibbs sampler for binary units plugs in the same way. :func:`langevin_move` is
the one Langevin/MALA transition of the package: the batched samplers here, the
``pyro.infer.mcmc`` kernel :class:`~pyro_genmodels.infer.Langevin` and the AIS moves
all call it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

from pyro_genmodels._checks import (
    check_finite,
    check_positive_float,
    check_positive_int,
    check_real,
    check_real_or_tensor,
)
from pyro_genmodels.distributions._energy_checks import unchecked_energies

Potential = Callable[[torch.Tensor], torch.Tensor]


def check_clamp(clamp: Any) -> tuple[float, float] | None:
    """``(low, high)`` with ``low < high``; an infinite end leaves that side of the box open.

    >>> check_clamp((0, 1))
    (0.0, 1.0)
    """
    if clamp is None:
        return None
    if not isinstance(clamp, Sequence) or isinstance(clamp, str) or len(clamp) != 2:
        raise TypeError(f"clamp must be None or a pair (low, high), got {clamp!r}")
    low, high = (check_real(f"clamp[{i}]", c, finite=False) for i, c in enumerate(clamp))
    if not low < high:
        raise ValueError(f"clamp must satisfy low < high, got {clamp!r}")
    return low, high


def check_finite_draws(
    x: torch.Tensor, name: str, step_size: float, adjustable: bool = True
) -> torch.Tensor:
    """``x`` if every value is finite, else a ``FloatingPointError`` naming ``step_size``: the
    unadjusted Langevin step diverged (``adjustable`` adds the MALA alternative).

    >>> check_finite_draws(torch.tensor([1.0, float("inf")]), "draws", 1e6)
    Traceback (most recent call last):
    ...
    FloatingPointError: draws must be finite, but 1 of 2 values are NaN or inf; the unadjusted \
Langevin step diverged at step_size=1e+06 (every proposal is accepted, so no later draw is \
valid; or the energy or its gradient is not finite there): lower step_size, or use adjust=True \
(MALA), which rejects non-finite proposals
    """
    hint = (
        f"; the unadjusted Langevin step diverged at step_size={step_size:g} (every proposal "
        "is accepted, so no later draw is valid; or the energy or its gradient is not finite "
        "there): lower step_size"
    )
    if adjustable:
        hint += ", or use adjust=True (MALA), which rejects non-finite proposals"
    check_finite(x, name, hint, FloatingPointError)
    return x


def energy_grad(energy_fn: Potential, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U(x), ∇ₓU(x))`` detached, the gradient taken w.r.t. ``x`` only (no parameter grads).

    >>> e, g = energy_grad(lambda x: 0.5 * (x**2).sum(-1), torch.ones(3, 2))
    >>> e.tolist(), g[0].tolist()
    ([1.0, 1.0, 1.0], [1.0, 1.0])
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        e = energy_fn(x)
        (g,) = torch.autograd.grad(e.sum(), x)
    return e.detach(), g


class LangevinMove(NamedTuple):
    """One Langevin transition of every chain: the new ``x`` with its potential ``energy``
    ``(*chains)`` and ``grad`` (reused by the next move), the acceptance probability
    ``(*chains)`` (1 for ULA), ``accepted`` ``(*chains)`` bools and ``energy_error``
    ``U(x') − U(x)`` of the proposal ``(*chains)``."""

    x: torch.Tensor
    energy: torch.Tensor
    grad: torch.Tensor
    accept_prob: torch.Tensor
    accepted: torch.Tensor
    energy_error: torch.Tensor


def langevin_move(
    potential: Potential,
    x: torch.Tensor,
    energy: torch.Tensor,
    grad: torch.Tensor,
    step_size: float,
    noise_scale: float | None = None,
    adjust: bool = True,
    clamp: tuple[float, float] | None = None,
    max_drift: float | None = None,
) -> LangevinMove:
    """``x' = x − η ∇U(x) + s ε``, Metropolis-adjusted (MALA) or not (ULA); chains in a batch.

    With ``adjust=True`` the proposal ``q(x'|x) = N(x − η∇U(x), 2η I)`` is accepted with
    probability ``min(1, exp(U(x) − U(x') + log q(x|x') − log q(x'|x)))`` per chain, so
    ``exp(−U)`` is exactly invariant; a non-finite proposal is rejected (its density is 0).
    With ``adjust=False`` every proposal is the next state (``s`` defaults to ``√(2η)``);
    the caller checks for non-finite draws.

    Args:
        potential: ``U(x) -> (*chains)`` for ``x`` of shape ``(*chains, *event)``.
        x: current states ``(*chains, *event)``; ``energy``/``grad``: ``U(x)`` and ``∇U(x)``.
        step_size: ``η > 0``; ``noise_scale``: ``s`` (ULA only; MALA needs ``√(2η)``).
        clamp: ULA only: the proposal is clamped to the box ``(low, high)``.
        max_drift: the drift ``η∇U`` is shortened to this norm per chain where it is longer
            (MALTA, Roberts & Tweedie 1996; the acceptance uses the same truncated drift,
            so the move stays exact): chains far in a light tail, where ``η∇U`` would
            overshoot and every proposal be rejected, keep moving.

    Example (MALA on a unit Gaussian keeps its variance):
        >>> u = lambda x: 0.5 * (x**2).sum(-1)
        >>> _ = torch.manual_seed(0)
        >>> x = torch.randn(4000, 2)
        >>> e, g = energy_grad(u, x)
        >>> for _ in range(20):
        ...     x, e, g, *_ = langevin_move(u, x, e, g, 0.5)
        >>> bool(abs(x.var(0) - 1).max() < 0.1)
        True

    References:
        Roberts & Tweedie, "Exponential convergence of Langevin distributions and their
        discrete approximations", Bernoulli 1996.
    """
    event_dims = tuple(range(energy.dim(), x.dim()))
    scale = math.sqrt(2 * step_size) if noise_scale is None else noise_scale

    def drift(g: torch.Tensor) -> torch.Tensor:
        d = step_size * g
        if max_drift is None:
            return d
        norm = d.pow(2).sum(event_dims, keepdim=True).sqrt() if event_dims else d.abs()
        return d * (max_drift / norm).clamp(max=1.0).nan_to_num(nan=0.0)

    prop = x - drift(grad) + scale * torch.randn_like(x)
    if clamp is not None and not adjust:
        prop = prop.clamp(*clamp)
    e_prop, g_prop = energy_grad(potential, prop)
    error = e_prop - energy
    if not adjust:
        ones = torch.ones_like(e_prop)
        return LangevinMove(prop.detach(), e_prop, g_prop, ones, ones.bool(), error)

    def log_q(to: torch.Tensor, frm: torch.Tensor, g_frm: torch.Tensor) -> torch.Tensor:
        sq = (to - frm + drift(g_frm)) ** 2
        return -(sq.sum(event_dims) if event_dims else sq) / (4 * step_size)

    log_a = -error + log_q(x, prop, g_prop) - log_q(prop, x, grad)
    finite = torch.isfinite(log_a) & torch.isfinite(g_prop).reshape(log_a.shape + (-1,)).all(-1)
    log_a = torch.where(finite, log_a, torch.full_like(log_a, -math.inf))  # rejected
    accept = torch.rand_like(log_a).log() < log_a
    mask = accept.reshape(accept.shape + (1,) * len(event_dims))
    return LangevinMove(
        torch.where(mask, prop, x).detach(),
        torch.where(accept, e_prop, energy),
        torch.where(mask, g_prop, grad),
        log_a.clamp(max=0.0).exp(),
        accept,
        error,
    )


class EnergySampler:
    """Base class: ``num_steps`` transitions leaving ``exp(-E)`` (approximately) invariant.

    Subclasses implement :meth:`run`; :meth:`init` draws fresh chains (from the
    distribution's base ``q`` when it has one, else standard normal for real supports
    and fair coin flips for binary ones). ``diagnostics`` holds what the last run measured
    (acceptance rate, ESS, ...), empty when the sampler measures nothing.

    Attributes:
        num_steps: default number of transitions for :meth:`sample`.

    Example (an exact sampler for a unit-Gaussian energy: one transition is a fresh draw):
        >>> from pyro_genmodels.distributions import EnergyDistribution
        >>> class Exact(EnergySampler):
        ...     def run(self, dist, x, num_steps=None):
        ...         return torch.randn_like(x)
        >>> d = EnergyDistribution(lambda x: 0.5 * (x**2).sum(-1), (3,))
        >>> Exact().sample(d, (4,)).shape
        torch.Size([4, 3])
    """

    num_steps: int = 1

    def __init__(self) -> None:
        self.diagnostics: dict[str, Any] = {}

    def init(self, dist: Any, sample_shape: Any = ()) -> torch.Tensor:
        """Fresh chains of shape ``sample_shape + batch_shape + event_shape``."""
        shape = torch.Size(sample_shape) + dist.batch_shape
        base = getattr(dist, "base", None)
        if base is not None:
            with torch.no_grad():
                return base.sample(shape).detach()
        shape = shape + dist.event_shape
        kw = dist.factory_kwargs()
        if dist.support.is_discrete:
            return torch.randint(0, 2, shape, device=kw["device"]).to(kw["dtype"])
        return torch.randn(shape, **kw)

    def run(self, dist: Any, x: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        """``num_steps`` transitions from ``x``; returns a detached tensor of ``x``'s shape."""
        raise NotImplementedError

    def sample(self, dist: Any, sample_shape: Any = ()) -> torch.Tensor:
        """``run(dist, init(dist, sample_shape), num_steps)``."""
        return self.run(dist, self.init(dist, sample_shape), self.num_steps)


class LangevinSampler(EnergySampler):
    """``x ← x − η ∇ₓU(x) + s ε``, ``ε ~ N(0, I)``, ``s = √(2η)`` unless ``noise_scale`` is given.

    ``U = E − log q`` is the distribution's potential (``E`` without a base). The unadjusted
    Langevin algorithm (ULA) with ``adjust=False``; with ``adjust=True`` a
    Metropolis–Hastings correction per chain (MALA) makes ``exp(−U)`` exactly invariant
    (then ``noise_scale`` must be left at ``√(2η)``). EBM training commonly sets the noise
    scale separately (e.g. ``η = 10``, ``s = 0.005`` in Du & Mordatch 2019) — a biased but
    fast sampler. ``clamp`` keeps chains in a box ``[low, high]`` after each step (ULA only).
    The step size is fixed: :class:`AdaptiveLangevinSampler` adapts it.

    Args:
        step_size: ``η > 0``.
        num_steps: default number of steps for :meth:`sample`.
        noise_scale: ``s``; default ``√(2η)``.
        adjust: Metropolis-adjust (MALA).
        clamp: ``(low, high)`` or None.
        init_loc, init_scale: fresh chains start at ``init_loc + init_scale · N(0, I)``
            (floats or tensors broadcastable to the event shape); a distribution with a base
            ``q`` starts its chains from ``q`` instead.

    After :meth:`run` with ``adjust=True``, ``accept_rate`` (and ``diagnostics``) hold the
    mean acceptance.

    Example:
        >>> import torch
        >>> from pyro_genmodels.distributions import EnergyDistribution
        >>> d = EnergyDistribution(lambda x: 0.5 * (x**2).sum(-1), (2,))
        >>> s = LangevinSampler(step_size=0.1, num_steps=50, adjust=True)
        >>> _ = torch.manual_seed(0)
        >>> x = s.sample(d, (4000,))
        >>> bool(abs(x.var(0) - 1).max() < 0.1), x.requires_grad
        (True, False)

    References:
        Roberts & Tweedie, "Exponential convergence of Langevin distributions and
        their discrete approximations", Bernoulli 1996.
        Du & Mordatch, "Implicit Generation and Generalization in Energy-Based Models", 2019.
    """

    def __init__(
        self,
        step_size: float,
        num_steps: int = 100,
        noise_scale: float | None = None,
        adjust: bool = False,
        clamp: Sequence[float] | None = None,
        init_loc: torch.Tensor | float = 0.0,
        init_scale: torch.Tensor | float = 1.0,
    ) -> None:
        super().__init__()
        self.step_size = check_positive_float("step_size", step_size)
        self.init_loc = check_real_or_tensor("init_loc", init_loc)
        self.init_scale = check_real_or_tensor("init_scale", init_scale, minimum=0.0)
        self.num_steps = check_positive_int("num_steps", num_steps)
        self.noise_scale = check_noise_scale(noise_scale, self.step_size, adjust)
        self.adjust = adjust
        self.clamp = check_clamp(clamp)
        if adjust and self.clamp is not None:
            raise ValueError("clamp cannot be combined with adjust=True (MALA)")
        self.accept_rate: float | None = None

    def sample(self, dist: Any, sample_shape: Any = ()) -> torch.Tensor:
        """``num_steps`` transitions from fresh chains; ULA draws that diverged (NaN/inf) raise
        ``FloatingPointError`` naming ``step_size``, MALA rejects such proposals (a point of
        infinite energy has density 0). ``run``, which the training losses call, lets them
        through to ``pgm.fit``'s non-finite guard."""
        with unchecked_energies():  # a diverging chain is reported below, naming the knob
            x = super().sample(dist, sample_shape)
        return x if self.adjust else check_finite_draws(x, "LangevinSampler draws", self.step_size)

    def init(self, dist: Any, sample_shape: Any = ()) -> torch.Tensor:
        """Fresh chains ``init_loc + init_scale · ε`` (or base draws; clamped to the box)."""
        x = super().init(dist, sample_shape)
        if dist.support.is_discrete or getattr(dist, "base", None) is not None:
            return x
        loc, scale = torch.as_tensor(self.init_loc).to(x), torch.as_tensor(self.init_scale).to(x)
        x = loc + scale * x
        return x.clamp(*self.clamp) if self.clamp is not None else x

    def run(self, dist: Any, x: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        steps = self.num_steps if num_steps is None else check_positive_int("num_steps", num_steps)
        potential = dist.potential
        x = x.detach()
        e, g = energy_grad(potential, x)
        accepts = []
        for _ in range(steps):
            move = langevin_move(
                potential, x, e, g, self.step_size, self.noise_scale, self.adjust, self.clamp
            )
            x, e, g = move.x, move.energy, move.grad
            if self.adjust:
                accepts.append(move.accepted.to(x.dtype).mean())
        if self.adjust:
            self.accept_rate = float(torch.stack(accepts).mean())
            self.diagnostics = {"accept_rate": self.accept_rate, "step_size": self.step_size}
        return x.detach()


def check_noise_scale(noise_scale: Any, step_size: float, adjust: bool) -> float | None:
    """``noise_scale`` as a float ``>= 0`` or None; MALA (``adjust``) needs ``√(2η)``."""
    if noise_scale is not None and not isinstance(noise_scale, bool):
        if isinstance(noise_scale, int | float) and noise_scale == 0:
            noise_scale = 0.0
        else:
            noise_scale = check_positive_float("noise_scale", noise_scale)
    elif noise_scale is not None:
        raise TypeError("noise_scale must be a float or None, got bool")
    if not isinstance(adjust, bool):
        raise TypeError(f"adjust must be a bool, got {type(adjust).__name__}")
    if adjust and noise_scale is not None and noise_scale != math.sqrt(2 * step_size):
        raise ValueError(
            "adjust=True (MALA) needs noise_scale = sqrt(2 * step_size); "
            f"got noise_scale={noise_scale} with step_size={step_size}"
        )
    return noise_scale
