import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_genmodels.optim import Adam, GroupedOptim


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 2)


def _program(net, device):
    def model(x):
        pyro.module("net", net)
        loc = pyro.param("loc", torch.zeros(2, device=device))
        with pyro.plate("data", x.shape[0]):
            pyro.sample(
                "y", dist.Normal(net.b(net.a(x).tanh()) + loc, 1.0).to_event(1), obs=x[:, :2] ** 2
            )

    return model


def _train(optim, device, steps=20, seed=0):
    pyro.clear_param_store()
    torch.manual_seed(seed)
    net = Net().to(device)
    x = torch.randn(16, 3, device=device)
    svi = pyro.infer.SVI(_program(net, device), lambda x: None, optim, pyro.infer.Trace_ELBO())
    for _ in range(steps):
        svi.step(x)
    return {k: v.detach().clone() for k, v in pyro.get_param_store().items()}, x, net


def test_same_trajectory_as_pyro_adam(device):
    # Adam is elementwise: one grouped optimizer must equal Pyro's per-parameter ones.
    ours, _, _ = _train(Adam({"lr": 0.05}), device)
    theirs, _, _ = _train(pyro.optim.Adam({"lr": 0.05}), device)
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert torch.allclose(ours[k], theirs[k], atol=1e-6), k


def test_per_parameter_args_and_clipping(device):
    def args(name):
        return {"lr": 0.0} if name.startswith("net.a.") else {"lr": 0.05}

    torch.manual_seed(0)
    ref = Net().state_dict()
    params, _, net = _train(GroupedOptim(torch.optim.Adam, args, {"clip_norm": 1.0}), device)
    assert torch.equal(net.a.weight.cpu(), ref["a.weight"])  # lr 0: untouched
    assert not torch.equal(net.b.weight.cpu(), ref["b.weight"])


def test_only_passed_params_move(device):
    pyro.clear_param_store()
    a = pyro.param("a", torch.ones(2, device=device))
    b = pyro.param("b", torch.ones(2, device=device))
    optim = Adam({"lr": 0.1})
    (a.sum() + b.sum()).backward()
    optim([a, b])
    a_before, b_before = a.detach().clone(), b.detach().clone()
    (a.sum() + b.sum()).backward()
    optim([a])  # b has a gradient but is not part of this step
    assert not torch.equal(a, a_before) and torch.equal(b, b_before)
    assert b.grad is not None  # its gradient is left as it was


def test_state_round_trip_resumes_exactly(device):
    full, x, _ = _train(Adam({"lr": 0.05}), device, steps=20)
    # 10 steps, save state, restart from the saved params and optimizer state, 10 more.
    optim = Adam({"lr": 0.05})
    half, _, _ = _train(optim, device, steps=10)
    state = optim.get_state()
    assert set(state) == set(half)
    pyro.clear_param_store()
    net = Net().to(device)
    for k, v in half.items():
        if k.startswith("net$$$"):
            dict(net.named_parameters())[k[len("net$$$") :]].data.copy_(v)
    pyro.param("loc", half["loc"].clone())
    resumed = Adam({"lr": 0.05})
    resumed.set_state(state)
    svi = pyro.infer.SVI(_program(net, device), lambda x: None, resumed, pyro.infer.Trace_ELBO())
    for _ in range(10):
        svi.step(x)
    for k, v in pyro.get_param_store().items():
        assert torch.allclose(v, full[k], atol=1e-6), k


def test_bad_input():
    with pytest.raises(TypeError, match="torch.optim.Optimizer class"):
        GroupedOptim("adam", {"lr": 1e-3})
    with pytest.raises(TypeError, match="optim_args must be a dict"):
        GroupedOptim(torch.optim.Adam, [0.1])
