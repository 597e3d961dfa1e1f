"""The non-finite guard of a training step: no NaN/inf reaches parameters or optimizer state.

Before an update, :class:`UpdateGuard` checks the gradients: one fused reduction
(``torch._foreach_norm``) of the gradients and of the parameters, one
synchronization. A non-finite gradient stops the step (nothing is updated). Then
the update either is *provably finite*, and runs as it is, or is guarded by an undo:
the parameters and their optimizer state are copied (fused ``_foreach_copy_`` into
buffers reused from step to step), the update runs, parameters and optimizer state are
checked, and a non-finite result is undone exactly.

**When an update is provably finite.** For ``torch.optim.Adam`` and ``AdamW``
(Kingma & Ba 2015; Loshchilov & Hutter 2019) with ``0 ≤ β₁ < 1``, ``0 ≤ β₂ < 1``,
``β₁² < β₂``, ``ε > 0``, a finite rate ``η ≥ 0`` and a finite weight decay
``λ ≥ 0``, the moments after ``t`` steps of finite gradients satisfy, by
Cauchy–Schwarz, ``|m̂/√v̂| ≤ C = 1/√((1−β₂)(1−β₁²/β₂))`` (``C ≈ 72.7`` for the
defaults), so every parameter moves by at most ``ηC`` (AdamW first scales it by
``1 − ηλ``). With ``L = √(max of the dtype)/8`` (``2.3e18`` in float32): if every
gradient's norm plus ``λ`` times every parameter's norm is at most ``L`` (so
``g² ≤ L²`` cannot overflow the second moment), every parameter's norm is at most
``L``, and ``ηC ≤ L`` and ``ηλ ≤ L``, then the new parameters and moments are finite:
nothing can be poisoned, and no copy is needed. The bound needs the moments to have
been accumulated by Adam from finite gradients, which the guard itself ensures.

For SGD with momentum (``torch.optim.SGD``, and any optimizer with an
``update_growth()`` method such as :class:`~pyro_genmodels.models.boltzmann_sgd.BoltzmannSGD`)
the update is linear: the new parameter and momentum buffer have norms at most
``K M`` where ``M`` bounds the norms of the gradient, the parameter and the buffer and
``K`` depends on the rate, momentum and weight decay alone (for momentum SGD
``K = max(μ + 1 + λ, 1 + η(μ + 1 + λ))``). If ``M ≤ L`` and ``K ≤ L`` the new values are at
most ``L² = max/64``: finite. Any other optimizer, a parameter whose optimizer state
does not exist yet (the first step), or a step outside these bounds takes the guarded
path.

Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
"""

from __future__ import annotations

import math
from typing import Any

import pyro
import pyro.optim
import torch

from pyro_genmodels._compat import foreach_norm
from pyro_genmodels.optim import OptimSnapshot

__all__ = ["NonFiniteStep", "UpdateGuard", "non_finite_indices"]


class NonFiniteStep(Exception):
    """A step produced a non-finite loss, gradient or update; nothing was updated."""


_ADAM = (torch.optim.Adam, torch.optim.AdamW)


def adam_bound(beta1: float, beta2: float) -> float:
    """``C`` with ``|m̂/√v̂| ≤ C`` for Adam's moments of any finite gradients (``inf`` when
    ``β₁² ≥ β₂``: no bound).

    >>> round(adam_bound(0.9, 0.999), 1)
    72.7
    """
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1) or beta1 * beta1 >= beta2:
        return math.inf
    return 1.0 / math.sqrt((1 - beta2) * (1 - beta1 * beta1 / beta2))


def _optimizers(optim: pyro.optim.PyroOptim, params: list[torch.Tensor]) -> list[Any] | None:
    """The torch optimizers behind ``params`` (``None`` if one has none yet)."""
    found: dict[int, Any] = {}
    for p in params:
        obj = optim.optim_objs.get(p)
        if obj is None:
            return None
        opt = getattr(obj, "optimizer", obj)  # an LR scheduler wraps its optimizer
        found[id(opt)] = opt
    return list(found.values())


