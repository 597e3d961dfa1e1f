"""Tests of pgm.diagnostics on hand-made models with closed-form posteriors."""

import math

import matplotlib

matplotlib.use("Agg")  # tests only: the package never selects a backend

import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pyro_genmodels.diagnostics import (  # noqa: E402
    active_units,
    kl_per_dim,
    plot_density_2d,
    plot_history,
    plot_latents,
    plot_reconstructions,
    plot_samples,
    psis_khat,
    to_inference_data,
)


class LinearGaussian:
    """z ~ N(0, I_d), x | z ~ N(W z + b, s² I_D); the posterior and marginal in closed form."""

    def __init__(self, d, D, device, dtype, weight_scale=1.0, noise=0.5, seed=1):
        gen = torch.Generator().manual_seed(seed)
        self.W = (weight_scale * torch.randn(D, d, generator=gen, dtype=dtype)).to(device)
        self.b = torch.randn(D, generator=gen, dtype=dtype).to(device)
        self.s = noise
        eye = torch.eye(d, dtype=dtype, device=device)
        self.cov = torch.linalg.inv(eye + self.W.T @ self.W / self.s**2)  # posterior covariance
        self.d = d

    def model(self, x, shrink=1.0):  # shrink: the guide's argument, unused here
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.d), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.s).to_event(1), obs=x)

    def post_mean(self, x):
        return (x - self.b) @ self.W @ self.cov.T / self.s**2

    def guide(self, x, shrink=1.0):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(self.post_mean(x), shrink**2 * self.cov))

    def log_marginal(self, x):
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        cov = self.W @ self.W.T + self.s**2 * eye
        return dist.MultivariateNormal(self.b, cov).log_prob(x)

    def sample(self, n):
        gen = torch.Generator().manual_seed(2)
        z = torch.randn(n, self.d, generator=gen, dtype=self.W.dtype).to(self.W.device)
        eps = torch.randn(n, self.W.shape[0], generator=gen, dtype=self.W.dtype).to(z.device)
        return z @ self.W.T + self.b + self.s * eps


# --------------------------------------------------------------------------- InferenceData


def test_inference_data_groups_are_exact(device, dtype):
    lg = LinearGaussian(2, 3, device, dtype)
    x = lg.sample(5)
    idata = to_inference_data(lg.model, lg.guide, x, num_samples=7)
    assert set(idata.groups()) == {"posterior", "log_likelihood", "observed_data", "sample_stats"}
    z = idata.posterior["z"]
    assert z.dims == ("chain", "draw", "data", "z_dim_0") and z.shape == (1, 7, 5, 2)
    assert list(idata.posterior["data"].values) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(idata.observed_data["x"].values, x.cpu().numpy())
    assert idata.observed_data["x"].dims == ("data", "x_dim_0")
    # log p(x_n | z_k) recomputed from the stored draws: draws and likelihoods are aligned.
    zt = torch.as_tensor(z.values[0], dtype=dtype, device=device)
    expected = dist.Normal(zt @ lg.W.T + lg.b, lg.s).log_prob(x).sum(-1)
    np.testing.assert_allclose(idata.log_likelihood["x"].values[0], expected.cpu().numpy())
    # The exact posterior guide: every log importance weight equals log p(x_n).
    lw = idata.sample_stats["log_importance_weight"].values
    assert lw.shape == (1, 7, 5)
    exact = np.broadcast_to(lg.log_marginal(x).cpu().numpy(), (1, 7, 5))
    np.testing.assert_allclose(lw, exact, rtol=1e-9 if dtype == torch.float64 else 1e-4)


