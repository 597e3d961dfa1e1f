"""Langevin dynamics as a ``pyro.infer.mcmc`` kernel (ULA / MALA), and annealed Langevin."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from pyro.infer.mcmc.util import initialize_model
from pyro.ops.dual_averaging import DualAveraging

from pyro_genmodels._checks import check_positive_float, check_positive_int
from pyro_genmodels.distributions.energy import EnergyDistribution, unchecked_energies
from pyro_genmodels.distributions.samplers import (
    LangevinSampler,
    check_finite_draws,
    check_noise_scale,
    energy_grad,
    langevin_move,
)

_MAX_ENERGY_ERROR = 1000.0


class Langevin(MCMCKernel):
    """``z ← z − η ∇U(z) + s ε`` on the unconstrained latents, ``U`` the potential (−log joint).

    ULA with ``adjust=False`` (biased by ``O(η)``); MALA with ``adjust=True``: a
    Metropolis–Hastings correction with the Gaussian proposal
    ``q(z'|z) = N(z − η∇U(z), 2η I)`` makes the posterior exactly invariant, and
    during warmup the step size is adapted by dual averaging toward
    ``target_accept_prob``. Like :class:`pyro.infer.HMC` it runs on any Pyro
    model with continuous latents (through ``initialize_model``: transforms to
    unconstrained space, initial values) or on a ``potential_fn`` (then set
    ``initial_params``). ``diagnostics()`` has ``"divergences"`` (MALA draws whose
    proposal had non-finite values or an exploding potential) and the acceptance rate,
    so ``arviz.from_pyro`` works, also with ``num_chains > 1`` (keep the model
    picklable).

    Non-finite proposals (a step too large for the potential's curvature: for
    ``U = λ‖z‖²/2`` ULA is stable only for ``η < 2/λ``) are never returned. MALA rejects
    them: a point where the potential is not finite has density 0 under the target, so the
    Metropolis–Hastings acceptance is 0 and the chain stays put, still exactly invariant
    (the draw counts as a divergence and dual averaging shrinks ``η``). ULA has no
    accept/reject step: a non-finite proposal would be the chain's next state and every
    later draw would be NaN, so it raises ``FloatingPointError`` naming the site and
    ``step_size``.

    **When to prefer NUTS.** One Langevin move costs one gradient and moves ``O(√η)``, so on
    an ill-conditioned or curved target the step size is set by the narrowest direction and
    the chain diffuses slowly along the wide ones; NUTS builds trajectories that cross the
    whole target. ``benchmarks/energy.py`` (section ``mcmc``, 1000 draws after 500 warmup,
    ArviZ min-ESS per second, Langevin over NUTS): a 10-D Gaussian with scales 0.5–2, 0.017×
    (prefer NUTS); the unit-scale 2-D banana, 0.20× — and one chain of MALA stuck in the
    banana's tail for hundreds of draws gave variances 114% off (min-ESS 5) where NUTS was
    within 6% (min-ESS 152); a 10-D Neal funnel, 38× (NUTS builds deep trees in the neck
    there; Langevin's ESS there is an ESS of a chain that has not explored the neck, so read
    it as speed, not accuracy).
    Prefer NUTS for posterior inference on a few hundred dimensions or fewer; prefer
    Langevin for many cheap parallel chains (the batched
    :class:`~pyro_genmodels.distributions.AdaptiveLangevinSampler` runs thousands as one
    batch, as energy-based training needs) or when a gradient is too expensive for NUTS's
    trees.

    Args:
        model: a Pyro model (or None with ``potential_fn``).
        potential_fn: ``U(params dict) -> scalar`` (or None with ``model``).
        step_size: initial ``η > 0``.
        adjust: MALA (True) or ULA (False).
        num_steps: Langevin steps per draw.
        noise_scale: ``s``; default ``√(2η)`` (ULA only; MALA needs the default).
        adapt_step_size: adapt ``η`` during warmup (default: ``adjust``).
        target_accept_prob: for MALA adaptation (0.574 is optimal in high dimension).
        transforms, init_strategy, jit_compile: as for ``pyro.infer.HMC``.

    Example:
        >>> import pyro, pyro.distributions as dist, torch
        >>> def model():
        ...     pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        >>> mcmc = pyro.infer.MCMC(Langevin(model, step_size=0.5, adjust=True),
        ...                        num_samples=300, warmup_steps=100, disable_progbar=True)
        >>> mcmc.run()
        >>> mcmc.get_samples()["z"].shape
        torch.Size([300, 2])

    References:
        Roberts & Tweedie, "Exponential convergence of Langevin distributions and their
        discrete approximations", Bernoulli 1996.
        Roberts & Rosenthal, "Optimal scaling of discrete approximations to Langevin
        diffusions", JRSS B 1998.
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        step_size: float = 0.1,
        adjust: bool = False,
        num_steps: int = 1,
        noise_scale: float | None = None,
        adapt_step_size: bool | None = None,
        target_accept_prob: float = 0.574,
        transforms: dict | None = None,
        init_strategy: Callable | None = None,
        jit_compile: bool = False,
    ) -> None:
        if (model is None) == (potential_fn is None):
            raise ValueError("Langevin needs exactly one of model= or potential_fn=")
        for name, fn in (("model", model), ("potential_fn", potential_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
        check_noise_scale(noise_scale, check_positive_float("step_size", step_size), adjust)
        self.model = model
        self.potential_fn = potential_fn
        self.transforms = {} if transforms is None else transforms
        self.step_size = float(step_size)
        self.adjust = adjust
        self.num_steps = check_positive_int("num_steps", num_steps)
        self.noise_scale = noise_scale
        if adapt_step_size is None:
            adapt_step_size = adjust
        if not isinstance(adapt_step_size, bool):
            raise TypeError(f"adapt_step_size must be a bool, got {type(adapt_step_size).__name__}")
        if adapt_step_size and not adjust:
            raise ValueError("adapt_step_size targets an acceptance rate: it needs adjust=True")
        self.adapt_step_size = adapt_step_size
        check_positive_float("target_accept_prob", target_accept_prob)
        if not 0 < target_accept_prob < 1:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob!r}")
        self.target_accept_prob = float(target_accept_prob)
        self.init_strategy = init_strategy
        self.jit_compile = jit_compile
        self._initial_params: dict[str, torch.Tensor] | None = None
        self._reset()

    def _reset(self) -> None:
        self._t = 0
        self._warmup_steps = 0
        self._divergences: list[int] = []
        self._accept_sum = 0.0
        self._mean_accept_prob = 0.0
        self._cache: tuple | None = None

    @property
    def initial_params(self) -> dict[str, torch.Tensor] | None:
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params: dict[str, torch.Tensor]) -> None:
        self._initial_params = params

    def setup(self, warmup_steps: int, *args: Any, **kwargs: Any) -> None:
        self._reset()
        self._warmup_steps = warmup_steps
        if self.model is not None:
            extra = {} if self.init_strategy is None else {"init_strategy": self.init_strategy}
            init, potential_fn, transforms, _ = initialize_model(
                self.model,
                model_args=args,
                model_kwargs=kwargs,
                transforms=self.transforms or None,
                initial_params=self._initial_params,
                jit_compile=self.jit_compile,
                skip_jit_warnings=True,
                **extra,
            )
            self.potential_fn, self.transforms = potential_fn, transforms
            if self._initial_params is None:
                self._initial_params = init
        elif self._initial_params is None:
            raise ValueError("Langevin(potential_fn=...) needs initial_params set before MCMC.run")
        self._adapter = DualAveraging(prox_center=math.log(10 * self.step_size))
        self._log_step = math.log(self.step_size)

    def _flat_potential(self, like: dict[str, torch.Tensor]) -> Any:
        """``U`` of the sites packed into one vector (the MALA move works on tensors)."""
        names, shapes = list(like), [v.shape for v in like.values()]
        sizes = [v.numel() for v in like.values()]

        def unpack(flat: torch.Tensor) -> dict[str, torch.Tensor]:
            parts = flat.split(sizes)
            return {k: p.reshape(s) for k, p, s in zip(names, parts, shapes, strict=True)}

        def potential(flat: torch.Tensor) -> torch.Tensor:
            return self.potential_fn(unpack(flat))  # type: ignore[misc]

        return potential, unpack

    def _one_step(self, z: dict[str, torch.Tensor], eta: float) -> tuple[dict, float, bool]:
        """One ULA/MALA move (:func:`~pyro_genmodels.distributions.samplers.langevin_move`);
        returns (params, acceptance probability, diverged)."""
        potential, unpack = self._flat_potential(z)
        cached = self._cache is not None and self._cache[0].keys() == z.keys()
        if cached and all(self._cache[0][k] is v for k, v in z.items()):  # type: ignore[index]
            flat, u, g = self._cache[1:]  # type: ignore[index]
        else:
            flat = torch.cat([v.detach().reshape(-1) for v in z.values()])
            u, g = energy_grad(potential, flat)
        move = langevin_move(potential, flat, u, g, eta, self.noise_scale, self.adjust)
        new = unpack(move.x)
        self._cache = (new, move.x, move.energy, move.grad)
        finite = bool(torch.isfinite(move.energy_error)) and bool(torch.isfinite(move.x).all())
        if not self.adjust:
            if not finite:
                self._raise_diverged(new, move.energy, eta)
            return new, 1.0, False
        diverged = not finite or bool(move.energy_error > _MAX_ENERGY_ERROR)
        return new, 0.0 if diverged else float(move.accept_prob), diverged

    def _raise_diverged(self, prop: dict[str, torch.Tensor], u_p: torch.Tensor, eta: float) -> None:
        """``FloatingPointError`` for a non-finite ULA proposal, naming the site and the knob."""
        where = f"Langevin(adjust=False) draw {self._t + 1}"
        for name, value in prop.items():
            check_finite_draws(value, f"{where}: site {name!r}", eta)
        check_finite_draws(u_p.reshape(1), f"{where}: the potential", eta)

    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        eta = math.exp(self._log_step)
        accept_probs, diverged = [], False
        z = params
        for _ in range(self.num_steps):
            z, a, d = self._one_step(z, eta)
            accept_probs.append(a)
            diverged = diverged or d
        accept_prob = sum(accept_probs) / len(accept_probs)
        self._t += 1
        warm = self._t <= self._warmup_steps
        if warm and self.adapt_step_size:
            self._adapter.step(self.target_accept_prob - accept_prob)
            log_step, log_step_avg = self._adapter.get_state()
            self._log_step = log_step_avg if self._t == self._warmup_steps else log_step
        if diverged and not warm:
            self._divergences.append(self._t - self._warmup_steps)
        n = self._t if warm else self._t - self._warmup_steps
        if self._t == self._warmup_steps + 1:
            self._accept_sum = 0.0
        self._accept_sum += accept_prob
        self._mean_accept_prob = self._accept_sum / max(n, 1)
        return dict(z)

    def logging(self) -> OrderedDict:
        return OrderedDict(
            [
                ("step size", f"{math.exp(self._log_step):.2e}"),
                ("acc. prob", f"{self._mean_accept_prob:.3f}"),
            ]
        )

    def diagnostics(self) -> dict[str, Any]:
        return {
            "divergences": list(self._divergences),
            "acceptance rate": self._mean_accept_prob,
            "step size": math.exp(self._log_step),
        }


