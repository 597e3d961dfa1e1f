"""``fit(precision="bf16")``: bfloat16 autocast of the loss; float32 params, gradients, updates."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_genmodels.models import VAE
from pyro_genmodels.training import fit
from pyro_genmodels.training.loss_stack import AutocastLoss, autocast, stack

N, D = 64, 16


def _binary(device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((N, D), 0.3), generator=g).to(device)


def _fit_vae(x, precision, epochs=6):
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE(D, 4, hidden_dims=(32,))
    dtypes = set()
    vae.decoder.register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))
    # fit trains where the model's parameters are unless told: put it on the data's device
    h = fit(vae.model, vae.guide, x, optim=pyro.optim.Adam({"lr": 0.02}), epochs=epochs,
            batch_size=16, precision=precision, device=x.device, progress=False)  # fmt: skip
    return h, vae, dtypes


def test_bf16_runs_networks_in_bf16_with_fp32_master_weights(device):
    x = _binary(device)
    h32, _, dtypes32 = _fit_vae(x, "fp32")
    h16, vae, dtypes16 = _fit_vae(x, "bf16")
    assert dtypes32 == {torch.float32} and dtypes16 == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in vae.parameters())
    assert all(p.device.type == device.type for p in vae.parameters())
    optim_state = pyro.get_param_store()  # params still float32 leaves after the updates
    assert all(p.dtype == torch.float32 for p in optim_state.values())
    loss16, loss32 = h16["loss"].to_numpy(), h32["loss"].to_numpy()
    assert np.isfinite(loss16).all()
    # bf16 keeps 8 mantissa bits: the epoch losses (ELBO per datapoint, about 10 nats)
    # agree with float32 to a few percent, and training lowers the loss in both.
    np.testing.assert_allclose(loss16, loss32, rtol=0.05)
    assert loss16[-1] < loss16[0] - 0.5 and loss32[-1] < loss32[0] - 0.5


def test_autocast_loss_gradient_close_to_fp32(device):
    """The gradient of a linear-Gaussian log-likelihood, bf16 forward vs float32."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 8, generator=g).to(device)
    y = torch.randn(32, generator=g).to(device)

    def model(x, y):
        w = pyro.param("w", torch.linspace(-1, 1, 8, device=x.device))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)

    grads = {}
    for precision in ("fp32", "bf16"):
        pyro.clear_param_store()
        loss = stack(pyro.infer.Trace_ELBO(), False, precision, device)
        loss.loss_and_grads(model, lambda x, y: None, x, y)
        grads[precision] = pyro.param("w").unconstrained().grad.clone()
    assert grads["bf16"].dtype == torch.float32
    exact = -(x.T @ (y - x @ torch.linspace(-1, 1, 8, device=device)))  # d(-log p)/dw
    torch.testing.assert_close(grads["fp32"], exact, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grads["bf16"], exact, rtol=0.03, atol=0.3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_bf16_conv_vae_on_cuda():
    x = _binary("cuda")[:, :16].repeat(1, 4)  # 8x8 images
    pyro.clear_param_store()
    vae = VAE(64, 4, encoder="conv", image_shape=(1, 8, 8))
    dtypes = set()
    vae.encoder.net.register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))
    h = fit(vae.model, vae.guide, x, epochs=3, batch_size=32, precision="bf16", device="cuda",
            progress=False)  # fmt: skip
    assert dtypes == {torch.bfloat16}
    assert np.isfinite(h["loss"]).all()
    assert all(p.dtype == torch.float32 and p.is_cuda for p in vae.parameters())


def test_precision_errors():
    x = torch.zeros(4, 2)
    with pytest.raises(
        ValueError, match=r"precision must be one of \('fp32', 'bf16'\), got 'fp16'"
    ):
        fit(lambda x: None, lambda x: None, x, precision="fp16", progress=False)
    with pytest.raises(TypeError, match="precision must be a str"):
        fit(lambda x: None, lambda x: None, x, precision=16, progress=False)
    with pytest.raises(ValueError, match="needs a device of type"):
        with autocast("bf16", "meta"):
            pass
    with pytest.raises(TypeError, match="loss_and_grads"):
        AutocastLoss(object(), "bf16", "cpu")