def test_inference_data_of_a_model_without_data_argument(device, dtype):
    """Observations inside the program: ``to_inference_data(model, guide)`` gives what the
    same program with a data argument gives; a call that cannot match the signatures says
    how the programs are called."""
    lg = LinearGaussian(2, 3, device, dtype)
    x = lg.sample(5)
    pyro.set_rng_seed(4)
    expected = to_inference_data(lg.model, lg.guide, x, num_samples=7)
    pyro.set_rng_seed(4)
    idata = to_inference_data(lambda: lg.model(x), lambda: lg.guide(x), num_samples=7)
    assert set(idata.groups()) == set(expected.groups())
    assert all(idata[group].equals(expected[group]) for group in expected.groups())
    with pytest.raises(TypeError, match=r"model\(data, \*args, \*\*kwargs\).*data=None"):
        to_inference_data(lambda: lg.model(x), lambda: lg.guide(x), x)
    with pytest.raises(TypeError, match="a model with a data argument takes it as data"):
        to_inference_data(lg.model, lg.guide)
    with pytest.raises(ValueError, match="batch_size=2 slices the data argument"):
        to_inference_data(lambda: lg.model(x), lambda: lg.guide(x), batch_size=2)


def test_inference_data_works_with_arviz_summary_and_plots(device, dtype):
    lg = LinearGaussian(2, 3, device, dtype)
    idata = to_inference_data(lg.model, lg.guide, lg.sample(2), num_samples=50)
    summary = az.summary(idata, var_names=["z"], kind="stats")
    assert isinstance(summary, pd.DataFrame)
    assert list(summary.index) == ["z[0, 0]", "z[0, 1]", "z[1, 0]", "z[1, 1]"]
    # The guide's mean, up to Monte Carlo error (50 draws, sd <= 1: 5 standard errors).
    mean = lg.post_mean(lg.sample(2)).cpu().numpy().ravel()
    np.testing.assert_allclose(summary["mean"].to_numpy(), mean, atol=5 / math.sqrt(50))
    az.plot_posterior(idata, var_names=["z"], coords={"data": [0]})
    az.plot_trace(idata, var_names=["z"], coords={"data": [0]})
    plt.close("all")


def test_loo_of_local_latents_equals_log_marginal(device):
    """For local latents, leave-one-out predictive of x_n is p(x_n) = 1 / E_post[1 / p(x_n|z)].

    ||W||² / s² = 0.13 < 1 keeps 1 / p(x|z) square-integrable. Over 20 seeds the largest
    pointwise error was 0.043; the naive estimates (log-mean likelihood, mean
    log-likelihood) miss by 0.27 and 0.14, so atol=0.07 separates them (failure rate ~0).
    """
    lg = LinearGaussian(1, 2, device, torch.float64, weight_scale=0.5, noise=1.0)
    x = lg.sample(8)
    idata = to_inference_data(lg.model, lg.guide, x, num_samples=2000)
    loo = az.loo(idata, pointwise=True)
    exact = lg.log_marginal(x).cpu().numpy()
    np.testing.assert_allclose(loo.loo_i.values, exact, atol=0.07)


def test_inference_data_batches_slice_per_datapoint_args(device, dtype):
    """model(x, y) with y per datapoint: batching gives the same exact log weights."""

    def model(x, y, scale):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(y, 1.0))
            pyro.sample("x", dist.Normal(z, scale), obs=x)

    def guide(x, y, scale):  # exact: N((y + x) / 2, 1 / 2) for scale 1
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal((x + y) / 2, 0.5**0.5))

    x = torch.linspace(-1, 2, 5, dtype=dtype, device=device)
    y = torch.linspace(0, 3, 5, dtype=dtype, device=device)
    scale = torch.ones((), dtype=dtype, device=device)
    whole = to_inference_data(model, guide, x, y, scale, num_samples=3)
    parts = to_inference_data(model, guide, x, y, scale, num_samples=3, batch_size=2)
    lw = parts.sample_stats["log_importance_weight"].values
    exact = dist.Normal(y, 2**0.5).log_prob(x).cpu().numpy()
    np.testing.assert_allclose(lw, np.broadcast_to(exact, (1, 3, 5)), atol=1e-5)
    assert parts.posterior["z"].shape == whole.posterior["z"].shape == (1, 3, 5)
    np.testing.assert_allclose(parts.observed_data["x"].values, x.cpu().numpy())


