"""RBMs against enumeration: normalization, free energy, conditionals, AIS, CD/PCD gradients."""

import math
import re

import numpy as np
import pyro
import pytest
import torch
from energy_helpers import random_rbm
from pyro.distributions.testing.gof import multinomial_goodness_of_fit

import pyro_genmodels as pgm
from pyro_genmodels import fit
from pyro_genmodels.infer.ais import ais, run_ais
from pyro_genmodels.infer.contrastive import ContrastiveDivergenceLoss
from pyro_genmodels.models.enumeration import binary_states

GOF_FAILURE_RATE = 1e-3  # each chi-square test fails with this probability under the null


def all_states(n, like):
    return binary_states(n, 0, 2**n, like)


def brute_log_z(rbm):
    """log Σ_v Σ_h exp(-E(v, h)) over every joint state (Bernoulli visibles)."""
    v, h = all_states(rbm.num_visible, rbm.W), all_states(rbm.num_hidden, rbm.W)
    e = rbm.energy(v[:, None, :].expand(-1, len(h), -1), h[None].expand(len(v), -1, -1))
    return torch.logsumexp(-e.flatten(), 0)


@pytest.mark.parametrize("D, H", [(6, 4), (4, 7)])  # enumerates the hiddens / the visibles
def test_log_prob_normalizes_over_all_states(D, H, device):
    rbm = random_rbm(D, H, device)
    d = rbm.distribution()
    assert d.normalized
    total = d.log_prob(all_states(D, rbm.W)).exp().sum()
    assert abs(float(total.detach()) - 1) < 1e-6
    assert abs(float((d.log_normalizer - brute_log_z(rbm)).detach())) < 1e-9


def test_gaussian_rbm_normalizes_by_quadrature(device):
    rbm = random_rbm(2, 3, device, "gaussian", scale=0.5)
    sigma = torch.exp(0.5 * rbm.log_var.detach())
    lo, hi = rbm.visible_bias.detach() - 12 * sigma - 3, rbm.visible_bias.detach() + 12 * sigma + 3
    grids = [
        torch.linspace(float(a), float(b), 1201, dtype=torch.float64, device=device)
        for a, b in zip(lo, hi)
    ]
    v = torch.stack(torch.meshgrid(*grids, indexing="ij"), -1).reshape(-1, 2)
    cell = (grids[0][1] - grids[0][0]) * (grids[1][1] - grids[1][0])
    total = rbm.distribution().log_prob(v).exp().sum() * cell
    assert abs(float(total.detach()) - 1) < 1e-6


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_free_energy_equals_enumeration_over_hiddens(visible, device):
    rbm = random_rbm(5, 4, device, visible)
    v = (
        all_states(5, rbm.W)
        if visible == "bernoulli"
        else torch.randn(7, 5, dtype=torch.float64, device=device)
    )
    h = all_states(4, rbm.W)
    e = rbm.energy(v[:, None, :].expand(-1, len(h), -1), h[None].expand(len(v), -1, -1))
    torch.testing.assert_close(rbm.free_energy(v), -torch.logsumexp(-e, 1), rtol=0, atol=1e-10)


def test_hidden_conditional_matches_the_joint(device):
    rbm = random_rbm(5, 3, device, "gaussian")
    v = torch.randn(4, 5, dtype=torch.float64, device=device)
    h = all_states(3, rbm.W)
    e = rbm.energy(v[:, None, :].expand(-1, 8, -1), h[None].expand(4, -1, -1))
    exact = torch.log_softmax(-e, 1)
    torch.testing.assert_close(
        rbm.hidden_conditional(v[:, None, :]).log_prob(h), exact, atol=1e-10, rtol=0
    )


