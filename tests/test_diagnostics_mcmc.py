"""``pgm.diagnostics.from_mcmc``: ArviZ data of an MCMC run without Pyro's per-element ESS,
whose memory grows with draws² × elements (10 GB for the README's RBM block)."""

import re
import warnings
from pathlib import Path

import arviz as az
import pyro
import pyro.distributions as dist
import pyro.infer.mcmc.api
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels.diagnostics import from_mcmc

README = Path(__file__).resolve().parents[1] / "README.md"
DBM = pgm.models.DBM([4, 3, 2])  # module level: picklable for the chains' processes


def _no_pyro_statistics(monkeypatch):
    """Pyro's per-element ESS/R-hat (``MCMC.diagnostics``'s first step) now raises."""

    def refuse(samples, group_by_chain=True):
        raise AssertionError("Pyro's per-element ESS and R-hat were computed")

    monkeypatch.setattr(pyro.infer.mcmc.api, "diagnostics", refuse)


def assert_same_inference_data(a, b):
    assert set(a.groups()) == set(b.groups())
    for group in a.groups():
        assert a[group].equals(b[group]), group


def test_from_mcmc_skips_pyros_statistics(monkeypatch):
    mcmc = pyro.infer.MCMC(pgm.infer.BlockGibbs(DBM, batch_size=3), num_samples=20,
                           warmup_steps=5, disable_progbar=True)  # fmt: skip
    mcmc.run()
    expected = az.from_pyro(mcmc)
    _no_pyro_statistics(monkeypatch)
    with pytest.raises(AssertionError, match="per-element ESS"):
        az.from_pyro(mcmc)  # the control: ArviZ's route computes them
    idata = from_mcmc(mcmc)
    assert_same_inference_data(idata, expected)
    assert idata.posterior["v"].shape == (1, 20, 3, 4)
    assert az.ess(idata)["v"].shape == (3, 4)  # ArviZ computes the statistics on demand


def test_from_mcmc_with_two_chains_and_observed_sites():
    def model(x):
        z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.3, dtype=x.dtype)))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(2.0 * z, 1.0), obs=x)

    x = torch.tensor([1.5, 2.5])
    pyro.set_rng_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # chains drawn sequentially on few CPUs
        mcmc = pyro.infer.MCMC(pgm.infer.DiscreteGibbs(model), num_samples=15, warmup_steps=3,
                               num_chains=2, disable_progbar=True)  # fmt: skip
        mcmc.run(x)
    idata = from_mcmc(mcmc)
    assert_same_inference_data(idata, az.from_pyro(mcmc))
    assert idata.sample_stats["diverging"].shape == (2, 15)
    assert idata.log_likelihood["x"].shape == (2, 15, 2)
    # the pointwise log-likelihood is the model's: log N(x; 2z, 1) at each draw of z
    z = torch.as_tensor(idata.posterior["z"].values)
    expected = dist.Normal(2.0 * z[..., None], 1.0).log_prob(x)
    torch.testing.assert_close(torch.as_tensor(idata.log_likelihood["x"].values), expected)


def test_from_mcmc_rejects_what_it_cannot_convert():
    with pytest.raises(TypeError, match="pyro.infer.MCMC"):
        from_mcmc({"v": torch.zeros(3)})
    kernel = pgm.infer.BlockGibbs(pgm.models.RBM(4, 3))
    mcmc = pyro.infer.MCMC(kernel, num_samples=3, disable_progbar=True)
    with pytest.raises(ValueError, match="has not been run"):
        from_mcmc(mcmc)

    class Silent(pgm.infer.BlockGibbs):
        def diagnostics(self):
            return {"acceptance rate": 1.0}

    mcmc = pyro.infer.MCMC(Silent(pgm.models.RBM(4, 3)), num_samples=3, disable_progbar=True)
    mcmc.run()
    with pytest.raises(ValueError, match="'divergences'"):
        from_mcmc(mcmc)


def _readme_boltzmann_sampling() -> str:
    """The MCMC lines of the README's Boltzmann block: from ``mcmc = ...`` to its end."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Boltzmann machines")[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return block[block.index("mcmc = ") :]


def test_readme_boltzmann_block_converts_without_pyros_statistics(monkeypatch):
    """The README's Gibbs sampling and ArviZ conversion, run as written on a 784-500 RBM,
    never reaches Pyro's per-element statistics (7.8 GB for these 1000 draws of 10 × 784
    visible units; benchmarks/readme_memory.py measures the block's peak memory)."""
    _no_pyro_statistics(monkeypatch)
    namespace = {"pyro": pyro, "pgm": pgm, "az": az, "rbm": pgm.models.RBM(784, 500)}
    code = _readme_boltzmann_sampling()
    code = code.replace("num_samples=1000", "num_samples=1000, disable_progbar=True")
    exec(compile(code, "README.md", "exec"), namespace)
    idata = namespace["idata"]
    assert idata.posterior["v"].shape == (1, 1000, 10, 784)
    assert idata.posterior["h"].shape == (1, 1000, 10, 500)
    assert int(idata.sample_stats["diverging"].sum()) == 0
