"""Flows started at the fitted Gaussian: GaussianAffine, gaussian_fit, start_at_gaussian."""

import pyro.distributions as dist
import pytest
import torch
from torch.autograd.functional import jacobian

from pyro_genmodels import flows
from pyro_genmodels.flows.gaussian import GaussianAffine, gaussian_fit, start_at_gaussian


def _data(device, n=40, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.tensor([[1.0, 0.5, -0.3], [0.0, 2.0, 0.4], [0.0, 0.0, 0.5]], dtype=torch.float64)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) @ mix[:d, :d] + 1.5
    return x.to(device)


def test_affine_log_det_matches_autograd_jacobian(device):
    x = _data(device)
    t = GaussianAffine.from_data(x)
    with torch.no_grad():
        t.tril.add_(0.1)  # upper entries must be ignored, lower ones used
    z = torch.randn(3, dtype=torch.float64, device=device)
    jac = jacobian(lambda v: t(v), z)
    expected = torch.linalg.slogdet(jac)[1]
    assert torch.allclose(t.log_abs_det_jacobian(z, t(z)), expected, atol=1e-12)
    assert torch.allclose(jac, t.scale_tril(), atol=1e-12)  # dx/dz = L, lower-triangular
    assert torch.equal(jac.triu(1), torch.zeros_like(jac))
    xs = torch.randn(2, 5, 3, dtype=torch.float64, device=device)
    assert torch.allclose(t(t.inv(xs).clone()), xs, atol=1e-10)
    assert t.log_abs_det_jacobian(xs, xs).shape == (2, 5)


def test_gaussian_fit_is_the_ml_gaussian_and_shrinks_to_the_diagonal(device):
    x = _data(device)
    m, L = gaussian_fit(x)
    centered = x - x.mean(0)
    cov = centered.T @ centered / x.shape[0]
    assert torch.allclose(m, x.mean(0), atol=1e-12)
    assert torch.allclose(L @ L.T, cov, atol=1e-5)
    assert torch.equal(L, L.tril()) and (torch.diagonal(L) > 0).all()
    _, L1 = gaussian_fit(x, shrinkage=1.0)
    assert torch.allclose(L1 @ L1.T, torch.diag(torch.diagonal(cov)), atol=1e-5)
    # ML: the gradient of the mean log-likelihood at the fit is zero
    t = GaussianAffine(3, m, L)
    d = dist.TransformedDistribution(
        dist.Normal(torch.zeros(3, dtype=x.dtype, device=device), 1.0).to_event(1), [t]
    )
    d.log_prob(x).mean().backward()
    for p in (t.loc, t.tril, t.log_diag):
        assert p.grad.abs().max() < 1e-5
    with torch.no_grad():  # and a move away from it lowers the likelihood
        t.loc.add_(0.1)
    assert (
        d.log_prob(x.clone()).mean() < dist.MultivariateNormal(m, scale_tril=L).log_prob(x).mean()
    )


@pytest.mark.parametrize(
    "build",
    [
        lambda: flows.maf(3, num_layers=2, hidden_dims=[8]),
        lambda: flows.realnvp(3, num_layers=2, hidden_dims=[8]),
        lambda: flows.nice(3, num_layers=2, hidden_dims=[8]),
        lambda: flows.spline(3, num_layers=2, hidden_dims=[8], kind="autoregressive"),
    ],
    ids=["maf", "realnvp", "nice", "spline-ar"],
)
def test_start_at_gaussian_is_the_fitted_gaussian_exactly(build, device):
    x = _data(device)
    flow = start_at_gaussian(build().to(device=device, dtype=torch.float64), x)
    base = dist.Normal(torch.zeros(3, dtype=x.dtype, device=device), 1.0).to_event(1)
    m, L = gaussian_fit(x)
    target = dist.MultivariateNormal(m, scale_tril=L)
    y = torch.cat([x, _data(device, n=10, seed=1) * 3])  # inside and outside the spline box
    got = dist.TransformedDistribution(base, [flow]).log_prob(y)
    assert torch.allclose(got, target.log_prob(y), atol=1e-9)
    assert any(p.requires_grad for p in flow.parameters())


def test_flow_density_started_at_the_gaussian_trains_and_round_trips(device):
    import pyro

    from pyro_genmodels.models import FlowDensity
    from pyro_genmodels.optim import Adam
    from pyro_genmodels.training import fit

    x = _data(device, n=60)  # float64 data for a float32 model: converted, like fit does
    train, valid = x[:40], x[40:]

    def build():
        model = FlowDensity(3, "spline", num_layers=2, hidden_dims=[8], kind="autoregressive")
        model = model.to(device)
        model.flow = start_at_gaussian(model.flow, train)
        return model

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = build()
    m, L = gaussian_fit(train.float())
    gauss = dist.MultivariateNormal(m, scale_tril=L)
    with torch.no_grad():
        assert torch.allclose(
            model.log_prob(valid.float()), gauss.log_prob(valid.float()), atol=1e-4
        )
    history = fit(model.model, model.guide, train, optim=Adam({"lr": 1e-2}), epochs=3,
                  batch_size=20, validation=valid, keep_best=True, progress=False)  # fmt: skip
    with torch.no_grad():  # keep_best: the restored model scores the best val_loss
        val = -model.log_prob(valid.float()).mean().item()
    assert val == pytest.approx(history["val_loss"].min(), rel=1e-5)
    assert history["loss"].iloc[0] == pytest.approx(
        -gauss.log_prob(train.float()).mean().item(), abs=0.5
    )
    twin = build()
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(twin.log_prob(valid.float()), model.log_prob(valid.float()))


def test_start_at_gaussian_refuses_flows_that_are_not_the_identity_when_zeroed(device):
    x = _data(device).float()
    with pytest.raises(ValueError, match="identity"):
        start_at_gaussian(flows.planar(3, num_layers=2).to(device), x)
    with pytest.raises(TypeError, match="flow must be a transform module"):
        start_at_gaussian(lambda v: v, x)


def test_bad_inputs(device):
    x = _data(device)
    with pytest.raises(TypeError, match="x must be a floating-point"):
        gaussian_fit(x.long())
    with pytest.raises(ValueError, match=r"x must have shape \(N, D\)"):
        gaussian_fit(x[0])
    with pytest.raises(ValueError, match="finite"):
        gaussian_fit(torch.where(x > 2, float("nan"), x))
    with pytest.raises(ValueError, match="shrinkage"):
        gaussian_fit(x, shrinkage=1.5)
    with pytest.raises(TypeError, match="shrinkage"):
        gaussian_fit(x, shrinkage="0.1")
    with pytest.raises(ValueError, match="singular covariance"):
        gaussian_fit(torch.ones(5, 2, dtype=torch.float64, device=device))
    with pytest.raises(ValueError, match="positive diagonal"):
        GaussianAffine(2, torch.zeros(2), torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    with pytest.raises(TypeError, match="loc must be a floating-point"):
        GaussianAffine(2, [0.0, 0.0])
    with pytest.raises(ValueError, match="loc must be finite of shape"):
        GaussianAffine(2, torch.zeros(3))
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 2\)"):
        GaussianAffine(2).inv(torch.zeros(4, 3))
