"""f-divergences for adversarial training: generator f, output activation, Fenchel conjugate.

For a convex ``f`` with ``f(1) = 0``, ``D_f(P || Q) = ∫ q f(p / q) dx`` and, for
any critic ``T``, the variational bound of Nguyen et al. (2010) used by f-GAN
(Nowozin et al. 2016) holds:

    D_f(P || Q) >= E_P[T(x)] - E_Q[f*(T(x))],   with equality at T* = f'(p / q).

A critic network outputs an unconstrained ``v``; the activation ``g_f`` maps it
into the domain of ``f*`` (``T = g_f(v)``). :data:`F_DIVERGENCES` holds every
divergence by name; :func:`fgan_bound` evaluates the bound on critic outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Fn = Callable[[torch.Tensor], torch.Tensor]

LOG2 = math.log(2.0)


@dataclass(frozen=True)
class FDivergence:
    """One f-divergence ``D_f(P || Q) = ∫ q f(p/q)``, as Nowozin et al. (2016), Table 6.

    Attributes:
        name: its key in :data:`F_DIVERGENCES`.
        f: the convex generator, ``u -> f(u)`` for density ratios ``u = p/q > 0``.
        f_prime: its derivative; ``T* = f'(p/q)`` is the optimal critic.
        activation: ``g_f``, critic output ``v`` (any real) -> ``T`` in the domain of ``f*``.
        inverse_activation: ``T -> v`` (so an optimal critic can be written down).
        conjugate: the Fenchel conjugate ``f*(t) = sup_u (u t - f(u))``.
    """

    name: str
    f: Fn
    f_prime: Fn
    activation: Fn
    inverse_activation: Fn
    conjugate: Fn


def _js_f(u: torch.Tensor) -> torch.Tensor:
    return 0.5 * (u * u.log() - (u + 1) * ((u + 1) / 2).log())


F_DIVERGENCES: dict[str, FDivergence] = {
    d.name: d
    for d in (
        FDivergence(
            "kl",
            f=lambda u: u * u.log(),
            f_prime=lambda u: 1 + u.log(),
            activation=lambda v: v,
            inverse_activation=lambda t: t,
            conjugate=lambda t: (t - 1).exp(),
        ),
        FDivergence(
            "reverse_kl",
            f=lambda u: -u.log(),
            f_prime=lambda u: -1 / u,
            activation=lambda v: -(-v).exp(),
            inverse_activation=lambda t: -(-t).log(),
            conjugate=lambda t: -1 - (-t).log(),
        ),
        FDivergence(
            "js",
            f=_js_f,
            f_prime=lambda u: 0.5 * (2 * u / (u + 1)).log(),
            activation=lambda v: 0.5 * (LOG2 - F.softplus(-v)),
            inverse_activation=lambda t: -torch.log(torch.expm1(LOG2 - 2 * t)),
            conjugate=lambda t: -0.5 * torch.log(2 - (2 * t).exp()),
        ),
        FDivergence(
            "pearson",
            f=lambda u: (u - 1) ** 2,
            f_prime=lambda u: 2 * (u - 1),
            activation=lambda v: v,
            inverse_activation=lambda t: t,
            conjugate=lambda t: 0.25 * t**2 + t,
        ),
        FDivergence(
            "neyman",
            f=lambda u: (1 - u) ** 2 / u,
            f_prime=lambda u: 1 - u.pow(-2),
            activation=lambda v: 1 - v.exp(),
            inverse_activation=lambda t: (1 - t).log(),
            conjugate=lambda t: 2 - 2 * (1 - t).sqrt(),
        ),
        FDivergence(
            "hellinger",
            f=lambda u: (u.sqrt() - 1) ** 2,
            f_prime=lambda u: 1 - u.rsqrt(),
            activation=lambda v: 1 - v.exp(),
            inverse_activation=lambda t: (1 - t).log(),
            conjugate=lambda t: t / (1 - t),
        ),
        FDivergence(
            "tv",
            f=lambda u: 0.5 * (u - 1).abs(),
            f_prime=lambda u: 0.5 * torch.sign(u - 1),
            activation=lambda v: 0.5 * torch.tanh(v),
            inverse_activation=lambda t: torch.atanh(2 * t),
            conjugate=lambda t: t,
        ),
    )
}


def get_divergence(name: str) -> FDivergence:
    """The :class:`FDivergence` called ``name`` (one of :data:`F_DIVERGENCES`).

    >>> get_divergence("kl").f_prime(torch.tensor(1.0))
    tensor(1.)
    """
    if not isinstance(name, str) or name not in F_DIVERGENCES:
        raise ValueError(f"divergence must be one of {sorted(F_DIVERGENCES)}, got {name!r}")
    return F_DIVERGENCES[name]


def fgan_bound(divergence: str, v_real: torch.Tensor, v_fake: torch.Tensor) -> torch.Tensor:
    """The f-GAN lower bound ``E_P[g_f(v)] - E_Q[f*(g_f(v))] <= D_f(P || Q)``.

    Args:
        divergence: a name in :data:`F_DIVERGENCES`.
        v_real: critic outputs on samples of P (the data), any shape ``(*)``.
        v_fake: critic outputs on samples of Q (the model), any shape ``(*)``.

    Returns:
        A scalar tensor; the expectations are sample means.

    >>> v = torch.zeros(4)  # the optimal critic when P = Q: the bound is 0
    >>> float(fgan_bound("kl", v + 1.0, v + 1.0))
    0.0

    Reference: Nowozin, Cseke, Tomioka, "f-GAN: Training Generative Neural
    Samplers using Variational Divergence Minimization", NeurIPS 2016.
    """
    d = get_divergence(divergence)
    return d.activation(v_real).mean() - d.conjugate(d.activation(v_fake)).mean()
