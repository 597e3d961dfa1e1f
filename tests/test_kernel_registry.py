"""Conformance tests run on every MCMC kernel in ``pgm.infer.KERNELS``.

To register a kernel, append ``(factory, model)`` to ``REGISTRY``: ``factory(model)``
returns the kernel; ``model`` is a module-level (picklable) Pyro model without arguments.
"""

import pickle

import arviz as az
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

import pyro_genmodels as pgm


def normal_model():
    pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))


def positive_model():
    pyro.sample("s", dist.LogNormal(0.0, 0.5))


def discrete_model():
    z = pyro.sample("z", dist.Categorical(torch.tensor([0.2, 0.3, 0.5])))
    pyro.sample("x", dist.Normal(z.double(), 1.0), obs=torch.tensor(1.5, dtype=torch.float64))


SMALL_RBM = pgm.models.RBM(4, 3)  # BlockGibbs takes a machine where the others take a model

REGISTRY = [
    (lambda m: pgm.infer.Langevin(m, step_size=0.3, adjust=True), normal_model),
    (lambda m: pgm.infer.Langevin(m, step_size=0.05), normal_model),
    (lambda m: pgm.infer.Langevin(m, step_size=0.1, adjust=True, num_steps=3), positive_model),
    (lambda m: pgm.infer.BlockGibbs(m, batch_size=2), SMALL_RBM),
    (lambda m: pgm.infer.DiscreteGibbs(m), discrete_model),
]
IDS = [f"{type(f(m)).__name__}-{i}" for i, (f, m) in enumerate(REGISTRY)]


def test_every_kernel_is_registered():
    registered = {type(f(m)) for f, m in REGISTRY}
    public = {
        obj
        for name in dir(pgm.infer)
        if not name.startswith("_")
        and isinstance(obj := getattr(pgm.infer, name), type)
        and issubclass(obj, MCMCKernel)
    }
    assert public <= set(pgm.infer.KERNELS), sorted(c.__name__ for c in public)
    missing = sorted(c.__name__ for c in set(pgm.infer.KERNELS) - registered)
    assert not missing, f"kernels missing from tests/test_kernel_registry.py REGISTRY: {missing}"


@pytest.mark.parametrize("factory, model", REGISTRY, ids=IDS)
def test_kernel_runs_converts_and_pickles(factory, model):
    kernel = factory(model)
    mcmc = pyro.infer.MCMC(kernel, num_samples=30, warmup_steps=10, disable_progbar=True)
    mcmc.run()
    samples = mcmc.get_samples()
    assert all(torch.isfinite(v).all() for v in samples.values())
    if model is positive_model:  # transforms to unconstrained space are undone
        assert (samples["s"] > 0).all()
    assert "divergences" in kernel.diagnostics()
    idata = az.from_pyro(mcmc)
    assert idata.sample_stats["diverging"].shape == (1, 30)
    cheap = pgm.diagnostics.from_mcmc(mcmc)  # the same data, without Pyro's per-element ESS
    assert set(cheap.groups()) == set(idata.groups())
    assert all(cheap[group].equals(idata[group]) for group in idata.groups())
    pickle.loads(pickle.dumps(kernel))
