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
from pyro_genmodels.training import KLAnnealing, fit
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


def _vae_run(jit: bool, noise_through_normal: bool, monkeypatch, anneal: bool = False) -> tuple:
    if noise_through_normal:  # eager draws as the traced graph draws (torch.normal)

        def standard_normal(shape, dtype, device):
            zeros = torch.zeros(shape, dtype=dtype, device=device)
            return torch.normal(zeros, torch.ones_like(zeros))

        monkeypatch.setattr(torch.distributions.normal, "_standard_normal", standard_normal)
    pyro.clear_param_store()
    torch.manual_seed(3)
    vae = VAE(D, 2, hidden_dims=(8,)).double()
    callbacks = [KLAnnealing(vae, start=0.0, end=1.0, epochs=2)] if anneal else []
    h = fit(vae.model, vae.guide, _binary(), loss=pyro.infer.TraceMeanField_ELBO(),
            optim=pyro.optim.Adam({"lr": 0.05}), epochs=3, batch_size=BATCH, progress=False,
            jit=jit, callbacks=callbacks)  # fmt: skip
    return h["loss"].to_numpy(), {k: v.detach().clone() for k, v in vae.state_dict().items()}


def test_compiled_and_uncompiled_vae_take_the_same_steps(monkeypatch):
    """With the noise drawn the same way (the traced graph draws it through torch.normal),
    three epochs of the compiled VAE (analytic-KL ELBO, two batch shapes) follow the
    uncompiled ones to 1e-6: the compiled graph computes the same loss and gradients."""
    (h0, p0), (h1, p1) = (_vae_run(jit, True, monkeypatch) for jit in (False, True))
    np.testing.assert_allclose(h1, h0, rtol=1e-6)
    for k in p0:
        torch.testing.assert_close(p1[k], p0[k], rtol=1e-6, atol=1e-6)


def test_a_kl_warm_up_changes_the_compiled_loss_as_the_uncompiled_one(monkeypatch):
    """``beta`` goes 0, 0.5, 1 over three epochs (``KLAnnealing``): the compiled ELBO traces
    anew at each value (``VAE.trace_constants``) and follows the uncompiled run to 1e-6. Its
    first epoch, at ``beta = 0``, has no KL term: the two later epochs must differ from a
    run whose loss kept it at 0, which they did before (the trace held ``beta = 0``)."""
    (h0, p0), (h1, p1) = (_vae_run(jit, True, monkeypatch, anneal=True) for jit in (False, True))
    np.testing.assert_allclose(h1, h0, rtol=1e-6)
    for k in p0:
        torch.testing.assert_close(p1[k], p0[k], rtol=1e-6, atol=1e-6)
    pyro.clear_param_store()
    frozen = CompiledLoss(pyro.infer.TraceMeanField_ELBO())
    vae = VAE(D, 2, hidden_dims=(8,)).double()
    x = _binary()[:BATCH]
    pyro.infer.TraceMeanField_ELBO().loss(vae.model, vae.guide, x)  # params in the store
    values = []
    for beta in (0.0, 1.0, 0.0):
        vae.beta = beta
        pyro.set_rng_seed(0)
        values.append(frozen.loss_and_grads(vae.model, vae.guide, x))
        vae.zero_grad()
    assert values[0] == pytest.approx(values[2], rel=1e-12)
    assert values[1] > values[0] + 1e-3  # the KL term (positive) enters at beta = 1
    assert len(frozen.compiled) == 1  # a change replaces the trace of the old value


def test_compiled_and_uncompiled_flow_take_the_same_steps():
    from pyro_genmodels.models import FlowDensity

    runs = []
    for jit in (False, True):
        pyro.clear_param_store()
        torch.manual_seed(4)
        flow = FlowDensity(3, "maf", num_layers=2, hidden_dims=[8]).double()
        x = torch.randn(N, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        h = fit(flow.model, flow.guide, x, optim=pyro.optim.Adam({"lr": 0.05}), epochs=3,
                batch_size=BATCH, progress=False, jit=jit)  # fmt: skip
        runs.append((h["loss"].to_numpy(), dict(flow.state_dict())))
    (h0, p0), (h1, p1) = runs
    np.testing.assert_allclose(h1, h0, rtol=1e-6)
    for k in p0:
        torch.testing.assert_close(p1[k], p0[k], rtol=1e-6, atol=1e-6)


def test_compiled_fit_after_another_model_with_the_same_names(monkeypatch):
    """Another model already in Pyro's param store under the same names: the compiled fit
    trains its own model (the other stays as it was), as the uncompiled one does."""
    x = _binary()
    pyro.clear_param_store()
    torch.manual_seed(6)
    first = VAE(D, 2, hidden_dims=(8,)).double()
    fit(first.model, first.guide, x, epochs=1, batch_size=BATCH, progress=False)
    kept = {k: v.detach().clone() for k, v in first.state_dict().items()}
    second = VAE(D, 2, hidden_dims=(8,)).double()
    before = {k: v.detach().clone() for k, v in second.state_dict().items()}
    with _no_fallback():
        fit(second.model, second.guide, x, epochs=2, batch_size=BATCH, progress=False, jit=True)
    assert all(torch.equal(v, first.state_dict()[k]) for k, v in kept.items())
    assert all(not torch.equal(v, second.state_dict()[k]) for k, v in before.items())


class _no_fallback:
    """The compiled loss did not fall back (no warning about compiling)."""

    def __enter__(self):
        import warnings

        self.catcher = warnings.catch_warnings(record=True)
        self.records = self.catcher.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self.catcher.__exit__(*exc)
        assert not [r for r in self.records if "could not be compiled" in str(r.message)]
        return False
