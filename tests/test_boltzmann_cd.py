"""CD's sampled-hidden form against enumeration, and AIS's default schedule for RBMs/DBMs."""

import pyro
import pytest
import torch
from energy_helpers import random_rbm

import pyro_genmodels as pgm
from pyro_genmodels.infer.ais import ais, run_ais
from pyro_genmodels.infer.contrastive import ContrastiveDivergenceLoss
from pyro_genmodels.models.enumeration import binary_states


def grads_of(loss, rbm, v):
    value = loss.differentiable_loss(rbm.model, rbm.guide, v)
    return torch.autograd.grad(value, [rbm.W, rbm.visible_bias, rbm.hidden_bias])


def energy_grads(v, h):
    """``∇θ E(v, h)`` for ``θ = (W, b, c)``: ``(-v hᵀ, -v, -h)``, per row."""
    return [-(v[..., :, None] * h[..., None, :]), -v, -h]


def test_sampled_hidden_cd1_has_the_free_energy_expected_gradient(device):
    """E[∇(E(v⁺,h⁺) − E(v⁻,h⁻))] over h⁺ ~ p(h|v⁺), v⁻ ~ T(·|v⁺), h⁻ ~ p(h|v⁻), enumerated,
    equals the free-energy CD-1 gradient Σ_n [∇F(v_n) − Σ_v' T(v'|v_n) ∇F(v')] to 1e-10; the
    loss's Monte Carlo gradient is within 5 sd of it (sd by enumeration; < 1e-5 failures)."""
    rbm = random_rbm(3, 2, device)
    params = [rbm.W, rbm.visible_bias, rbm.hidden_bias]
    vs, hs = binary_states(3, 0, 8, rbm.W), binary_states(2, 0, 4, rbm.W)
    with torch.no_grad():
        ph = rbm.hidden_conditional(vs[:, None, :]).log_prob(hs).exp()  # (8 v, 4 h)
        pv = rbm.visible_conditional(hs[:, None, :]).log_prob(vs).exp()  # (4 h, 8 v)
    T = ph @ pv  # one sweep v -> h -> v'
    v_idx = torch.tensor([0, 3, 6, 7], device=device).repeat(1500)
    v = vs[v_idx]
    closed = torch.autograd.grad(
        rbm.free_energy(v).sum() - (T[v_idx].sum(0) * rbm.free_energy(vs)).sum(), params
    )
    # per-datapoint gradient of the sampled form for every (h+, v-, h-), datapoint state u
    means, variances = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
    for u in v_idx.unique():
        weight = float((v_idx == u).sum())
        pos = energy_grads(vs[u].expand(4, -1), hs)  # over h+
        neg = energy_grads(vs[:, None, :].expand(8, 4, 3), hs.expand(8, 4, 2))  # over (v-, h-)
        p_pos = ph[u]  # (4,)
        p_neg = T[u][:, None] * ph  # (8, 4)
        for i in range(3):
            shape = pos[i].shape[1:]
            g = pos[i][:, None, None] - neg[i][None]  # (4, 8, 4, *shape)
            p = (p_pos[:, None, None] * p_neg[None]).reshape(4, 8, 4, *[1] * len(shape))
            mean = (p * g).sum((0, 1, 2))
            means[i] += weight * mean
            variances[i] += weight * (p * (g - mean) ** 2).sum((0, 1, 2))
    for m, c in zip(means, closed, strict=True):
        assert torch.allclose(m, c, rtol=0, atol=1e-10)
    torch.manual_seed(4)
    got = grads_of(ContrastiveDivergenceLoss(k=1, free_energy=False), rbm, v)
    for g, c, var in zip(got, closed, variances, strict=True):
        assert ((g - c).abs() <= 5 * var.sqrt() + 1e-9).all(), ((g - c).abs() / var.sqrt()).max()


