"""The Boltzmann recipes against exact answers: SGD's batch size and schedule, PCD on
bars-and-stripes by exact likelihood, the DBM's pretraining stack, its gradient and its bound
by enumeration after joint training."""

import math
import re
import warnings

import pyro
import pytest
import torch
from energy_helpers import random_rbm

import pyro_genmodels as pgm
from pyro_genmodels import fit
from pyro_genmodels.models.boltzmann_sgd import BoltzmannSGD
from pyro_genmodels.models.enumeration import binary_states


def bars_and_stripes(n=4, dtype=torch.float64):
    """The 2^(n+1) - 2 distinct n x n images whose rows are all equal or columns all equal."""
    rows = []
    for code in range(2**n):
        bits = torch.tensor([(code >> i) & 1 for i in range(n)], dtype=dtype)
        rows += [bits[:, None].expand(n, n).reshape(-1), bits[None, :].expand(n, n).reshape(-1)]
    return torch.unique(torch.stack(rows), dim=0)


def test_bars_and_stripes_has_30_patterns():
    assert bars_and_stripes().shape == (30, 16)


# ------------------------------------------------------------------ SGD and its batch size
def test_mismatched_batch_size_between_optimizer_and_loop_is_an_error():
    """rbm.sgd(batch_size=100) under fit(batch_size=50) (or 200) would rescale the rate per
    datapoint silently: both are refused at the first step, naming both numbers."""
    data = torch.bernoulli(torch.full((400, 6), 0.5, dtype=torch.float64))
    for loop in (50, 200):
        pyro.clear_param_store()
        rbm = random_rbm(6, 3, "cpu")
        before = rbm.W.detach().clone()
        with pytest.raises(ValueError, match=rf"rbm.sgd\(batch_size=100\).*has {loop} rows"):
            fit(rbm.model, rbm.guide, data, loss=pgm.infer.ContrastiveDivergenceLoss(),
                optim=rbm.sgd(lr=0.1, batch_size=100), epochs=1, batch_size=loop,
                progress=False)  # fmt: skip
        assert torch.equal(rbm.W.detach(), before)  # nothing was updated


def test_sgd_takes_its_batch_size_from_the_loop():
    """Without batch_size, the rate is per datapoint of each batch the model observed: the
    same run as with the matching batch_size (the last, smaller batch divided by its own size)."""
    data = torch.bernoulli(torch.full((90, 6), 0.5, dtype=torch.float64))
    weights = []
    for batch_size in (None, 40):
        pyro.clear_param_store()
        rbm = random_rbm(6, 3, "cpu")
        fit(rbm.model, rbm.guide, data[:80], loss=pgm.infer.ContrastiveDivergenceLoss(),
            optim=rbm.sgd(lr=0.1, batch_size=batch_size), epochs=2, batch_size=40,
            progress=False)  # fmt: skip
        weights.append(rbm.W.detach().clone())
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


def test_sgd_rate_decays_linearly_and_resumes_from_its_state():
    """ε_t = ε_0 + (ε_T - ε_0) t/T: three unit-gradient steps of rates 1, 0.5, 0; a fresh
    optimizer given the first's state continues the schedule."""
    w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = BoltzmannSGD([w], lr=1.0, final_lr=0.0, total_steps=2, batch_size=1)
    w.grad = -torch.ones(1, dtype=torch.float64)
    opt.step()
    state = opt.state_dict()
    again = BoltzmannSGD([w], lr=1.0, final_lr=0.0, total_steps=2, batch_size=1)
    again.load_state_dict(state)
    for _ in range(2):
        w.grad = -torch.ones(1, dtype=torch.float64)
        again.step()
    assert w.item() == pytest.approx(1.5)


# ------------------------------------------------------------------ RBM recipe, exactly scored
def test_pcd_recipe_learns_bars_and_stripes_without_collapsing():
    """The PCD recipe (one persistent chain per batch row, a rate decaying linearly to 0) on the
    30 4x4 bars-and-stripes images, scored by exact log-likelihood (16 hidden units
    enumerated): seed 0, rate 1.0 per datapoint, batches of 10, 30 epochs. The mean
    log-likelihood rises from the uniform's -11.09 past -6 (the optimum is log 1/30 = -3.40),
    is better at the end than after 10 epochs, and the mass does not collapse onto one
    pattern: none holds more than 20% and each keeps more than the uniform's 2^-16."""
    pats = bars_and_stripes()
    data = pats.repeat(10, 1)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    rbm = pgm.models.RBM(16, 16).double()
    recipe = pgm.infer.RBMRecipe(lr=1.0, batch_size=10, epochs=30)
    recipe.initialize(rbm, data)
    scores = []

    def exact(state):
        with torch.no_grad():
            scores.append(rbm.distribution().log_prob(pats))

    fit(rbm.model, rbm.guide, data, progress=False, callbacks=[exact],
        **recipe.fit_kwargs(rbm, data))  # fmt: skip
    means = [float(s.mean()) for s in scores]
    assert means[-1] > -6.0 and means[-1] > means[9] + 1.0, means
    probs = scores[-1].exp()
    assert float(probs.max()) < 0.2 and float(probs.min()) > 2.0**-16, probs