def test_gaussian_visible_conditional_has_the_stated_mean_and_sigma(device):
    rbm = random_rbm(4, 3, device, "gaussian")
    h = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64, device=device)
    d = rbm.visible_conditional(h)
    mean = rbm.visible_bias + rbm.W @ h
    sigma = torch.exp(0.5 * rbm.log_var)
    torch.testing.assert_close(d.base_dist.loc, mean)
    torch.testing.assert_close(d.base_dist.scale, sigma)
    # pins both against the energy: log p(v1|h) - log p(v2|h) = E(v2, h) - E(v1, h)
    v1, v2 = torch.randn(2, 6, 4, dtype=torch.float64, device=device)
    torch.testing.assert_close(
        d.log_prob(v1) - d.log_prob(v2),
        rbm.energy(v2, h.expand(6, -1)) - rbm.energy(v1, h.expand(6, -1)),
    )
    # the Gibbs sweep draws v (not its mean): sample mean and sd given a clamped h
    states = [torch.zeros(20000, 4, dtype=torch.float64, device=device), h.expand(20000, -1)]
    draws = rbm.resample_layer(states, 0)
    se = sigma / math.sqrt(20000)
    assert ((draws.mean(0) - mean).abs() < 5 * se).all()
    assert ((draws.std(0) / sigma - 1).abs() < 5 / math.sqrt(2 * 20000)).all()


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_ais_matches_exact_log_z(visible, device):
    """Fails with probability < 0.3% (3 stderr, normal approximation) per model."""
    rbm = random_rbm(20, 10, device, visible, scale=0.3 if visible == "bernoulli" else 0.2)
    exact = float(rbm.log_partition().detach())
    data = (
        torch.bernoulli(torch.sigmoid(rbm.visible_bias.detach()).expand(300, -1))
        if visible == "bernoulli"
        else None
    )
    torch.manual_seed(1)
    betas = torch.linspace(0, 1, 2001, dtype=torch.float64, device=device)
    result = run_ais(pgm.infer.BoltzmannAnnealingPath(rbm, data=data), betas, num_chains=100)
    err = abs(float(result.log_z) - exact)
    assert err < 0.1
    assert err < 3 * float(result.stderr) + 1e-3
    log_z, se = ais(rbm, num_chains=50, betas=betas, data=data)  # the generic entry point
    assert abs(float(log_z) - exact) < 0.1


def test_salakhutdinov_murray_schedule():
    betas = pgm.infer.salakhutdinov_murray_betas()
    steps = betas.diff()
    assert len(betas) == 14501 and float(betas[0]) == 0 and float(betas[-1]) == 1
    np.testing.assert_allclose(steps[:500].numpy(), 1e-3, rtol=1e-9)
    np.testing.assert_allclose(steps[500:4500].numpy(), 1e-4, rtol=1e-6)
    np.testing.assert_allclose(steps[4500:].numpy(), 1e-5, rtol=1e-4)


def test_block_gibbs_sampler_matches_the_exact_distribution(device):
    rbm = random_rbm(4, 3, device)
    exact = rbm.distribution().log_prob(all_states(4, rbm.W)).exp().detach()
    torch.manual_seed(2)
    draws = rbm.distribution(num_steps=30).sample((4000,))  # 4000 independent chains
    counts = torch.bincount(
        (draws * 2 ** torch.arange(4, device=device)).sum(-1).long(), minlength=16
    )
    assert multinomial_goodness_of_fit(exact.cpu(), counts.cpu()) > GOF_FAILURE_RATE


def exact_grads(rbm, v):
    """∇θ Σ_n -log p(v_n) in closed form: Σ ∇F(v_n) + N ∇ log Z (log Z by enumeration)."""
    params = [rbm.W, rbm.visible_bias, rbm.hidden_bias]
    nll = rbm.free_energy(v).sum() + len(v) * rbm.log_partition(differentiable=True)
    return torch.autograd.grad(nll, params)


def grads_of(loss, rbm, v):
    value = loss.differentiable_loss(rbm.model, rbm.guide, v)
    return torch.autograd.grad(value, [rbm.W, rbm.visible_bias, rbm.hidden_bias])


