"""WAE-MMD / InfoVAE through pyro.infer.Trace_MMD: kernel, loss by hand, gradients."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_MMD

from pyro_genmodels.models import VAE, WAE, InfoVAE, LatentKernel


def _binary(n, d, device, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g, dtype=dtype).round().to(device)


@pytest.mark.parametrize("kind", ["rbf", "imq"])
def test_latent_kernel_formula_and_flattened_rows(kind, device, dtype):
    k = LatentKernel(3, kind, bandwidth=0.7)
    a = torch.randn(4, 3, device=device, dtype=dtype)
    b = torch.randn(5, 3, device=device, dtype=dtype)
    d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
    expected = torch.exp(-d2 / (2 * 0.49)) if kind == "rbf" else 0.98 / (0.98 + d2)
    torch.testing.assert_close(k(a, b), expected)
    # Trace_MMD's (K, N * z_dim) rows are split into the K * N codes.
    torch.testing.assert_close(k(a.reshape(2, 6), b.reshape(1, 15)), expected)
    torch.testing.assert_close(k(a).diagonal(), torch.ones(4, device=device, dtype=dtype))
    assert LatentKernel(4, kind).bandwidth == 2.0


def test_wae_loss_matches_reconstruction_plus_mmd_by_hand(device, dtype):
    wae = WAE(4, 2, hidden_dims=(5,)).to(device, dtype)
    x = _binary(6, 4, device, dtype)
    seen = []

    def model(x):  # records z of each model run: replayed from the guide, then from the prior
        tr = poutine.trace(wae.model).get_trace(x)
        seen.append((tr.nodes["z"]["value"], tr.nodes["x"]["fn"].log_prob(x)))

    loss = wae.loss(kernel="imq", bandwidth=1.5, mmd_scale=30.0).loss(model, wae.guide, x)
    (z_q, log_px), (z_p, _) = seen
    kern = LatentKernel(2, "imq", bandwidth=1.5)
    mmd = kern(z_p).mean() + kern(z_q).mean() - 2 * kern(z_p, z_q).mean()
    assert loss == pytest.approx((-log_px.sum() + 30.0 * mmd).item(), rel=1e-10)


def test_mmd_detects_a_mismatched_aggregate_posterior(dtype):
    """MMD of N(0, I) samples to themselves ~ 0; to N(3, I) samples clearly > 0."""
    kern = LatentKernel(2, "rbf")
    p = torch.randn(400, 2, dtype=dtype)
    same = torch.randn(400, 2, dtype=dtype)
    far = torch.randn(400, 2, dtype=dtype) + 3.0

    def mmd(a, b):
        return (kern(a).mean() + kern(b).mean() - 2 * kern(a, b).mean()).item()

    # The V-statistic's bias is about 2 (1 - E k) / n < 0.01; the shifted MMD is ~0.8.
    assert mmd(p, same) < 0.02 and mmd(p, far) > 0.5


@pytest.mark.parametrize("num_particles", [1, 3])
def test_wae_gradients_reach_encoder_and_decoder(num_particles, device):
    wae = WAE(4, 2, hidden_dims=(5,)).to(device)
    x = _binary(8, 4, device, torch.float32)
    loss = wae.loss(kernel="rbf", num_particles=num_particles)
    value = loss.differentiable_loss(wae.model, wae.guide, x)
    assert torch.isfinite(value)
    value.backward()
    for name, p in wae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    svi = SVI(wae.model, wae.guide, pyro.optim.Adam({"lr": 1e-2}), loss)
    assert math.isfinite(svi.step(x))


def test_wae_is_a_vae_and_infovae_alias():
    wae = InfoVAE(64, 2, encoder="conv", image_shape=(1, 8, 8))
    assert isinstance(wae, VAE) and InfoVAE is WAE
    loss = wae.loss()
    assert isinstance(loss, Trace_MMD) and loss.mmd_scale["z"] == 1e4


def test_wae_loss_bad_input():
    wae = WAE(4, 2, hidden_dims=(3,))
    with pytest.raises(ValueError, match="kernel must be one of"):
        wae.loss(kernel="laplace")
    with pytest.raises(ValueError, match="bandwidth must be a positive"):
        wae.loss(bandwidth=0.0)
    with pytest.raises(TypeError, match="bandwidth"):
        wae.loss(bandwidth="wide")
    with pytest.raises(ValueError, match="mmd_scale"):
        wae.loss(mmd_scale=-1.0)
    with pytest.raises(ValueError, match="num_particles"):
        wae.loss(num_particles=0)
    with pytest.raises(ValueError, match="multiple of z_dim=2"):
        LatentKernel(2)(torch.zeros(3, 5))
