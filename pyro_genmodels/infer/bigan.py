"""ALI/BiGAN as a Pyro loss: a discriminator on joint (data, latent) pairs.

With a model ``p(z) p(x | z)`` and a guide (encoder) ``q(z | x)``, the
discriminator compares the *encoder pairs* ``(x, z ~ q(z | x))``, ``x`` the
data, with the *generator pairs* ``(x ~ p(x | z), z ~ p(z))``. At the optimum
the two joints agree, so the encoder inverts the generator and can be used
for inference like a VAE's guide.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import nn

from pyro_genmodels.infer.adversarial import GANLoss, describe


class BiGANLoss(GANLoss):
    """ALI/BiGAN: ``min_{G,E} max_D E_{P(x)q(z|x)} log σ(D(x,z)) + E_{p(z)p(x|z)} log(1-σ(D))``.

    Sites: the model's observed sites (the data) and the guide's sample sites
    (the latents). The discriminator receives a dict ``{site: value}`` of all
    of them (e.g. :class:`~pyro_genmodels.infer.ConcatSites`). Encoder pairs
    take the data and the guide's draws (which must be reparameterizable: the
    encoder learns through them); generator pairs take the model's prior
    draws and ``rsample`` of its observed sites. The players (generator and
    encoder) minimize ``Σ_B [softplus(D(x, E(x))) + softplus(-D(G(z), z))]``
    (``"non-saturating"``: labels swapped, as in the BiGAN paper) or
    ``-L_D`` (``"minimax"``).

    Args:
        discriminator: ``nn.Module`` on the dict of sites ``(B, ...)`` → ``(B,)``/``(B, 1)``.
        generator_loss: ``"non-saturating"`` or ``"minimax"``.
        n_critic, critic_optim, name: see :mod:`pyro_genmodels.infer.adversarial`.

    >>> import pyro, pyro.distributions as dist
    >>> from pyro_genmodels.infer import ConcatSites
    >>> G, E = torch.nn.Linear(1, 2), torch.nn.Linear(2, 1)
    >>> def model(x):
    ...     pyro.module("generator", G)
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(x.new_zeros(1), 1.0).to_event(1))
    ...         pyro.sample("x", dist.Delta(G(z), event_dim=1), obs=x)
    >>> def guide(x):
    ...     pyro.module("encoder", E)
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Normal(E(x), 0.1).to_event(1))
    >>> loss = BiGANLoss(ConcatSites(torch.nn.Linear(3, 1), ["x", "z"]))
    >>> len(loss.loss(model, guide, torch.randn(4, 2)))
    2

    References:
        Donahue, Krähenbühl, Darrell, "Adversarial Feature Learning", ICLR 2017.
        Dumoulin et al., "Adversarially Learned Inference", ICLR 2017.
    """

    loss_parts = ("discriminator loss", "generator and encoder loss")

    generator_uses_real = True

    def __init__(
        self,
        discriminator: nn.Module,
        generator_loss: str = "non-saturating",
        *,
        n_critic: int = 1,
        critic_optim: pyro.optim.PyroOptim | None = None,
        name: str = "discriminator",
    ) -> None:
        super().__init__(
            discriminator,
            "js",
            generator_loss,
            n_critic=n_critic,
            critic_optim=critic_optim,
            name=name,
        )

    def generator_loss(self, out_real: torch.Tensor | None, out_fake: torch.Tensor) -> torch.Tensor:
        if out_real is None:  # the encoder is trained through the real pairs' scores
            raise ValueError("BiGANLoss.generator_loss needs out_real, the scores of (x, E(x))")
        if self.generator_kind == "minimax":
            return -self.critic_loss(out_real, out_fake)
        return F.softplus(out_real).sum() + F.softplus(-out_fake).sum()

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """``(model_trace, guide_trace)``, run independently: the model draws from its prior."""
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        return poutine.trace(model).get_trace(*args, **kwargs), guide_trace

    def _site_values(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        model_trace, guide_trace = self._get_trace(model, guide, args, kwargs)
        real, fake, batch = {}, {}, None
        for name, site in model_trace.nodes.items():
            if site["type"] == "sample" and site["is_observed"]:
                if not site["fn"].has_rsample:
                    raise ValueError(
                        f"BiGANLoss needs reparameterizable observed sites; site {name!r} has "
                        f"{describe(site['fn'])}, which has no rsample"
                    )
                real[name], fake[name] = site["value"].detach(), site["fn"].rsample()
                batch = site["fn"].batch_shape if batch is None else batch
        if not real:
            raise ValueError(
                "BiGANLoss needs a model with at least one observed site (the data); "
                "this model has none"
            )
        latents = [
            n
            for n, s in guide_trace.nodes.items()
            if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)
        ]
        if not latents:
            raise ValueError("BiGANLoss needs a guide with at least one sample site (the latents)")
        for name in latents:
            site = guide_trace.nodes[name]
            if not site["fn"].has_rsample:
                raise ValueError(
                    f"BiGANLoss needs a reparameterized guide; guide site {name!r} has "
                    f"{describe(site['fn'])}, which has no rsample"
                )
            if name not in model_trace.nodes:
                raise ValueError(f"guide site {name!r} is not a sample site of the model")
            real[name], fake[name] = site["value"], model_trace.nodes[name]["value"].detach()
        return real, fake, batch