def test_sampled_hidden_pcd_trains_and_rejects_hiddenless_energies(device):
    rbm = random_rbm(4, 3, device, visible="gaussian")
    loss = ContrastiveDivergenceLoss(k=2, persistent=True, buffer_size=8, free_energy=False)
    v = torch.randn(8, 4, dtype=torch.float64, device=device)
    for _ in range(2):
        grads = grads_of(loss, rbm, v)
    assert all(torch.isfinite(g).all() for g in grads)
    energy = torch.nn.Linear(2, 1).to(device=device, dtype=torch.float64)

    def model(x):
        pyro.module("energy", energy)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", pgm.distributions.EnergyDistribution(energy, (2,)), obs=x)

    sampler = pgm.infer.LangevinSampler(0.01)
    bad = ContrastiveDivergenceLoss(sampler=sampler, free_energy=False)
    x = torch.randn(4, 2, dtype=torch.float64, device=device)
    with pytest.raises(ValueError, match="free_energy=False.*hidden units.*site 'x'"):
        bad.loss(model, lambda x: None, x)
    with pytest.raises(TypeError, match="free_energy must be a bool"):
        ContrastiveDivergenceLoss(free_energy=1)


@pytest.mark.parametrize("free_energy", [True, False])
def test_both_cd_forms_train_the_rbm_parameters_under_svi_and_fit(free_energy, device):
    """Both forms register W, b, c in Pyro's param store: one SVI step moves W, as does fit."""
    rbm = random_rbm(6, 3, device)
    v = torch.bernoulli(torch.full((16, 6), 0.5, dtype=torch.float64, device=device))
    svi = pyro.infer.SVI(
        rbm.model,
        rbm.guide,
        pyro.optim.Adam({"lr": 1e-2}),
        ContrastiveDivergenceLoss(free_energy=free_energy),
    )
    w = rbm.W.detach().clone()
    assert torch.isfinite(torch.tensor(svi.step(v)))
    assert set(pyro.get_param_store().keys()) == {"W", "visible_bias", "hidden_bias"}
    assert (rbm.W.detach() - w).abs().max() > 1e-4  # Adam moves every entry by ~lr
    pyro.clear_param_store()
    w = rbm.W.detach().clone()
    history = pgm.fit(
        rbm.model,
        rbm.guide,
        v,
        loss=ContrastiveDivergenceLoss(free_energy=free_energy),
        optim=pyro.optim.Adam({"lr": 1e-2}),
        epochs=2,
        batch_size=8,
        progress=False,
    )
    assert len(history) == 2 and (rbm.W.detach() - w).abs().max() > 1e-4


@pytest.mark.parametrize("machine", ["rbm", "dbm"])
def test_ais_defaults_to_the_salakhutdinov_murray_schedule(machine, device):
    """Without betas, ais() anneals on path.default_betas(num_betas): same draws, same log Z."""
    torch.manual_seed(0)
    if machine == "rbm":
        m = random_rbm(5, 3, device)
    else:
        m = pgm.models.DBM([5, 3, 2]).to(device=device, dtype=torch.float64)
    data = torch.bernoulli(torch.full((50, 5), 0.3, dtype=torch.float64, device=device))
    path = pgm.infer.BoltzmannAnnealingPath(m, data=data)
    cases = [(290, 291)] + ([(None, 14501)] if machine == "rbm" else [])  # 14 500 steps: ~4 s
    for num_betas, expected_len in cases:
        betas = path.default_betas() if num_betas is None else path.default_betas(num_betas)
        assert len(betas) == expected_len
        torch.manual_seed(1)
        ref = run_ais(pgm.infer.BoltzmannAnnealingPath(m, data=data), betas, num_chains=3)
        torch.manual_seed(1)
        log_z, se = ais(m, num_chains=3, num_betas=num_betas, data=data)
        assert torch.equal(log_z, ref.log_z) and torch.equal(se, ref.stderr)
    steps = path.default_betas(290).diff()
    assert torch.allclose(steps[:10], torch.full_like(steps[:10], 0.05))  # 1e-3 · 14500/290


