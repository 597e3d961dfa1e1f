"""Deep Boltzmann machines: a Pyro model over ``v, h1, h2, ...`` and a mean-field guide.

Energy ``E(v, h) = -Σ_l b_l·x_l - Σ_l x_{l-1}ᵀ W_l x_l`` over binary layers
``x_0 = v, x_1 = h1, ..., x_L``. The guide is the fully factorized mean-field
``q(h) = Π_l Bernoulli(μ_l)`` at the fixed point
``μ_l = sigmoid(b_l + μ_{l-1} W_l + μ_{l+1} W_{l+1}ᵀ)`` (``μ_0 = v``), which maximizes the
bound ``log p(v) ≥ -E_q[E(v, h)] + H(q) - log Z`` over ``μ`` one layer at a time.
:class:`~pyro_genmodels.infer.DBMLoss` trains by the bound's positive phase (at the guide's
``μ``) and a persistent-chain (PCD) negative phase for ``∇ log Z``, as one SVI loss; the
greedy pretraining and the joint training's settings of Salakhutdinov & Hinton (2009) are
:class:`~pyro_genmodels.infer.DBMRecipe`. ``log Z`` is exact by enumeration of the cheaper of
the odd and the even layers when that is small (:meth:`DBM.log_partition`), else estimated
by AIS over the model with the odd layers summed out (``pgm.infer.ais(dbm, data=train)``);
:meth:`DBM.elbo` gives the variational bound.

References:
    Deep Boltzmann machines. R. Salakhutdinov, G. E. Hinton, 2009.
    Efficient learning of deep Boltzmann machines. R. Salakhutdinov, H. Larochelle, 2010.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule, pyro_method
from pyro.poutine.util import is_validation_enabled
from torch import nn

from pyro_genmodels._checks import check_positive_int, check_real, check_real_or_tensor
from pyro_genmodels._dtypes import parameters_dtype, to_dtype
from pyro_genmodels.data.validation import check_data
from pyro_genmodels.models.layered import LayeredBoltzmann


def _bernoulli_entropy(mu: torch.Tensor) -> torch.Tensor:
    """``H(Bernoulli(μ))`` summed over the last dim (0 at μ ∈ {0, 1})."""
    return -(torch.xlogy(mu, mu) + torch.xlogy(1 - mu, 1 - mu)).sum(-1)


class DBM(LayeredBoltzmann, PyroModule):
    """A deep Boltzmann machine with binary layers ``layers = [D, H1, H2, ...]``.

    Args:
        layers: unit counts, the visible layer first, at least two hidden layers.
        mean_field_steps: fixed-point sweeps of the guide (odd layers, then even).
        init_scale: standard deviation of the initial weights.

    Parameters ``W1 ... WL`` (``W_l`` of shape ``(n_{l-1}, n_l)``) and ``b0 ... bL``.

    >>> dbm = DBM([6, 4, 3])
    >>> dbm.mean_field(torch.ones(2, 6))[1].shape
    torch.Size([2, 4])
    """

    visible = "bernoulli"

    def __init__(
        self, layers: Sequence[int], mean_field_steps: int = 10, init_scale: float = 0.01
    ) -> None:
        super().__init__()
        if not isinstance(layers, Sequence) or len(layers) < 3:
            raise ValueError(
                f"layers must list the visible and >= 2 hidden layer sizes, got {layers!r}"
            )
        for i, n in enumerate(layers):
            check_positive_int(f"layers[{i}]", n)
        init_scale = check_real("init_scale", init_scale, minimum=0.0)
        self.layer_sizes = list(layers)
        self.mean_field_steps = check_positive_int("mean_field_steps", mean_field_steps)
        for l in range(1, len(layers)):
            setattr(self, f"W{l}", nn.Parameter(init_scale * torch.randn(layers[l - 1], layers[l])))
        for l, n in enumerate(layers):
            setattr(self, f"b{l}", nn.Parameter(torch.zeros(n)))

    def layer_weights(self) -> list[torch.Tensor]:
        return [getattr(self, f"W{l}") for l in range(1, len(self.layer_sizes))]

    def layer_biases(self) -> list[torch.Tensor]:
        return [getattr(self, f"b{l}") for l in range(len(self.layer_sizes))]

    def check_visible(self, v: Any, name: str = "v") -> torch.Tensor:
        """``v`` if it is a tensor ``(*, D)``; binary values are checked under Pyro validation."""
        D = self.layer_sizes[0]
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (*, {D}), got {type(v)}")
        if v.dim() < 1 or v.shape[-1] != D:
            raise ValueError(f"{name} must have shape (*, {D}), got shape {tuple(v.shape)}")
        if is_validation_enabled():
            check_data(v.reshape(-1, D), name, binary=True)
        return v

    @pyro_method
    def energy(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """``E(x_0, ..., x_L)`` for ``states[l]`` of shape ``(*, n_l)`` (binary or mean-field
        probabilities: ``E`` is multilinear, so ``E(μ) = E_q[E]``); returns ``(*,)``."""
        weights, biases = self.layer_weights(), self.layer_biases()
        out = -torch.stack([(x * b).sum(-1) for x, b in zip(states, biases, strict=True)]).sum(0)
        for l, w in enumerate(weights, start=1):
            out = out - ((states[l - 1] @ w) * states[l]).sum(-1)
        return out

    @torch.no_grad()
    def mean_field(self, v: torch.Tensor, steps: int | None = None) -> list[torch.Tensor]:
        """Mean-field parameters ``[v, μ_1, ..., μ_L]`` for ``v (N, D)``: a bottom-up pass with
        doubled input to the layers below the top, then ``steps`` fixed-point sweeps."""
        self.check_visible(v)
        steps = self.mean_field_steps if steps is None else steps
        weights, biases, _ = self.gibbs_params()
        mu = [v]
        for l in range(1, len(self.layer_sizes)):
            factor = 2.0 if l < len(self.layer_sizes) - 1 else 1.0
            mu.append(torch.sigmoid(factor * (mu[-1] @ weights[l - 1]) + biases[l]))
        for _ in range(steps):
            for parity in (1, 0):
                for l in range(parity if parity else 2, len(mu), 2):
                    mu[l] = torch.sigmoid(self.coupling_input(l, mu, weights) + biases[l])
        return mu

    def variational_free_energy(self, mu: Sequence[torch.Tensor]) -> torch.Tensor:
        """``E_q[E(v, h)] - H(q) = E(v, μ) - Σ_l H(Bernoulli(μ_l))`` for ``mu = [v, μ_1, ...]``
        (each ``(*, n_l)``); returns ``(*,)``."""
        return self.energy(mu) - sum(_bernoulli_entropy(m) for m in mu[1:])

    def elbo(self, v: torch.Tensor, log_normalizer: torch.Tensor | float = 0.0) -> torch.Tensor:
        """``-E(v, μ) + H(q) - log Z ≤ log p(v)`` at the mean-field ``μ``, shape ``(N,)``."""
        log_normalizer = check_real_or_tensor("log_normalizer", log_normalizer)
        v = to_dtype(v, parameters_dtype(self))  # scoring follows training's dtype rule
        return -self.variational_free_energy(self.mean_field(v)) - log_normalizer

    # ------------------------------------------------------------------ Pyro programs
    @pyro_method
    def model(self, v: torch.Tensor) -> torch.Tensor:
        """``log p(v, h) = -E(v, h) - log Z`` without ``log Z``: uniform ``h_l`` sites, a factor for
        the terms without ``v`` and ``v ~ Bernoulli(sigmoid(b_0 + W_1 h_1))`` observed."""
        self.check_visible(v)
        self._note_batch(v)
        weights, biases = self.layer_weights(), self.layer_biases()
        with pyro.plate("data", v.shape[0]):
            h = [v]
            for l in range(1, len(self.layer_sizes)):
                half = torch.full((self.layer_sizes[l],), 0.5, dtype=v.dtype, device=v.device)
                h.append(pyro.sample(f"h{l}", dist.Bernoulli(half).to_event(1)))
            logits = biases[0] + h[1] @ weights[0].transpose(0, 1)
            rest = sum((x * b).sum(-1) for x, b in zip(h[1:], biases[1:], strict=True))
            for l in range(2, len(h)):
                rest = rest + ((h[l - 1] @ weights[l - 1]) * h[l]).sum(-1)
            log_uniform = sum(self.layer_sizes[1:]) * math.log(2.0)
            pyro.factor("hidden_energy", rest + F.softplus(logits).sum(-1) + log_uniform)
            visible = dist.Bernoulli(logits=logits).to_event(1)
            return pyro.sample(
                "v",
                visible,
                obs=v,
                infer={"boltzmann_machine": self},  # type: ignore[arg-type]
            )

    @pyro_method
    def guide(self, v: torch.Tensor) -> list[torch.Tensor]:
        """``q(h) = Π_l Bernoulli(μ_l)`` at the mean-field fixed point (``μ`` held fixed)."""
        mu = self.mean_field(v)
        with pyro.plate("data", v.shape[0]):
            return [
                pyro.sample(f"h{l}", dist.Bernoulli(mu[l]).to_event(1)) for l in range(1, len(mu))
            ]
