"""The variational autoencoder (and beta-VAE) as a Pyro model/guide pair.

Generative model ``z ~ N(0, I)``, ``x | z ~ p_theta(x | z)``; amortized guide
``q_phi(z | x) = N(loc(x), diag(scale(x)^2))``. Trained with ``vae.loss()``
(``pyro.infer.TraceMeanField_ELBO``: the KL term in closed form; ``Trace_ELBO``
when a flow makes it intractable) or any ELBO-style loss of Pyro or of
:mod:`pyro_genmodels.infer`, evaluated with importance-sampled ``log p(x)``.

References:
    Auto-Encoding Variational Bayes. D. P. Kingma, M. Welling, 2014.
    Stochastic Backpropagation and Approximate Inference in Deep Generative
    Models. D. J. Rezende, S. Mohamed, D. Wierstra, 2014.
    beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
    Framework. I. Higgins et al., 2017.
    Improved Variational Inference with Inverse Autoregressive Flow. D. P. Kingma,
    T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling, 2016.
    Variational Lossy Autoencoder. X. Chen et al., 2017 (flow priors).
    The continuous Bernoulli: fixing a pervasive error in variational
    autoencoders. G. Loaiza-Ganem, J. P. Cunningham, 2019.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.nn import PyroModule, pyro_method
from torch import nn

from pyro_genmodels import flows
from pyro_genmodels._checks import check_choice, check_hidden_dims, check_positive_int, check_real
from pyro_genmodels._dtypes import to_dtype
from pyro_genmodels.models import _likelihoods as L


class VAE(L.KLChoice, L.LikelihoodSettings, PyroModule):
    """A VAE: ``ELBO(x) = E_q(z|x)[log p(x|z)] - beta * KL(q(z|x) || N(0, I))``.

    Args:
        x_dim: size of a flat datapoint.
        z_dim: size of the latent code ``z``.
        hidden_dims: hidden layers of the MLP encoder (reversed for the decoder);
            unused when ``encoder="conv"``.
        likelihood: ``"bernoulli"`` (``x`` in {0, 1}), ``"continuous_bernoulli"``
            (``x`` in [0, 1]) or ``"gaussian"``: ``Normal(loc, scale)`` where the
            decoder outputs both ``loc`` and a per-pixel ``scale = softplus(raw) + 1e-5``
            (heteroscedastic; the floor bounds the density).
        encoder: ``"mlp"`` or ``"conv"`` (:class:`~pyro_genmodels.nn.ConvEncoder` and
            :class:`~pyro_genmodels.nn.ConvDecoder`; needs ``image_shape``).
        image_shape: ``(C, H, W)`` with ``C*H*W == x_dim``, for ``encoder="conv"``.
        guide_flow: a flow posterior ``q(z|x) = f_x(N(loc(x), scale(x)^2))``: a builder
            of :data:`pyro_genmodels.flows.RECORDS` that samples in one network pass per
            layer (``"iaf"``, ``"planar"``, ``"radial"``, ``"sylvester"``, ``"realnvp"``,
            ``"nice"``, ``"spline"``, ``"glow"``); the
            flow is amortized: conditioned on the encoder's output ``(loc, scale)``.
        guide_flow_layers: number of layers of the guide's flow (and of the prior's).
        prior_flow: a flow prior ``p(z) = f(N(0, I))``, ``"maf"`` (its density is one
            network pass, as scoring guide samples needs) or another invertible builder.
        flow_hidden_dims: hidden sizes of the flows' networks (default ``(4 z_dim,)*2``).
        beta: the KL weight, a plain mutable attribute (see
            :class:`~pyro_genmodels.training.KLAnnealing`). It is applied as
            ``poutine.scale(scale=beta)`` around the ``"z"`` site of both model and
            guide, so :meth:`loss` (and ``Trace_ELBO``) optimizes
            ``E[log p(x|z)] - beta * KL``; importance-weighted evaluation ignores it.

    Sites: ``"z"`` (latent, event dim 1) and ``"x"`` (observed, event dim 1) inside
    ``pyro.plate("data", N)``. ``model(x)`` and ``guide(x)`` take ``x`` of shape
    ``(N, x_dim)`` with ``N >= 1`` (a ``ValueError`` for an empty batch; ``encode``
    accepts one). Floating ``x`` of another dtype (float64 arrays from NumPy or
    scikit-learn, float16) is converted to the parameters' dtype.

    >>> import torch, pyro
    >>> vae = VAE(4, 2, hidden_dims=(8,))
    >>> x = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    >>> loss = vae.loss().loss(vae.model, vae.guide, x)  # the KL in closed form
    >>> vae.sample(3).shape
    torch.Size([3, 4])

    References:
        Auto-Encoding Variational Bayes. D. P. Kingma, M. Welling, 2014.
        beta-VAE. I. Higgins et al., 2017.
    """

    #: ``model`` and ``guide`` draw the same sites at every call: ``fit`` may compile them
    static_structure = True

    encoder: nn.Module
    decoder: nn.Module

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        likelihood: str = "bernoulli",
        encoder: str = "mlp",
        image_shape: Sequence[int] | None = None,
        beta: float = 1.0,
        guide_flow: str | None = None,
        guide_flow_layers: int = 2,
        prior_flow: str | None = None,
        flow_hidden_dims: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.x_dim = check_positive_int("x_dim", x_dim)
        self.z_dim = check_positive_int("z_dim", z_dim)
        self.likelihood = check_choice("likelihood", likelihood, L.LIKELIHOODS)
        self.beta = check_real("beta", beta, minimum=0.0)
        hidden = check_hidden_dims(hidden_dims)
        if encoder == "mlp":
            self.image_shape = None if image_shape is None else tuple(image_shape)
            self.encoder, self.decoder = L.mlp_pair(x_dim, z_dim, hidden, likelihood, x_dim, z_dim)
        elif encoder == "conv":
            self.image_shape = L.check_image_shape(image_shape, x_dim)
            self.encoder, self.decoder = L.conv_pair(z_dim, self.image_shape, likelihood)
        else:
            raise ValueError(f"encoder must be one of {L.ENCODERS}, got {encoder!r}")
        self.encoder_type = encoder
        self.guide_flow, self.prior_flow = L.latent_flows(
            z_dim, guide_flow, guide_flow_layers, prior_flow, flow_hidden_dims
        )
        self.guide_flow_name, self.prior_flow_name = guide_flow, prior_flow

    @property
    def analytic_kl(self) -> bool:
        """Whether the KL has a closed form: no guide flow and no prior flow."""
        return self.guide_flow is None and self.prior_flow is None

    def prior(self, like: torch.Tensor) -> dist.TorchDistribution:
        """``p(z)``, batch shape ``like.shape[:-1]``: ``N(0, I)`` or the flow prior."""
        base = dist.Normal(like.new_zeros(*like.shape[:-1], self.z_dim), 1.0).to_event(1)
        if self.prior_flow is None:
            return base
        return dist.TransformedDistribution(base, [flows.clear_cache(self.prior_flow)])

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """``q(z | x)`` for ``x`` ``(N, x_dim)``: batch ``(N,)``, event ``(z_dim,)``."""
        loc, scale = self.encode(x)
        base = dist.Normal(loc, scale).to_event(1)
        if self.guide_flow is None:
            return base
        guide_flow = cast(ConditionalTransformModule, self.guide_flow)  # built with a context
        flow = guide_flow.condition(torch.cat([loc, scale], dim=-1))
        return dist.TransformedDistribution(base, [flow])

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` checked, in the parameters' dtype (float64/float16 data are converted)."""
        return to_dtype(L.check_x(x, self.x_dim, self.likelihood), L.first_param(self).dtype)

    def _check_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` checked for ``model``/``guide``: ``pyro.plate`` needs at least one row."""
        x = self._check_x(x)
        if x.shape[0] == 0:
            raise ValueError(
                "x must hold at least one datapoint for model/guide (pyro.plate('data', N) "
                f"needs N >= 1), got shape {tuple(x.shape)}; encode() and distribution_x() "
                "accept empty batches"
            )
        return x

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q(z | x) = N(loc, scale^2)``: ``x`` ``(N, x_dim)`` -> ``loc, scale`` ``(N, z_dim)``."""
        return self.encoder(self._check_x(x))

    def distribution_x(self, z: torch.Tensor) -> dist.TorchDistribution:
        """``p(x | z)`` for ``z`` of shape ``(*, z_dim)``: batch shape ``*``, event ``(x_dim,)``."""
        if z.shape[-1:] != (self.z_dim,):
            raise ValueError(f"z must have shape (*, {self.z_dim}), got {tuple(z.shape)}")
        return L.observation(self.likelihood, self.decoder(z))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``E[x | z]``, the likelihood's mean: ``z`` ``(*, z_dim)`` -> ``(*, x_dim)``."""
        return self.distribution_x(z).mean

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """``E[x | z = loc(x)]``: decodes the posterior mean; ``(N, x_dim)`` -> ``(N, x_dim)``."""
        return self.decode(self.encode(x)[0])

    def sample(self, n: int, mean: bool = True) -> torch.Tensor:
        """``n`` draws ``z ~ N(0, I)`` decoded to ``E[x | z]`` (``mean=True``) or to a
        draw ``x ~ p(x | z)`` (``mean=False``); returns ``(n, x_dim)``."""
        n = check_positive_int("n", n)
        like = L.first_param(self)
        z = self.prior(like.new_zeros(n, 1)).sample()
        d = self.distribution_x(z)
        return d.mean if mean else d.sample()

    def trace_constants(self) -> tuple[float]:
        """``(beta,)``: what a compiled ELBO's trace holds as a constant (a change of
        ``beta``, e.g. by :class:`~pyro_genmodels.training.KLAnnealing`, makes ``fit``'s
        compiled loss trace anew)."""
        return (float(self.beta),)

    @pyro_method
    def model(self, x: torch.Tensor) -> None:
        """``p(x, z) = N(z; 0, I) p(x | z)``; ``x`` of shape ``(N, x_dim)``."""
        x = self._check_rows(x)
        with pyro.plate("data", x.shape[0]):
            with L.kl_weight(self.beta, x):
                z = pyro.sample("z", self.prior(x))
            pyro.sample("x", self.distribution_x(z), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor) -> None:
        """``q(z | x) = N(loc(x), diag(scale(x)^2))`` (through the guide flow, if any);
        ``x`` of shape ``(N, x_dim)``."""
        x = self._check_rows(x)
        q = self.posterior(x)
        with pyro.plate("data", x.shape[0]):
            with L.kl_weight(self.beta, x):
                pyro.sample("z", q)