def free_energy_grad_sd(rbm, n):
    """Per-component sd of Σ_{n draws} ∇F(x) for x ~ p exactly (for the tolerance)."""
    states = all_states(rbm.num_visible, rbm.W)
    p = rbm.distribution().log_prob(states).exp().detach()
    per = [
        torch.autograd.grad(rbm.free_energy(s), [rbm.W, rbm.visible_bias, rbm.hidden_bias])
        for s in states
    ]
    sds = []
    for i in range(3):
        g = torch.stack([q[i] for q in per])
        mean = (p.reshape(-1, *[1] * (g.dim() - 1)) * g).sum(0)
        var = (p.reshape(-1, *[1] * (g.dim() - 1)) * (g - mean) ** 2).sum(0)
        sds.append(var.sqrt() * math.sqrt(n))
    return sds


@pytest.mark.parametrize("persistent", [False, True])
def test_cd_infinity_gradient_is_the_likelihood_gradient(persistent, device):
    """Long chains (k=40) make CD and PCD unbiased; 5-sd tolerance per component."""
    rbm = random_rbm(4, 3, device)
    v = all_states(4, rbm.W)[torch.tensor([1, 5, 7, 12, 15])].repeat(600, 1)
    exact = exact_grads(rbm, v)
    loss = ContrastiveDivergenceLoss(
        k=40, persistent=persistent, buffer_size=len(v), reinit_prob=0.0
    )
    torch.manual_seed(3)
    if persistent:
        grads_of(loss, rbm, v)  # fills the buffer; the next step starts from it
    got = grads_of(loss, rbm, v)
    for g, e, sd in zip(got, exact, free_energy_grad_sd(rbm, len(v)), strict=True):
        assert ((g - e).abs() <= 5 * sd + 1e-9).all(), (g - e).abs().max()


def test_cd1_gradient_equals_its_closed_form(device):
    """E[CD-1 grad] = Σ_n [∇F(v_n) - Σ_v' T(v'|v_n) ∇F(v')], T one Gibbs sweep, by enumeration."""
    rbm = random_rbm(3, 2, device)
    states, hs = all_states(3, rbm.W), all_states(2, rbm.W)
    with torch.no_grad():
        ph = rbm.hidden_conditional(states[:, None, :]).log_prob(hs).exp()  # (8, 4)
        pv = rbm.visible_conditional(hs[:, None, :]).log_prob(states).exp()  # (4, 8)
    T = ph @ pv  # (8, 8)
    v_idx = torch.tensor([0, 3, 6, 7], device=device).repeat(1500)
    v = states[v_idx]
    weights = T[v_idx].sum(0)  # expected number of negatives in each state
    expected_neg = (weights * rbm.free_energy(states)).sum()
    closed = torch.autograd.grad(
        rbm.free_energy(v).sum() - expected_neg, [rbm.W, rbm.visible_bias, rbm.hidden_bias]
    )
    torch.manual_seed(4)
    got = grads_of(ContrastiveDivergenceLoss(k=1), rbm, v)
    for g, c, sd in zip(got, closed, free_energy_grad_sd(rbm, len(v)), strict=True):
        assert ((g - c).abs() <= 5 * sd + 1e-9).all()


def test_pcd_resume_is_exact(tmp_path):
    data = pgm.data.load("digits", binarize=True, dtype=torch.float64).train[:200]
    kwargs = dict(epochs=3, batch_size=50, seed=1, progress=False)

    def run(epochs, resume, seed):
        pyro.clear_param_store()
        rbm = random_rbm(64, 8, "cpu", seed=seed)
        loss = ContrastiveDivergenceLoss(k=2, persistent=True, buffer_size=50, reinit_prob=0.05)
        hist = fit(rbm.model, rbm.guide, data, loss=loss, optim=rbm.sgd(lr=0.05),
                   checkpoint_dir=tmp_path if epochs < 3 or resume else None,
                   resume=resume, **{**kwargs, "epochs": epochs})  # fmt: skip
        return hist, {k: v.detach().clone() for k, v in pyro.get_param_store().items()}, loss

    ref, ref_params, ref_loss = run(3, False, 0)
    run(1, False, 0)
    resumed, params, loss = run(3, True, 99)  # different init: all must come from the checkpoint
    np.testing.assert_array_equal(resumed["loss"].to_numpy(), ref["loss"].to_numpy())
    for k in ref_params:
        assert torch.equal(params[k], ref_params[k]), k
    assert torch.equal(loss.state_dict()["buffer.v"], ref_loss.state_dict()["buffer.v"])