def _adam_limits(optimizers: list[Any], limit: float) -> float | None:
    """The largest weight decay of Adam/AdamW ``optimizers`` whose rates and betas make
    every update provably finite (see the module docstring), else ``None``."""
    decay = 0.0
    for opt in optimizers:
        if type(opt) not in _ADAM:
            return None
        for group in opt.param_groups:
            lr, eps, wd = (float(group.get(k, 0.0)) for k in ("lr", "eps", "weight_decay"))
            beta1, beta2 = (float(b) for b in group.get("betas", (0.9, 0.999)))
            values = (lr, eps, wd)
            if not all(math.isfinite(v) and v >= 0 for v in values) or eps == 0:
                return None
            if lr * adam_bound(beta1, beta2) > limit or lr * wd > limit:
                return None
            decay = max(decay, wd)
    return decay


def sgd_growth(opt: torch.optim.SGD) -> float:
    """``K`` with ``‖θ'‖, ‖buf'‖ ≤ K max(‖g‖, ‖θ‖, ‖buf‖)`` for one ``torch.optim.SGD`` step
    (``inf`` when a setting is not a finite number ``≥ 0``).

    >>> w = torch.zeros(2, requires_grad=True)
    >>> sgd_growth(torch.optim.SGD([w], lr=0.1, momentum=0.9))  # max(0.9 + 1, 1 + 0.1 * 1.9)
    1.9
    """
    growth = 0.0
    for group in opt.param_groups:
        lr, mu, wd = (float(group.get(k, 0.0)) for k in ("lr", "momentum", "weight_decay"))
        damp = float(group.get("dampening", 0.0))
        if not all(math.isfinite(v) and v >= 0 for v in (lr, mu, wd, damp)):
            return math.inf
        d = 1 + wd  # ‖g + λθ‖ ≤ (1 + λ) M
        buf = max(mu + abs(1 - damp) * d, d) if mu else 0.0  # the first step copies d
        step = (d + mu * buf if group.get("nesterov") else buf) if mu else d
        growth = max(growth, 1 + lr * step, buf)
    return growth


def _linear_growth(opt: Any) -> float | None:
    """The optimizer's ``K`` (see the module docstring), or ``None`` for a non-linear one."""
    if hasattr(opt, "update_growth"):
        return float(opt.update_growth())
    if type(opt) is torch.optim.SGD:
        return sgd_growth(opt)
    return None


def non_finite_indices(tensors: list[torch.Tensor]) -> list[int]:
    """Indices of the tensors holding NaN/inf: exact, with a fast path for the common case.

    A tensor's sum is finite whenever all its entries are (a NaN or inf entry makes it
    NaN or inf), so one reduction per tensor and one synchronization decide the usual
    all-finite case; only a non-finite sum (an entry, or an overflow of huge finite
    entries) pays for the exact entry-wise check.

    >>> non_finite_indices([torch.ones(2), torch.tensor([1.0, float("nan")])])
    [1]
    """
    if not tensors:
        return []
    try:
        sums = torch.stack([t.detach().sum() for t in tensors])
    except RuntimeError:  # mixed dtypes or devices: no stacking
        sums = None
    if sums is not None and bool(torch.isfinite(sums).all()):
        return []
    return [i for i, t in enumerate(tensors) if not bool(torch.isfinite(t.detach()).all())]


@torch.no_grad()
def _norms(tensors: list[torch.Tensor]) -> list[float]:
    """The 2-norm of each tensor, fused where dtypes and devices allow (one synchronization)."""
    if not tensors:
        return []
    try:
        return torch.stack(foreach_norm(tensors)).tolist()
    except RuntimeError:  # mixed dtypes or devices
        return [float(torch.linalg.vector_norm(t.to(torch.float64))) for t in tensors]


def _names(params: list[torch.Tensor], indices: list[int]) -> list[str]:
    store = pyro.get_param_store()
    return [str(store.param_name(params[i])) for i in indices]


