"""Restricted Boltzmann machines: binary or Gaussian visibles, binary hiddens.

Energy ``E(v, h) = -b·v - c·h - vᵀ W h`` (Bernoulli visibles) or, Gaussian-Bernoulli
in the parameterization of Cho et al. (2011) with learned ``σ_i² = exp(z_i)``,
``E(v, h) = Σ_i (v_i - b_i)² / (2σ_i²) - c·h - (v/σ²)ᵀ W h``. The hidden units are
summed out in closed form: the free energy ``F(v) = -log Σ_h exp(-E(v, h))`` is
``-b·v - Σ_j softplus(c_j + (vᵀW)_j)`` (Bernoulli) or
``Σ_i (v_i - b_i)²/(2σ_i²) - Σ_j softplus(c_j + ((v/σ²)ᵀ W)_j)`` (Gaussian), and
``p(v) = exp(-F(v)) / Z``.

The machinery shared with :class:`~pyro_genmodels.models.DBM` (layer conditionals,
block Gibbs sweeps, exact ``log Z``, the SGD of :meth:`LayeredBoltzmann.sgd`; the AIS path
of :func:`pyro_genmodels.infer.ais` in :mod:`pyro_genmodels.infer.boltzmann_ais`) reads a
machine through :class:`LayeredBoltzmann`: layers ``x_0 = v, x_1, ..., x_L``, weights
``W_l`` of shape ``(n_{l-1}, n_l)`` and biases ``b_l``. The training recipes of the papers
live in :mod:`pyro_genmodels.infer.boltzmann_recipes`.

References:
    Information processing in dynamical systems: foundations of harmony theory.
    P. Smolensky, 1986.
    Training products of experts by minimizing contrastive divergence. G. E. Hinton, 2002.
    Training restricted Boltzmann machines using approximations to the likelihood
    gradient. T. Tieleman, 2008.
    A practical guide to training restricted Boltzmann machines. G. E. Hinton, 2010.
    Improved learning of Gaussian-Bernoulli restricted Boltzmann machines.
    K. Cho, A. Ilin, T. Raiko, 2011.
    On the quantitative analysis of deep belief networks. R. Salakhutdinov, I. Murray, 2008.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule, pyro_method
from pyro.poutine.util import is_validation_enabled
from torch import nn
from torch.distributions import constraints

from pyro_genmodels._checks import check_positive_float, check_positive_int, check_real
from pyro_genmodels.data.validation import check_data
from pyro_genmodels.distributions.energy import EnergyDistribution
from pyro_genmodels.models.enumeration import (
    AUTO_EXACT_COST,
    check_enumeration_cost,
    enumerate_logsumexp,
    enumeration_cost,
)


def bernoulli(probs: torch.Tensor) -> torch.Tensor:
    """Draws of ``Bernoulli(probs)``, shape and dtype of ``probs``: ``U < p`` with ``U`` uniform
    on ``[0, 1)``, exact, compared in place into ``U``'s own tensor (no boolean tensor and no
    conversion); on a CPU about 3x faster than ``torch.bernoulli`` (29-33 against 98 µs for
    100 x 64 draws), which block Gibbs and AIS call at every sweep. No gradient flows.

    >>> bool(((bernoulli(torch.full((1000,), 0.25)) == 1).float().mean() - 0.25).abs() < 0.1)
    True
    """
    return torch.rand_like(probs, requires_grad=False).lt_(probs.detach())


class LayeredBoltzmann:
    """What block Gibbs, AIS and exact ``log Z`` read from a machine with layers ``x_0 = v, ...``.

    Subclasses provide ``layer_sizes``, ``visible`` (``"bernoulli"``/``"gaussian"``),
    ``layer_weights()`` (``[W_1, ..., W_L]``, ``W_l`` of shape ``(n_{l-1}, n_l)``),
    ``layer_biases()`` (``[b_0, ..., b_L]``) and, for Gaussian visibles, ``log_var``
    (``σ² = exp(log_var)``). Only adjacent layers interact, so the even layers are
    independent given the odd ones and the other way round: that makes the block-Gibbs
    sweeps, the AIS path (odd layers summed out) and the exact ``log Z`` (the cheaper
    parity enumerated, the other summed out).
    """

    layer_sizes: list[int]
    visible: str
    log_var: torch.Tensor
    #: Datapoints of the last batch ``model`` observed (times the number of processes under
    #: ``torch.distributed``): the batch size that :meth:`sgd` takes from the training loop.
    _batch_rows: int | None = None

    def layer_weights(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def layer_biases(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def visible_scale(self) -> torch.Tensor | None:
        """``σ`` of the Gaussian visibles, shape ``(D,)``; None for Bernoulli visibles."""
        return torch.exp(0.5 * self.log_var) if self.visible == "gaussian" else None

    def coupling_input(
        self,
        l: int,
        states: list[Any],
        weights: list[torch.Tensor],
        sigma: Any = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``Σ_{neighbours k} x_k W (+ bias)`` into layer ``l``, shape ``(*, n_l)``; Gaussian
        visibles enter as ``v/σ²``. With ``bias (n_l,)`` and matrix states, one fused
        ``addmm`` per neighbour (the sweeps' hot path)."""
        terms = []
        if l > 0:
            below = states[l - 1]
            if l == 1 and sigma is not None:
                below = below / sigma**2
            terms.append((below, weights[l - 1]))
        if l < len(weights):
            terms.append((states[l + 1], weights[l].transpose(0, 1)))
        total = bias
        for x, w in terms:
            if total is None:
                total = x @ w
            elif x.dim() == 2 and total.dim() <= 2:
                total = torch.addmm(total, x, w)
            else:
                total = total + x @ w
        assert total is not None
        return total

    def gibbs_params(self) -> tuple[list[torch.Tensor], list[torch.Tensor], Any]:
        """``(weights, biases, σ or None)`` detached, read once per block of sweeps."""
        sigma = self.visible_scale()
        return (
            [w.detach() for w in self.layer_weights()],
            [b.detach() for b in self.layer_biases()],
            None if sigma is None else sigma.detach(),
        )

    @torch.no_grad()
    def resample_layer(
        self, states: list[torch.Tensor], l: int, params: tuple | None = None
    ) -> torch.Tensor:
        """A draw of layer ``l`` from its exact conditional given its neighbours in ``states``."""
        return self._resample(states, l, self.gibbs_params() if params is None else params)

    def _resample(self, states: list[Any], l: int, params: tuple) -> torch.Tensor:
        weights, biases, sigma = params
        if l == 0 and sigma is not None:
            mean = biases[0] + self.coupling_input(0, states, weights)
            return mean + sigma * torch.randn_like(mean)
        logits = self.coupling_input(l, states, weights, sigma, bias=biases[l])
        return bernoulli(torch.sigmoid(logits))

    @torch.no_grad()
    def gibbs_sweep(
        self, states: list[torch.Tensor], parity_first: int = 1, params: tuple | None = None
    ) -> list[torch.Tensor]:
        """One block-Gibbs sweep: layers of parity ``parity_first`` then the others, each drawn
        from its exact conditional given its neighbours. ``states[l]`` has shape ``(*, n_l)``."""
        return self._sweep(states, parity_first, self.gibbs_params() if params is None else params)

    def _sweep(self, states: list[Any], parity_first: int, params: tuple) -> list[torch.Tensor]:
        states = list(states)
        for parity in (parity_first, 1 - parity_first):
            for l in range(parity, len(states), 2):
                states[l] = self._resample(states, l, params)
        return states

    @torch.no_grad()
    def random_states(self, batch: tuple[int, ...]) -> list[torch.Tensor]:
        """Fresh chain states: hiddens uniform in ``{0,1}``, even layers drawn given them."""
        params = self.gibbs_params()
        like = params[1][0]
        states = [
            bernoulli(torch.full(batch + (n,), 0.5, dtype=like.dtype, device=like.device))
            for n in self.layer_sizes
        ]
        for l in range(0, len(states), 2):
            states[l] = self._resample(states, l, params)
        return states

    # ---------------------------------------------------------------- exact log Z
    def _parity_name(self, parity: int) -> str:
        return ("even", "odd")[parity] + " layers"

    def _enumeration_what(self, parity: int, n: int) -> str:
        """What the exact ``log Z`` enumerates, for its error message."""
        return f"the {n} units of the {self._parity_name(parity)} of DBM({self.layer_sizes})"

    def _ais_call(self) -> str:
        return "pgm.infer.ais(dbm, data=train)"

    def _enumeration_choice(self) -> tuple[int, int, int]:
        """``(parity, n, m)``: enumerate the ``n`` units of that parity's layers, summing out the
        ``m`` others; the cheaper of the two (odd first on a tie; odd only for Gaussian visibles,
        which are integrated)."""
        sizes = self.layer_sizes
        plans = [(p, sum(sizes[p::2]), sum(sizes[1 - p :: 2])) for p in (1, 0)]
        if self.visible == "gaussian":
            plans = plans[:1]
        return min(plans, key=lambda plan: enumeration_cost(plan[1], plan[2]))

    def enumeration_plan(self) -> tuple[str, int, int]:
        """``(layers, n, m)`` of the cheaper exact enumeration: the ``n`` units of ``layers``
        are enumerated, the other ``m`` summed out in closed form.

        >>> from pyro_genmodels.models import DBM
        >>> DBM([64, 16, 16]).enumeration_plan()
        ('odd layers', 16, 80)
        """
        parity, n, m = self._enumeration_choice()
        return self._parity_name(parity), n, m

    def _summed_out_log_weight(
        self, parity: int, x: torch.Tensor, weights: list[torch.Tensor], biases: list[Any]
    ) -> torch.Tensor:
        """``log Σ_{other parity} exp(-E)`` for the layers of ``parity`` in ``x (S, n)``
        (concatenated), shape ``(S,)``: ``Σ_l b_l·x_l + Σ_{other l} Σ_j softplus(b_l + in_l)_j``."""
        layers = list(range(parity, len(self.layer_sizes), 2))
        states: list[Any] = [None] * len(self.layer_sizes)
        for l, part in zip(layers, x.split([self.layer_sizes[l] for l in layers], -1), strict=True):
            states[l] = part
        out = sum(states[l] @ biases[l] for l in layers)
        for l in range(1 - parity, len(self.layer_sizes), 2):
            logits = biases[l] + self.coupling_input(l, states, weights)
            out = out + F.softplus(logits).sum(-1)
        return out

    @pyro_method  # type: ignore[type-var]  # a mixin of PyroModules: RBM, DBM
    def log_partition(self, differentiable: bool = False) -> torch.Tensor:
        """Exact ``log Z``: log-sum-exp over the ``2^n`` states of the layers (odd or even) whose
        enumeration costs least (:meth:`enumeration_plan`), the others summed out in closed
        form. A plain tensor (no autograd graph) unless ``differentiable`` (then
        ``∇θ log Z = -E_p[∇θ E]`` exactly, for maximum-likelihood checks on small machines).

        A ``ValueError`` naming ``pgm.infer.ais`` when that costs more than
        :data:`~pyro_genmodels.models.enumeration.EXACT_COST_BUDGET` multiply-adds
        (``2^n · m · (n + 1)``; every machine with at most 20 units in its cheaper half and at
        most 1,560 in the other is within it), raised before any work.
        """
        parity, n, m = self._enumeration_choice()
        what = self._enumeration_what(parity, n)
        check_enumeration_cost(n, m, f"enumerates {what}", self._ais_call())
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            weights, biases = self.layer_weights(), list(self.layer_biases())
            return enumerate_logsumexp(
                lambda x: self._summed_out_log_weight(parity, x, weights, biases),
                n,
                biases[0],
                m,
            )

    @property
    def exact_available(self) -> bool:
        """Whether a distribution computes its exact ``log Z`` on its own: the cheaper
        enumeration costs at most :data:`~pyro_genmodels.models.enumeration.AUTO_EXACT_COST`
        multiply-adds (under half a second); :meth:`log_partition` goes further when asked."""
        return enumeration_cost(*self._enumeration_choice()[1:]) <= AUTO_EXACT_COST

    # ---------------------------------------------------------------- training
    def _note_batch(self, v: torch.Tensor) -> None:
        """Records the datapoints of a batch ``v (N, D)`` that ``model`` observes."""
        world = 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
        self._batch_rows = int(v.shape[0]) * world

    def sgd(
        self,
        lr: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 2e-4,
        batch_size: int | None = None,
        final_lr: float | None = None,
        total_steps: int | None = None,
    ) -> Any:
        """SGD as Boltzmann-machine practice has it (Hinton 2010), for ``pgm.fit`` or ``SVI``:
        ``Δθ ← momentum Δθ - ε_t (g/B + weight_decay θ [θ a weight matrix])``, the rate
        ``ε_t`` linear from ``lr`` to ``final_lr`` over ``total_steps`` steps
        (:class:`~pyro_genmodels.models.boltzmann_sgd.BoltzmannSGD`).

        The losses sum over the batch; ``B`` is the batch the machine's ``model`` observed on
        the step (the loop's), or ``batch_size`` when given, in which case a training loop with
        other batches is a ``ValueError`` at its first step. The recipes of
        :mod:`pyro_genmodels.infer.boltzmann_recipes` set every argument.
        """
        from pyro_genmodels.models.boltzmann_sgd import BoltzmannSGD
        from pyro_genmodels.optim import GroupedOptim

        batch_size = check_positive_int("batch_size", batch_size, allow_none=True)
        lr = check_positive_float("lr", lr)
        momentum = check_real("momentum", momentum, minimum=0.0)
        if momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        weight_decay = check_real("weight_decay", weight_decay, minimum=0.0)
        final_lr = lr if final_lr is None else check_real("final_lr", final_lr, minimum=0.0)
        total_steps = check_positive_int("total_steps", total_steps, allow_none=True)
        weights = {id(w) for w in self.layer_weights()}
        names = {name for name, p in self.named_parameters() if id(p) in weights}  # type: ignore[attr-defined]
        owner = f"{type(self).__name__.lower()}.sgd"

        def batch_rows() -> int | None:
            return self._batch_rows

        def args(name: str) -> dict:
            decay = weight_decay if name.split(".")[-1] in names or name in names else 0.0
            return {
                "lr": lr,
                "momentum": momentum,
                "weight_decay": decay,
                "final_lr": final_lr,
                "total_steps": total_steps,
                "batch_rows": batch_rows,
                "batch_size": batch_size,
                "owner": owner,
            }

        return GroupedOptim(BoltzmannSGD, args)


