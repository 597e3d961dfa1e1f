"""``VAE.loss()`` / ``CVAE.loss()``: the KL term in closed form where guide and prior allow."""

from __future__ import annotations

import warnings

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import Bernoulli, Normal

from pyro_genmodels.models import CVAE, VAE
from pyro_genmodels.training import fit


def _binary(n: int, d: int, device, dtype, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, d), 0.4, dtype=dtype), generator=g).to(device)


def _linear_vae(device, dtype) -> VAE:
    """A VAE without hidden layers: linear encoder and decoder (4 pixels, 2 latents)."""
    torch.manual_seed(0)
    return VAE(4, 2, hidden_dims=()).to(device, dtype)


def _closed_form_kl(loc, scale, prior_loc, prior_scale) -> torch.Tensor:
    """``sum_j log(sp/s) + (s^2 + (m - mp)^2) / (2 sp^2) - 1/2``, summed over all entries."""
    var, prior_var = scale**2, prior_scale**2
    return (
        (prior_scale / scale).log() + (var + (loc - prior_loc) ** 2) / (2 * prior_var) - 0.5
    ).sum()


def _guide_z(model, guide, seed, *args) -> torch.Tensor:
    pyro.set_rng_seed(seed)
    return poutine.trace(guide).get_trace(*args).nodes["z"]["value"]


def test_loss_picks_the_closed_form_kl_where_it_exists():
    assert isinstance(VAE(4, 2, hidden_dims=(8,)).loss(), TraceMeanField_ELBO)
    assert isinstance(CVAE(4, 2, num_classes=3, hidden_dims=(8,)).loss(), TraceMeanField_ELBO)
    cvae = CVAE(4, 2, num_classes=3, hidden_dims=(8,), conditional_prior=True)
    assert isinstance(cvae.loss(), TraceMeanField_ELBO)
    for flows in ({"guide_flow": "iaf"}, {"prior_flow": "maf"}):
        loss = VAE(4, 2, hidden_dims=(8,), **flows).loss()  # a flow: no closed-form KL
        assert type(loss) is Trace_ELBO
    loss = VAE(4, 2, hidden_dims=(8,)).loss(num_particles=3, vectorize_particles=True)
    assert (loss.num_particles, loss.vectorize_particles) == (3, True)


def test_loss_bad_input():
    vae = VAE(4, 2, hidden_dims=(8,))
    with pytest.raises(ValueError, match="num_particles must be"):
        vae.loss(num_particles=0)
    with pytest.raises(TypeError, match="num_particles"):
        vae.loss(num_particles=2.0)
    with pytest.raises(TypeError, match="vectorize_particles"):
        vae.loss(vectorize_particles="yes")


