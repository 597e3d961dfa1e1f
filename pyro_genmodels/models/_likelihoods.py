"""Shared pieces of the VAE family: likelihoods, Gaussian encoders, input checks.

Every model of :mod:`pyro_genmodels.models` builds its networks and its
observation distribution ``p(x | h)`` here, so that a likelihood or a check is
written once. Nothing in this module is public API.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn

from pyro_genmodels import flows
from pyro_genmodels._checks import (
    check_bool,
    check_in_range,
    check_positive_int,
    check_real,
    validating,
)
from pyro_genmodels._checks import check_image_shape as check_image_shape_of
from pyro_genmodels.data.validation import check_data
from pyro_genmodels.nn import MLP, ConvDecoder, ConvEncoder

LIKELIHOODS = ("bernoulli", "gaussian", "continuous_bernoulli")
ENCODERS = ("mlp", "conv")
MIN_SCALE = 1e-5  # floor of every predicted scale, keeps Normal(loc, scale) valid


def check_x(x: object, x_dim: int, likelihood: str, name: str = "x") -> torch.Tensor:
    """Checks a batch of flat data ``(N, x_dim)`` against the support of the likelihood.

    Kind and shape are always checked; the values (finite, binary, in ``[0, 1]``) only while
    Pyro's validation is enabled, since each check reads every value (a host sync on CUDA).
    """
    values = validating()
    t = check_data(x, name, event_dim=x_dim, binary=likelihood == "bernoulli", values=values)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {t.dtype}")
    if values and likelihood == "continuous_bernoulli":
        check_in_range(t, name, 0, 1, " for likelihood='continuous_bernoulli'")
    return t


def check_image_shape(image_shape: object, x_dim: int) -> tuple[int, int, int]:
    """The ``(C, H, W)`` of a conv encoder, whose product must be ``x_dim``."""
    if image_shape is None:
        raise ValueError("encoder='conv' needs image_shape=(C, H, W), got None")
    c, h, w = check_image_shape_of(image_shape, size=x_dim)
    return c, h, w


def num_params(likelihood: str) -> int:
    """Decoder outputs per pixel: logits (1) or a Gaussian's loc and scale (2)."""
    return 2 if likelihood == "gaussian" else 1


def observation(likelihood: str, out: torch.Tensor) -> dist.TorchDistribution:
    """``p(x | h)`` from decoder outputs ``out`` of shape ``(*, k * x_dim)``; event dim 1.

    bernoulli: ``Bernoulli(logits)``; continuous_bernoulli: ``ContinuousBernoulli(logits)``
    (Loaiza-Ganem & Cunningham 2019); gaussian: ``Normal(loc, softplus(raw) + 1e-5)``
    with a per-pixel scale output by the decoder.
    """
    if likelihood == "bernoulli":
        return dist.Bernoulli(logits=out).to_event(1)
    if likelihood == "continuous_bernoulli":
        return dist.ContinuousBernoulli(logits=out).to_event(1)
    loc, raw = out.chunk(2, dim=-1)
    return dist.Normal(loc, F.softplus(raw) + MIN_SCALE).to_event(1)


class LikelihoodSettings:
    """Mixin of the VAE family: the model's declared settings (its observation model), which
    a resumed :func:`pyro_genmodels.fit` must keep; ``beta`` is none of them (``KLAnnealing``
    changes it during training)."""

    likelihood: str

    def settings(self) -> dict[str, str]:
        found = {"likelihood": self.likelihood}
        encoder = getattr(self, "encoder_type", None)
        if isinstance(encoder, str):
            found["encoder"] = encoder
        return found


class KLChoice:
    """Mixin of the VAE family: :meth:`loss`, the ELBO that computes ``KL(q(z|x) || p(z))``
    in closed form wherever the model's guide and prior allow it
    (:attr:`analytic_kl`)."""

    @property
    def analytic_kl(self) -> bool:
        """Whether ``KL(q(z | x) || p(z))`` has a closed form: both Gaussian, no flow."""
        return True

    def loss(
        self, num_particles: int = 1, vectorize_particles: bool = False
    ) -> pyro.infer.Trace_ELBO:
        """The ELBO to train with: ``E_q[log p(x|z)] - beta * KL(q(z|x) || p(z))``.

        ``pyro.infer.TraceMeanField_ELBO`` (the KL of the two diagonal Gaussians
        ``q = N(m, s^2)``, ``p = N(mu, sigma^2)`` in closed form,
        ``sum_j log(sigma_j / s_j) + (s_j^2 + (m_j - mu_j)^2) / (2 sigma_j^2) - 1/2``;
        only the reconstruction term is sampled) when
        :attr:`analytic_kl`, else ``pyro.infer.Trace_ELBO`` (a flow in the guide or the
        prior has no closed-form KL: ``log q(z|x) - log p(z)`` at the sampled ``z``).
        Both have the same expectation; the closed form removes the KL's sampling noise
        from the gradient. ``fit`` compiles either (``static_structure``).

        Args:
            num_particles: draws of ``z`` per datapoint, averaged.
            vectorize_particles: draw the particles in one vectorized pass.

        >>> from pyro_genmodels.models import VAE
        >>> type(VAE(4, 2, hidden_dims=(8,)).loss()).__name__
        'TraceMeanField_ELBO'
        >>> type(VAE(4, 2, hidden_dims=(8,), guide_flow="iaf").loss()).__name__
        'Trace_ELBO'

        References:
            Auto-Encoding Variational Bayes. D. P. Kingma, M. Welling, 2014 (appendix B:
            the Gaussian KL in closed form).
        """
        options = {
            "num_particles": check_positive_int("num_particles", num_particles),
            "vectorize_particles": check_bool("vectorize_particles", vectorize_particles),
        }
        if self.analytic_kl:
            return pyro.infer.TraceMeanField_ELBO(**options)
        return pyro.infer.Trace_ELBO(**options)


