"""Annealed importance sampling of ``log Z`` (Neal 2001), for any annealing path.

A path ``f_β`` (``β ∈ [0, 1]``) runs from a normalized base ``f_0/Z_0`` with exact
draws to the unnormalized target ``f_1``. Each chain starts at ``x ~ f_0/Z_0``
and accumulates ``log w += log f_{β_k}(x) − log f_{β_{k−1}}(x)`` before a move
leaving ``f_{β_k}`` invariant; then ``Ẑ = Z_0 · mean(w)`` is unbiased for ``Z``.
:class:`EnergyAnnealingPath` is the geometric path from a Gaussian to an
:class:`~pyro_genmodels.distributions.EnergyDistribution` with MALA moves; other
models supply their own :class:`AnnealingPath` through an ``annealing_path(**kwargs)``
method, or a path class registered for their type in :data:`PATHS` (RBMs and DBMs:
:class:`~pyro_genmodels.infer.BoltzmannAnnealingPath`, registered by
:mod:`pyro_genmodels.infer.boltzmann_ais`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from pyro_genmodels._checks import (
    check_positive_float,
    check_positive_int,
    check_real,
    check_real_or_tensor,
)
from pyro_genmodels.distributions.adaptive import ChainSpace
from pyro_genmodels.distributions.energy import EnergyDistribution
from pyro_genmodels.distributions.samplers import energy_grad, langevin_move

#: ``{model type: path builder (model, **kwargs) -> AnnealingPath}``: the paths of model
#: classes that cannot import this package's ``infer`` layer themselves (read by :func:`ais`).
PATHS: dict[type, Any] = {}


class AISResult(NamedTuple):
    """``log_z`` (scalar), its delta-method ``stderr``, the chains' ``log_weights`` ``(n,)``."""

    log_z: torch.Tensor
    stderr: torch.Tensor
    log_weights: torch.Tensor


