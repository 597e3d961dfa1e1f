"""Wasserstein GANs as Pyro losses: weight clipping (WGAN) and gradient penalty (WGAN-GP).

Both estimate ``W_1(P, Q) = sup_{‖D‖_L ≤ 1} E_P[D(x)] - E_Q[D(x)]`` with a
critic ``D`` and differ in how they keep ``D`` Lipschitz. The update schedule
(``n_critic`` critic updates per generator update, simultaneous or
alternating) is that of :mod:`pyro_genmodels.infer.adversarial`.
"""

from __future__ import annotations

import pyro
import torch
from torch import nn

from pyro_genmodels._checks import check_positive_float, check_real
from pyro_genmodels.infer.adversarial import AdversarialLoss, Values


class _Wasserstein(AdversarialLoss):
    loss_parts = ("critic loss", "generator loss")

    def critic_loss(self, out_real: torch.Tensor, out_fake: torch.Tensor) -> torch.Tensor:
        return out_fake.sum() - out_real.sum()

    def generator_loss(self, out_real: torch.Tensor | None, out_fake: torch.Tensor) -> torch.Tensor:
        return -out_fake.sum()


class WGANLoss(_Wasserstein):
    """WGAN with weight clipping: ``L_D = Σ_B [D(G(z)) - D(x)]``, ``L_G = -Σ_B D(G(z))``,
    every critic weight clipped to ``[-c, c]`` after each critic update.

    Clipping must follow every update, so the critic is updated inside the
    loss: ``critic_optim`` is required (Arjovsky et al. use RMSprop, lr 5e-5,
    ``n_critic=5``, ``c=0.01``; pass the same Pyro optimizer as SVI's to share
    per-parameter learning rates). The weights are also clipped when the loss
    is evaluated, so the critic seen by the objectives is always in range.

    Args:
        critic: ``nn.Module``, values ``(B, ...)`` → ``(B,)`` or ``(B, 1)``.
        critic_optim: the Pyro optimizer of the critic's updates.
        clip_value: ``c > 0``.
        n_critic: critic updates per generator update.
        name: param store prefix of the critic.

    >>> import pyro
    >>> loss = WGANLoss(torch.nn.Linear(2, 1), pyro.optim.RMSprop({"lr": 5e-5}), clip_value=0.01)
    >>> float(loss.critic_loss(torch.ones(3), torch.zeros(3)))
    -3.0

    Reference: Arjovsky, Chintala, Bottou, "Wasserstein Generative Adversarial
    Networks", ICML 2017.
    """

    def __init__(
        self,
        critic: nn.Module,
        critic_optim: pyro.optim.PyroOptim,
        clip_value: float = 0.01,
        *,
        n_critic: int = 5,
        name: str = "discriminator",
    ) -> None:
        if critic_optim is None:
            raise ValueError(
                "WGANLoss needs critic_optim: the weights are clipped after every critic "
                "update, so the loss makes those updates itself; got None"
            )
        super().__init__(critic, n_critic=n_critic, critic_optim=critic_optim, name=name)
        self.clip_value = check_positive_float("clip_value", clip_value)

    def after_critic_update(self) -> None:
        with torch.no_grad():
            for p in self.discriminator.parameters():
                p.clamp_(-self.clip_value, self.clip_value)

    def _register(self, hidden: bool, like: torch.Tensor) -> list[torch.Tensor]:
        params = super()._register(hidden, like)
        self.after_critic_update()
        return params


class WGANGPLoss(_Wasserstein):
    """WGAN-GP: ``L_D = Σ_B [D(G(z)) - D(x) + λ (‖∇D(x̂)‖₂ - 1)²]``, ``L_G = -Σ_B D(G(z))``.

    ``x̂ = ε x + (1 - ε) G(z)`` with ``ε ~ U(0, 1)`` per datapoint (shared by all
    sites of a multi-site model); the gradient is taken with respect to every
    observed site's value and its norm over all of them.

    Args:
        critic: ``nn.Module``, values ``(B, ...)`` → ``(B,)`` or ``(B, 1)``.
        gp_weight: ``λ >= 0`` (10 in the paper).
        n_critic: critic updates per generator update (5 in the paper; > 1 needs
            ``critic_optim``).
        critic_optim, name: see :mod:`pyro_genmodels.infer.adversarial`.

    >>> critic = torch.nn.Linear(2, 1, bias=False).double()
    >>> with torch.no_grad(): _ = critic.weight.copy_(torch.tensor([[0.6, 0.8]]).double())
    >>> loss = WGANGPLoss(critic)
    >>> x, y = torch.randn(5, 2).double(), torch.randn(5, 2).double()
    >>> gp = loss.penalty({"x": x}, {"x": y}).detach()
    >>> round(gp.item(), 6)
    0.0

    Reference: Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville, "Improved
    Training of Wasserstein GANs", NeurIPS 2017.
    """

    def __init__(
        self,
        critic: nn.Module,
        gp_weight: float = 10.0,
        *,
        n_critic: int = 1,
        critic_optim: pyro.optim.PyroOptim | None = None,
        name: str = "discriminator",
    ) -> None:
        super().__init__(critic, n_critic=n_critic, critic_optim=critic_optim, name=name)
        self.gp_weight = check_real("gp_weight", gp_weight, minimum=0.0)

    def penalty(self, real: Values, fake: Values) -> torch.Tensor:
        """``λ Σ_B (‖∇_x̂ D(x̂)‖₂ - 1)²`` on random interpolates of ``real`` and ``fake``."""
        first = next(iter(real.values()))
        batch = first.shape[:1]
        eps = torch.rand(batch, dtype=first.dtype, device=first.device)
        mixed = {}
        for k, x in real.items():
            e = eps.reshape(batch + (1,) * (x.dim() - 1))
            mixed[k] = e * x + (1 - e) * fake[k]
        sq = self.input_grad_sq(mixed, batch)
        return self.gp_weight * ((sq.clamp_min(1e-12).sqrt() - 1) ** 2).sum()