@pytest.mark.parametrize("mu", [0.5, 0.0])
def test_sgd_applies_momentum_and_weight_decay_to_w_only(mu):
    """Two steps of Δθ = μ Δθ - lr (mean gradient + decay θ [W only]) on Σ_n F(v_n); without
    momentum the optimizer takes its two-pass form θ ← (1 − lr·decay)θ − (lr/B)g."""
    rbm = random_rbm(3, 2, "cpu")
    v = torch.ones(10, 3, dtype=torch.float64)
    lr, decay = 0.1, 0.01

    def loss(model, guide, v):
        return rbm(v).sum()  # forward = F, through the PyroModule: registers the parameters

    def mean_grads(W, b, c):
        W, b, c = (t.clone().requires_grad_() for t in (W, b, c))
        f = -(v @ b) - torch.nn.functional.softplus(v @ W + c).sum(-1)
        return torch.autograd.grad(f.mean(), [W, b, c])

    W, b, c = (t.detach().clone() for t in (rbm.W, rbm.visible_bias, rbm.hidden_bias))
    optim = rbm.sgd(lr=lr, momentum=mu, weight_decay=decay, batch_size=10)
    svi = pyro.infer.SVI(rbm.model, rbm.guide, optim, loss=loss)
    buf_W = buf_b = buf_c = 0.0
    for _ in range(2):
        svi.step(v)
        gW, gb, gc = mean_grads(W, b, c)
        buf_W, buf_b, buf_c = mu * buf_W + gW + decay * W, mu * buf_b + gb, mu * buf_c + gc
        W, b, c = W - lr * buf_W, b - lr * buf_b, c - lr * buf_c
    torch.testing.assert_close(rbm.W.detach(), W)
    torch.testing.assert_close(rbm.visible_bias.detach(), b)


@pytest.mark.parametrize(
    "make, match, error",
    [
        (lambda r: r.model(torch.full((2, 6), 0.5)), "binary", ValueError),
        (lambda r: r.model(torch.ones(2, 5)), r"shape \(\*, 6\)", ValueError),
        (lambda r: r.model([[0.0] * 6]), "torch.Tensor", TypeError),
        (
            lambda r: pgm.models.RBM(6, 3, "gaussian").model(torch.tensor([[float("nan")] * 6])),
            "finite",
            ValueError,
        ),
        (lambda r: pgm.models.RBM(6, 0), "num_hidden", ValueError),
        (lambda r: pgm.models.RBM(6, 3, "poisson"), "visible", ValueError),
        (lambda r: pgm.models.RBM(30, 30).log_partition(), "ais", ValueError),
        (lambda r: r.visible_conditional(torch.ones(2)), "h must", ValueError),
    ],
)
def test_bad_input_raises_clearly(make, match, error):
    rbm = pgm.models.RBM(6, 3)
    with pytest.raises(error, match=match):
        make(rbm)


def test_large_rbm_is_unnormalized_without_a_log_normalizer():
    rbm = pgm.models.RBM(30, 30)
    assert not rbm.distribution().normalized
    assert rbm.distribution(log_normalizer=torch.tensor(5.0)).normalized


def _no_enumeration(*args, **kwargs):
    raise AssertionError("the exact enumeration started; it should have been refused first")


