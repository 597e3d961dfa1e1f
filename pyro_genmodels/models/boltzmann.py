"""Restricted Boltzmann machines: binary or Gaussian visibles, binary hiddens.

Energy ``E(v, h) = -b·v - c·h - vᵀ W h`` (Bernoulli visibles) or, Gaussian-Bernoulli
in the parameterization of Cho et al. (2011) with learned ``σ_i² = exp(z_i)``,
``E(v, h) = Σ_i (v_i - b_i)² / (2σ_i²) - c·h - (v/σ²)ᵀ W h``. The hidden units are
summed out in closed form: the free energy ``F(v) = -log Σ_h exp(-E(v, h))`` is
``-b·v - Σ_j softplus(c_j + (vᵀW)_j)`` (Bernoulli) or
``Σ_i (v_i - b_i)²/(2σ_i²) - Σ_j softplus(c_j + ((v/σ²)ᵀ W)_j)`` (Gaussian), and
``p(v) = exp(-F(v)) / Z``.

The machinery shared with :class:`~pyro_genmodels.models.DBM` (layer conditionals,
block Gibbs sweeps, the annealing path of :func:`pyro_genmodels.infer.ais`) reads a
machine through :class:`LayeredBoltzmann`: layers ``x_0 = v, x_1, ..., x_L``, weights
``W_l`` of shape ``(n_{l-1}, n_l)`` and biases ``b_l``.

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
from pyro_genmodels.infer.samplers import EnergySampler
from pyro_genmodels.models.enumeration import (
    EXACT_COST_BUDGET,
    check_enumeration_cost,
    enumerate_logsumexp,
    enumeration_cost,
)


class LayeredBoltzmann:
    """What block Gibbs and AIS read from a Boltzmann machine with layers ``x_0 = v, ..., x_L``.

    Subclasses provide ``layer_sizes``, ``visible`` (``"bernoulli"``/``"gaussian"``),
    ``layer_weights()`` (``[W_1, ..., W_L]``, ``W_l`` of shape ``(n_{l-1}, n_l)``),
    ``layer_biases()`` (``[b_0, ..., b_L]``) and, for Gaussian visibles, ``log_var``
    (``σ² = exp(log_var)``). Only adjacent layers interact.
    """

    layer_sizes: list[int]
    visible: str
    log_var: torch.Tensor

    def layer_weights(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def layer_biases(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def visible_scale(self) -> torch.Tensor | None:
        """``σ`` of the Gaussian visibles, shape ``(D,)``; None for Bernoulli visibles."""
        return torch.exp(0.5 * self.log_var) if self.visible == "gaussian" else None

    def coupling_input(
        self, l: int, states: list[torch.Tensor], weights: list[torch.Tensor], sigma: Any = None
    ) -> torch.Tensor:
        """``Σ_{neighbours k} x_k W`` into layer ``l`` (no bias), shape ``(*, n_l)``; Gaussian
        visibles enter as ``v/σ²``."""
        total = None
        if l > 0:
            below = states[l - 1]
            if l == 1 and sigma is not None:
                below = below / sigma**2
            total = below @ weights[l - 1]
        if l < len(weights):
            above = states[l + 1] @ weights[l].transpose(0, 1)
            total = above if total is None else total + above
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
        weights, biases, sigma = self.gibbs_params() if params is None else params
        if l == 0 and sigma is not None:
            mean = biases[0] + self.coupling_input(0, states, weights)
            return mean + sigma * torch.randn_like(mean)
        logits = self.coupling_input(l, states, weights, sigma) + biases[l]
        return torch.bernoulli(torch.sigmoid(logits))

    @torch.no_grad()
    def gibbs_sweep(
        self, states: list[torch.Tensor], parity_first: int = 1, params: tuple | None = None
    ) -> list[torch.Tensor]:
        """One block-Gibbs sweep: layers of parity ``parity_first`` then the others, each drawn
        from its exact conditional given its neighbours. ``states[l]`` has shape ``(*, n_l)``."""
        params = self.gibbs_params() if params is None else params
        states = list(states)
        for parity in (parity_first, 1 - parity_first):
            for l in range(parity, len(states), 2):
                states[l] = self.resample_layer(states, l, params)
        return states

    @torch.no_grad()
    def random_states(self, batch: tuple[int, ...]) -> list[torch.Tensor]:
        """Fresh chain states: hiddens uniform in ``{0,1}``, even layers drawn given them."""
        params = self.gibbs_params()
        like = params[1][0]
        states = [
            torch.bernoulli(torch.full(batch + (n,), 0.5, dtype=like.dtype, device=like.device))
            for n in self.layer_sizes
        ]
        for l in range(0, len(states), 2):
            states[l] = self.resample_layer(states, l, params)
        return states


class BoltzmannGibbsSampler(EnergySampler):
    """Block Gibbs for the visibles of a :class:`LayeredBoltzmann`: one step is a full
    sweep ``h ~ p(h | v)``, ``v ~ p(v | h)`` (odd layers, then even layers).

    The sampler of :meth:`RBM.distribution`; ``run`` starts from visibles, draws the
    hiddens afresh and returns detached visibles ``(*, D)``.

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
        batch = tuple(sample_shape) + tuple(dist.batch_shape)
        return self.machine.random_states(batch)[0]

    @torch.no_grad()
    def run(self, dist: Any, x: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        steps = self.num_steps if num_steps is None else check_positive_int("num_steps", num_steps)
        m = self.machine
        params = m.gibbs_params()
        states = m.random_states(tuple(x.shape[:-1]))
        states[0] = x.detach()
        for _ in range(steps):
            states = m.gibbs_sweep(states, parity_first=1, params=params)
        return states[0]


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
        return -self._visible_term(v) - F.softplus(self.hidden_logits(v)).sum(-1)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.free_energy(v)

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
    def enumeration_plan(self) -> tuple[str, int, int]:
        """``(layer, n, m)`` of the cheaper exact enumeration: the ``n`` units of ``layer``
        (``"visible"`` or ``"hidden"``) are enumerated, the other ``m`` summed out in closed
        form; Gaussian visibles are always integrated, so their hiddens are enumerated.

        >>> RBM(784, 20).enumeration_plan(), RBM(10, 500).enumeration_plan()
        (('hidden', 20, 784), ('visible', 10, 500))
        """
        D, H = self.num_visible, self.num_hidden
        plans = [("hidden", H, D)] + ([("visible", D, H)] if self.visible == "bernoulli" else [])
        return min(plans, key=lambda plan: enumeration_cost(plan[1], plan[2]))

    @pyro_method
    def log_partition(self) -> torch.Tensor:
        """Exact ``log Z``: log-sum-exp over the ``2^n`` states of the layer whose enumeration
        costs least (:meth:`enumeration_plan`), the other layer summed out in closed form
        (``log Z = log Σ_h exp(c·h) Π_i ∫ ... dv_i``, or ``log Σ_v exp(-F(v))``).

        A ``ValueError`` naming ``pgm.infer.ais`` when that costs more than
        :data:`~pyro_genmodels.models.enumeration.EXACT_COST_BUDGET` multiply-adds
        (``2^n · m · (n + 1)``), raised before any work (``RBM(784, 20)`` would take minutes).
        """
        layer, n, m = self.enumeration_plan()
        check_enumeration_cost(
            n,
            m,
            f"enumerates the {n} {layer} units of RBM({self.num_visible}, {self.num_hidden})",
            "pgm.infer.ais(rbm, data=train), then rbm.distribution(log_normalizer=log_z)",
        )
        if layer == "visible":
            return enumerate_logsumexp(lambda v: -self.free_energy(v), n, self.W, m)
        b, c = self.visible_bias, self.hidden_bias

        def log_weight(h: torch.Tensor) -> torch.Tensor:
            mean = b + h @ self.W.transpose(0, 1)
            if self.visible == "bernoulli":
                return h @ c + F.softplus(mean).sum(-1)
            var = torch.exp(self.log_var)
            log_gauss = 0.5 * (math.log(2 * math.pi) + self.log_var)
            return h @ c + (log_gauss + (mean**2 - b**2) / (2 * var)).sum(-1)

        return enumerate_logsumexp(log_weight, n, self.W, m)

    @property
    def exact_available(self) -> bool:
        """Whether :meth:`log_partition` runs: its cheaper enumeration costs at most
        :data:`~pyro_genmodels.models.enumeration.EXACT_COST_BUDGET` multiply-adds."""
        return enumeration_cost(*self.enumeration_plan()[1:]) <= EXACT_COST_BUDGET

    def distribution(
        self, log_normalizer: torch.Tensor | None = None, num_steps: int = 1000
    ) -> EnergyDistribution:
        """``p(v)``: an :class:`EnergyDistribution` with energy ``F`` and block-Gibbs sampler.

        ``log_normalizer`` defaults to the exact :meth:`log_partition` when its enumeration is
        within budget (:attr:`exact_available`), and is otherwise absent (``.normalized`` is
        False, at once: pass an AIS estimate). ``num_steps`` is the sampler's sweeps per
        ``sample`` call.
        """
        if log_normalizer is None and self.exact_available:
            log_normalizer = self.log_partition()
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
    @pyro_method
    def model(self, v: torch.Tensor) -> torch.Tensor:
        """``v ~ p(v)`` per row of ``v (N, D)``; the site ``"v"`` is unnormalized (training by
        :class:`~pyro_genmodels.infer.ContrastiveDivergenceLoss` needs no ``log Z``)."""
        self.check_visible(v)
        with pyro.plate("data", v.shape[0]):
            return pyro.sample("v", self._distribution(None), obs=v)

    @pyro_method
    def guide(self, v: torch.Tensor) -> None:
        """No latent site: the hiddens are summed out in ``F``."""
        return None

    def annealing_path(self, **kwargs: Any) -> Any:
        """The AIS path of Salakhutdinov & Murray (2008), hiddens summed out; keyword arguments
        as :class:`~pyro_genmodels.infer.BoltzmannAnnealingPath`."""
        from pyro_genmodels.infer.boltzmann_ais import BoltzmannAnnealingPath

        return BoltzmannAnnealingPath(self, **kwargs)

    def sgd(
        self,
        lr: float = 0.1,
        momentum: float = 0.5,
        weight_decay: float = 2e-4,
        batch_size: int = 100,
    ) -> Any:
        """SGD as RBM practice has it (Hinton 2010): momentum, and L2 weight decay on ``W`` only.

        The CD losses sum over a batch of ``batch_size`` datapoints; the step is
        ``Δθ = momentum Δθ - lr (mean gradient + weight_decay θ [θ = W])``. Measured on
        binarized mnist5k (100 hidden units, lr 0.1, 10 epochs): momentum 0.5 made PCD 12 nats
        worse than none (153 vs 141), so pass ``momentum=0`` for PCD at such rates.
        """
        from pyro_genmodels.optim import GroupedOptim

        check_positive_int("batch_size", batch_size)
        lr = check_positive_float("lr", lr)
        momentum = check_real("momentum", momentum, minimum=0.0)
        weight_decay = check_real("weight_decay", weight_decay, minimum=0.0)

        def args(name: str) -> dict:
            decay = weight_decay * batch_size if name.split(".")[-1] == "W" else 0.0
            return {"lr": lr / batch_size, "momentum": momentum, "weight_decay": decay}

        return GroupedOptim(torch.optim.SGD, args)
