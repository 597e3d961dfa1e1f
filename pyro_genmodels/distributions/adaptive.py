"""The default sampler of an energy-based distribution: MALA with an adapted step size,
optional annealing, moves in a flow base's latent space, and a report of how well it mixed."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from pyro.ops.dual_averaging import DualAveraging
from pyro.ops.stats import effective_sample_size, split_gelman_rubin

from pyro_genmodels._checks import (
    check_bool,
    check_int,
    check_positive_float,
    check_positive_int,
    check_real,
    check_real_or_tensor,
)
from pyro_genmodels.distributions._energy_checks import unchecked_energies
from pyro_genmodels.distributions.samplers import (
    EnergySampler,
    Potential,
    energy_grad,
    langevin_move,
)

#: Split R-hat above which :meth:`AdaptiveLangevinSampler.sample` warns that chains disagree
#: (Gelman & Rubin's 1.1: the kept windows are short, and split R-hat of a well-mixed chain
#: with an autocorrelation time of 30 moves is already 1.05 over 1000 moves).
RHAT_LIMIT = 1.1


class ChainSpace:
    """Where chains move for ``dist``: ``x`` itself, or the latent ``z`` of a flow base.

    Without a base the potential is ``U(x) = β E(x)``; with a base ``q`` it is
    ``U(x) = β E(x) − log q(x)``; with ``latent=True`` and a flow base ``q = T#q₀``
    (``dist.latent_form()`` is not None) chains move in ``z = T⁻¹(x)`` under
    ``U(z) = β E(T(z)) − log q₀(z)`` — the Jacobians cancel, so no log-determinant is
    computed, and a residual energy near 0 leaves a near-Gaussian target (NeuTra,
    Hoffman et al. 2019). ``β`` anneals the residual energy (``β = 0``: the base itself).

    >>> from pyro_genmodels.distributions import EnergyDistribution
    >>> d = EnergyDistribution(lambda x: (x**2).sum(-1), (2,))
    >>> space = ChainSpace(d, latent=True)
    >>> space.latent, space.potential(0.5)(torch.ones(3, 2)).tolist()
    (False, [1.0, 1.0, 1.0])
    """

    def __init__(self, dist: Any, latent: bool = True) -> None:
        self.dist = dist
        form = dist.latent_form() if latent and hasattr(dist, "latent_form") else None
        self.latent = form is not None
        self.base0: Any = None if form is None else form[0]
        self.transform: Any = None if form is None else form[1]

    def potential(self, beta: float = 1.0) -> Potential:
        """``U_β`` of a state ``(*chains, *event)`` -> ``(*chains)``."""
        dist = self.dist
        if not self.latent:
            if beta == 1.0:
                return dist.potential
            return lambda x: dist.potential(x, beta)

        def u(z: torch.Tensor) -> torch.Tensor:
            e = dist.energy_of(self.transform(z))
            return (e if beta == 1.0 else beta * e) - self.base0.log_prob(z)

        return u

    def to_x(self, z: torch.Tensor) -> torch.Tensor:
        return self.transform(z).detach() if self.latent else z

    def from_x(self, x: torch.Tensor) -> torch.Tensor:
        """``T⁻¹(x)``; a chain the flow maps to a non-finite point (on the edge of its support
        in floating point, e.g. 0 or 1 under a logit) restarts from a ``q₀`` draw."""
        if not self.latent:
            return x
        with torch.no_grad():
            z = self.transform.inv(x)
            event = len(self.dist.event_shape)
            bad = (
                ~torch.isfinite(z).flatten(z.dim() - event).all(-1) if event else ~torch.isfinite(z)
            )
            if bool(bad.any()):
                fresh = self.base0.sample(z.shape[: z.dim() - event])
                z = torch.where(bad.reshape(bad.shape + (1,) * event), fresh, z)
        return z.detach()

    def init(self, sample_shape: Any, sampler: EnergySampler | None = None) -> torch.Tensor:
        """Fresh states: ``q₀`` draws in latent space, ``q`` draws with a base, else
        ``sampler.init`` (``EnergySampler``'s own start without a sampler)."""
        shape = torch.Size(sample_shape) + self.dist.batch_shape
        with torch.no_grad():
            if self.latent:
                return self.base0.sample(shape)
            if self.dist.base is not None:
                return self.dist.base.sample(shape)
        return (EnergySampler() if sampler is None else sampler).init(self.dist, sample_shape)


def chain_diagnostics(trace: torch.Tensor) -> tuple[float, float]:
    """``(ESS, split R-hat)`` of a trace ``(steps, chains)`` (Geyer's initial monotone
    sequence, summed over chains; Stan's split R-hat, NaN for one chain).

    >>> _ = torch.manual_seed(0)
    >>> ess, rhat = chain_diagnostics(torch.randn(200, 50))
    >>> 8000 < ess < 12000, abs(rhat - 1) < 0.01
    (True, True)
    """
    t = trace.detach().double()
    ess = float(effective_sample_size(t, chain_dim=1, sample_dim=0))
    rhat = float(split_gelman_rubin(t, chain_dim=1, sample_dim=0)) if t.shape[1] > 1 else math.nan
    return ess, rhat


class AdaptiveLangevinSampler(EnergySampler):
    """MALA whose step size is adapted towards ``target_accept``, then run ``num_steps`` more.

    :meth:`sample` starts fresh chains (from the base ``q`` when the distribution has one,
    else ``init_loc + init_scale · N(0, I)``), runs ``warmup`` MALA moves while dual
    averaging (Nesterov 2009, as in NUTS) steers the step size so that the mean acceptance
    over the chains meets ``target_accept`` (0.574 is optimal for MALA in high dimension,
    Roberts & Rosenthal 1998) — over the first ``anneal`` of them the residual energy is
    tempered, ``β`` rising geometrically from 0.01 to 1 — and then ``num_steps`` moves at
    the averaged step size, which are exact MALA (every move is Metropolis-adjusted).
    With a flow base the chains move in its latent space (:class:`ChainSpace`).

    ``diagnostics`` then holds ``accept_rate`` (of the kept moves), ``step_size``, ``ess``
    (effective sample size of the kept moves' potential and of a random projection of the
    state, the smaller, summed over chains), ``ess_per_chain`` and ``rhat`` (split R-hat
    of the same traces, the larger); a ``UserWarning`` says so when ``rhat > 1.1`` or
    when a chain has less than one effective draw over its kept moves (the returned
    draws may still remember the start: raise ``num_steps``/``warmup`` or ``anneal``).

    :meth:`run` (what the training losses call, ``num_steps`` moves from given states)
    adapts the step size as it goes (``log η += adapt_rate · (acceptance − target)``
    after every move) and keeps it for the next call; ``state_dict`` carries it, so a
    loss that checkpoints its sampler resumes exactly.

    Args:
        num_steps: kept MALA moves of :meth:`sample` (default 1000).
        warmup: adaptation moves before them (default ``num_steps``).
        step_size: initial ``η > 0`` (default 0.1).
        target_accept: in ``(0, 1)``.
        anneal: number of warmup moves over which ``β`` rises to 1 (0: none).
        latent: move in a flow base's latent space.
        init_loc, init_scale: the start without a base (floats or tensors).
        adapt_rate: the gain of :meth:`run`'s adaptation (0 keeps ``η`` fixed).
        tame: the drift ``η∇U`` is truncated to ``tame · √(2ηD)`` (the noise's typical norm;
            MALTA): without it a chain deep in a light tail, where the gradient is large,
            overshoots and is rejected for ever. None: plain MALA.

    Example (a unit-scale banana, ``x₂ | x₁ ~ N(0.8 (x₁² − 1), 1)``: variances 1 and 2.28):
        >>> from pyro_genmodels.distributions import EnergyDistribution
        >>> def banana(x):
        ...     return 0.5 * x[..., 0] ** 2 + 0.5 * (x[..., 1] - 0.8 * (x[..., 0] ** 2 - 1)) ** 2
        >>> d = EnergyDistribution(banana, (2,))
        >>> _ = torch.manual_seed(0)
        >>> x = d.sample((2000,))  # this sampler is the default
        >>> [round(v, 1) for v in x.var(0).tolist()], d.sampler.diagnostics["rhat"] < 1.1
        ([1.0, 2.3], True)

    References:
        Roberts & Rosenthal, "Optimal scaling of discrete approximations to Langevin
        diffusions", JRSS B 1998.
        Hoffman & Gelman, "The No-U-Turn Sampler", JMLR 2014 (dual averaging).
        Hoffman et al., "NeuTra-lizing Bad Geometry in Hamiltonian Monte Carlo Using
        Neural Transport", 2019.
    """

    def __init__(
        self,
        num_steps: int = 1000,
        warmup: int | None = None,
        step_size: float = 0.1,
        target_accept: float = 0.574,
        anneal: int = 0,
        latent: bool = True,
        init_loc: torch.Tensor | float = 0.0,
        init_scale: torch.Tensor | float = 1.0,
        adapt_rate: float = 0.05,
        tame: float | None = 1.0,
    ) -> None:
        super().__init__()
        self.num_steps = check_positive_int("num_steps", num_steps)
        self.warmup = self.num_steps if warmup is None else check_int("warmup", warmup, 0)
        self.step_size = check_positive_float("step_size", step_size)
        target_accept = check_real("target_accept", target_accept, 0.0, strict=True)
        if not target_accept < 1:
            raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}")
        self.target_accept = target_accept
        self.anneal = check_int("anneal", anneal, 0)
        if self.anneal > self.warmup:
            raise ValueError(f"anneal must be <= warmup ({self.warmup}), got {self.anneal}")
        self.latent = check_bool("latent", latent)
        self.init_loc = check_real_or_tensor("init_loc", init_loc)
        self.init_scale = check_real_or_tensor("init_scale", init_scale, minimum=0.0)
        self.adapt_rate = check_real("adapt_rate", adapt_rate, 0.0)
        self.tame = None if tame is None else check_positive_float("tame", tame)
        self._step = self.step_size  # the adapted step size (run and sample update it)

    def init(self, dist: Any, sample_shape: Any = ()) -> torch.Tensor:
        """Fresh chains: base draws, else ``init_loc + init_scale · ε`` (coin flips if discrete)."""
        x = super().init(dist, sample_shape)
        if dist.support.is_discrete or getattr(dist, "base", None) is not None:
            return x
        loc, scale = torch.as_tensor(self.init_loc).to(x), torch.as_tensor(self.init_scale).to(x)
        return loc + scale * x

    def _move(self, dist: Any, potential: Potential, *state: Any) -> Any:
        """A MALA move whose drift is truncated to ``tame · √(2ηD)``, the noise's typical norm."""
        z, e, g, eta = state
        limit = (
            None if self.tame is None else self.tame * math.sqrt(2 * eta * dist.event_shape.numel())
        )
        return langevin_move(potential, z, e, g, eta, max_drift=limit)

    def _beta(self, t: int) -> float:
        return 1.0 if t >= self.anneal else 0.01 ** (1 - t / self.anneal)

    def sample(self, dist: Any, sample_shape: Any = ()) -> torch.Tensor:
        """``warmup`` adapted moves from fresh chains, then ``num_steps`` kept moves; returns
        the last state of every chain, ``sample_shape + batch_shape + event_shape``."""
        if dist.support.is_discrete:
            raise ValueError("AdaptiveLangevinSampler needs a real support, got a discrete one")
        space = ChainSpace(dist, self.latent)
        with unchecked_energies():  # non-finite proposals are rejected by the MALA test
            z = space.init(sample_shape, self)
            eta = self.step_size
            adapter = DualAveraging(prox_center=math.log(10 * eta))
            log_avg = math.log(eta)
            potential, beta = space.potential(self._beta(0)), self._beta(0)
            e, g = energy_grad(potential, z)
            for t in range(self.warmup):
                if self._beta(t) != beta:
                    beta = self._beta(t)
                    potential = space.potential(beta)
                    e, g = energy_grad(potential, z)
                z, e, g, accept_prob, *_ = self._move(dist, potential, z, e, g, eta)
                adapter.step(self.target_accept - float(accept_prob.mean()))
                log_eta, log_avg = adapter.get_state()
                eta = math.exp(log_eta)
            eta = self._step = math.exp(log_avg)
            potential = space.potential(1.0)
            e, g = energy_grad(potential, z)
            chains = z.shape[: e.dim()]
            direction = torch.randn(z.shape[e.dim() :], dtype=z.dtype, device=z.device)
            direction = direction / direction.norm()
            energies, projections, accepts = [], [], []
            for _ in range(self.num_steps):
                z, e, g, accept_prob, *_ = self._move(dist, potential, z, e, g, eta)
                energies.append(e.reshape(-1))
                projections.append((z * direction).reshape(chains.numel(), -1).sum(-1))
                accepts.append(accept_prob.mean())
        self._report(energies, projections, accepts, eta)
        return space.to_x(z)

    def _report(self, energies: list, projections: list, accepts: list, eta: float) -> None:
        traces = [torch.stack(energies), torch.stack(projections)]
        finite = all(bool(torch.isfinite(t).all()) for t in traces)
        pairs = [chain_diagnostics(t) for t in traces] if finite else [(math.nan, math.nan)]
        num_chains = traces[0].shape[1]
        ess = min(p[0] for p in pairs)
        rhat = max(p[1] for p in pairs)
        self.diagnostics = {
            "accept_rate": float(torch.stack(accepts).mean()),
            "step_size": eta,
            "ess": ess,
            "ess_per_chain": ess / num_chains,
            "rhat": rhat,
            "num_chains": num_chains,
        }
        if not finite or rhat > RHAT_LIMIT or ess < num_chains:
            warnings.warn(
                f"AdaptiveLangevinSampler may not have converged: split R-hat {rhat:.3f} "
                f"(limit {RHAT_LIMIT}), {ess / num_chains:.2f} effective draws per chain over "
                f"{self.num_steps} kept moves (acceptance {self.diagnostics['accept_rate']:.2f},"
                f" step size {eta:.3g}); raise num_steps or warmup, or set anneal",
                UserWarning,
                stacklevel=3,
            )

    def run(self, dist: Any, x: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        """``num_steps`` MALA moves from ``x`` (in the latent space of a flow base), adapting
        the step size after each move; returns the detached states."""
        steps = self.num_steps if num_steps is None else check_positive_int("num_steps", num_steps)
        space = ChainSpace(dist, self.latent)
        potential = space.potential(1.0)
        z = space.from_x(x.detach())
        e, g = energy_grad(potential, z)
        log_eta, rates = math.log(self._step), []
        for _ in range(steps):
            eta = math.exp(log_eta)
            z, e, g, accept_prob, *_ = self._move(dist, potential, z, e, g, eta)
            rate = accept_prob.mean()
            rates.append(rate)
            if self.adapt_rate:
                log_eta += self.adapt_rate * (float(rate) - self.target_accept)
        self._step = math.exp(log_eta)
        self.diagnostics = {
            "accept_rate": float(torch.stack(rates).mean()),
            "step_size": self._step,
        }
        return space.to_x(z)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{"step_size": η}``: the adapted step size (float64 scalar)."""
        return {"step_size": torch.tensor(self._step, dtype=torch.float64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restores :meth:`state_dict`."""
        self._step = check_positive_float("step_size", float(state["step_size"]))