@pytest.mark.parametrize(
    "make, layer",
    [
        (lambda: pgm.models.RBM(100000, 20), "the 20 hidden units of RBM(100000, 20)"),  # 2.2e12
        (lambda: pgm.models.RBM(21, 2000), "the 21 visible units of RBM(21, 2000)"),
        (lambda: pgm.models.RBM(2000, 21, "gaussian"), "the 21 hidden units"),
        (lambda: pgm.models.DBM([10, 100000, 10]), "the 20 units of the even layers"),
        (lambda: pgm.models.DBM([30, 30, 30]), "the 30 units of the odd layers"),
    ],
)
def test_exact_log_z_too_dear_is_refused_before_any_work(make, layer, monkeypatch):
    """The exact path is chosen by its cost 2^n · m · (n + 1), not by the unit count: machines
    whose cheaper half is wide, or whose other half is very wide, are refused before
    enumerating (RBM(100000, 20) allocated 6.5 GB chunks), naming AIS; distribution() is then
    unnormalized."""
    monkeypatch.setattr("pyro_genmodels.models.layered.enumerate_logsumexp", _no_enumeration)
    machine = make()
    with pytest.raises(ValueError, match=re.escape(f"exact log Z enumerates {layer}")) as err:
        machine.log_partition()
    assert "EXACT_COST_BUDGET" in str(err.value) and "pgm.infer.ais(" in str(err.value)
    if isinstance(machine, pgm.models.RBM):
        assert not machine.exact_available and not machine.distribution().normalized


@pytest.mark.parametrize(
    "make, plan",
    [
        (lambda: pgm.models.RBM(784, 20), ("hidden", 20, 784)),  # 1.7e10: about 4 s
        (lambda: pgm.models.RBM(20, 784), ("visible", 20, 784)),
        (lambda: pgm.models.RBM(784, 20, "gaussian"), ("hidden", 20, 784)),
        (lambda: pgm.models.DBM([64, 16, 16]), ("odd layers", 16, 80)),  # 2^16, not 2^80
        (lambda: pgm.models.DBM([784, 20, 500]), ("odd layers", 20, 1284)),
    ],
)
def test_every_machine_with_20_units_in_its_cheaper_half_is_exact(make, plan, monkeypatch):
    """``log_partition()`` accepts (and enumerates) the cheaper half of these machines; the
    enumeration itself is replaced by a recorder here (it takes seconds at 784 x 2^20), and a
    DBM whose odd layers are few is checked against brute force below."""
    calls = []

    def record(fn, n, like, width=1):
        calls.append((n, width))
        return like.new_zeros(())

    monkeypatch.setattr("pyro_genmodels.models.layered.enumerate_logsumexp", record)
    machine = make()
    assert machine.enumeration_plan() == plan
    machine.log_partition()
    assert calls == [plan[1:]]


@pytest.mark.parametrize(
    "D, H, layer", [(6, 4, "hidden"), (4, 7, "visible"), (3, 9, "visible"), (9, 3, "hidden")]
)
def test_exact_log_z_enumerates_the_cheaper_layer_in_bounded_chunks(
    D, H, layer, monkeypatch, device
):
    """The cheaper layer is enumerated; with chunks of one state (CHUNK_ELEMENTS below the
    width) log Z still equals brute force over every joint state (v, h)."""
    rbm = random_rbm(D, H, device)
    assert rbm.enumeration_plan()[0] == layer
    monkeypatch.setattr("pyro_genmodels.models.enumeration.CHUNK_ELEMENTS", 2)
    with torch.no_grad():
        assert abs(float(rbm.log_partition() - brute_log_z(rbm))) < 1e-9


@pytest.mark.parametrize("D, H, layer", [(2, 3000, "visible"), (3000, 2, "hidden")])
def test_wide_machines_with_a_small_layer_stay_exact(D, H, layer, monkeypatch, device):
    """The cost, not the unit count, decides: 2^2 states x 3000 units is cheap. Chunks of one
    state give the same log Z as the default chunking."""
    rbm = random_rbm(D, H, device, scale=0.05)
    assert rbm.exact_available and rbm.enumeration_plan()[0] == layer
    with torch.no_grad():
        default = rbm.log_partition()
        monkeypatch.setattr("pyro_genmodels.models.enumeration.CHUNK_ELEMENTS", 2)
        assert abs(float(rbm.log_partition() - default)) < 1e-9
        assert rbm.distribution().normalized
