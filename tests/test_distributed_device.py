"""Data-parallel ``fit`` on the test device: 2 gloo processes equal 1 process there.

Both processes train on the same device (on CUDA, the one GPU: gloo reduces CUDA
tensors, NCCL would need a GPU per process), spawned rather than forked so that a
child can initialize CUDA. A MAP model with a global latent and a subsampled data
plate (the plate scaling), and a GAN with inner critic updates whose noise is a
data tensor (the critic's gradient hook): float64 and noise-free, so the
parameters after 3 epochs (the last batch split 3 + 2) agree within 1e-5.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from gloo_helpers import run_on_ranks
from torch import nn

from pyro_genmodels.infer import GANLoss
from pyro_genmodels.training import fit

N, D, BATCH, EPOCHS = 21, 2, 8, 3


def _map_model(x, idx):
    loc = pyro.sample("loc", dist.Normal(x.new_zeros(D), 1.0).to_event(1))
    with pyro.plate("data", N, subsample=idx):
        z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)


def _map_guide(x, idx):
    pyro.sample("loc", dist.Delta(pyro.param("loc_q", x.new_zeros(D)), event_dim=1))
    with pyro.plate("data", N, subsample=idx):
        pyro.sample("z", dist.Delta(pyro.param("z_q", x.new_zeros(N, D))[idx], event_dim=1))


def _runs(device: str, distributed: bool) -> dict[str, dict[str, torch.Tensor]]:
    """Parameters (on the CPU) after training both models on ``device``."""
    device_ = torch.device(device)
    kw = {"dtype": torch.float64, "device": device_}
    out = {}
    pyro.clear_param_store()
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(N, D, dtype=torch.float64, generator=g) + 2.0).to(device_)
    fit(_map_model, _map_guide, (x, torch.arange(N, device=device_)), epochs=EPOCHS,
        optim=pyro.optim.Adam({"lr": 0.1}), batch_size=BATCH, seed=3, progress=False,
        device=device_, distributed=distributed)  # fmt: skip
    out["map"] = {k: v.detach().cpu() for k, v in pyro.get_param_store().items()}

    pyro.clear_param_store()
    torch.manual_seed(1)
    gen = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, D)).to(**kw)
    critic = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 1)).to(**kw)

    def model(x, z):
        pyro.module("generator", gen)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Delta(gen(z), event_dim=1), obs=x)

    loss = GANLoss(critic, critic_optim=pyro.optim.Adam({"lr": 0.05}), n_critic=2)
    z = torch.randn(N, 2, dtype=torch.float64, generator=g).to(device_)
    fit(model, lambda x, z: None, (x, z), loss=loss, optim=pyro.optim.Adam({"lr": 0.03}),
        epochs=EPOCHS, batch_size=BATCH, seed=3, progress=False, device=device_,
        distributed=distributed)  # fmt: skip
    out["gan"] = {k: v.detach().cpu() for k, v in pyro.get_param_store().items()}
    return out


def _worker(rank: int, out: str, device: str) -> dict:
    return _runs(device, distributed=True)


def test_two_processes_on_the_device_equal_one(device, tmp_path):
    ranks = run_on_ranks(_worker, tmp_path, device.type, start_method="spawn")
    ref = _runs(device.type, distributed=False)
    for got in ranks:
        for model in ("map", "gan"):
            assert got[model].keys() == ref[model].keys()
            for name, value in ref[model].items():
                torch.testing.assert_close(got[model][name], value, rtol=0, atol=1e-5)
    assert len([k for k in ref["gan"] if k.startswith("discriminator$$$")]) == 4
    assert float(ref["map"]["loc_q"].abs().max()) > 0.1  # the global latent moved