# ------------------------------------------------------------------ DBM
def test_pretraining_stack_doubles_and_halves_as_the_paper_states():
    """Salakhutdinov & Hinton: the bottom RBM's hiddens see 2·vW, the top RBM's visibles 2·hW
    (each stands in for the DBM layer's two neighbours); middle RBMs are plain and halved when
    copied; the bottom and top weights are copied as learned."""
    recipe = pgm.infer.DBMRecipe(pretrain_epochs=1, batch_size=20)
    assert [(s.up, s.down) for s in recipe.layers(pgm.models.DBM([6, 4, 3]))] == [(2, 1), (1, 2)]
    dbm = pgm.models.DBM([6, 5, 4, 3]).double()
    stack = recipe.layers(dbm)
    assert [(s.up, s.down) for s in stack] == [(2, 1), (1, 1), (1, 2)]
    x = torch.bernoulli(torch.full((3, 6), 0.5, dtype=torch.float64))
    s = stack[0]
    torch.testing.assert_close(s.hidden_probs(x), torch.sigmoid(2 * x @ s.W + s.c))
    h = torch.bernoulli(torch.full((3, 3), 0.5, dtype=torch.float64))
    t = stack[2]
    torch.testing.assert_close(t.visible_probs(h), torch.sigmoid(2 * h @ t.W.T + t.b))
    data = torch.bernoulli(torch.full((40, 6), 0.3, dtype=torch.float64))
    torch.manual_seed(0)
    recipe.pretrain(dbm, data)
    torch.manual_seed(0)  # the same draws: rebuild the trained stack and compare
    trained = recipe.layers(dbm)
    g = torch.Generator().manual_seed(0)
    x = data
    for l, layer in enumerate(trained, start=1):
        layer.b.copy_(pgm.infer.boltzmann_recipes._marginal_logits(x))
        recipe._train_layer(layer, x, g, sampled=l > 1, name=str(l))
        x = layer.hidden_probs(x)
    torch.testing.assert_close(dbm.W1.detach(), trained[0].W)
    torch.testing.assert_close(dbm.W2.detach(), 0.5 * trained[1].W)
    torch.testing.assert_close(dbm.W3.detach(), trained[2].W)
    torch.testing.assert_close(dbm.b0.detach(), trained[0].b)
    torch.testing.assert_close(dbm.b2.detach(), trained[1].c)


def tiny_dbm(seed=0, layers=(4, 3, 2)):
    torch.manual_seed(seed)
    dbm = pgm.models.DBM(list(layers), mean_field_steps=50).double()
    with torch.no_grad():
        for p in dbm.parameters():
            p.normal_(0, 0.8)
    return dbm


def joint_states(dbm):
    n = sum(dbm.layer_sizes)
    return list(binary_states(n, 0, 2**n, dbm.b0).split(dbm.layer_sizes, -1))


@pytest.mark.parametrize("layers", [(4, 3, 2), (2, 5, 2), (3, 2, 2, 2)])
def test_dbm_log_partition_enumerates_either_parity_exactly(layers, device):
    """Odd or even layers enumerated, whichever is cheaper: equal to the brute-force sum over
    every joint state; a plain tensor without a graph, and a differentiable one on request."""
    dbm = tiny_dbm(layers=layers).to(device)
    brute = torch.logsumexp(-dbm.energy(joint_states(dbm)), 0)
    log_z = dbm.log_partition()
    assert not log_z.requires_grad
    assert abs(float(log_z) - float(brute.detach())) < 1e-9
    grads = torch.autograd.grad(dbm.log_partition(differentiable=True), list(dbm.parameters()))
    for g, e in zip(grads, torch.autograd.grad(brute, list(dbm.parameters())), strict=True):
        torch.testing.assert_close(g, e)


