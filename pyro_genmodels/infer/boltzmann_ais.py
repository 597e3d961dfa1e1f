"""The AIS path for Boltzmann machines (Salakhutdinov & Murray 2008), odd layers summed out.

For a machine with layers ``x_0 = v, x_1, ..., x_L`` the chain state is the even layers
``x_e = (v, x_2, ...)``; the odd layers are conditionally independent given them and are
summed out at every inverse temperature ``β``:

``log f_β(x_e) = a_β(v) + β Σ_{even l>0} b_l·x_l + Σ_{odd l} Σ_j softplus(β (b_l + in_l(x_e))_j)``

with ``a_β(v) = ((1-β) a + β b_0)·v`` for Bernoulli visibles (``a`` the base-rate
logits from the training data's pixel marginals) and ``-Σ (v - b_0)²/(2σ²)`` for
Gaussian visibles (their base is the model's own ``N(b_0, σ²)``). At ``β = 0`` the
path is the normalized base (independent visibles, uniform hiddens), at ``β = 1`` the
machine with its odd layers summed out. A transition draws the odd layers, then the
even layers, from their exact conditionals at ``β``. For an RBM this is exactly the
path of Salakhutdinov & Murray (2008); for a DBM that of Salakhutdinov & Hinton (2009).

References:
    On the quantitative analysis of deep belief networks. R. Salakhutdinov, I. Murray, 2008.
    Deep Boltzmann machines. R. Salakhutdinov, G. E. Hinton, 2009.
    Annealed importance sampling. R. M. Neal, 2001.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from pyro_genmodels._checks import check_positive_int, check_real
from pyro_genmodels.infer.ais import PATHS, AnnealingPath
from pyro_genmodels.models.layered import LayeredBoltzmann, bernoulli


def salakhutdinov_murray_betas(
    like: torch.Tensor | None = None, num_steps: int = 14500
) -> torch.Tensor:
    """The schedule of Salakhutdinov & Murray's code: steps of ``1e-3`` to 0.5, ``1e-4`` to 0.9,
    ``1e-5`` to 1 — 14,500 transitions, 14,501 values from 0 to 1 (float64 unless ``like``).
    Another ``num_steps`` keeps the three segments' shares (500 : 4000 : 10000).

    >>> betas = salakhutdinov_murray_betas()
    >>> len(betas), float(betas[0]), float(betas[-1])
    (14501, 0.0, 1.0)
    """
    check_positive_int("num_steps", num_steps)
    kw: dict[str, Any] = {"dtype": torch.float64}
    if like is not None:
        kw = {"dtype": like.dtype, "device": like.device}
    n1 = max(1, round(num_steps * 500 / 14500))
    n2 = max(1, round(num_steps * 4000 / 14500))
    n3 = max(1, num_steps - n1 - n2)
    parts = [
        torch.linspace(0.0, 0.5, n1 + 1, **kw),
        torch.linspace(0.5, 0.9, n2 + 1, **kw)[1:],
        torch.linspace(0.9, 1.0, n3 + 1, **kw)[1:],
    ]
    return torch.cat(parts)


def base_rate_logits(data: torch.Tensor, smoothing: float = 0.05) -> torch.Tensor:
    """``log(p + s) - log(1 - p + s)`` of the per-pixel marginals ``p`` of ``data (N, D)``, as in
    Salakhutdinov & Murray's code (``s = 0.05`` keeps them finite); returns ``(D,)``.

    >>> base_rate_logits(torch.tensor([[1.0, 0.0], [1.0, 1.0]])).tolist()  # doctest: +ELLIPSIS
    [3.0445..., 0.0]
    """
    if not isinstance(data, torch.Tensor) or data.dim() != 2:
        raise ValueError("data must be a tensor of shape (N, D) for the base-rate model")
    smoothing = check_real("smoothing", smoothing, minimum=0.0)
    p = data.double().mean(0)
    return (torch.log(p + smoothing) - torch.log(1 - p + smoothing)).to(data.dtype)


class BoltzmannAnnealingPath(AnnealingPath):
    """Geometric AIS path from a base-rate model to a Boltzmann machine (odd layers summed out).

    Args:
        machine: an :class:`~pyro_genmodels.models.RBM` or
            :class:`~pyro_genmodels.models.DBM` (any ``LayeredBoltzmann``).
        data: training data ``(N, D)`` whose pixel marginals define the base rate (Bernoulli
            visibles); ``None`` gives a uniform base (``a = 0``).
        base_logits: the base rate's logits ``(D,)`` directly (instead of ``data``).
        smoothing: ``>= 0``, added to the marginals before the logit (default 0.05).

    States are the even layers concatenated, shape ``(num_chains, n_0 + n_2 + ...)``.

    >>> import pyro_genmodels as pgm
    >>> rbm = pgm.models.RBM(5, 3)
    >>> path = BoltzmannAnnealingPath(rbm)
    >>> path.init(4).shape, round(float(path.log_base_normalizer()), 4)  # 8 log 2
    (torch.Size([4, 5]), 5.5452)
    """

    def __init__(
        self,
        machine: Any,
        data: torch.Tensor | None = None,
        base_logits: torch.Tensor | None = None,
        smoothing: float = 0.05,
    ) -> None:
        check_real("smoothing", smoothing, minimum=0.0)
        weights, biases, sigma = machine.gibbs_params()
        self.weights, self.biases, self.sigma = weights, biases, sigma
        self.sizes = list(machine.layer_sizes)
        self.even = list(range(0, len(self.sizes), 2))
        self.odd = list(range(1, len(self.sizes), 2))
        like = biases[0]
        if data is not None and base_logits is not None:
            raise ValueError("give data or base_logits for the base rate, not both")
        if data is not None:
            if data.shape[-1] != self.sizes[0]:
                raise ValueError(
                    f"data must have shape (N, {self.sizes[0]}), got {tuple(data.shape)}"
                )
            base_logits = base_rate_logits(data, smoothing)
        if base_logits is None:
            base_logits = torch.zeros_like(like)
        self.base = base_logits.detach().to(like)
        self._cache: tuple[Any, Any] = (None, None)

    def default_betas(self, num_steps: int = 14500) -> torch.Tensor:
        """:func:`salakhutdinov_murray_betas` ``(num_steps)`` on the machine's device and dtype;
        the schedule :func:`~pyro_genmodels.infer.ais` uses when given no ``betas``."""
        return salakhutdinov_murray_betas(self.biases[0], num_steps)

    def _split(self, x: torch.Tensor) -> list[torch.Tensor]:
        parts = x.split([self.sizes[l] for l in self.even], dim=-1)
        states: list[Any] = [None] * len(self.sizes)
        for l, part in zip(self.even, parts, strict=True):
            states[l] = part
        return states

    def _odd_inputs(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """``b_l + in_l(x_e)`` for the odd layers (cached for the last ``x``)."""
        if self._cache[0] is x:
            return self._cache[1]
        states = self._split(x)
        out = {}
        for l in self.odd:
            total = self.biases[l]
            below = states[l - 1] if l - 1 > 0 or self.sigma is None else states[0] / self.sigma**2
            total = total + below @ self.weights[l - 1]
            if l + 1 < len(self.sizes):
                total = total + states[l + 1] @ self.weights[l].transpose(0, 1)
            out[l] = total
        self._cache = (x, out)
        return out

    def init(self, num_chains: int) -> torch.Tensor:
        like = self.biases[0]
        if self.sigma is None:
            v = bernoulli(torch.sigmoid(self.base).expand(num_chains, -1))
        else:
            v = self.biases[0] + self.sigma * torch.randn(
                num_chains, self.sizes[0], dtype=like.dtype, device=like.device
            )
        hidden = [
            bernoulli(
                torch.full((num_chains, self.sizes[l]), 0.5, dtype=like.dtype, device=like.device)
            )
            for l in self.even[1:]
        ]
        return torch.cat([v, *hidden], dim=-1)

    def log_base_normalizer(self) -> torch.Tensor:
        hidden = sum(self.sizes[1:]) * math.log(2.0)
        if self.sigma is None:
            return F.softplus(self.base).sum() + hidden
        return (0.5 * math.log(2 * math.pi) + torch.log(self.sigma)).sum() + hidden

    def log_density(self, x: torch.Tensor, beta: Any) -> torch.Tensor:
        states = self._split(x)
        v = states[0]
        if self.sigma is None:
            out = v @ ((1 - beta) * self.base + beta * self.biases[0])
        else:
            out = -((v - self.biases[0]) ** 2 / (2 * self.sigma**2)).sum(-1)
        for l in self.even[1:]:
            out = out + beta * (states[l] @ self.biases[l])
        for _, total in self._odd_inputs(x).items():
            out = out + F.softplus(beta * total).sum(-1)
        return out

    @torch.no_grad()
    def transition(self, x: torch.Tensor, beta: Any) -> torch.Tensor:
        states = self._split(x)
        for l, total in self._odd_inputs(x).items():
            states[l] = bernoulli(torch.sigmoid(beta * total))
        new = []
        for l in self.even:
            inp = 0.0
            if l > 0:
                inp = states[l - 1] @ self.weights[l - 1]
            if l + 1 < len(self.sizes):
                inp = inp + states[l + 1] @ self.weights[l].transpose(0, 1)
            if l == 0 and self.sigma is not None:
                mean = self.biases[0] + beta * inp
                new.append(mean + self.sigma * torch.randn_like(mean))
            elif l == 0:
                new.append(
                    bernoulli(torch.sigmoid((1 - beta) * self.base + beta * (self.biases[0] + inp)))
                )
            else:
                new.append(bernoulli(torch.sigmoid(beta * (self.biases[l] + inp))))
        return torch.cat(new, dim=-1)


PATHS[LayeredBoltzmann] = BoltzmannAnnealingPath