@pytest.mark.parametrize("persistent", [False, True])
def test_cd_loss_and_grads_closed_form_equals_autograd(persistent, device):
    """``loss_and_grads`` differentiates a Bernoulli RBM's contrast in closed form; from the
    same seed it gives the value and gradients that autograd gives on ``differentiable_loss``
    (to 1e-10 in float64), and the same persistent chains."""
    rbm = random_rbm(7, 4, device)
    v = torch.bernoulli(torch.full((12, 7), 0.5, dtype=torch.float64, device=device))
    params = [rbm.W, rbm.visible_bias, rbm.hidden_bias]
    results = []
    for closed in (True, False):
        loss = ContrastiveDivergenceLoss(k=2, persistent=persistent)
        torch.manual_seed(3)
        for _ in range(2):  # a second step starts from the persistent chains
            for p in params:
                p.grad = None
            if closed:
                value = loss.loss_and_grads(rbm.model, rbm.guide, v)
            else:
                tensor = loss.differentiable_loss(rbm.model, rbm.guide, v)
                tensor.backward()
                value = tensor.item()
        buffer = loss.state_dict().get("buffer.v")
        results.append((value, [p.grad.clone() for p in params], buffer))
    (v1, g1, b1), (v2, g2, b2) = results
    assert v1 == pytest.approx(v2, abs=1e-10)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-10)
    assert (b1 is None) == (b2 is None) and (b1 is None or torch.equal(b1, b2))


def test_contrast_backward_scale_and_its_fallbacks(device):
    """A number scales value and gradients; a per-row scale and Gaussian visibles return None
    (the loss then differentiates the free energy by autograd) and touch no gradient."""
    rbm = random_rbm(5, 3, device)
    x_pos = torch.bernoulli(torch.full((6, 5), 0.5, dtype=torch.float64, device=device))
    x_neg = torch.bernoulli(torch.full((6, 5), 0.5, dtype=torch.float64, device=device))
    params = [rbm.W, rbm.visible_bias, rbm.hidden_bias]
    value = rbm.contrast_backward(x_pos, x_neg, 2.5)
    closed = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    expected = 2.5 * (rbm.free_energy(x_pos).sum() - rbm.free_energy(x_neg).sum())
    expected.backward()
    assert float(value) == pytest.approx(expected.item(), abs=1e-10)
    assert all(torch.allclose(a, p.grad, atol=1e-10) for a, p in zip(closed, params))
    for p in params:
        p.grad = None
    assert rbm.contrast_backward(x_pos, x_neg, torch.ones(6, dtype=x_pos.dtype)) is None
    gaussian = random_rbm(5, 3, device, visible="gaussian")
    assert gaussian.contrast_backward(x_pos, x_neg) is None
    assert all(p.grad is None for p in params) and gaussian.W.grad is None


def test_contrast_backward_under_autocast_keeps_the_parameters_dtype():
    """Under ``fit(precision="bf16")``'s autocast the closed form still computes in float32:
    the same value and gradients as without it."""
    torch.manual_seed(0)
    rbm = pgm.models.RBM(6, 3)
    v = torch.bernoulli(torch.full((8, 6), 0.5))
    results = []
    for enabled in (False, True):
        for p in (rbm.W, rbm.visible_bias, rbm.hidden_bias):
            p.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            value = rbm.contrast_backward(v, 1 - v)
        results.append((value, rbm.W.grad.clone()))
    (v1, g1), (v2, g2) = results
    assert g2.dtype == torch.float32 and torch.equal(g1, g2) and torch.equal(v1, v2)


@pytest.mark.parametrize(
    "x_pos, error, match",
    [
        (torch.zeros(4, 12, dtype=torch.float64), ValueError, "x_pos must have shape"),
        (torch.zeros(4, 6, dtype=torch.float32), TypeError, "x_pos must have the parameters"),
        ([[0.0] * 6], TypeError, "x_pos must be a torch.Tensor"),
    ],
)
def test_contrast_backward_refuses_wrong_shapes_dtypes_and_types(x_pos, error, match):
    """A (4, 12) batch for 6 visibles is refused (reshaped, it would pass as (8, 6)), as are
    another dtype and a list, each naming the argument."""
    rbm = random_rbm(6, 3, torch.device("cpu"))
    with pytest.raises(error, match=match):
        rbm.contrast_backward(x_pos, torch.zeros(4, 6, dtype=torch.float64))