class AnnealingPath:
    """A path ``f_β``, ``β ∈ [0, 1]``: ``f_0`` a base with exact draws, ``f_1`` the target.

    :func:`run_ais` uses only these four methods; :class:`EnergyAnnealingPath` is the
    geometric path of an ``EnergyDistribution``.
    """

    def init(self, num_chains: int) -> torch.Tensor:
        """Exact draws ``(num_chains, *event)`` from the normalized base ``f_0 / Z_0``."""
        raise NotImplementedError

    def log_base_normalizer(self) -> torch.Tensor:
        """``log Z_0`` (scalar tensor)."""
        raise NotImplementedError

    def log_density(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        """Unnormalized ``log f_β(x)``, shape ``(num_chains,)``."""
        raise NotImplementedError

    def transition(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        """One MCMC move per chain leaving ``f_β`` invariant."""
        raise NotImplementedError


class EnergyAnnealingPath(AnnealingPath):
    """A geometric path to ``exp(−U)``, ``U = E − log q``, moved by ``num_steps`` MALA steps.

    From the distribution's base ``q`` (when it has one and no ``base_loc``/``base_scale``
    is given): ``log f_β(x) = log q(x) − β E(x)``, ``Z_0 = 1``, chains drawn from ``q`` (in
    the latent space of a flow base with ``latent=True``, where
    ``log f_β(z) = log q₀(z) − β E(T(z))``). At ``E ≡ 0`` every weight is 1 and
    ``log Ẑ = 0`` exactly. Otherwise from a Gaussian:
    ``log f_β(x) = −(1−β) ‖x − μ‖² / (2s²) − β U(x)``.

    Args:
        dist: an unconditional ``EnergyDistribution`` (``batch_shape == ()``) with a real support.
        base_loc: ``μ``, float or tensor broadcastable to the event shape (Gaussian path).
        base_scale: ``s > 0``, float or tensor broadcastable to the event shape (Gaussian path).
        step_size: MALA step size ``η``; default ``0.1 · min(s)²`` (``s``: the base's
            standard deviations, estimated from 256 draws of ``q``).
        num_steps: MALA steps per temperature.
        adapt_step_size: multiply ``η`` by ``exp(acceptance − 0.57)`` after every
            temperature (faster mixing; the moves then depend on the other chains,
            so ``Ẑ`` is consistent but no longer exactly unbiased).
        latent: move in a flow base's latent space.

    Example:
        >>> d = EnergyDistribution(lambda x: 0.5 * (x**2).sum(-1), (2,))
        >>> path = EnergyAnnealingPath(d, base_scale=2.0)
        >>> x = path.init(5)
        >>> x.shape, path.log_density(x, 0.5).shape, path.transition(x, 0.5).shape
        (torch.Size([5, 2]), torch.Size([5]), torch.Size([5, 2]))
    """

    def __init__(
        self,
        dist: EnergyDistribution,
        base_loc: float | torch.Tensor | None = None,
        base_scale: float | torch.Tensor | None = None,
        step_size: float | None = None,
        num_steps: int = 1,
        adapt_step_size: bool = False,
        latent: bool = True,
    ) -> None:
        if not isinstance(dist, EnergyDistribution):
            raise TypeError(f"dist must be an EnergyDistribution, got {type(dist).__name__}")
        if dist.batch_shape != torch.Size():
            raise ValueError(
                "AIS needs an unconditional EnergyDistribution (batch_shape ()), got batch_shape "
                f"{tuple(dist.batch_shape)}"
            )
        if dist.support.is_discrete:
            raise ValueError("the AIS path of an EnergyDistribution needs a real support")
        self.dist = dist
        self.from_base = dist.base is not None and base_loc is None and base_scale is None
        self.space = ChainSpace(dist, latent) if self.from_base else None
        kw = dist.factory_kwargs()
        shape = dist.event_shape
        base_loc = check_real_or_tensor("base_loc", 0.0 if base_loc is None else base_loc)
        base_scale = 1.0 if base_scale is None else base_scale
        base_scale = check_real_or_tensor("base_scale", base_scale, minimum=0.0, strict=True)
        self.loc = torch.as_tensor(base_loc, **kw).expand(shape)
        self.scale = torch.as_tensor(base_scale, **kw).expand(shape)
        if step_size is None:
            spread = self.scale if self.space is None else self.init(256).std(0)
            step_size = 0.1 * float(spread.min().clamp_min(1e-6)) ** 2
        self.step_size = check_positive_float("step_size", step_size)
        self.num_steps = check_positive_int("num_steps", num_steps)
        if not isinstance(adapt_step_size, bool):
            raise TypeError(f"adapt_step_size must be a bool, got {type(adapt_step_size).__name__}")
        self.adapt_step_size = adapt_step_size
        self.accept_rates: list[float] = []

    def init(self, num_chains: int) -> torch.Tensor:
        if self.space is not None:
            return self.space.init((num_chains,))
        shape = (num_chains,) + tuple(self.dist.event_shape)
        return self.loc + self.scale * torch.randn(
            shape, dtype=self.loc.dtype, device=self.loc.device
        )

    def log_base_normalizer(self) -> torch.Tensor:
        if self.space is not None:
            return self.loc.new_zeros(())
        return self.scale.log().sum() + 0.5 * self.scale.numel() * math.log(2 * math.pi)

    def _sum_event(self, t: torch.Tensor) -> torch.Tensor:
        return t.flatten(t.dim() - len(self.dist.event_shape)).sum(-1)

    def log_density(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        beta = check_real("beta", beta, minimum=0.0, maximum=1.0)
        if self.space is not None:
            return -self.space.potential(beta)(x)
        log_f0 = -0.5 * self._sum_event(((x - self.loc) / self.scale) ** 2)
        if beta == 0:
            return log_f0
        return (1 - beta) * log_f0 - beta * self.dist.potential(x)

    def to_x(self, state: torch.Tensor) -> torch.Tensor:
        """The data-space point of a chain's state (its latent state mapped by the flow)."""
        return state if self.space is None else self.space.to_x(state)

    def transition(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        beta = check_real("beta", beta, minimum=0.0, maximum=1.0)

        def energy(y: torch.Tensor) -> torch.Tensor:
            return -self.log_density(y, beta)

        accepts = []
        e, g = energy_grad(energy, x)
        for _ in range(self.num_steps):
            move = langevin_move(energy, x, e, g, self.step_size)
            x, e, g = move.x, move.energy, move.grad
            accepts.append(move.accepted.to(x.dtype).mean())
        rate = float(torch.stack(accepts).mean())
        self.accept_rates.append(rate)
        if self.adapt_step_size:
            self.step_size *= math.exp(rate - 0.57)
        return x


def sigmoid_schedule(num_betas: int, delta: float = 4.0, **kw: Any) -> torch.Tensor:
    """``num_betas + 1`` inverse temperatures from 0 to 1, dense at both ends (Grosse et al. 2013).

    >>> b = sigmoid_schedule(4)
    >>> float(b[0]), float(b[-1]), len(b)
    (0.0, 1.0, 5)
    """
    s = torch.sigmoid(torch.linspace(-delta, delta, num_betas + 1, **kw))
    return (s - s[0]) / (s[-1] - s[0])


def _check_betas(betas: Any) -> list[float]:
    """``betas`` as floats if they are ``>= 2`` finite reals increasing from 0 to 1."""
    if isinstance(betas, torch.Tensor):
        if betas.dim() != 1:
            raise ValueError(f"betas must be a 1-d tensor, got shape {tuple(betas.shape)}")
        values = betas.tolist()
    elif isinstance(betas, Sequence) and not isinstance(betas, str):
        values = list(betas)
    else:
        raise TypeError(
            f"betas must be a 1-d tensor or a sequence of reals, got {type(betas).__name__}"
        )
    if len(values) < 2:
        raise ValueError(f"betas must hold >= 2 inverse temperatures, got {len(values)}")
    b = [check_real(f"betas[{i}]", v, minimum=0.0, maximum=1.0) for i, v in enumerate(values)]
    if b[0] != 0.0 or b[-1] != 1.0 or any(y < x for x, y in zip(b, b[1:], strict=False)):
        raise ValueError("betas must increase from 0 to 1 (first 0, last 1, non-decreasing)")
    return b


def run_ais(
    path: AnnealingPath, betas: torch.Tensor | Sequence[float], num_chains: int = 100
) -> AISResult:
    """``log Ẑ = log Z_0 + log mean_i w_i`` along ``path`` at inverse temperatures ``betas``.

    Args:
        path: an :class:`AnnealingPath`.
        betas: ``(K + 1,)`` finite, increasing from 0 to 1 (a tensor or a sequence); NaN, inf
            or a value outside ``[0, 1]`` is a ``ValueError`` naming the entry.
        num_chains: independent chains.

    Returns:
        :class:`AISResult`; ``stderr = sd(w) / (√n · mean(w))`` is the delta-method
        standard error of ``log Ẑ``.

    Example:
        >>> import torch
        >>> d = EnergyDistribution(lambda x: 0.5 * (x**2).sum(-1) / 4.0, (2,))  # N(0, 4 I)
        >>> _ = torch.manual_seed(0)
        >>> r = run_ais(EnergyAnnealingPath(d), sigmoid_schedule(200), 200)
        >>> bool(abs(float(r.log_z) - math.log(2 * math.pi * 4)) < 3 * float(r.stderr) + 0.05)
        True

    References:
        Neal, "Annealed Importance Sampling", Statistics and Computing 2001.
        Grosse, Maddison & Salakhutdinov, "Annealing between distributions by averaging
        moments", NeurIPS 2013.
    """
    num_chains = check_positive_int("num_chains", num_chains)
    b = _check_betas(betas)
    with torch.no_grad():
        x = path.init(num_chains)
        log_w = torch.zeros(
            num_chains, dtype=x.dtype if x.is_floating_point() else None, device=x.device
        )
        for prev, beta in zip(b[:-1], b[1:], strict=True):
            log_w = log_w + path.log_density(x, beta) - path.log_density(x, prev)
            if beta < 1.0:
                x = path.transition(x, beta)
        log_z0 = path.log_base_normalizer().to(log_w)
        log_z = log_z0 + torch.logsumexp(log_w, 0) - math.log(num_chains)
        w = (log_w - log_w.max()).exp()
        stderr = (
            w.std() / (w.mean() * math.sqrt(num_chains))
            if num_chains > 1
            else w.new_tensor(math.inf)
        )
    return AISResult(log_z, stderr, log_w)


def ais(
    target: Any,
    *,
    num_chains: int = 100,
    num_betas: int | None = None,
    betas: torch.Tensor | Sequence[float] | None = None,
    **path_kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log Ẑ, stderr)`` of ``target``'s normalizer by annealed importance sampling.

    ``target`` is an :class:`~pyro_genmodels.distributions.EnergyDistribution`
    (geometric path from its base ``q``, or from a Gaussian, MALA moves; ``path_kwargs``
    go to :class:`EnergyAnnealingPath`), an RBM or DBM (``path_kwargs`` go to
    :class:`~pyro_genmodels.infer.BoltzmannAnnealingPath`, e.g. ``data=train``; any type in
    :data:`PATHS`) or any object with ``annealing_path(**path_kwargs) -> AnnealingPath``.
    Without ``betas``, a path with a ``default_betas(num_betas)`` method supplies its own
    schedule (for RBMs
    and DBMs the Salakhutdinov & Murray (2008) schedule,
    :func:`~pyro_genmodels.infer.salakhutdinov_murray_betas`, 14,500 transitions
    unless ``num_betas`` is given); other paths use :func:`sigmoid_schedule`
    ``(num_betas)`` with ``num_betas = 1000`` by default.

    Example:
        >>> import torch
        >>> d = EnergyDistribution(lambda x: 0.5 * (x**2).sum(-1), (3,))
        >>> _ = torch.manual_seed(0)
        >>> log_z, se = ais(d, num_chains=50, num_betas=50)
        >>> round(float(log_z), 3), float(se) < 1e-6   # exact: the base is the target
        (2.757, True)
    """
    builder = next((b for kind, b in PATHS.items() if isinstance(target, kind)), None)
    if hasattr(target, "annealing_path"):
        path = target.annealing_path(**path_kwargs)
    elif builder is not None:
        path = builder(target, **path_kwargs)
    elif isinstance(target, EnergyDistribution):
        path = EnergyAnnealingPath(target, **path_kwargs)
    else:
        raise TypeError(
            "ais needs an EnergyDistribution, an RBM or DBM, or an object with annealing_path(), "
            f"got {type(target).__name__}"
        )
    if num_betas is not None:
        num_betas = check_positive_int("num_betas", num_betas)
    if betas is None and callable(getattr(path, "default_betas", None)):
        betas = path.default_betas() if num_betas is None else path.default_betas(num_betas)
    elif betas is None:
        x = path.init(1)
        kw = {"dtype": x.dtype, "device": x.device} if x.is_floating_point() else {}
        betas = sigmoid_schedule(1000 if num_betas is None else num_betas, **kw)
    result = run_ais(path, betas, num_chains)
    return result.log_z, result.stderr