class GaussianEncoder(nn.Module):
    """``x -> (loc, scale)`` of a diagonal Gaussian whose second half is a log-variance:
    ``scale = exp(log_var / 2) + 1e-5`` (Kingma & Welling 2014's parameterization, and
    pythae's and Pyro's VAE examples'). With ``softplus(raw) + 1e-5`` instead, the zoo's VAE
    on binarized digits scored 0.13 nats above pythae's VAE of the same network, weights and
    budget on all three seeds; with this one +0.01, level within the seeds' spread of 0.07
    (median of seeds 0–2, ``benchmarks/vae.py --parts pythae``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, log_var = self.net(h).chunk(2, dim=-1)
        return loc, torch.exp(0.5 * log_var) + MIN_SCALE


def mlp_pair(
    x_dim: int, z_dim: int, hidden_dims: tuple[int, ...], likelihood: str, enc_in: int, dec_in: int
) -> tuple[GaussianEncoder, MLP]:
    """An MLP encoder ``(*, enc_in) -> 2*z_dim`` and decoder ``(*, dec_in) -> k*x_dim``."""
    encoder = GaussianEncoder(MLP(enc_in, hidden_dims, 2 * z_dim))
    decoder = MLP(dec_in, hidden_dims[::-1], num_params(likelihood) * x_dim)
    return encoder, decoder


def conv_pair(
    z_dim: int, image_shape: tuple[int, int, int], likelihood: str
) -> tuple[GaussianEncoder, ConvDecoder]:
    encoder = GaussianEncoder(ConvEncoder(image_shape, 2 * z_dim))
    decoder = ConvDecoder(z_dim, image_shape, out_channels_factor=num_params(likelihood))
    return encoder, decoder


def cat(*tensors: torch.Tensor) -> torch.Tensor:
    """Concatenates on the last dim after broadcasting all leading (batch) dims."""
    batch = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return torch.cat([t.expand(*batch, t.shape[-1]) for t in tensors], dim=-1)


def one_hot(y: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """``(*,)`` long labels to ``(*, num_classes)`` floats with ``like``'s dtype and device."""
    return F.one_hot(y, num_classes).to(dtype=like.dtype, device=like.device)


def kl_weight(beta: float, like: torch.Tensor) -> AbstractContextManager:
    """``poutine.scale(scale=beta)`` for the KL sites, allowing ``beta == 0``.

    ``poutine.scale`` rejects a zero scale (it suggests ``poutine.mask``), but a
    mask would also hide the site from importance-weighted evaluation, which
    ignores scales and honours masks. A zero tensor scale keeps the site.
    """
    beta = check_real("beta", beta, minimum=0.0)
    if beta > 0:
        return poutine.scale(scale=beta)
    with pyro.validation_enabled(False):
        return poutine.scale(scale=like.new_zeros(()))


def first_param(module: nn.Module) -> torch.Tensor:
    """A parameter of ``module``: the source of device and dtype for new tensors."""
    return next(module.parameters())


# The guide samples z and scores its own sample: a conditional flow whose sampling
# is one network pass per layer. The prior scores the guide's z: a flow whose
# density of any point is one pass per layer. Both derive from the flow records.
GUIDE_FLOWS = flows.names(conditional=True, sample_passes="1")
PRIOR_FLOWS = flows.names(density_passes="1")


def latent_flows(
    z_dim: int,
    guide_flow: str | None,
    guide_flow_layers: int,
    prior_flow: str | None,
    hidden_dims: Sequence[int] | None,
) -> tuple[nn.Module | None, nn.Module | None]:
    """The VAE's guide flow (conditioned on ``(loc, scale)``, context ``2 z_dim``) and
    prior flow over ``z`` (``None`` where not asked for)."""
    guide_record = prior_record = None
    if guide_flow is not None:
        guide_record = flows.check_flow("guide_flow", guide_flow, GUIDE_FLOWS, optional=True)
    if prior_flow is not None:
        prior_record = flows.check_flow("prior_flow", prior_flow, PRIOR_FLOWS, optional=True)
    check_positive_int("guide_flow_layers", guide_flow_layers)
    hidden = [4 * z_dim, 4 * z_dim] if hidden_dims is None else list(hidden_dims)
    guide = None
    if guide_record is not None:
        guide = guide_record.build(
            z_dim, num_layers=guide_flow_layers, hidden_dims=hidden, context_dim=2 * z_dim
        )
    prior = None
    if prior_record is not None:
        prior = prior_record.build(z_dim, num_layers=guide_flow_layers, hidden_dims=hidden)
    return guide, prior
