"""Training energy-based models through pgm.fit: exact resume of persistent chains."""

import pyro
import torch
from energy_helpers import energy_model, no_guide

import pyro_genmodels as pgm
from pyro_genmodels.training.files import load_checkpoint


def _setup(seed):
    torch.manual_seed(seed)
    net = pgm.nn.MLP(2, [16], 1).double()
    sampler = pgm.infer.LangevinSampler(0.01, noise_scale=0.005)
    loss = pgm.infer.ContrastiveDivergenceLoss(k=3, persistent=True, buffer_size=48, energy_reg=0.1)
    return net, energy_model(net, sampler=sampler), loss


def test_pcd_resume_is_exact(tmp_path):
    """2 epochs + resume to 4 = 4 uninterrupted epochs: params, losses, buffer, bit for bit."""
    x = torch.randn(64, 2, dtype=torch.float64)
    kwargs = dict(batch_size=16, seed=3, progress=False)

    net, model, loss = _setup(0)
    ref = pgm.fit(model, no_guide, x, loss=loss, epochs=4, **kwargs)
    ref_params = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    ref_buffer = loss.state_dict()["buffer.x"]

    pyro.clear_param_store()
    net, model, loss = _setup(0)
    pgm.fit(model, no_guide, x, loss=loss, epochs=2, checkpoint_dir=tmp_path, **kwargs)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["loss_state"]["buffer.x"].shape == (48, 2)

    pyro.clear_param_store()
    net, model, loss = _setup(7)  # different init and an empty buffer: all must come from the file
    resumed = pgm.fit(
        model, no_guide, x, loss=loss, epochs=4, checkpoint_dir=tmp_path, resume=True, **kwargs
    )
    assert list(resumed["loss"]) == list(ref["loss"])
    for name, value in pyro.get_param_store().items():
        assert torch.equal(value.detach(), ref_params[name]), name
    assert torch.equal(loss.state_dict()["buffer.x"], ref_buffer)
