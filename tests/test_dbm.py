"""DBMs against enumeration: mean-field fixed point, ELBO, log Z, AIS, the PCD loss."""

import pyro
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels.infer.ais import run_ais
from pyro_genmodels.models.enumeration import binary_states


def random_dbm(layers, device, scale=0.8, seed=0):
    torch.manual_seed(seed)
    dbm = pgm.models.DBM(layers, mean_field_steps=50).to(device=device, dtype=torch.float64)
    with torch.no_grad():
        for p in dbm.parameters():
            p.normal_(0, scale)
    return dbm


def joint_states(dbm):
    """Every joint state as a list of per-layer tensors ``(S, n_l)``."""
    n = sum(dbm.layer_sizes)
    flat = binary_states(n, 0, 2**n, dbm.b0)
    return list(flat.split(dbm.layer_sizes, -1))


def exact_log_z(dbm):
    return torch.logsumexp(-dbm.energy(joint_states(dbm)), 0)


def test_log_partition_equals_full_enumeration(device):
    dbm = random_dbm([4, 3, 2], device)
    assert abs(float(dbm.log_partition() - exact_log_z(dbm).detach())) < 1e-9


def test_mean_field_is_a_fixed_point(device):
    dbm = random_dbm([5, 4, 3, 2], device)
    v = torch.bernoulli(torch.full((6, 5), 0.5, dtype=torch.float64, device=device))
    mu = dbm.mean_field(v, steps=200)
    weights, biases = dbm.layer_weights(), dbm.layer_biases()
    for l in range(1, len(mu)):
        update = torch.sigmoid(dbm.coupling_input(l, mu, weights) + biases[l])
        torch.testing.assert_close(mu[l], update, atol=1e-10, rtol=0)


@torch.no_grad()  # values only: no graph through the enumeration
def test_elbo_against_enumeration(device):
    """The bound equals Σ_h q(h)(-E(v,h)) - Σ q log q - log Z by enumeration, is below the exact
    log p(v), and is a local maximum over μ."""
    dbm = random_dbm([4, 3, 2], device)
    v = binary_states(4, 0, 16, dbm.b0)
    log_z = exact_log_z(dbm)
    elbo = dbm.elbo(v, log_z)
    mu = dbm.mean_field(v)
    hs = [binary_states(3, 0, 8, dbm.b0), binary_states(2, 0, 4, dbm.b0)]
    h1 = hs[0][:, None, :].expand(8, 4, 3).reshape(32, 3)
    h2 = hs[1][None, :, :].expand(8, 4, 2).reshape(32, 2)
    for i in range(16):
        vi = v[i].expand(32, 4)
        log_joint = -dbm.energy([vi, h1, h2])
        log_q = torch.distributions.Bernoulli(mu[1][i]).log_prob(h1).sum(
            -1
        ) + torch.distributions.Bernoulli(mu[2][i]).log_prob(h2).sum(-1)
        q = log_q.exp()
        by_enum = (q * (log_joint - log_q)).sum() - log_z
        assert abs(float(elbo[i] - by_enum)) < 1e-9
        exact = torch.logsumexp(log_joint, 0) - log_z
        assert float(elbo[i]) <= float(exact) + 1e-12
    # perturbing μ lowers the bound (fixed point of coordinate ascent = local maximum)
    for l in (1, 2):
        bumped = [m.clone() for m in mu]
        bumped[l] = (bumped[l] + 0.05).clamp(0.01, 0.99)
        lower = -dbm.variational_free_energy(bumped) - log_z
        assert (lower <= elbo + 1e-12).all()


def test_ais_matches_exact_log_z(device):
    """3 stderr + 0.1 nats; fails with probability < 0.3% (normal approximation)."""
    dbm = random_dbm([8, 6, 4], device, scale=0.5)
    exact = float(dbm.log_partition())
    torch.manual_seed(5)
    betas = torch.linspace(0, 1, 2001, dtype=torch.float64, device=device)
    result = run_ais(pgm.infer.BoltzmannAnnealingPath(dbm), betas, num_chains=100)
    err = abs(float(result.log_z) - exact)
    assert err < 0.1 and err < 3 * float(result.stderr) + 1e-3