def test_inference_data_with_nested_plate(device, dtype):
    """Pixels in their own plate: the data plate is dim -2, observations are (N, D)."""

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            z = pyro.sample("z", dist.Normal(x.new_zeros(1), 1.0))
            with pyro.plate("pixels", x.shape[1], dim=-1):
                pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("z", dist.Normal(x.mean(-1, keepdim=True), 1.0))

    x = torch.randn(4, 3, dtype=dtype, device=device)
    idata = to_inference_data(model, guide, x, num_samples=6)
    assert idata.posterior["z"].shape == (1, 6, 4, 1)
    assert idata.observed_data["x"].dims == ("data", "x_dim_0")
    z = torch.as_tensor(idata.posterior["z"].values[0], dtype=dtype, device=device)
    expected = dist.Normal(z, 1.0).log_prob(x).sum(-1)
    np.testing.assert_allclose(idata.log_likelihood["x"].values[0], expected.cpu().numpy())


# --------------------------------------------------------------------------- PSIS k-hat


def test_psis_khat_separates_exact_and_narrow_guides(device):
    """Exact guide: constant weights, k̂ = -inf. A guide 4x too narrow in 4-D: true k = 0.94.

    Over 20 seeds the fraction of the 40 points with k̂ > 0.7 was 0.85 to 1 (mean 0.95);
    asserting > 0.75 fails with probability ~0.
    """
    lg = LinearGaussian(4, 6, device, torch.float64)
    x = lg.sample(40)
    exact = psis_khat(lg.model, lg.guide, x, num_samples=1000)
    assert exact.shape == (40,) and exact.device.type == device.type
    assert (exact < 0.5).all()
    narrow = psis_khat(lg.model, lg.guide, x, shrink=0.25, num_samples=1000)
    assert (narrow > 0.7).double().mean() > 0.75


def test_psis_khat_wide_guide_is_good(device):
    """A guide wider than the posterior has bounded weights: k̂ < 0.5 (max over 20 seeds -0.57)."""
    lg = LinearGaussian(2, 3, device, torch.float64)
    khat = psis_khat(lg.model, lg.guide, lg.sample(20), shrink=1.5, num_samples=1000)
    assert (khat < 0.5).all()


# --------------------------------------------------------------------------- KL, active units


def _two_dim_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z[..., 1], 1.0), obs=x)


def _guide_params(x):
    """Dim 0 is the prior N(0, 1); dim 1 is N(x/2, 0.5)."""
    loc = torch.stack([torch.zeros_like(x), x / 2], -1)
    scale = torch.stack([torch.ones_like(x), torch.full_like(x, 0.5)], -1)
    return loc, scale


def _factorized_guide(x):
    loc, scale = _guide_params(x)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def _transformed_guide(x):
    """The same distribution as an affine TransformedDistribution: no KL rule, no .mean."""
    loc, scale = _guide_params(x)
    base = dist.Normal(torch.zeros_like(loc), torch.ones_like(loc))
    q = dist.TransformedDistribution(base, [dist.transforms.AffineTransform(loc, scale)])
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", q.to_event(1))


def _analytic_kl(x):
    loc, scale = _guide_params(x)
    return (-scale.log() + (scale**2 + loc**2) / 2 - 0.5).mean(0)


def test_kl_per_dim_closed_form(device, dtype):
    x = torch.linspace(-2, 2, 9, dtype=dtype, device=device)
    kl = kl_per_dim(_two_dim_model, _factorized_guide, x, num_samples=2)
    assert kl.shape == (2,) and kl.dtype == dtype and kl.device.type == device.type
    assert abs(float(kl[0])) < 1e-6
    torch.testing.assert_close(kl, _analytic_kl(x))


def test_kl_per_dim_monte_carlo(device):
    """MC with 4000 draws x 9 points: over 20 seeds the largest error was 0.005 (atol 0.03)."""
    x = torch.linspace(-2, 2, 9, dtype=torch.float64, device=device)
    kl = kl_per_dim(_two_dim_model, _transformed_guide, x, num_samples=4000)
    torch.testing.assert_close(kl, _analytic_kl(x), atol=0.03, rtol=0)


def test_kl_per_dim_batched_and_rejects_joint_guides(device):
    lg = LinearGaussian(2, 3, device, torch.float64)
    x = torch.linspace(-2, 2, 9, dtype=torch.float64, device=device)
    kl = kl_per_dim(_two_dim_model, _factorized_guide, x, num_samples=1, batch_size=4)
    torch.testing.assert_close(kl, _analytic_kl(x))
    with pytest.raises(ValueError, match="factorize"):
        kl_per_dim(lg.model, lg.guide, lg.sample(3))