def test_log_partition_is_a_plain_tensor():
    """float(rbm.log_partition()) gives no autograd warning (it used to require grad)."""
    rbm = pgm.models.RBM(6, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = float(rbm.log_partition())
    assert math.isfinite(value) and not rbm.log_partition().requires_grad


def test_dbm_loss_with_long_chains_has_the_exact_likelihood_gradient():
    """CD-∞: with 4000 chains run 40 sweeps from random states, DBMLoss's gradient equals the
    exact gradient of Σ_n F_q(v_n) + N log Z (log Z by enumeration) within 5 sd of the chains'
    Monte Carlo error per component (sd from the exact distribution; fails with
    probability < 1e-5 per component under a normal approximation)."""
    dbm = tiny_dbm(layers=(3, 2, 2))
    with torch.no_grad():
        for p in dbm.parameters():
            p.mul_(0.5)
    states = joint_states(dbm)
    params = list(dbm.parameters())
    v = binary_states(3, 0, 8, dbm.b0)[torch.tensor([1, 2, 6, 7])].repeat(5, 1)
    mu = dbm.mean_field(v)
    exact = torch.autograd.grad(
        dbm.variational_free_energy(mu).sum() + len(v) * dbm.log_partition(differentiable=True),
        params,
    )
    loss = pgm.infer.DBMLoss(num_chains=4000, k=40)
    torch.manual_seed(0)
    got = torch.autograd.grad(loss.differentiable_loss(dbm.model, dbm.guide, v), params)
    with torch.no_grad():
        p = torch.softmax(-dbm.energy(states), 0)
    per_state = [
        torch.autograd.grad(dbm.energy([s[i : i + 1] for s in states]).sum(), params)
        for i in range(len(p))
    ]
    for j, (g, e) in enumerate(zip(got, exact, strict=True)):
        stack = torch.stack([q[j] for q in per_state])
        w = p.reshape(-1, *[1] * (stack.dim() - 1))
        mean = (w * stack).sum(0)
        sd = ((w * (stack - mean) ** 2).sum(0) / 4000).sqrt() * len(v)
        assert ((g - e).abs() <= 5 * sd + 1e-9).all(), j


def test_dbm_bound_against_enumeration_after_joint_training():
    """After pretraining and joint training by the recipe on 60 rows, the mean-field bound
    (with the exact log Z) is below the exact log p(v) of every test row, and the gap is
    KL(q || p(h | v)) by enumeration; AIS agrees with the exact log Z within 0.1 nats."""
    data = torch.bernoulli(
        torch.tensor([0.9, 0.1, 0.8, 0.2, 0.7], dtype=torch.float64).expand(60, -1)
    )
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    dbm = pgm.models.DBM([5, 4, 3], mean_field_steps=50).double()
    recipe = pgm.infer.DBMRecipe(epochs=5, pretrain_epochs=5, batch_size=20, lr=0.05)
    recipe.pretrain(dbm, data)
    fit(dbm.model, dbm.guide, data, progress=False, **recipe.fit_kwargs(dbm, data))
    log_z = dbm.log_partition()
    states = joint_states(dbm)
    v = binary_states(5, 0, 32, dbm.b0)
    h1, h2 = states[1], states[2]
    with torch.no_grad():
        bound = dbm.elbo(v, log_z)
        mu = dbm.mean_field(v)
        for i in range(len(v)):
            keep = (states[0] == v[i]).all(-1)
            log_joint = -dbm.energy([states[0][keep], h1[keep], h2[keep]])
            exact = torch.logsumexp(log_joint, 0) - log_z
            log_q = torch.distributions.Bernoulli(mu[1][i]).log_prob(h1[keep]).sum(-1)
            log_q = log_q + torch.distributions.Bernoulli(mu[2][i]).log_prob(h2[keep]).sum(-1)
            kl = (log_q.exp() * (log_q - (log_joint - log_z - exact))).sum()
            assert float(bound[i]) <= float(exact) + 1e-10
            assert abs(float(exact - bound[i]) - float(kl)) < 1e-8
    torch.manual_seed(1)
    ais_log_z, se = pgm.infer.ais(dbm, num_chains=100, num_betas=2000, data=data)
    assert abs(float(ais_log_z - log_z)) < 0.1


def test_log_likelihood_names_an_ais_call_that_works_for_the_machine():
    """For an RBM the error names pgm.infer.ais(rbm, data=train) (it named ais(dist), which
    fails on a binary support), and that call scores the data."""
    rbm = pgm.models.RBM(30, 30)
    v = torch.bernoulli(torch.full((5, 30), 0.5))
    with pytest.raises(ValueError, match=re.escape("pgm.infer.ais(rbm, data=train)")):
        pgm.infer.log_likelihood(rbm.model, rbm.guide, v)
    log_z, se = pgm.infer.ais(rbm, num_chains=10, num_betas=50, data=v)
    assert torch.isfinite(rbm.distribution(log_normalizer=log_z).log_prob(v)).all()


def test_recipe_schedule_resumes_exactly(tmp_path):
    """fit(resume=True) continues the recipe's decaying rate and persistent chains: 1 epoch,
    then resumed to 3, ends bit-identical to 3 epochs straight."""
    data = torch.bernoulli(torch.full((120, 8), 0.4, dtype=torch.float64))
    recipe = pgm.infer.RBMRecipe(batch_size=40, epochs=3)

    def run(epochs, resume, seed):
        pyro.clear_param_store()
        rbm = random_rbm(8, 4, "cpu", seed=seed)
        kw = {**recipe.fit_kwargs(rbm, data), "epochs": epochs}
        fit(rbm.model, rbm.guide, data, seed=1, progress=False, checkpoint_dir=tmp_path,
            resume=resume, **kw)  # fmt: skip
        return rbm.W.detach().clone()

    ref = run(3, False, 0)
    for f in tmp_path.iterdir():
        f.unlink()
    run(1, False, 0)
    assert torch.equal(run(3, True, 5), ref)  # another init: everything from the checkpoint