class UpdateGuard:
    """Checks and makes the update of one step (see the module docstring).

    Args:
        optim: the Pyro optimizer of the run.

    Attributes:
        guarded_updates, proven_updates: how many updates took each path (for tests and
            benchmarks).
    """

    def __init__(self, optim: pyro.optim.PyroOptim) -> None:
        self.optim = optim
        self.buffers: dict = {}  # the undo copies, reused from step to step
        self.guarded_updates = 0
        self.proven_updates = 0
        self._known: tuple | None = None  # (params' ids, their optimizers, the dtype limit)

    def update(self, params: list[torch.Tensor]) -> None:
        """Check the gradients of ``params``, then update them; raises :class:`NonFiniteStep`
        (nothing updated) on a non-finite gradient or update."""
        with_grad = [p for p in params if p.grad is not None]
        grads = [p.grad for p in with_grad if p.grad is not None]
        known = self._known_for(with_grad)
        buffers = [] if known is None else known[4]
        norms = _norms(grads + with_grad + buffers)
        if not all(math.isfinite(n) for n in norms[: len(grads)]):
            found = non_finite_indices(grads)  # or an overflow of huge finite entries
            if found:
                raise NonFiniteStep(
                    f"non-finite gradients for parameter(s) {_names(with_grad, found)}"
                )
        if self._provably_finite(known, norms, len(grads)):
            self.proven_updates += 1
            self.optim(params)
            return
        self.guarded_updates += 1
        snapshot = OptimSnapshot(self.optim, params, self.buffers)
        self.optim(params)
        bad = _names(params, non_finite_indices(params))
        moments = [] if bad else self._non_finite_state(params)
        if bad or moments:
            snapshot.restore()
            what = f"parameter(s) {bad}" if bad else f"the optimizer state of {moments}"
            raise NonFiniteStep(f"the update made {what} non-finite (the update was undone)")

    def _known_for(self, params: list[torch.Tensor]) -> tuple | None:
        """``(ids, optimizers, L, K, buffers)`` for a proof about ``params`` (``K`` None for
        Adam; ``buffers`` the momentum buffers of a linear optimizer, whose norms the proof
        needs); None when no proof applies. The optimizers are looked up once while the same
        params come step after step; their settings are read at every step."""
        if not params:
            return None
        key = tuple(map(id, params))
        if self._known is None or self._known[0] != key:
            optimizers = _optimizers(self.optim, params)
            if optimizers is None:
                return None
            limit = min(math.sqrt(torch.finfo(p.dtype).max) / 8 for p in params)
            self._known = (key, optimizers, limit)
        optimizers = self._known[1]
        growths = [_linear_growth(opt) for opt in optimizers]
        if all(g is None for g in growths):
            return (*self._known, None, [])
        if any(g is None for g in growths):
            return None
        buffers = []
        for opt in optimizers:
            for p in params:
                buf = opt.state[p].get("momentum_buffer") if p in opt.state else None
                if isinstance(buf, torch.Tensor):
                    buffers.append(buf)
        return (*self._known, max(g for g in growths if g is not None), buffers)

    def _provably_finite(self, known: tuple | None, norms: list[float], k: int) -> bool:
        if known is None:
            return False
        _, optimizers, limit, growth, _ = known
        if growth is not None:  # linear: gradients, params and buffers all at most L
            return max(norms) <= limit and growth <= limit
        decay = _adam_limits(optimizers, limit)
        if decay is None:
            return False
        grad_norm, param_norm = max(norms[:k]), max(norms[k:])
        return param_norm <= limit and grad_norm + decay * param_norm <= limit

    def _non_finite_state(self, params: list[torch.Tensor]) -> list[str]:
        """Names of the params whose optimizer state (Adam's moments, ...) holds NaN/inf."""
        owners, tensors = [], []
        for p in params:
            obj = self.optim.optim_objs.get(p)
            state = None if obj is None else getattr(obj, "optimizer", obj).state.get(p)
            for value in (state or {}).values():
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    owners.append(p)
                    tensors.append(value)
        bad = dict.fromkeys(owners[i] for i in non_finite_indices(tensors))
        store = pyro.get_param_store()
        return [str(store.param_name(p)) for p in bad]