def test_active_units_counts_informative_dims(device, dtype):
    x = torch.linspace(-2, 2, 9, dtype=dtype, device=device)
    num_active, variances = active_units(_two_dim_model, _factorized_guide, x)
    assert num_active == 1
    torch.testing.assert_close(variances, torch.stack([x.new_zeros(()), (x / 2).var()]))
    num_active, _ = active_units(_two_dim_model, _factorized_guide, x, threshold=1.0)
    assert num_active == 0


def test_active_units_from_draws(device):
    """No .mean: E_q[z] from 2000 draws (MC error sd 0.011 per mean).

    Over 20 seeds: variances[0] <= 0.001, |variances[1] - Var(x/2)| <= 0.013 (tolerance 0.03).
    """
    x = torch.linspace(-2, 2, 9, dtype=torch.float64, device=device)
    num_active, variances = active_units(_two_dim_model, _transformed_guide, x, num_samples=2000)
    assert num_active == 1
    assert float(variances[0]) < 0.01
    assert abs(float(variances[1]) - float((x / 2).var())) < 0.03


def test_bad_inputs_are_rejected(device):
    x = torch.zeros(3, device=device)
    with pytest.raises(TypeError, match="data must be a torch.Tensor"):
        psis_khat(_two_dim_model, _factorized_guide, [0.0, 1.0])
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        to_inference_data(_two_dim_model, _factorized_guide, x, num_samples=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        kl_per_dim(_two_dim_model, _factorized_guide, x, batch_size=0)
    with pytest.raises(ValueError, match="site='w' is not a latent"):
        active_units(_two_dim_model, _factorized_guide, x, site="w")
    with pytest.raises(ValueError, match="threshold must be a finite real number >= 0"):
        active_units(_two_dim_model, _factorized_guide, x, threshold=-1.0)
    with pytest.raises(ValueError, match="N >= 2"):
        active_units(_two_dim_model, _factorized_guide, x[:1])
    with pytest.raises(ValueError, match="data must have shape"):
        psis_khat(_two_dim_model, _factorized_guide, torch.zeros((), device=device))


# --------------------------------------------------------------------------- plots


def test_plot_history(tmp_path):
    history = pd.DataFrame(
        {"epoch": [0, 1, 2], "loss": [3.0, 2.0, 1.0], "kl": [0.1, 0.2, 0.3], "time": [1.0] * 3}
    )
    fig = plot_history(history)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # time is not a metric
    line = fig.axes[0].lines[0]
    np.testing.assert_array_equal(line.get_xdata(), [0, 1, 2])
    np.testing.assert_array_equal(line.get_ydata(), [3.0, 2.0, 1.0])
    assert len(plot_history(history, columns=["kl"]).axes) == 1
    fig.savefig(tmp_path / "history.png")
    assert (tmp_path / "history.png").stat().st_size > 0
    with pytest.raises(ValueError, match="columns must name"):
        plot_history(history, columns=["elbo"])
    with pytest.raises(TypeError, match="history must be a pandas.DataFrame"):
        plot_history({"loss": [1.0]})


def test_plot_samples_grid(device, tmp_path):
    images = torch.rand(10, 12, device=device)
    fig = plot_samples(images, (1, 3, 4), nrow=4, title="samples")
    (ax,) = fig.axes
    grid = np.asarray(ax.images[0].get_array())
    assert grid.shape == (3 * 4 - 1, 4 * 5 - 1)  # 3 rows x 4 cols of 3x4 with 1-px gaps
    # Image 5 is in row 1, column 1.
    np.testing.assert_allclose(grid[4:7, 5:9], images[5].reshape(3, 4).cpu().numpy())
    assert ax.get_title() == "samples"
    fig.savefig(tmp_path / "samples.png")
    rgb = plot_samples(torch.rand(2, 3 * 4 * 4, device=device), (3, 4, 4))
    assert np.asarray(rgb.axes[0].images[0].get_array()).shape == (4, 9, 3)
    with pytest.raises(
        ValueError,
        match="image_shape .* must have H\\*W equal to the number of features D=12, got H\\*W=16",
    ):
        plot_samples(images, (4, 4))
    with pytest.raises(ValueError, match="image_shape must be"):
        plot_samples(images, (2, 2, 3))


def test_plot_reconstructions(device, tmp_path):
    x = torch.rand(5, 16, device=device)
    fig = plot_reconstructions(x, 1 - x, (4, 4), n=3)
    assert len(fig.axes) == 2
    top, bottom = (np.asarray(ax.images[0].get_array()) for ax in fig.axes)
    assert top.shape == bottom.shape == (4, 14)
    np.testing.assert_allclose(bottom[:, 5:9], 1 - x[1].reshape(4, 4).cpu().numpy())
    fig.savefig(tmp_path / "rec.png")
    with pytest.raises(ValueError, match="x_rec must have the shape of x"):
        plot_reconstructions(x, x[:4], (4, 4))
    with pytest.raises(ValueError, match="image_shape"):
        plot_reconstructions(x, x, (1, 3, 3))


def test_plot_latents(device, tmp_path):
    z = torch.randn(30, 3, device=device, dtype=torch.float64)
    labels = torch.arange(30, device=device) % 3
    fig = plot_latents(z, labels)
    points = fig.axes[0].collections[0].get_offsets()
    assert points.shape == (30, 2)
    # PCA: the projected points keep the pairwise distances within the top-2 subspace,
    # and their covariance is diagonal with the two largest eigenvalues of Cov(z).
    eig = np.linalg.eigvalsh(np.cov(z.cpu().numpy().T))[::-1][:2]
    np.testing.assert_allclose(np.cov(np.asarray(points).T), np.diag(eig), atol=1e-8)
    assert fig.axes[0].get_legend() is not None
    first = plot_latents(z, projection="first")
    np.testing.assert_allclose(first.axes[0].collections[0].get_offsets(), z[:, :2].cpu())
    fig.savefig(tmp_path / "latents.png")
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) = \(30,\)"):
        plot_latents(z, labels[:10])
    with pytest.raises(ValueError, match="z must have shape"):
        plot_latents(z[:, :1])


