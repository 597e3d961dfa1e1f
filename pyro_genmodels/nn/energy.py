"""Energy networks: an MLP energy with a Gaussian confinement that keeps ``Z`` finite."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyro_genmodels._checks import check_bool, check_int, check_positive_float
from pyro_genmodels.nn.dense import MLP


class EnergyMLP(nn.Module):
    """``E(x) = f_θ(φ(x)) + ‖(x − μ) / (c·s)‖² / 2``: an MLP plus a wide quadratic confinement.

    An unconstrained MLP energy may decrease without bound away from the data
    (then ``Z = ∞`` and no likelihood exists); the quadratic term, a Gaussian
    base measure ``c`` times wider than the data, keeps ``exp(−E)`` integrable
    whatever ``f_θ`` does at linear growth. SiLU hiddens give smooth second
    derivatives (score matching needs them).

    ``φ(x) = x`` by default. With ``fourier_features = m > 0`` the MLP reads random Fourier
    features instead, ``φ(x) = [sin(zB), cos(zB)]`` with ``z = (x − μ)/s`` and a fixed
    ``B (D, m)`` of ``N(0, σ_f²)`` entries (``σ_f = fourier_scale``): a smooth MLP of
    ``x`` learns sharp edges slowly, one of these features quickly (Tancik et al. 2020). On
    the 2-D checkerboard an energy on a spline flow reaches 0.09 nats from the entropy floor
    with ``m = 64`` where the plain MLP stays at 0.13 (``benchmarks/energy.py``).

    The features repeat (quasi-periodically) beyond the data, and so would the energy's
    pattern: a loss that sees only the data there leaves mass on the copies (score matching
    on the checkerboard put 39% of it outside the data's square). ``fourier_window = ρ``
    multiplies the features by ``w(z) = exp(−‖z‖²/(2ρ²))``, so that far from the data
    ``f_θ`` reads 0 and the confinement sets the energy's growth. With ``m = 64``,
    ``ρ = 1.5`` and ``c = 2`` (the README's energy) each energy loss (CD, PCD, three score
    matchings, NCE) with its defaults trains the three 2-D toys within 0.25 nats of their
    entropy in 1000 steps; the plain MLP does so in 6 of the 18 (``benchmarks/energy.py``).

    Args:
        dim: input size ``D``.
        hidden_dims: hidden layer sizes of ``f_θ``.
        loc: ``μ``, ``(D,)`` tensor (default 0).
        scale: ``s``, ``(D,)`` positive tensor (default 1).
        confine: ``c > 0``; None drops the quadratic term.
        fourier_features: ``m ≥ 0`` random frequencies (0: the MLP reads ``x``).
        fourier_scale: ``σ_f > 0``, their spread in units of ``s``.
        fourier_window: ``ρ > 0`` in units of ``s``, or None (no window); needs
            ``fourier_features > 0``.
        zero_init: start ``f_θ`` at exactly 0 (its last layer zeroed): a residual energy on
            a base density, ``EnergyDistribution(energy, base=q)`` with ``confine=None``,
            then starts as ``q`` itself (Nash & Durkan 2019).

    Shapes: ``x (*, D)`` → ``(*,)``.

    >>> net = EnergyMLP(2, [16])
    >>> net(torch.zeros(5, 2)).shape
    torch.Size([5])
    >>> EnergyMLP(2, [16], fourier_features=8)(torch.zeros(5, 2)).shape
    torch.Size([5])
    >>> EnergyMLP(2, [16], fourier_features=8, fourier_window=1.5)(torch.zeros(5, 2)).shape
    torch.Size([5])

    References:
        Du & Mordatch, "Implicit Generation and Generalization in Energy-Based Models", 2019.
        Tancik et al., "Fourier Features Let Networks Learn High Frequency Functions in Low
        Dimensional Domains", NeurIPS 2020.
    """

    loc: torch.Tensor
    scale: torch.Tensor
    frequencies: torch.Tensor | None
    fourier_window: torch.Tensor | None

    def __init__(
        self,
        dim: int,
        hidden_dims: Sequence[int],
        loc: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        confine: float | None = 4.0,
        fourier_features: int = 0,
        fourier_scale: float = 4.0,
        zero_init: bool = False,
        fourier_window: float | None = None,
    ) -> None:
        super().__init__()
        m = check_int("fourier_features", fourier_features, minimum=0)
        sigma = check_positive_float("fourier_scale", fourier_scale)
        window = None
        if fourier_window is not None:
            window = torch.tensor(check_positive_float("fourier_window", fourier_window))
            if not m:
                raise ValueError(
                    "fourier_window windows the Fourier features: it needs fourier_features "
                    f"> 0, got fourier_features={m}"
                )
        # a buffer, so that a state dict loads only into an energy with the same window
        self.register_buffer("fourier_window", window)
        self.net = MLP(2 * m if m else dim, hidden_dims, 1, activation=nn.SiLU)
        self.register_buffer("frequencies", sigma * torch.randn(dim, m) if m else None)
        if check_bool("zero_init", zero_init):
            last = [layer for layer in self.net.modules() if isinstance(layer, nn.Linear)][-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.confine = None if confine is None else check_positive_float("confine", confine)
        loc = torch.zeros(dim) if loc is None else torch.as_tensor(loc).detach().clone()
        scale = torch.ones(dim) if scale is None else torch.as_tensor(scale).detach().clone()
        if loc.shape != (dim,) or scale.shape != (dim,) or not (scale > 0).all():
            raise ValueError(
                f"loc and scale must have shape ({dim},) with scale > 0, got "
                f"{tuple(loc.shape)} and {tuple(scale.shape)}"
            )
        self.register_buffer("loc", loc)
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frequencies is None:
            out = self.net(x).squeeze(-1)
        else:
            u = (x - self.loc) / self.scale
            z = u @ self.frequencies
            features = torch.cat([torch.sin(z), torch.cos(z)], -1)
            if self.fourier_window is not None:
                window = (u**2).sum(-1, keepdim=True) / (-2 * self.fourier_window**2)
                features = features * window.exp()
            out = self.net(features).squeeze(-1)
        if self.confine is not None:
            z = (x - self.loc) / (self.confine * self.scale)
            out = out + 0.5 * (z**2).sum(-1)
        return out