def test_loss_is_sampled_reconstruction_minus_closed_form_kl(device, dtype):
    """At a fixed seed the loss is ``-(log p(x | z_seed) - KL)`` with the Gaussian KL in
    closed form (to 1e-6 in float64), where ``Trace_ELBO`` has ``log q(z) - log p(z)``."""
    vae = _linear_vae(device, dtype)
    x = _binary(5, 4, device, dtype)
    z = _guide_z(vae.model, vae.guide, 7, x)
    loc, scale = vae.encode(x)
    kl = _closed_form_kl(loc, scale, torch.zeros_like(loc), torch.ones_like(scale))
    rec = Bernoulli(logits=vae.decoder(z)).log_prob(x).sum()
    pyro.set_rng_seed(7)  # the guide runs first: the same z
    loss = vae.loss().loss(vae.model, vae.guide, x)
    assert loss == pytest.approx(-(rec - kl).item(), rel=1e-6, abs=1e-6)
    mc_kl = (Normal(loc, scale).log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum()
    assert abs(mc_kl - kl) > 1e-3  # so Trace_ELBO's value at this seed differs
    pyro.set_rng_seed(7)
    mc_loss = Trace_ELBO().loss(vae.model, vae.guide, x)
    assert mc_loss == pytest.approx(-(rec - mc_kl).item(), rel=1e-6, abs=1e-6)


def test_loss_equals_the_closed_form_elbo_when_the_decoder_ignores_z(device, dtype):
    """A linear VAE whose decoder does not read ``z``: the whole ELBO is closed form,
    ``log Bernoulli(x; sigmoid(b)) - KL(N(m, s^2) || N(0, I))``, and the loss equals it at
    every seed; ``Trace_ELBO`` does not."""
    vae = _linear_vae(device, dtype)
    with torch.no_grad():
        vae.decoder[0].weight.zero_()
    x = _binary(5, 4, device, dtype)
    loc, scale = vae.encode(x)
    kl = _closed_form_kl(loc, scale, torch.zeros_like(loc), torch.ones_like(scale))
    rec = Bernoulli(logits=vae.decoder[0].bias).log_prob(x).sum()
    elbo = (rec - kl).item()
    mc = []
    for seed in range(3):
        pyro.set_rng_seed(seed)
        assert -vae.loss().loss(vae.model, vae.guide, x) == pytest.approx(elbo, rel=1e-6)
        pyro.set_rng_seed(seed)
        mc.append(-Trace_ELBO().loss(vae.model, vae.guide, x))
    assert max(abs(v - elbo) for v in mc) > 1e-3


@pytest.mark.parametrize("conditional_prior", [False, True])
def test_cvae_loss_has_the_closed_form_kl(conditional_prior, device, dtype):
    torch.manual_seed(0)
    cvae = CVAE(4, 2, num_classes=3, hidden_dims=(), conditional_prior=conditional_prior)
    cvae = cvae.to(device, dtype)
    x, y = _binary(5, 4, device, dtype), torch.tensor([0, 1, 2, 1, 0], device=device)
    z = _guide_z(cvae.model, cvae.guide, 3, x, y)
    loc, scale = cvae.encode(x, y)
    c = cvae.context(y)
    prior_loc, prior_scale = cvae.prior(c)
    kl = _closed_form_kl(loc, scale, prior_loc, prior_scale)
    rec = cvae.distribution_x(z, c).log_prob(x).sum()
    pyro.set_rng_seed(3)
    loss = cvae.loss().loss(cvae.model, cvae.guide, x, y)
    assert loss == pytest.approx(-(rec - kl).item(), rel=1e-6, abs=1e-6)


def _gradients(vae: VAE, loss, x: torch.Tensor, draws: int) -> torch.Tensor:
    """``(draws, P)``: the gradient of ``loss`` with respect to every parameter, per draw."""
    rows = []
    for _ in range(draws):
        vae.zero_grad()
        loss.loss_and_grads(vae.model, vae.guide, x)
        rows.append(torch.cat([p.grad.flatten() for p in vae.parameters()]))
    vae.zero_grad()
    return torch.stack(rows)


def test_closed_form_kl_has_the_same_mean_gradient_and_less_variance(device, dtype):
    """Over 2000 draws at fixed parameters (seeded): both estimators' mean gradients agree
    within 5 standard errors per coordinate (a failure rate below 1e-4 over the 46
    coordinates, normal approximation), and the total variance of the closed-form KL's
    gradient is below that of ``Trace_ELBO``'s."""
    vae = _linear_vae(device, dtype)
    x = _binary(6, 4, device, dtype)
    m = 2000
    pyro.set_rng_seed(11)
    analytic = _gradients(vae, vae.loss(), x, m)
    pyro.set_rng_seed(12)
    sampled = _gradients(vae, Trace_ELBO(), x, m)
    se = ((analytic.var(0) + sampled.var(0)) / m).sqrt()
    assert ((analytic.mean(0) - sampled.mean(0)).abs() <= 5 * se + 1e-12).all()
    ratio = analytic.var(0).sum() / sampled.var(0).sum()
    assert ratio < 0.8, f"variance ratio {ratio:.3f}"


def test_fit_compiles_the_mean_field_elbo_once_per_batch_shape():
    """``fit`` compiles ``vae.loss()`` by default (the VAE declares ``static_structure``)
    without a fallback warning, tracing once per batch shape: the decoder's Python runs
    as often in a 4-epoch run as in a 1-epoch run (a retrace per step would add 3 epochs
    of calls)."""
    x = _binary(20, 6, "cpu", torch.float32)
    calls = []
    for epochs in (1, 4):
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = VAE(6, 2, hidden_dims=(8,))
        count = [0]
        vae.decoder.register_forward_pre_hook(
            lambda *_, count=count: count.__setitem__(0, count[0] + 1)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            history = fit(vae.model, vae.guide, x, loss=vae.loss(), epochs=epochs,
                          batch_size=8, progress=False)  # fmt: skip
        assert history["loss"].notna().all()
        calls.append(count[0])
    assert calls[0] == calls[1] > 0


def test_zoo_trains_the_vae_family_with_its_loss():
    """The zoo's (and so the CLI's) VAE entries train with ``loss()``: the closed-form KL
    for the Gaussian VAEs, ``Trace_ELBO`` for the IAF posterior, IWAE's own bound; the
    Gaussian VAEs with Adam's ``eps=1e-4``."""
    from pyro_genmodels import zoo
    from pyro_genmodels.data import load
    from pyro_genmodels.infer import IWAELoss

    data = load("digits", binarize=True)
    expected = {
        "vae": TraceMeanField_ELBO,
        "vae-conv": TraceMeanField_ELBO,
        "cvae": TraceMeanField_ELBO,
        "vae-iaf": Trace_ELBO,
        "iwae": IWAELoss,
    }
    for name, cls in expected.items():
        assert type(zoo.build(name, data, z_dim=2, hidden=8).loss) is cls, name
    for name in ("vae", "vae-conv", "cvae"):  # Adam's eps for a loss summed over the batch
        assert zoo.build(name, data, z_dim=2, hidden=8).optim_args == {"eps": 1e-4}


def test_encoder_predicts_a_log_variance():
    """``scale = exp(log_var / 2) + 1e-5`` from the encoder net's second half (the
    parameterization of Kingma & Welling and pythae: the two VAEs are the same model)."""
    import torch

    from pyro_genmodels.models import VAE

    torch.manual_seed(0)
    vae = VAE(6, 3, hidden_dims=(8,))
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    loc, scale = vae.encode(x)
    raw_loc, log_var = vae.encoder.net(x).chunk(2, dim=-1)
    assert torch.equal(loc, raw_loc)
    assert torch.allclose(scale, torch.exp(0.5 * log_var) + 1e-5, rtol=0, atol=1e-7)
