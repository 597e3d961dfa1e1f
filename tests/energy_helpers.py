"""Energies with closed-form answers and random Boltzmann machines, shared by the
energy-based model tests."""

import pyro
import torch

import pyro_genmodels as pgm
from pyro_genmodels.distributions import EnergyDistribution


class Quadratic(torch.nn.Module):
    """``E(x) = ½ xᵀAx − bᵀx`` with ``A = LLᵀ`` (parameters ``L`` lower-triangular, ``b``)."""

    def __init__(self, dim=2, dtype=torch.float64, device="cpu"):
        super().__init__()
        self.chol = torch.nn.Parameter(torch.eye(dim, dtype=dtype, device=device))
        self.b = torch.nn.Parameter(torch.zeros(dim, dtype=dtype, device=device))

    @property
    def precision(self):
        low = self.chol.tril()
        return low @ low.T

    def forward(self, x):
        return 0.5 * ((x @ self.precision) * x).sum(-1) - x @ self.b


class NoiseConditionalQuadratic(torch.nn.Module):
    """``E(x, σ) = ½ xᵀA_σx − b_σᵀx``, one quadratic per noise level in ``levels``."""

    def __init__(self, levels, dim=2, dtype=torch.float64, device="cpu"):
        super().__init__()
        self.levels = list(levels)
        self.parts = torch.nn.ModuleList(Quadratic(dim, dtype, device) for _ in self.levels)

    def forward(self, x, sigma):
        sigma = sigma.squeeze(-1)
        out = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
        for level, part in zip(self.levels, self.parts):
            out = torch.where((sigma - level).abs() < 1e-9, part(x), out)
        return out


def gaussian_data(n, device, seed=0):
    """``n`` draws of ``N(μ, Σ)`` in float64 with ``μ = (1, −0.5)``, ``Σ = [[1, .5], [.5, 2]]``."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.tensor([1.0, -0.5], dtype=torch.float64)
    cov = torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=torch.float64)
    x = mu + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    return x.to(device), mu.to(device), cov.to(device)


def energy_model(energy, event_shape=(2,), **dist_kwargs):
    """A Pyro model observing ``x`` at one EnergyDistribution site inside a data plate."""

    def model(x):
        pyro.module("energy", energy)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", EnergyDistribution(energy, event_shape, **dist_kwargs), obs=x)

    return model


def no_guide(*args, **kwargs):
    return None


def minimize(loss, model, x, params, seed=1, max_iter=200):
    """Full-batch L-BFGS of ``loss.differentiable_loss / N``, the loss's draws fixed by ``seed``."""
    opt = torch.optim.LBFGS(
        params, max_iter=max_iter, tolerance_grad=1e-10, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        pyro.set_rng_seed(seed)
        value = loss.differentiable_loss(model, no_guide, x) / x.shape[0]
        value.backward()
        return value

    for _ in range(3):
        opt.step(closure)
    return closure().item()


def random_rbm(D, H, device, visible="bernoulli", scale=0.7, seed=0):
    """A float64 ``RBM(D, H, visible)`` with N(0, scale²) weights and N(0, 1) biases (and
    N(0, 0.3²) log-variances for Gaussian visibles), drawn from ``seed``."""
    torch.manual_seed(seed)
    rbm = pgm.models.RBM(D, H, visible).to(device=device, dtype=torch.float64)
    with torch.no_grad():
        rbm.W.normal_(0, scale)
        rbm.visible_bias.normal_(0, 1)
        rbm.hidden_bias.normal_(0, 1)
        if visible == "gaussian":
            rbm.log_var.normal_(0, 0.3)
    return rbm
