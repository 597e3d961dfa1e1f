"""Batched samplers for energy-based distributions: chains are a batch dimension.

Every sampler subclasses :class:`EnergySampler` (``init``, ``run``, ``sample``);
the loss :class:`~pyro_genmodels.infer.ContrastiveDivergenceLoss` and
:meth:`EnergyDistribution.sample <pyro_genmodels.distributions.EnergyDistribution.sample>`
only use that interface, so a block-Gibbs sampler for binary units plugs in the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from pyro_genmodels._checks import (
    check_finite,
    check_positive_float,
    check_positive_int,
    check_real,
    check_real_or_tensor,
)
from pyro_genmodels.distributions.energy import unchecked_energies


def _check_clamp(clamp: Any) -> tuple[float, float] | None:
    """``(low, high)`` with ``low < high``; an infinite end leaves that side of the box open."""
    if clamp is None:
        return None
    if not isinstance(clamp, Sequence) or isinstance(clamp, str) or len(clamp) != 2:
        raise TypeError(f"clamp must be None or a pair (low, high), got {clamp!r}")
    low, high = (check_real(f"clamp[{i}]", c, finite=False) for i, c in enumerate(clamp))
    if not low < high:
        raise ValueError(f"clamp must satisfy low < high, got {clamp!r}")
    return low, high


class EnergySampler:
    """Base class: ``num_steps`` transitions leaving ``exp(-E)`` (approximately) invariant.

    Subclasses implement :meth:`run`; :meth:`init` draws fresh chains
    (standard normal for real supports, fair coin flips for binary ones).

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

    def init(self, dist: Any, sample_shape: Any = ()) -> torch.Tensor:
        """Fresh chains of shape ``sample_shape + batch_shape + event_shape``."""
        shape = torch.Size(sample_shape) + dist.batch_shape + dist.event_shape
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


def energy_grad(energy_fn: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(E(x), ∇ₓE(x))`` detached, the gradient taken w.r.t. ``x`` only (no parameter grads)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        e = energy_fn(x)
        (g,) = torch.autograd.grad(e.sum(), x)
    return e.detach(), g


class LangevinSampler(EnergySampler):
    """``x ← x − η ∇ₓE(x) + s ε``, ``ε ~ N(0, I)``, ``s = √(2η)`` unless ``noise_scale`` is given.

    The unadjusted Langevin algorithm (ULA) with ``adjust=False``; with
    ``adjust=True`` a Metropolis–Hastings correction per chain (MALA) makes
    ``exp(-E)`` exactly invariant (then ``noise_scale`` must be left at ``√(2η)``).
    EBM training commonly sets the noise scale separately (e.g. ``η = 10``,
    ``s = 0.005`` in Du & Mordatch 2019) — a biased but fast sampler. ``clamp``
    keeps chains in a box ``[low, high]`` after each step (ULA only).

    Args:
        step_size: ``η > 0``.
        num_steps: default number of steps for :meth:`sample`.
        noise_scale: ``s``; default ``√(2η)``.
        adjust: Metropolis-adjust (MALA).
        clamp: ``(low, high)`` or None.
        init_loc, init_scale: fresh chains start at ``init_loc + init_scale · N(0, I)``
            (floats or tensors broadcastable to the event shape).

    After :meth:`run` with ``adjust=True``, ``accept_rate`` holds the mean acceptance.

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
        self.step_size = check_positive_float("step_size", step_size)
        self.init_loc = check_real_or_tensor("init_loc", init_loc)
        self.init_scale = check_real_or_tensor("init_scale", init_scale, minimum=0.0)
        self.num_steps = check_positive_int("num_steps", num_steps)
        if noise_scale is not None and not isinstance(noise_scale, bool):
            if isinstance(noise_scale, int | float) and noise_scale == 0:
                noise_scale = 0.0
            else:
                noise_scale = check_positive_float("noise_scale", noise_scale)
        elif noise_scale is not None:
            raise TypeError("noise_scale must be a float or None, got bool")
        if not isinstance(adjust, bool):
            raise TypeError(f"adjust must be a bool, got {type(adjust).__name__}")
        if adjust and noise_scale is not None and noise_scale != math.sqrt(2 * self.step_size):
            raise ValueError(
                "adjust=True (MALA) needs noise_scale = sqrt(2 * step_size); "
                f"got noise_scale={noise_scale} with step_size={self.step_size}"
            )
        self.noise_scale = noise_scale
        self.adjust = adjust
        self.clamp = _check_clamp(clamp)
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
        """Fresh chains ``init_loc + init_scale · ε`` (clamped to the box when given)."""
        x = super().init(dist, sample_shape)
        if dist.support.is_discrete:
            return x
        loc, scale = torch.as_tensor(self.init_loc).to(x), torch.as_tensor(self.init_scale).to(x)
        x = loc + scale * x
        return x.clamp(*self.clamp) if self.clamp is not None else x

    def step(self, energy_fn: Any, x: torch.Tensor, step_size: float | None = None) -> torch.Tensor:
        """One transition of every chain in ``x`` under energy ``energy_fn(x) -> (*chains)``."""
        eta = self.step_size if step_size is None else check_positive_float("step_size", step_size)
        scale = math.sqrt(2 * eta) if self.noise_scale is None else self.noise_scale
        e, g = energy_grad(energy_fn, x)
        if not self.adjust:
            x = x - eta * g + scale * torch.randn_like(x)
            if self.clamp is not None:
                x = x.clamp(*self.clamp)
            return x.detach()
        accepted, x = mala_step(energy_fn, x, e, g, eta)
        self._accepts.append(accepted)
        return x

    def run(self, dist: Any, x: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        steps = self.num_steps if num_steps is None else check_positive_int("num_steps", num_steps)
        self._accepts: list[torch.Tensor] = []
        x = x.detach()
        for _ in range(steps):
            x = self.step(dist.energy_of, x)
        if self.adjust:
            self.accept_rate = float(torch.stack(self._accepts).mean())
        return x.detach()


def mala_step(
    energy_fn: Any, x: torch.Tensor, e: torch.Tensor, g: torch.Tensor, eta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One MALA move per chain; returns ``(accept indicator (*chains), new x)``."""
    event_dims = tuple(range(e.dim(), x.dim()))
    prop = x - eta * g + math.sqrt(2 * eta) * torch.randn_like(x)
    e_prop, g_prop = energy_grad(energy_fn, prop)

    def log_q(to: torch.Tensor, frm: torch.Tensor, g_frm: torch.Tensor) -> torch.Tensor:
        d = to - frm + eta * g_frm
        return -(d**2).sum(event_dims) / (4 * eta) if event_dims else -(d**2) / (4 * eta)

    log_a = -e_prop + e + log_q(x, prop, g_prop) - log_q(prop, x, g)
    log_a = torch.nan_to_num(log_a, nan=-math.inf)  # a non-finite proposal is rejected
    accept = torch.rand_like(log_a).log() < log_a
    mask = accept.reshape(accept.shape + (1,) * len(event_dims))
    return accept.to(x.dtype), torch.where(mask, prop, x).detach()
