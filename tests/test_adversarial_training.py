"""One svi.step trains both players: schedules, per-player learning rates, clipping, resume."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import pyro_genmodels as pgm
from pyro_genmodels.infer import BiGANLoss, ConcatSites, GANLoss, WGANGPLoss, WGANLoss


def make_gan(device, z_dim=3, x_dim=2):
    torch.manual_seed(0)
    G = pgm.nn.MLP(z_dim, [16], x_dim).double().to(device)
    D = pgm.nn.MLP(x_dim, [16], 1).double().to(device)

    def generator(x):
        pyro.module("generator", G)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Delta(G(z), event_dim=1), obs=x)

    x = torch.randn(32, x_dim, dtype=torch.float64, device=device)
    return G, D, generator, x


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(module, before):
    return [not torch.equal(a, b.detach()) for a, b in zip(before, module.parameters())]


@pytest.mark.parametrize("grouped", [False, True], ids=["pyro.optim.Adam", "pgm.optim.Adam"])
@pytest.mark.parametrize("alternating", [False, True], ids=["simultaneous", "alternating"])
def test_svi_step_changes_both_players(grouped, alternating, device):
    G, D, generator, x = make_gan(device)
    optim = (pgm.optim.Adam if grouped else pyro.optim.Adam)({"lr": 1e-2})
    loss = GANLoss(D, critic_optim=optim if alternating else None)
    svi = pyro.infer.SVI(generator, lambda x: None, optim, loss=loss)
    g0, d0 = snapshot(G), snapshot(D)
    d_loss, g_loss = svi.step(x)
    assert all(changed(G, g0)) and all(changed(D, d0))
    names = set(pyro.get_param_store().keys())
    assert {n.split("$$$")[0] for n in names} == {"generator", "discriminator"}


@pytest.mark.parametrize("grouped", [False, True], ids=["pyro.optim.Adam", "pgm.optim.Adam"])
@pytest.mark.parametrize("alternating", [False, True], ids=["simultaneous", "alternating"])
def test_per_player_learning_rates(grouped, alternating, device):
    G, D, generator, x = make_gan(device)

    def optim_args(name):  # Pyro passes names like "discriminator.0.weight"
        return {"lr": 0.0 if name.startswith("generator.") else 1e-2}

    optim = (pgm.optim.Adam if grouped else pyro.optim.Adam)(optim_args)
    loss = GANLoss(D, critic_optim=optim if alternating else None)
    svi = pyro.infer.SVI(generator, lambda x: None, optim, loss=loss)
    g0, d0 = snapshot(G), snapshot(D)
    svi.step(x)
    assert not any(changed(G, g0)) and all(changed(D, d0))


def test_n_critic_5_makes_5_critic_updates_per_generator_update(device):
    G, D, generator, x = make_gan(device)
    optim = pgm.optim.Adam({"lr": 1e-3})
    loss = WGANGPLoss(D, n_critic=5, critic_optim=optim)
    svi = pyro.infer.SVI(generator, lambda x: None, optim, loss=loss)
    for step in (1, 2):
        svi.step(x)
        state = optim.get_state()
        d_steps = {float(v["step"]) for k, v in state.items() if k.startswith("discriminator")}
        g_steps = {float(v["step"]) for k, v in state.items() if k.startswith("generator")}
        assert d_steps == {5.0 * step} and g_steps == {1.0 * step}
    assert loss.critic_updates == 10


def test_weight_clipping_keeps_critic_weights_in_range(device):
    G, D, generator, x = make_gan(device)
    c = 0.01
    assert max(p.abs().max() for p in D.parameters()) > c  # default init is out of range
    optim = pyro.optim.RMSprop({"lr": 5e-2})
    svi = pyro.infer.SVI(generator, lambda x: None, optim, loss=WGANLoss(D, optim, c, n_critic=2))
    for _ in range(3):
        svi.step(x)
        weights = torch.cat([p.detach().flatten() for p in D.parameters()])
        assert weights.abs().max() <= c
        assert (weights.abs() == c).any()  # the clip was active (RMSprop's steps exceed c)


def test_non_finite_critic_update_is_refused(device):
    G, D, generator, x = make_gan(device)
    optim = pgm.optim.Adam({"lr": 1e-2})
    loss = GANLoss(D, critic_optim=optim, n_critic=2)
    pyro.infer.SVI(generator, lambda x: None, optim, loss=loss).step(x)  # registers D
    d0 = snapshot(D)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.warns(UserWarning, match="critic loss"):
        d_loss, _ = loss.loss_and_grads(generator, lambda x: None, bad)
    assert d_loss != d_loss  # NaN is reported, so fit's guard stops training
    assert not any(changed(D, d0))
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        pgm.fit(generator, lambda x: None, bad, loss=loss, optim=optim, epochs=1, progress=False)


def test_fit_checkpoints_and_resumes_both_players(tmp_path, device):
    def run(epochs, resume, folder):
        pyro.clear_param_store()
        G, D, generator, x = make_gan(device)
        optim = pgm.optim.Adam({"lr": 1e-2})
        loss = GANLoss(D, critic_optim=optim, n_critic=2)
        history = pgm.fit(
            generator, lambda x: None, x, loss=loss, optim=optim, epochs=epochs,
            batch_size=8, checkpoint_dir=folder, resume=resume, progress=False,
        )  # fmt: skip
        return history, snapshot(G), snapshot(D)

    straight, g_ref, d_ref = run(3, False, tmp_path / "a")
    run(2, False, tmp_path / "b")
    resumed, g, d = run(3, True, tmp_path / "b")
    assert list(straight.columns[:3]) == ["epoch", "loss_0", "loss_1"]
    for a, b in zip(g_ref + d_ref, g + d):
        assert torch.equal(a, b)
    assert resumed["loss_0"].tolist() == straight["loss_0"].tolist()


def test_bigan_trains_generator_encoder_and_discriminator(device):
    torch.manual_seed(0)
    G = nn.Linear(2, 3).double().to(device)
    E = nn.Linear(3, 4).double().to(device)
    D = ConcatSites(pgm.nn.MLP(5, [8], 1), ["x", "z"]).double().to(device)

    def model(x):
        pyro.module("generator", G)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Delta(G(z), event_dim=1), obs=x)

    def guide(x):
        pyro.module("encoder", E)
        loc, log_scale = E(x).split(2, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    x = torch.randn(16, 3, dtype=torch.float64, device=device)
    before = {m: snapshot(m) for m in (G, E, D)}
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), loss=BiGANLoss(D))
    svi.step(x)
    for m in (G, E, D):
        assert all(changed(m, before[m]))


def test_conditional_gan_sees_labels_through_a_delta_site(device):
    torch.manual_seed(0)
    G = pgm.nn.MLP(4, [8], 2).double().to(device)
    seen = []

    class Critic(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = ConcatSites(pgm.nn.MLP(5, [8], 1), ["x", "y"])

        def forward(self, values):
            seen.append(values)
            return self.net(values)

    def model(x, y):
        pyro.module("generator", G)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Delta(y, event_dim=1), obs=y)  # a label, shared by both sets
            z = pyro.sample("z", dist.Normal(x.new_zeros(1), 1.0).to_event(1))
            pyro.sample("x", dist.Delta(G(torch.cat([z, y], -1)), event_dim=1), obs=x)

    x = torch.randn(6, 2, dtype=torch.float64, device=device)
    y = nn.functional.one_hot(torch.arange(6, device=device) % 3, 3).double()
    loss = GANLoss(Critic().double().to(device))
    loss.loss_and_grads(model, lambda x, y: None, x, y)
    real, fake = seen
    assert set(real) == {"x", "y"} and torch.equal(real["y"], y) and torch.equal(fake["y"], y)
    assert torch.equal(real["x"], x) and not torch.equal(fake["x"], x)
    assert G[0].weight.grad is not None
