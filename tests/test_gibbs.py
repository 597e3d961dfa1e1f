"""The Gibbs kernels under pyro.infer.MCMC and ArviZ, against exact distributions."""

import warnings

import arviz as az
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.testing.gof import multinomial_goodness_of_fit

import pyro_genmodels as pgm
from pyro_genmodels.models.enumeration import binary_states

GOF_FAILURE_RATE = 1e-3  # per chi-square test under the null


def random_rbm(device, seed=0):
    """The same machine on every device: its parameters are drawn on the CPU, then moved (a
    device's own random stream would give another machine, whose least likely joint state
    can be too rare for the chi-square test at 1000 chains)."""
    torch.manual_seed(seed)
    rbm = pgm.models.RBM(3, 2).to(dtype=torch.float64)
    with torch.no_grad():
        for p in rbm.parameters():
            p.normal_(0, 1)
    return rbm.to(device)


def code(bits):
    return (bits * 2 ** torch.arange(bits.shape[-1], device=bits.device)).sum(-1).long()


def test_block_gibbs_mcmc_matches_the_exact_joint(device):
    """1000 chains as a batch; the last draw of each is an independent draw from p(v, h)."""
    rbm = random_rbm(device)
    v, h = binary_states(3, 0, 8, rbm.W), binary_states(2, 0, 4, rbm.W)
    joint = -rbm.energy(v[:, None, :].expand(8, 4, 3), h[None].expand(8, 4, 2)).detach()
    exact = torch.softmax(joint.flatten(), 0)  # index 4 * code(v) + code(h)
    mcmc = pyro.infer.MCMC(
        pgm.infer.BlockGibbs(rbm, batch_size=1000), num_samples=1, warmup_steps=25,
        disable_progbar=True,
    )  # fmt: skip
    mcmc.run()
    s = mcmc.get_samples()
    idx = 4 * code(s["v"][-1]) + code(s["h"][-1])
    counts = torch.bincount(idx, minlength=32)
    assert multinomial_goodness_of_fit(exact.cpu(), counts.cpu()) > GOF_FAILURE_RATE


def test_block_gibbs_num_chains_and_arviz(device):
    dbm = pgm.models.DBM([4, 3, 2]).to(device)
    kernel = pgm.infer.BlockGibbs(dbm, batch_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # chains drawn sequentially on few CPUs
        # CUDA state cannot cross fork(): Pyro's chains need the spawn context there
        mcmc = pyro.infer.MCMC(
            kernel,
            num_samples=6,
            warmup_steps=2,
            num_chains=2,
            disable_progbar=True,
            mp_context="spawn" if device.type == "cuda" else None,
        )
        mcmc.run()
    samples = mcmc.get_samples(group_by_chain=True)
    assert {k: tuple(v.shape) for k, v in samples.items()} == {
        "v": (2, 6, 2, 4), "h1": (2, 6, 2, 3), "h2": (2, 6, 2, 2)
    }  # fmt: skip
    assert not torch.equal(samples["v"][0], samples["v"][1])  # the chains start apart
    data = az.from_pyro(mcmc)
    assert set(data.posterior.data_vars) == {"v", "h1", "h2"}
    assert int(data.sample_stats.diverging.sum()) == 0


def small_model(x):
    """z ∈ {0, 1, 2}, two Bernoulli b's per plate given z, Gaussian data given both."""
    z = pyro.sample("z", dist.Categorical(x.new_tensor([0.2, 0.3, 0.5])))
    with pyro.plate("pair", 2):
        b = pyro.sample("b", dist.Bernoulli(torch.sigmoid(z.to(x.dtype) - 1)))
    pyro.sample("x", dist.Normal(z + b.sum() - 1.0, 0.8), obs=x)


def exact_posterior(x):
    probs = []
    for z in range(3):
        for code_b in range(4):
            b = torch.tensor([code_b & 1, code_b >> 1], dtype=x.dtype)
            cond = pyro.poutine.condition(small_model, data={"z": torch.tensor(z), "b": b})
            probs.append(pyro.poutine.trace(cond).get_trace(x).log_prob_sum())
    return torch.softmax(torch.stack(probs), 0)


def test_discrete_gibbs_matches_enumeration():
    """Total variation over the 12 states below 0.08 after 800 sweeps (fixed seed). Measured
    over seeds 0-5: TV 0.026-0.042, so the bound sits about 4 spreads above the mean."""
    x = torch.tensor(2.3, dtype=torch.float64)
    exact = exact_posterior(x)
    pyro.set_rng_seed(0)
    mcmc = pyro.infer.MCMC(pgm.infer.DiscreteGibbs(small_model), num_samples=800,
                           warmup_steps=20, disable_progbar=True)  # fmt: skip
    mcmc.run(x)
    s = mcmc.get_samples()
    idx = (4 * s["z"] + s["b"][:, 0] + 2 * s["b"][:, 1]).long()
    freq = torch.bincount(idx, minlength=12).double() / len(idx)
    assert 0.5 * float((freq - exact).abs().sum()) < 0.08
    data = az.from_pyro(mcmc)
    assert int(data.sample_stats.diverging.sum()) == 0


def test_discrete_gibbs_rejects_continuous_sites():
    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))

    mcmc = pyro.infer.MCMC(pgm.infer.DiscreteGibbs(model), num_samples=2, disable_progbar=True)
    with pytest.raises(ValueError, match="site 'z' has Normal"):
        mcmc.run()


def test_kernels_reject_bad_arguments():
    with pytest.raises(TypeError, match="RBM or DBM"):
        pgm.infer.BlockGibbs(object())
    with pytest.raises(ValueError, match="batch_size"):
        pgm.infer.BlockGibbs(pgm.models.RBM(3, 2), batch_size=0)
    with pytest.raises(TypeError, match="callable"):
        pgm.infer.DiscreteGibbs(3)
