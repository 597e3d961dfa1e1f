"""Restricted Boltzmann machines: binary or Gaussian visibles, binary hiddens.

Energy ``E(v, h) = -b·v - c·h - vᵀ W h`` (Bernoulli visibles) or, Gaussian-Bernoulli
in the parameterization of Cho et al. (2011) with learned ``σ_i² = exp(z_i)``,
``E(v, h) = Σ_i (v_i - b_i)² / (2σ_i²) - c·h - (v/σ²)ᵀ W h``. The hidden units are
summed out in closed form: the free energy ``F(v) = -log Σ_h exp(-E(v, h))`` is
``-b·v - Σ_j softplus(c_j + (vᵀW)_j)`` (Bernoulli) or
``Σ_i (v_i - b_i)²/(2σ_i²) - Σ_j softplus(c_j + ((v/σ²)ᵀ W)_j)`` (Gaussian), and
``p(v) = exp(-F(v)) / Z``.

The machinery shared with :class:`~pyro_genmodels.models.DBM` (layer conditionals,
block Gibbs sweeps, exact ``log Z``, the SGD of :meth:`LayeredBoltzmann.sgd`, all in
:mod:`pyro_genmodels.models.layered`; the AIS path
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

from pyro_genmodels._checks import check_positive_int, check_real
from pyro_genmodels.data.validation import check_data
from pyro_genmodels.distributions.energy import EnergyDistribution
from pyro_genmodels.models.layered import BoltzmannGibbsSampler, LayeredBoltzmann


def free_energy_contrast(
    params: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    x_pos: torch.Tensor,
    x_neg: torch.Tensor,
    coef: torch.Tensor,
) -> torch.Tensor:
    """``Σₙ coefₙ F(xₙ)`` over the rows ``x = [x⁺; x⁻]`` of a Bernoulli RBM, its gradient
    accumulated into ``.grad`` of ``params = (W (D, H), b (D,), c (H,))`` in closed form:
    ``∂F/∂W = −xᵀσ(xW + c)``, ``∂F/∂b = −x``, ``∂F/∂c = −σ(xW + c)`` (Hinton 2002).

    ``x_pos (N, D)``, ``x_neg (M, D)``, ``coef (N + M,)`` (``(−s, …, −s, s, …, s)`` for the
    contrast ``s Σ (F(x⁺) − F(x⁻))``); returns the detached value, shape ``()``. No graph is
    recorded. The step of :meth:`RBM.contrast_backward` and of the direct contrastive step
    (:mod:`pyro_genmodels.infer.contrastive_direct`), so that both give the same numbers.
    """
    W, b, c = params
    with torch.no_grad():
        x = torch.cat([x_pos, x_neg])
        pre = torch.addmm(c, x, W)
        value = coef @ torch.addmv(F.softplus(pre).sum(-1), x, b)  # Σ coef F, F = -xb - Σsp
        probs = torch.sigmoid(pre)
        weighted = x * coef.unsqueeze(-1)
        grads = (weighted.T @ probs, weighted.sum(0), coef @ probs)
    for param, grad in zip(params, grads):
        if param.requires_grad and param.is_leaf:
            param.grad = grad if param.grad is None else param.grad + grad
        elif param.requires_grad:
            param.backward(grad)
    return value


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
        x_pos, x_neg = self.check_visible(x_pos, "x_pos"), self.check_visible(x_neg, "x_neg")
        W, b, c = self.W, self.visible_bias, self.hidden_bias  # one param-store look-up each
        for name, x in (("x_pos", x_pos), ("x_neg", x_neg)):
            if x.dtype != W.dtype or x.device != W.device:
                raise TypeError(
                    f"{name} must have the parameters' dtype and device ({W.dtype}, "
                    f"{W.device}), got {x.dtype} on {x.device}"
                )
        D = self.num_visible
        x_pos, x_neg = x_pos.reshape(-1, D), x_neg.reshape(-1, D)
        kind = x_pos.device.type  # exact products in the parameters' dtype under autocast too
        plain = torch.autocast(kind, enabled=False) if torch.is_autocast_enabled(kind) else None
        with plain or contextlib.nullcontext():
            coef = self._neg_coef(x_pos.shape[0], x_neg.shape[0], s, x_pos)
            return free_energy_contrast((W, b, c), x_pos, x_neg, coef)

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
