"""EnergyMLP's random Fourier features: the formula, the buffer, devices, and bad arguments."""

import pytest
import torch

import pyro_genmodels as pgm


def test_default_energy_reads_x_and_has_no_frequencies(device):
    net = pgm.nn.EnergyMLP(3, [8]).to(device)
    assert net.frequencies is None and "frequencies" not in net.state_dict()
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Linear))
    assert first.in_features == 3


def test_fourier_energy_is_the_mlp_of_sin_and_cos_features_plus_the_confinement(device):
    """E(x) = f([sin zB, cos zB]) + ‖(x − μ)/(c s)‖²/2 with z = (x − μ)/s, to 1e-12 in
    float64; B is a (D, m) buffer whose entries have spread σ_f (4000 draws, seed 0: within
    5%, a 12-sd band)."""
    torch.manual_seed(0)
    loc, scale = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0])
    net = pgm.nn.EnergyMLP(2, [16, 16], loc, scale, confine=4.0, fourier_features=2000,
                           fourier_scale=2.5).to(device=device, dtype=torch.float64)  # fmt: skip
    B = net.frequencies
    assert B.shape == (2, 2000) and B.dtype == torch.float64 and B.device.type == device.type
    assert abs(float(B.std()) / 2.5 - 1) < 0.05
    x = torch.randn(7, 2, dtype=torch.float64, device=device)
    z = ((x - net.loc) / net.scale) @ B
    expected = net.net(torch.cat([z.sin(), z.cos()], -1)).squeeze(-1)
    expected = expected + 0.5 * (((x - net.loc) / (4.0 * net.scale)) ** 2).sum(-1)
    assert torch.allclose(net(x), expected, atol=1e-12, rtol=0)


def test_fourier_energy_state_dict_round_trip_and_score_matching(device):
    """The frequencies travel in the state dict (a fresh net loaded from it gives the same
    energies), and score matching, which needs second derivatives in x, trains on them (every
    weight gets a finite gradient; the last bias leaves the score unchanged)."""
    torch.manual_seed(1)
    net = pgm.nn.EnergyMLP(2, [8], fourier_features=16).to(device)
    other = pgm.nn.EnergyMLP(2, [8], fourier_features=16).to(device)
    x = torch.randn(5, 2, device=device)
    assert not torch.allclose(net(x), other(x))
    other.load_state_dict(net.state_dict())
    assert torch.equal(net(x), other(x))
    import pyro

    from pyro_genmodels.distributions import EnergyDistribution

    def model(xb):
        pyro.module("energy", net)
        with pyro.plate("data", xb.shape[0]):
            pyro.sample("x", EnergyDistribution(net, (2,)), obs=xb)

    loss = pgm.infer.ScoreMatchingLoss("exact", noise_scale=0.0)
    value = loss.loss_and_grads(model, lambda xb: None, torch.randn(32, 2, device=device))
    grads = [p.grad for name, p in net.named_parameters() if name.endswith("weight")]
    assert torch.isfinite(torch.tensor(value)) and all(g is not None for g in grads)
    assert all(bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"fourier_features": -1}, ValueError, "fourier_features"),
        ({"fourier_features": 2.0}, TypeError, "fourier_features"),
        ({"fourier_scale": 0.0}, ValueError, "fourier_scale"),
        ({"fourier_features": 2, "fourier_window": 0.0}, ValueError, "fourier_window"),
        ({"fourier_features": 2, "fourier_window": "1"}, TypeError, "fourier_window"),
        ({"fourier_window": 1.5}, ValueError, "fourier_window.*fourier_features > 0"),
    ],
)
def test_fourier_arguments_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        pgm.nn.EnergyMLP(2, [4], **kwargs)


def test_zero_init_starts_the_energy_at_zero_and_still_trains(device):
    """With zero_init and no confinement E ≡ 0 (an energy on a base starts as the base),
    and the last layer's weight still gets the gradient ∂E/∂w = hidden features (nonzero)."""
    torch.manual_seed(0)
    net = pgm.nn.EnergyMLP(2, [8], confine=None, fourier_features=4, zero_init=True).to(device)
    x = torch.randn(6, 2, device=device)
    energy = net(x)
    assert torch.equal(energy, torch.zeros(6, device=device))
    energy.sum().backward()
    last = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert float(last.weight.grad.abs().sum()) > 0


def test_windowed_features_are_the_features_times_the_gaussian_window(device):
    """φ(x) = w(z)·[sin zB, cos zB] with w(z) = exp(−‖z‖²/(2ρ²)), z = (x − μ)/s, to 1e-12 in
    float64; far from the data (‖z‖ = 40ρ) the MLP reads 0, so E is f(0) plus the
    confinement (exactly, in float64: w underflows to 0)."""
    torch.manual_seed(0)
    loc, scale, rho = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0]), 1.5
    net = pgm.nn.EnergyMLP(2, [16], loc, scale, confine=2.0, fourier_features=32,
                           fourier_window=rho).to(device=device, dtype=torch.float64)  # fmt: skip
    x = torch.randn(7, 2, dtype=torch.float64, device=device)
    u = (x - net.loc) / net.scale
    z = u @ net.frequencies
    window = torch.exp(-(u**2).sum(-1, keepdim=True) / (2 * rho**2))
    expected = net.net(window * torch.cat([z.sin(), z.cos()], -1)).squeeze(-1)
    expected = expected + 0.5 * ((u / 2.0) ** 2).sum(-1)
    assert torch.allclose(net(x), expected, atol=1e-12, rtol=0)
    assert net.fourier_window.dtype == torch.float64 and net.fourier_window.device == x.device
    far = net.loc + net.scale * torch.tensor([40 * rho, 0.0], dtype=torch.float64, device=device)
    zero = torch.zeros(1, 64, dtype=torch.float64, device=device)
    assert torch.equal(net(far[None]), net.net(zero).squeeze(-1) + 0.5 * (40 * rho / 2.0) ** 2)


def test_the_window_travels_in_the_state_dict():
    """ρ is a buffer: a windowed energy's state loads into a windowed one (same energies) and
    not into an unwindowed one, or the other way round (strict loading names the key)."""
    torch.manual_seed(0)
    windowed = pgm.nn.EnergyMLP(2, [8], fourier_features=4, fourier_window=1.5)
    plain = pgm.nn.EnergyMLP(2, [8], fourier_features=4)
    other = pgm.nn.EnergyMLP(2, [8], fourier_features=4, fourier_window=1.5)
    other.load_state_dict(windowed.state_dict())
    x = torch.randn(5, 2)
    assert torch.equal(other(x), windowed(x))
    with pytest.raises(RuntimeError, match="fourier_window"):
        plain.load_state_dict(windowed.state_dict())
    with pytest.raises(RuntimeError, match="fourier_window"):
        windowed.load_state_dict(plain.state_dict())
