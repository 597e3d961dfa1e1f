"""The conditional variational autoencoder (CVAE).

Generative model ``z ~ p(z | c)``, ``x | z, c ~ p_theta(x | z, c)`` for a
condition ``c``: a class label (one-hot encoded inside) or any context vector.
Guide ``q_phi(z | x, c)``. The prior is ``N(0, I)`` by default or a learned
Gaussian ``p_psi(z | c)`` with ``conditional_prior=True``; the KL of the two
Gaussians is in closed form in ``cvae.loss()`` (``TraceMeanField_ELBO``).

References:
    Learning Structured Output Representation using Deep Conditional Generative
    Models. K. Sohn, H. Lee, X. Yan, 2015.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, pyro_method

from pyro_genmodels._checks import check_choice, check_hidden_dims, check_positive_int, check_real
from pyro_genmodels.models import _likelihoods as L
from pyro_genmodels.nn import MLP


class CVAE(L.KLChoice, L.LikelihoodSettings, PyroModule):
    """A CVAE: ``ELBO(x | c) = E_q(z|x,c)[log p(x|z,c)] - beta * KL(q(z|x,c) || p(z|c))``.

    Args:
        x_dim: size of a flat datapoint.
        z_dim: size of the latent code.
        num_classes: condition on labels ``y`` (long, ``(N,)``, values in
            ``[0, num_classes)``), one-hot encoded inside. Exactly one of
            ``num_classes`` and ``context_dim`` must be given.
        context_dim: condition on float context vectors ``y`` of shape ``(N, context_dim)``.
        hidden_dims: hidden layers of the MLPs (reversed for the decoder).
        likelihood: ``"bernoulli"``, ``"continuous_bernoulli"`` or ``"gaussian"``
            (as in :class:`~pyro_genmodels.models.VAE`).
        conditional_prior: ``False``: ``p(z | c) = N(0, I)``; ``True``: a learned
            ``N(loc(c), diag(scale(c)^2))`` (an MLP of the condition).
        beta: KL weight, as in :class:`~pyro_genmodels.models.VAE`.

    Sites ``"z"`` and ``"x"`` inside ``pyro.plate("data", N)``; ``model(x, y)`` and
    ``guide(x, y)`` take ``x`` ``(N, x_dim)`` and the condition ``y``.

    >>> import torch
    >>> cvae = CVAE(4, 2, num_classes=3, hidden_dims=(8,))
    >>> cvae.sample(torch.tensor([0, 2])).shape
    torch.Size([2, 4])
    >>> x, y = torch.tensor([[0.0, 1.0, 1.0, 0.0]]), torch.tensor([1])
    >>> loss = cvae.loss().loss(cvae.model, cvae.guide, x, y)  # the KL in closed form

    References:
        Learning Structured Output Representation using Deep Conditional
        Generative Models. K. Sohn, H. Lee, X. Yan, 2015.
    """

    #: ``model`` and ``guide`` draw the same sites at every call: ``fit`` may compile them
    static_structure = True

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        num_classes: int | None = None,
        context_dim: int | None = None,
        hidden_dims: Sequence[int] = (256, 256),
        likelihood: str = "bernoulli",
        conditional_prior: bool = False,
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        if (num_classes is None) == (context_dim is None):
            raise ValueError(
                "exactly one of num_classes (labels) and context_dim (context vectors) must be "
                f"given, got num_classes={num_classes!r}, context_dim={context_dim!r}"
            )
        self.x_dim = check_positive_int("x_dim", x_dim)
        self.z_dim = check_positive_int("z_dim", z_dim)
        self.num_classes = check_positive_int("num_classes", num_classes, allow_none=True)
        self.context_dim = check_positive_int("context_dim", context_dim, allow_none=True)
        self.c_dim: int = self.num_classes or self.context_dim or 0  # exactly one is set
        self.likelihood = check_choice("likelihood", likelihood, L.LIKELIHOODS)
        self.beta = check_real("beta", beta, minimum=0.0)
        hidden = check_hidden_dims(hidden_dims)
        self.encoder, self.decoder = L.mlp_pair(
            x_dim, z_dim, hidden, likelihood, x_dim + self.c_dim, z_dim + self.c_dim
        )
        self.conditional_prior = bool(conditional_prior)
        if self.conditional_prior:
            self.prior_net = L.GaussianEncoder(MLP(self.c_dim, hidden, 2 * z_dim))

    def context(self, y: torch.Tensor, n: int | None = None) -> torch.Tensor:
        """The condition as floats ``(N, c_dim)``: one-hot labels or the checked context.

        ``y``: long ``(N,)`` labels or float ``(N, context_dim)``; ``n`` the expected ``N``.
        """
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y)}")
        if n is not None and (y.dim() == 0 or y.shape[0] != n):
            raise ValueError(f"y must have length N={n} (that of x), got shape {tuple(y.shape)}")
        like = L.first_param(self)
        if self.num_classes is not None:
            if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
                raise TypeError(f"y must hold integer class labels (long), got dtype {y.dtype}")
            if y.dim() != 1:
                raise ValueError(f"y must have shape (N,) of labels, got {tuple(y.shape)}")
            if y.numel() and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(
                    f"y must hold labels in [0, {self.num_classes}), got values in "
                    f"[{y.min().item()}, {y.max().item()}]"
                )
            return L.one_hot(y.long(), self.num_classes, like)
        if not y.is_floating_point() or y.dim() != 2 or y.shape[1] != self.context_dim:
            raise ValueError(
                f"y must be a float context of shape (N, {self.context_dim}), "
                f"got {tuple(y.shape)} of dtype {y.dtype}"
            )
        if not torch.isfinite(y).all():
            raise ValueError("y must be finite, found nan or inf values")
        return y.to(dtype=like.dtype)

    def prior(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``p(z | c) = N(loc, scale^2)``: context ``c`` ``(N, c_dim)`` -> ``(N, z_dim)`` each."""
        if self.conditional_prior:
            return self.prior_net(c)
        loc = c.new_zeros(c.shape[0], self.z_dim)
        return loc, torch.ones_like(loc)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q(z | x, y) = N(loc, scale^2)``: ``x`` ``(N, x_dim)`` -> ``(N, z_dim)`` each."""
        x = L.check_x(x, self.x_dim, self.likelihood)
        return self.encoder(L.cat(x, self.context(y, x.shape[0])))

    def distribution_x(self, z: torch.Tensor, c: torch.Tensor) -> dist.TorchDistribution:
        """``p(x | z, c)`` for ``z`` ``(*, z_dim)`` and a context ``c`` ``(N, c_dim)``."""
        return L.observation(self.likelihood, self.decoder(L.cat(z, c)))

    def sample(self, y: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """Generates one ``x`` per condition: ``z ~ p(z | y)``, then ``E[x | z, y]``
        (``mean=True``) or ``x ~ p(x | z, y)``; ``y`` ``(N,)`` or ``(N, context_dim)`` ->
        ``(N, x_dim)``."""
        c = self.context(y)
        loc, scale = self.prior(c)
        d = self.distribution_x(dist.Normal(loc, scale).sample(), c)
        return d.mean if mean else d.sample()

    def trace_constants(self) -> tuple[float]:
        """``(beta,)``: what a compiled ELBO's trace holds as a constant (a change of
        ``beta``, e.g. by :class:`~pyro_genmodels.training.KLAnnealing`, makes ``fit``'s
        compiled loss trace anew)."""
        return (float(self.beta),)

    @pyro_method
    def model(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """``p(x, z | y) = p(z | y) p(x | z, y)``; ``x`` ``(N, x_dim)``, ``y`` as in ``context``."""
        x = L.check_x(x, self.x_dim, self.likelihood)
        c = self.context(y, x.shape[0])
        loc, scale = self.prior(c)
        with pyro.plate("data", x.shape[0]):
            with L.kl_weight(self.beta, x):
                z = pyro.sample("z", dist.Normal(loc, scale).to_event(1))
            pyro.sample("x", self.distribution_x(z, c), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """``q(z | x, y) = N(loc(x, y), diag(scale(x, y)^2))``."""
        loc, scale = self.encode(x, y)
        with pyro.plate("data", x.shape[0]):
            with L.kl_weight(self.beta, x):
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))