def test_plot_density_2d(device, tmp_path):
    data = torch.randn(20, 2, device=device, dtype=torch.float64)
    normal = dist.MultivariateNormal(data.new_zeros(2), torch.eye(2, device=device).double())
    fig = plot_density_2d(normal, data=data, bounds=((-2, 2), (-3, 3)), grid=41)
    assert len(fig.axes) == 2  # the heatmap and its colorbar
    image = np.asarray(fig.axes[0].images[0].get_array())
    assert image.shape == (41, 41)
    assert image[20, 20] == pytest.approx(1 / (2 * math.pi))  # the origin is the centre
    # Rows run along y: at x = 0, y = 3 (top row) the density is N(0; 1) N(3; 1).
    assert image[40, 20] == pytest.approx(math.exp(-4.5) / (2 * math.pi))
    assert len(fig.axes[0].collections) == 1  # the sample scatter
    fig.savefig(tmp_path / "density.png")
    log_fig = plot_density_2d(lambda p: -(p**2).sum(-1), grid=5, log=True, device=device)
    assert np.asarray(log_fig.axes[0].images[0].get_array())[2, 2] == 0.0
    with pytest.raises(ValueError, match=r"log_prob_fn must map points of shape \(M, 2\)"):
        plot_density_2d(lambda p: p, grid=5)
    with pytest.raises(ValueError, match="bounds must be"):
        plot_density_2d(normal, bounds=((1, -1), (0, 1)))
    with pytest.raises(ValueError, match=r"data must have shape \(N, 2\)"):
        plot_density_2d(normal, data=data[:, :1])


def test_psis_khat_is_chunked_with_bounded_memory():
    # max_elements=7 forces chunks of at most 7 particle x datapoint pairs; the exact
    # posterior guide still gives constant weights (k-hat = -inf) for every point.
    import pyro
    import pyro.distributions as dist

    from pyro_genmodels.diagnostics import psis_khat

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))

    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    khat = psis_khat(model, guide, x, num_samples=40, max_elements=7)
    assert khat.shape == (5,) and bool((khat == -math.inf).all())
