"""``fit(jit=True)``: Pyro's compiled ELBOs, one trace per batch shape, the same training."""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch

from pyro_genmodels.distributions import AutoregressiveDistribution
from pyro_genmodels.infer import IWAELoss
from pyro_genmodels.models import VAE
from pyro_genmodels.nn import MADE
from pyro_genmodels.training import fit
from pyro_genmodels.training.loss_stack import CompiledLoss

N, D, BATCH = 21, 6, 8  # batches of 8, 8 and 5: two traced shapes


def _binary() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((N, D), 0.4, dtype=torch.float64), generator=g)


def _made(jit: bool):
    pyro.clear_param_store()
    torch.manual_seed(1)
    net = MADE(D, [16]).double()

    def model(x):
        pyro.module("made", net)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", AutoregressiveDistribution(net, "bernoulli"), obs=x)

    loss = pyro.infer.Trace_ELBO()
    h = fit(model, lambda x: None, _binary(), loss=loss, optim=pyro.optim.Adam({"lr": 0.05}),
            epochs=3, batch_size=BATCH, progress=False, jit=jit)  # fmt: skip
    return h["loss"].to_numpy(), {k: v.detach().clone() for k, v in pyro.get_param_store().items()}


def test_jit_trains_made_as_without():
    """Exact-likelihood MADE follows the uncompiled trajectory, including the epochs'
    last, smaller batches (a second traced shape)."""
    (h0, p0), (h1, p1) = _made(False), _made(True)
    np.testing.assert_allclose(h1, h0, rtol=1e-10)
    assert p0.keys() == p1.keys()
    for k in p0:
        torch.testing.assert_close(p1[k], p0[k], rtol=1e-9, atol=1e-10)


def test_compiled_vae_loss_has_the_uncompiled_distribution():
    """The compiled ELBO draws the VAE's noise through ``torch.normal`` (Pyro's JIT
    workaround), not ``normal_``, so single values differ; at fixed parameters its mean
    over M draws equals the uncompiled one's within 5 standard errors (failure rate
    below 1e-6 for near-normal means), for both batch shapes."""
    torch.manual_seed(2)
    vae = VAE(D, 2, hidden_dims=(8,)).double()
    x = _binary()
    jit = CompiledLoss(pyro.infer.Trace_ELBO())
    m = 100
    for batch in (x[:BATCH], x[:5]):
        values = []
        for loss in (jit, pyro.infer.Trace_ELBO()):
            pyro.set_rng_seed(5)
            draws = torch.tensor(
                [loss.loss_and_grads(vae.model, vae.guide, batch) for _ in range(m)]
            )
            vae.zero_grad()
            values.append(draws)
        a, b = values
        se = ((a.var() + b.var()) / m).sqrt()
        assert abs(a.mean() - b.mean()) < 5 * se
        assert a.std() > 0.05 * b.std()  # the compiled loss does draw noise


def test_one_trace_per_shape():
    def model(x):
        loc = pyro.param("loc", torch.zeros((), dtype=x.dtype))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", pyro.distributions.Normal(loc, 1.0), obs=x)

    jit = CompiledLoss(pyro.infer.Trace_ELBO(num_particles=1))
    x = torch.arange(5.0, dtype=torch.float64)
    for batch in (x, x[:3], x, x[:3]):
        value = jit.loss_and_grads(model, lambda x: None, batch)
        exact = float(-pyro.distributions.Normal(0.0, 1.0).log_prob(batch).sum())
        assert value == pytest.approx(exact, rel=1e-12)
        pyro.param("loc").unconstrained().grad = None
    assert len(jit.compiled) == 2


def test_jit_errors():
    x = _binary()
    with pytest.raises(TypeError, match="jit must be True, False or None"):
        fit(lambda x: None, lambda x: None, x, jit="yes", progress=False)
    with pytest.raises(ValueError, match="compiled counterpart .* got IWAELoss"):
        fit(lambda x: None, lambda x: None, x, loss=IWAELoss(num_particles=2), jit=True)
    with pytest.raises(ValueError, match="jit=True runs in float32 only"):
        fit(lambda x: None, lambda x: None, x, jit=True, precision="bf16", progress=False)