def annealed_langevin(
    energy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigmas: Sequence[float] | torch.Tensor,
    step_size: float = 2e-5,
    num_steps: int = 100,
    clamp: Sequence[float] | None = None,
) -> torch.Tensor:
    """Annealed Langevin: for ``σ₁ > … > σ_L``, ``T`` steps ``x ← x − (α/2)∇E(x, σ) + √α ε``.

    ``α = ε · σ² / σ_L²`` per level (Song & Ermon 2019, Algorithm 1), for a
    noise-conditional energy ``E(x, σ)`` (``σ`` passed with shape ``(N, 1)``)
    trained by :class:`~pyro_genmodels.infer.ScoreMatchingLoss` over noise levels.

    Args:
        energy: ``energy(x, sigma) -> (N,)`` or ``(N, 1)``.
        x: initial chains ``(N, *event)`` (e.g. uniform noise).
        sigmas: decreasing positive noise levels.
        step_size: ``ε``.
        num_steps: ``T`` per level.
        clamp: optional box ``(low, high)``.

    Returns:
        The final chains ``(N, *event)``, detached; ``FloatingPointError`` naming
        ``step_size`` when a chain diverged to NaN/inf.

    Example:
        >>> import torch
        >>> e = lambda x, s: 0.5 * (x**2).sum(-1) / (1 + s.squeeze(-1) ** 2)
        >>> _ = torch.manual_seed(0)
        >>> x = annealed_langevin(e, torch.rand(2000, 2) * 8 - 4, [1.0, 0.5, 0.25, 0.1], 0.05, 50)
        >>> x.shape, bool(abs(x.std() - 1) < 0.05)
        (torch.Size([2000, 2]), True)

    References:
        Song & Ermon, "Generative Modeling by Estimating Gradients of the Data Distribution",
        NeurIPS 2019.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a tensor of shape (N, *event), got {x!r:.60}")
    values = sigmas.tolist() if isinstance(sigmas, torch.Tensor) else list(sigmas)
    levels = [check_positive_float(f"sigmas[{i}]", s) for i, s in enumerate(values)]
    if not levels or levels != sorted(levels, reverse=True):
        raise ValueError(f"sigmas must be positive and decreasing, got {levels}")
    check_positive_float("step_size", step_size)
    num_steps = check_positive_int("num_steps", num_steps)
    with unchecked_energies():  # a diverging chain is reported below, naming step_size
        for sigma in levels:
            alpha = step_size * sigma**2 / levels[-1] ** 2
            context = x.new_full((x.shape[0], 1), sigma)
            dist = EnergyDistribution(energy, x.shape[1:], context=context)
            x = LangevinSampler(alpha / 2, num_steps, clamp=clamp).run(dist, x)
    return check_finite_draws(x.detach(), "annealed_langevin draws", step_size, adjustable=False)