class BoltzmannGibbsSampler:
    """Block Gibbs for the visibles of a :class:`LayeredBoltzmann`: one step is a full
    sweep ``h ~ p(h | v)``, ``v ~ p(v | h)`` (odd layers, then even layers).

    The sampler of :meth:`RBM.distribution` (the ``init``/``run``/``sample`` interface of
    :class:`~pyro_genmodels.infer.samplers.EnergySampler`); ``run`` starts from visibles,
    draws the hiddens afresh and returns detached visibles ``(*, D)``.

    Args:
        machine: the RBM or DBM.
        num_steps: sweeps per ``sample`` call (default 1000).

    >>> rbm = RBM(4, 3)
    >>> BoltzmannGibbsSampler(rbm, num_steps=5).sample(rbm.distribution(), (2,)).shape
    torch.Size([2, 4])
    """

    def __init__(self, machine: LayeredBoltzmann, num_steps: int = 1000) -> None:
        self.machine = machine
        self.num_steps = check_positive_int("num_steps", num_steps)

    def init(self, dist: Any, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """Fresh visibles ``sample_shape + batch_shape + (D,)``."""
        batch = tuple(sample_shape) + tuple(dist.batch_shape)
        return self.machine.random_states(batch)[0]

    @torch.no_grad()
    def run(self, dist: Any, x: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        """``num_steps`` sweeps from the visibles ``x (*, D)``: the odd layers are drawn first
        (given ``x`` and, in a DBM, uniform even hidden layers)."""
        steps = self.num_steps if num_steps is None else check_positive_int("num_steps", num_steps)
        m = self.machine
        params = m.gibbs_params()
        like, batch = params[1][0], tuple(x.shape[:-1])
        states: list[torch.Tensor] = [x.detach()]
        for l, n in enumerate(m.layer_sizes[1:], start=1):  # odd layers are drawn before use
            shape = batch + (n,)
            states.append(
                bernoulli(torch.full(shape, 0.5, dtype=like.dtype, device=like.device))
                if l % 2 == 0
                else x.new_empty(0)
            )
        for _ in range(steps):
            states = m._sweep(states, 1, params)
        return states[0]

    def sample(self, dist: Any, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """``run(dist, init(dist, sample_shape))``: detached visibles."""
        return self.run(dist, self.init(dist, sample_shape), self.num_steps)


class RBM(LayeredBoltzmann, PyroModule):
    """A restricted Boltzmann machine, ``p(v) = exp(-F(v)) / Z`` with ``F`` the free energy.

    Args:
        num_visible: ``D``, units of ``v``.
        num_hidden: ``H``, binary units of ``h``.
        visible: ``"bernoulli"`` (``v ∈ {0,1}^D``) or ``"gaussian"`` (``v ∈ R^D`` with
            learned per-visible ``σ_i² = exp(z_i)``, Cho et al. 2011).
        init_scale: standard deviation of the initial weights (``0.01``, Hinton 2010).

    Parameters: ``W (D, H)``, ``visible_bias b (D,)``, ``hidden_bias c (H,)`` and, for
    Gaussian visibles, ``log_var z (D,)``. ``forward(v)`` is the free energy ``F(v)``. Every
    public method that reads them (``energy``, ``free_energy``, the conditionals, ``log_partition``)
    is a ``pyro_method``: a loss calling any of them registers the parameters in Pyro's param
    store, so ``SVI``/``fit`` train them whichever energy the loss differentiates.

    >>> from pyro_genmodels.models.enumeration import binary_states
    >>> rbm = RBM(6, 3)
    >>> d = rbm.distribution()           # exact log Z: the 3 hidden units are enumerated
    >>> bool(abs(d.log_prob(binary_states(6, 0, 64, d.log_normalizer)).exp().sum() - 1) < 1e-5)
    True
    """

    def __init__(
        self,
        num_visible: int,
        num_hidden: int,
        visible: str = "bernoulli",
        init_scale: float = 0.01,
    ) -> None:
        super().__init__()
        check_positive_int("num_visible", num_visible)
        check_positive_int("num_hidden", num_hidden)
        if visible not in ("bernoulli", "gaussian"):
            raise ValueError(f"visible must be 'bernoulli' or 'gaussian', got {visible!r}")
        init_scale = check_real("init_scale", init_scale, minimum=0.0)
        self.num_visible, self.num_hidden, self.visible = num_visible, num_hidden, visible
        self.layer_sizes = [num_visible, num_hidden]
        self.W = nn.Parameter(init_scale * torch.randn(num_visible, num_hidden))
        self.visible_bias = nn.Parameter(torch.zeros(num_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(num_hidden))
        if visible == "gaussian":
            self.log_var = nn.Parameter(torch.zeros(num_visible))

    # ---------------------------------------------------------------- layered view
    def layer_weights(self) -> list[torch.Tensor]:
        return [self.W]

    def layer_biases(self) -> list[torch.Tensor]:
        return [self.visible_bias, self.hidden_bias]

    # ---------------------------------------------------------------- energies
    def check_visible(self, v: Any, name: str = "v") -> torch.Tensor:
        """``v`` if it is a float tensor ``(*, D)``; binary (Bernoulli) and finite values are
        checked when Pyro validation is on."""
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (*, {self.num_visible})")
        if v.dim() < 1 or v.shape[-1] != self.num_visible:
            raise ValueError(
                f"{name} must have shape (*, {self.num_visible}) (num_visible="
                f"{self.num_visible}), got shape {tuple(v.shape)}"
            )
        if is_validation_enabled():
            check_data(v.reshape(-1, self.num_visible), name, binary=self.visible == "bernoulli")
        return v

    def _visible_term(self, v: torch.Tensor) -> torch.Tensor:
        """The ``h``-free part of ``-E``: ``b·v`` or ``-Σ (v - b)²/(2σ²)``, shape ``(*,)``."""
        if self.visible == "bernoulli":
            return v @ self.visible_bias
        return -((v - self.visible_bias) ** 2 / (2 * torch.exp(self.log_var))).sum(-1)

    @pyro_method
    def hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        """Logits of ``p(h_j = 1 | v) = sigmoid(c_j + ((v/σ²)ᵀ W)_j)``, shape ``(*, H)``."""
        scaled = v if self.visible == "bernoulli" else v / torch.exp(self.log_var)
        return scaled @ self.W + self.hidden_bias

    @pyro_method
    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``E(v, h)`` for ``v (*, D)``, ``h (*, H)``; returns ``(*,)``."""
        self.check_visible(v)
        return -self._visible_term(v) - (self.hidden_logits(v) * h).sum(-1)

    @pyro_method
    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """``F(v) = -log Σ_h exp(-E(v, h))`` in closed form for ``v (*, D)``; returns ``(*,)``."""
        self.check_visible(v)
        if self.visible == "bernoulli":  # each parameter read once: the hot path of CD
            W, b, c = self.W, self.visible_bias, self.hidden_bias
            return -(v @ b) - F.softplus(v @ W + c).sum(-1)
        return -self._visible_term(v) - F.softplus(self.hidden_logits(v)).sum(-1)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.free_energy(v)

    @pyro_method
    def contrast_backward(
        self, x_pos: torch.Tensor, x_neg: torch.Tensor, scale: torch.Tensor | float = 1.0
    ) -> torch.Tensor | None:
        """``s Σ (F(x⁺) − F(x⁻))`` with its gradient accumulated into the parameters' ``.grad``
        in closed form, without autograd: ``∂F/∂W = −vᵀσ(vW + c)``, ``∂F/∂b = −v``,
        ``∂F/∂c = −σ(vW + c)`` (Hinton 2002). ``x_pos (*, D)``, ``x_neg (*, D)``, ``s`` a
        number (or a 0-d tensor); returns the detached value, shape ``()``. Contrastive
        divergence calls it from ``loss_and_grads``: one pass over both phases, no graph and
        no backward pass. Returns None (differentiate :meth:`free_energy` instead) for
        Gaussian visibles or a per-row scale. A ``pyro_method``: reading the parameters
        registers them in the param store, as every method here does.

        >>> rbm = RBM(6, 3); v = torch.bernoulli(torch.full((4, 6), 0.5))
        >>> value = rbm.contrast_backward(v, 1 - v)
        >>> g = rbm.W.grad.clone(); rbm.W.grad = None
        >>> (rbm.free_energy(v) - rbm.free_energy(1 - v)).sum().backward()
        >>> bool(torch.allclose(g, rbm.W.grad, atol=1e-6))
        True
        """
        if self.visible != "bernoulli" or (isinstance(scale, torch.Tensor) and scale.dim()):
            return None
        s = float(scale)
        if not math.isfinite(s):
            raise ValueError(f"scale must be a finite number, got {s}")
        W, b, c = self.W, self.visible_bias, self.hidden_bias  # one param-store look-up each
        D = self.num_visible
        x_pos, x_neg = x_pos.reshape(-1, D), x_neg.reshape(-1, D)
        kind = x_pos.device.type  # exact products in the parameters' dtype under autocast too
        plain = torch.autocast(kind, enabled=False) if torch.is_autocast_enabled(kind) else None
        with torch.no_grad(), plain or contextlib.nullcontext():
            x = torch.cat([x_pos, x_neg])
            neg_coef = self._neg_coef(x_pos.shape[0], x_neg.shape[0], s, x)
            pre = torch.addmm(c, x, W)
            value = neg_coef @ torch.addmv(F.softplus(pre).sum(-1), x, b)  # Σ coef F, F = -xb - Σsp
            probs = torch.sigmoid(pre)
            weighted = x * neg_coef.unsqueeze(-1)
            grads = (weighted.T @ probs, weighted.sum(0), neg_coef @ probs)
        for param, grad in zip((W, b, c), grads):
            if param.requires_grad and param.is_leaf:
                param.grad = grad if param.grad is None else param.grad + grad
            elif param.requires_grad:
                param.backward(grad)
        return value

    def _neg_coef(self, n_pos: int, n_neg: int, scale: float, like: torch.Tensor) -> torch.Tensor:
        """``(-s, …, -s, s, …, s)``, shape ``(n_pos + n_neg,)``: minus the derivative of the
        contrast by each row's free energy; kept while batch sizes and scale repeat."""
        key = (n_pos, n_neg, scale, like.dtype, like.device)
        cached = self.__dict__.get("_coef_cache")
        if cached is None or cached[0] != key:
            coef = torch.full((n_pos + n_neg,), -scale, dtype=like.dtype, device=like.device)
            coef[n_pos:] = scale
            cached = self.__dict__["_coef_cache"] = (key, coef)
        return cached[1]

    @pyro_method
    def hidden_conditional(self, v: torch.Tensor) -> dist.Distribution:
        """``p(h | v) = Π_j Bernoulli(sigmoid(c_j + ((v/σ²)ᵀ W)_j))``, event shape ``(H,)``."""
        self.check_visible(v)
        return dist.Bernoulli(logits=self.hidden_logits(v)).to_event(1)

    @pyro_method
    def visible_conditional(self, h: torch.Tensor) -> dist.Distribution:
        """``p(v | h)``: ``Bernoulli(sigmoid(b + W h))`` or ``Normal(b + W h, σ)``, event ``(D,)``.

        ``h`` has shape ``(*, H)``.
        """
        if not isinstance(h, torch.Tensor) or h.dim() < 1 or h.shape[-1] != self.num_hidden:
            shape = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise ValueError(f"h must be a tensor of shape (*, {self.num_hidden}), got {shape}")
        mean = self.visible_bias + h @ self.W.transpose(0, 1)
        if self.visible == "bernoulli":
            return dist.Bernoulli(logits=mean).to_event(1)
        return dist.Normal(mean, torch.exp(0.5 * self.log_var)).to_event(1)

    # ---------------------------------------------------------------- partition function
    def _parity_name(self, parity: int) -> str:
        return ("visible", "hidden")[parity]

    def _enumeration_what(self, parity: int, n: int) -> str:
        name = f"RBM({self.num_visible}, {self.num_hidden})"
        return f"the {n} {self._parity_name(parity)} units of {name}"

    def _ais_call(self) -> str:
        return "pgm.infer.ais(rbm, data=train), then rbm.distribution(log_normalizer=log_z)"

    def enumeration_plan(self) -> tuple[str, int, int]:
        """``(layer, n, m)`` of the cheaper exact enumeration: the ``n`` units of ``layer``
        (``"visible"`` or ``"hidden"``) are enumerated, the other ``m`` summed out in closed
        form; Gaussian visibles are always integrated, so their hiddens are enumerated.

        >>> RBM(784, 20).enumeration_plan(), RBM(10, 500).enumeration_plan()
        (('hidden', 20, 784), ('visible', 10, 500))
        """
        return super().enumeration_plan()

    def _summed_out_log_weight(
        self, parity: int, x: torch.Tensor, weights: list[torch.Tensor], biases: list[Any]
    ) -> torch.Tensor:
        """``log Σ_h exp(-E)`` (visibles ``x``) or ``log Σ/∫_v exp(-E)`` (hiddens ``x``), ``(S,)``:
        ``c·h + Σ_i softplus(b + W h)_i`` or, for Gaussian visibles,
        ``c·h + Σ_i [log √(2πσ_i²) + (μ_i² - b_i²)/(2σ_i²)]`` with ``μ = b + W h``."""
        if parity == 0 or self.visible == "bernoulli":
            return super()._summed_out_log_weight(parity, x, weights, biases)
        b, c, W = biases[0], biases[1], weights[0]
        mean = b + x @ W.transpose(0, 1)
        var = torch.exp(self.log_var)
        log_gauss = 0.5 * (math.log(2 * math.pi) + self.log_var)
        return x @ c + (log_gauss + (mean**2 - b**2) / (2 * var)).sum(-1)

    def distribution(
        self, log_normalizer: torch.Tensor | None = None, num_steps: int = 1000
    ) -> EnergyDistribution:
        """``p(v)``: an :class:`EnergyDistribution` with energy ``F`` and block-Gibbs sampler.

        ``log_normalizer`` defaults to the exact :meth:`log_partition` when its enumeration is
        cheap (:attr:`exact_available`; differentiable while autograd records, so that
        ``-log_prob`` has the exact likelihood gradient), and is otherwise absent
        (``.normalized`` is False, at once: pass an AIS estimate). ``num_steps`` is the
        sampler's sweeps per ``sample`` call.
        """
        if log_normalizer is None and self.exact_available:
            log_normalizer = self.log_partition(differentiable=True)
        return self._distribution(log_normalizer, num_steps)

    def _distribution(
        self, log_normalizer: torch.Tensor | None, num_steps: int = 1000
    ) -> EnergyDistribution:
        support = constraints.boolean if self.visible == "bernoulli" else constraints.real
        return EnergyDistribution(
            self,
            (self.num_visible,),
            log_normalizer=log_normalizer,
            sampler=BoltzmannGibbsSampler(self, num_steps),
            support=support,
        )

    # ---------------------------------------------------------------- Pyro programs
    # model and guide read no parameter (the site's energy reads them when a loss evaluates
    # it), so they are plain methods: a pyro_method's param-store context costs more than the
    # rest of a small machine's model.
    def model(self, v: torch.Tensor) -> torch.Tensor:
        """``v ~ p(v)`` per row of ``v (N, D)``; the site ``"v"`` is unnormalized (training by
        :class:`~pyro_genmodels.infer.ContrastiveDivergenceLoss` needs no ``log Z``)."""
        self.check_visible(v)
        self._note_batch(v)
        with pyro.plate("data", v.shape[0]):
            return pyro.sample("v", self._distribution(None), obs=v)

    def guide(self, v: torch.Tensor) -> None:
        """No latent site: the hiddens are summed out in ``F``."""
        return None