def test_model_log_joint_is_minus_energy(device):
    """The Pyro model's log joint is -E(v, h) (log Z omitted), whatever h."""
    dbm = random_dbm([4, 3, 2], device)
    states = joint_states(dbm)
    idx = torch.tensor([0, 17, 200, 511], device=device)
    v, h1, h2 = (s[idx] for s in states)
    cond = pyro.poutine.condition(dbm.model, data={"h1": h1, "h2": h2})
    trace = pyro.poutine.trace(cond).get_trace(v)
    trace.compute_log_prob()
    total = sum(s["log_prob"] for s in trace.nodes.values() if s["type"] == "sample")
    torch.testing.assert_close(total, -dbm.energy([v, h1, h2]))


def test_dbm_loss_gradient_is_minus_elbo_gradient_plus_chains(device):
    """Positive phase ∇[E(v, μ) - H(μ)]; negative: the chains' mean ∇E after the loss's sweep."""
    dbm = random_dbm([4, 3, 2], device)
    v = binary_states(4, 0, 16, dbm.b0)
    loss = pgm.infer.DBMLoss(num_chains=7, k=1)
    torch.manual_seed(0)
    value = loss.differentiable_loss(dbm.model, dbm.guide, v)
    chains = loss.chains
    params = list(dbm.parameters())
    got = torch.autograd.grad(value, params)
    mu = dbm.mean_field(v)
    ref = dbm.variational_free_energy(mu).sum() - len(v) * dbm.energy(chains).mean()
    for g, r in zip(got, torch.autograd.grad(ref, params), strict=True):
        torch.testing.assert_close(g, r)
    state = loss.state_dict()
    other = pgm.infer.DBMLoss(num_chains=7)
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(other.chains, chains, strict=True))


def test_recipe_pretrains_and_fits_to_a_bound_better_than_uniform():
    data = pgm.data.load("digits", binarize=True, dtype=torch.float64)
    dbm = pgm.models.DBM([64, 16, 8]).double()
    recipe = pgm.infer.DBMRecipe(epochs=3, pretrain_epochs=3, batch_size=50)
    recipe.pretrain(dbm, data.train[:500])
    pgm.fit(dbm.model, dbm.guide, data.train[:500], progress=False,
            **recipe.fit_kwargs(dbm, data.train[:500]))  # fmt: skip
    torch.manual_seed(0)
    log_z, se = pgm.infer.ais(dbm, num_chains=50, num_betas=1000, data=data.train)
    bound = dbm.elbo(data.test, log_z).detach().mean()
    assert float(bound) > -64 * 0.6931  # better than the uniform distribution's log p = -64 log 2


@pytest.mark.parametrize(
    "make, match, error",
    [
        (lambda: pgm.models.DBM([10, 5]), "two|>= 2", ValueError),
        (lambda: pgm.models.DBM([10, 0, 3]), r"layers\[1\]", ValueError),
        (lambda: pgm.models.DBM([4, 3, 2]).model(torch.full((2, 4), 0.3)), "binary", ValueError),
        (lambda: pgm.models.DBM([4, 3, 2]).guide(torch.ones(2, 5)), r"shape \(\*, 4\)", ValueError),
        (lambda: pgm.models.DBM([30, 30, 30]).log_partition(), "ais", ValueError),
        (
            lambda: pgm.infer.DBMLoss().loss(lambda v: None, lambda v: None, torch.ones(2, 4)),
            "dbm.model",
            ValueError,
        ),
    ],
)
def test_bad_input_raises_clearly(make, match, error):
    with pytest.raises(error, match=match):
        make()
