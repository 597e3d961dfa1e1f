"""Adversarial training as Pyro losses: GAN (minimax, non-saturating), f-GAN, least squares.

The contract. The *observed* sites of the model are the data; the same site's
distribution, sampled with ``rsample``, gives the generator's samples, so
``Delta(G(z))``, ``Normal(G(z), s)`` or any reparameterizable implicit model
works. The discriminator sees the observed values: the tensor itself when the
model has one observed site, else a dict ``{site name: value}`` (use
:class:`ConcatSites` for an MLP over several sites; a label passed as a model
argument reaches it when the model observes it at a ``Delta`` site, as in a
conditional GAN). Its parameters live in Pyro's param store under
``pyro.module(name, discriminator)``, so :func:`pyro_genmodels.fit` checkpoints
and resumes both players.

One step, two schedules. ``svi.step(batch)`` (or one step of ``fit``) trains
both players; the losses return the pair ``(critic loss, generator loss)``,
like :class:`pyro.infer.ReweightedWakeSleep`:

- ``critic_optim=None`` (default, ``n_critic=1``): *simultaneous* updates.
  ``loss_and_grads`` puts ``∇_D L_D`` on the discriminator's parameters and
  ``∇_G L_G`` on the generator's, both at the current point, and the caller's
  optimizer applies both, so per-player learning rates are Pyro's
  per-parameter optimizer arguments (a callable ``optim_args(param_name)``;
  Pyro passes names like ``"discriminator.0.weight"``).
- ``critic_optim=opt`` (any ``n_critic >= 1``): *alternating* updates
  (Goodfellow et al., Algorithm 1). ``loss_and_grads`` makes ``n_critic``
  discriminator updates itself with ``opt`` (each on freshly drawn generator
  samples and the same data batch; every update is guarded: a non-finite
  critic loss or gradient stops the updates and is returned, so ``fit`` stops
  with its usual error; inner updates already made in that step are kept),
  then leaves ``∇_G L_G``, taken at the updated
  discriminator, for the caller's optimizer. The discriminator's parameters
  are hidden from the caller (registered under ``poutine.block``), so the
  caller never moves them; the last critic gradient stays on them for
  inspection. Pass the *same* optimizer object as SVI/``fit`` to share its
  per-parameter arguments and have ``fit`` checkpoint the critic's optimizer
  state; a separate one is checkpointed through this loss's ``state_dict``.
  Under data-parallel ``fit`` every inner update uses the critic gradients
  summed over the ranks (the ``critic_grad_sync`` hook), so the ranks' critics
  stay identical and equal the single-process critic on the same global batches
  (exactly when nothing is drawn at random: the generator's noise given as data;
  otherwise each rank draws its own noise and the equality is in distribution).

Alternating is the schedule of the GAN papers and is the more stable one
(``benchmarks/adversarial.py`` compares both on the toy mixtures); the
simultaneous one is what a bare ``SVI(model, guide, optim, loss=GANLoss(D))``
gives.

Reported values. ``loss``, ``differentiable_loss`` and ``loss_and_grads`` all
return both objectives evaluated at the parameters *before* the step's updates
on the same draws, so they agree. Like Pyro's ELBOs the objectives are sums
over the batch (``fit``'s history shows per-datapoint values).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyro
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.infer.elbo import ELBO
from pyro.infer.util import torch_item
from pyro.util import warn_if_nan
from torch import nn

from pyro_genmodels._checks import check_int, check_real
from pyro_genmodels._compat import foreach_norm, store_params
from pyro_genmodels.infer.fgan import F_DIVERGENCES, get_divergence
from pyro_genmodels.optim import OptimSnapshot

Values = dict[str, torch.Tensor]
GENERATOR_LOSSES = ("minimax", "non-saturating")


class ConcatSites(nn.Module):
    """A discriminator over several sites: ``D({s: x_s}) = net(concat_s x_s)``.

    Args:
        net: the network on the concatenated ``(*, sum of event sizes)`` input.
        sites: the site names, in concatenation order.

    Shapes: each ``values[s]`` is ``(*, d_s)`` → output ``net(...)``.

    >>> from pyro_genmodels.nn import MLP
    >>> d = ConcatSites(MLP(5, [8], 1), ["x", "z"])
    >>> d({"x": torch.zeros(3, 3), "z": torch.zeros(3, 2)}).shape
    torch.Size([3, 1])
    """

    def __init__(self, net: nn.Module, sites: Sequence[str]) -> None:
        super().__init__()
        if isinstance(sites, str) or not sites:
            raise ValueError(f"sites must be a non-empty sequence of site names, got {sites!r}")
        self.net, self.sites = net, list(sites)

    def forward(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        missing = [s for s in self.sites if s not in values]
        if missing:
            raise ValueError(f"ConcatSites expected sites {self.sites}, got {sorted(values)}")
        return self.net(torch.cat([values[s] for s in self.sites], dim=-1))


def describe(fn: Any) -> str:
    """The distribution's name, with wrappers (Independent, Expanded, ...) unwrapped."""
    name = type(fn).__name__
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
        name = f"{name}({type(fn).__name__})"
    return name


def _detach(values: Values) -> Values:
    return {k: v.detach() for k, v in values.items()}


class AdversarialLoss(ELBO):
    """Shared machinery of the adversarial losses (subclasses define the objectives).

    Subclasses implement :meth:`critic_loss` and :meth:`generator_loss` on the
    discriminator outputs ``(B,)`` and may add a :meth:`penalty` or a step hook
    :meth:`after_critic_update`. See the module docstring for the contract.
    """

    #: whether the generator loss needs the discriminator on the data (BiGAN: yes)
    generator_uses_real = False

    #: what the values of ``loss``/``loss_and_grads`` measure, in order: ``fit``'s history
    #: columns ``loss_0, loss_1`` (and ``val_loss_0, ...``); plots title their curves so
    loss_parts: tuple[str, ...] = ("discriminator loss", "generator loss")

    #: data-parallel hook of the inner critic updates: ``None`` in one process; under
    #: :class:`~pyro_genmodels.parallel.DataParallelLoss` a function
    #: ``sync(critic_loss, critic_params) -> critic loss summed over ranks`` that sums the
    #: critic gradients over the ranks, called after each inner backward and before the
    #: finite check and the update, so that all ranks make the same critic step
    critic_grad_sync: Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor] | None = None

    def __init__(
        self,
        discriminator: nn.Module,
        *,
        n_critic: int = 1,
        critic_optim: pyro.optim.PyroOptim | None = None,
        name: str = "discriminator",
    ) -> None:
        super().__init__(num_particles=1)
        if not isinstance(discriminator, nn.Module):
            raise TypeError(
                f"discriminator must be a torch.nn.Module, got {type(discriminator).__name__}"
            )
        if critic_optim is not None and not isinstance(critic_optim, pyro.optim.PyroOptim):
            raise TypeError(
                "critic_optim must be a pyro.optim.PyroOptim (e.g. the optimizer given to SVI) "
                f"or None, got {type(critic_optim).__name__}"
            )
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str (the param store prefix), got {name!r}")
        self.n_critic = check_int("n_critic", n_critic, 1)
        if self.n_critic > 1 and critic_optim is None:
            raise ValueError(
                f"n_critic={n_critic} needs critic_optim (the optimizer of the inner critic "
                "updates, e.g. the same pyro.optim object given to SVI); got None"
            )
        self.discriminator, self.critic_optim, self.name = discriminator, critic_optim, name
        self.critic_updates = 0  # total discriminator updates made by this loss object
        self._before_step: tuple[OptimSnapshot, int] | None = None
        self._undo_buffers: dict = {}

    # ------------------------------------------------------------------ objectives (subclasses)

    def critic_loss(self, out_real: torch.Tensor, out_fake: torch.Tensor) -> torch.Tensor:
        """The discriminator's objective to minimize, summed over the batch ``(B,)``."""
        raise NotImplementedError

    def generator_loss(self, out_real: torch.Tensor | None, out_fake: torch.Tensor) -> torch.Tensor:
        """The generator's objective to minimize, summed over the batch ``(B,)``."""
        raise NotImplementedError

    def penalty(self, real: Values, fake: Values) -> torch.Tensor | None:
        """An extra critic term (e.g. a gradient penalty); ``None`` for none."""
        return None

    def after_critic_update(self) -> None:
        """Called after every discriminator update this loss makes itself."""

    def input_grad_sq(self, values: Values, batch: torch.Size) -> torch.Tensor:
        """``‖∇_x D(x)‖₂²`` per datapoint ``(B,)``, over all observed sites, differentiable
        in the discriminator's parameters (for gradient penalties)."""
        inputs = {k: v.detach().requires_grad_(True) for k, v in values.items()}
        with torch.enable_grad():
            out = self.discriminate(inputs, batch)
            grads = torch.autograd.grad(out.sum(), list(inputs.values()), create_graph=True)
        return torch.stack([g.reshape(batch[0], -1).pow(2).sum(-1) for g in grads]).sum(0)

    # ------------------------------------------------------------------ sampling

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """``(model_trace, guide_trace)``: the model replayed against the guide."""
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        return model_trace, guide_trace

    def _site_values(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """Real and generated values of the observed sites, and the batch shape."""
        model_trace, _ = self._get_trace(model, guide, args, kwargs)
        real, fake, batch = {}, {}, None
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or not site["is_observed"]:
                continue
            fn = site["fn"]
            if not fn.has_rsample:
                raise ValueError(
                    f"{type(self).__name__} needs reparameterizable observed sites (the "
                    f"generator's samples are fn.rsample()); site {name!r} has "
                    f"{describe(fn)}, which has no rsample (use e.g. Delta(G(z)))"
                )
            real[name], fake[name] = site["value"].detach(), fn.rsample()
            batch = fn.batch_shape if batch is None else batch
        if not real:
            raise ValueError(
                f"{type(self).__name__} needs a model with at least one observed site "
                "(pyro.sample(name, fn, obs=data)): the observed sites are what the "
                "discriminator sees; this model has none"
            )
        return real, fake, batch

    def _samples(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict, capture: bool = True
    ):
        """``(real, fake, batch shape, player params)``; the params are those the traces use
        (not collected when ``capture`` is false)."""
        if not capture:
            return (*self._site_values(model, guide, args, kwargs), [])
        with poutine.trace(param_only=True) as tracer:
            real, fake, batch = self._site_values(model, guide, args, kwargs)
        params = [site["value"].unconstrained() for site in tracer.trace.nodes.values()]  # type: ignore[union-attr]  # param sites hold a value
        critic = {id(p) for p in self.discriminator.parameters()}
        params = [p for p in dict.fromkeys(params) if id(p) not in critic and p.requires_grad]
        return real, fake, batch, params

    # ------------------------------------------------------------------ the discriminator

    def _register(self, hidden: bool, like: torch.Tensor) -> list[torch.Tensor]:
        """``pyro.module(name, discriminator)`` (under ``poutine.block`` if ``hidden``),
        first moving a not yet registered discriminator to the data's device."""
        params: list[torch.Tensor] = list(self.discriminator.parameters())
        if hidden and self._in_store(params):
            return params  # nothing to record for the caller and nothing to sync: skip
        if params and params[0].device != like.device:
            if not any(k.startswith(self.name + "$$$") for k in pyro.get_param_store().keys()):
                self.discriminator.to(like.device)
        if hidden:
            with poutine.block():
                pyro.module(self.name, self.discriminator)
        else:
            pyro.module(self.name, self.discriminator)
        params = list(self.discriminator.parameters())
        self._names = [f"{self.name}$$${n}" for n, _ in self.discriminator.named_parameters()]
        return params

    def _in_store(self, params: list[torch.Tensor]) -> bool:
        """Whether the param store holds exactly these tensors under the registered names."""
        names = getattr(self, "_names", None)
        if names is None or len(names) != len(params):
            return False
        stored = store_params()
        return all(stored.get(n) is p for n, p in zip(names, params))

    def discriminate(self, values: Values, batch: torch.Size) -> torch.Tensor:
        """Discriminator outputs ``(B,)`` on site values (one tensor if one site, else a dict)."""
        arg = next(iter(values.values())) if len(values) == 1 else values
        out = self.discriminator(arg)
        if not isinstance(out, torch.Tensor) or out.shape not in (batch, batch + (1,)):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"discriminator must return one score per datapoint, a tensor of shape "
                f"{tuple(batch)} or {tuple(batch + (1,))} (batch shape of the observed "
                f"sites), got {got}"
            )
        return out.reshape(batch)

    def _objectives(self, real: Values, fake: Values, batch: torch.Size, detach_fake: bool):
        fake_in = _detach(fake) if detach_fake else fake
        out_real = self.discriminate(real, batch)
        out_fake = self.discriminate(fake_in, batch)
        d_loss = self.critic_loss(out_real, out_fake)
        gp = self.penalty(real, _detach(fake))
        if gp is not None:
            d_loss = d_loss + gp
        return d_loss, self.generator_loss(out_real, out_fake), out_real

    # ------------------------------------------------------------------ Pyro's loss interface

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_D, L_G)`` as differentiable tensors at the current parameters (no update)."""
        real, fake, batch, _ = self._samples(model, guide, args, kwargs)
        self._register(self.critic_optim is not None, next(iter(real.values())))
        d_loss, g_loss, _ = self._objectives(real, fake, batch, detach_fake=False)
        warn_if_nan(d_loss, "critic loss")
        warn_if_nan(g_loss, "generator loss")
        return d_loss, g_loss

    def loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> tuple[float, float]:
        """``(L_D, L_G)`` as floats at the current parameters (no update)."""
        with torch.no_grad():  # a gradient penalty re-enables grad locally
            d_loss, g_loss = self.differentiable_loss(model, guide, *args, **kwargs)
        return torch_item(d_loss), torch_item(g_loss)

    def loss_and_grads(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> tuple[float, float]:
        """One training step's gradients (and inner critic updates); returns ``(L_D, L_G)``."""
        if self.critic_optim is None:
            return self._simultaneous(model, guide, args, kwargs)
        return self._alternating(self.critic_optim, model, guide, args, kwargs)

    def _simultaneous(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> tuple[float, float]:
        real, fake, batch, params = self._samples(model, guide, args, kwargs)
        d_params = self._register(False, next(iter(real.values())))
        d_loss, g_loss, _ = self._objectives(real, fake, batch, detach_fake=False)
        warn_if_nan(d_loss, "critic loss")
        warn_if_nan(g_loss, "generator loss")
        d_loss.backward(inputs=d_params, retain_graph=True)
        if params and g_loss.requires_grad:
            g_loss.backward(inputs=params)
        return torch_item(d_loss), torch_item(g_loss)

    def _alternating(
        self,
        critic_optim: pyro.optim.PyroOptim,
        model: Callable,
        guide: Callable,
        args: tuple,
        kwargs: dict,
    ) -> tuple[float, float]:
        reported: tuple[float, float] = (math.nan, math.nan)
        for k in range(self.n_critic):
            real, fake, batch, _ = self._samples(model, guide, args, kwargs, capture=False)
            d_params = self._register(True, next(iter(real.values())))
            for p in d_params:
                p.grad = None
            d_loss, g_loss, _ = self._objectives(real, fake, batch, detach_fake=True)
            if k == 0:
                reported = (torch_item(d_loss), torch_item(g_loss))
            d_loss.backward(inputs=d_params)
            total = d_loss.detach()
            if self.critic_grad_sync is not None:  # data-parallel: sum over the ranks
                total = self.critic_grad_sync(total, d_params)
            if not _finite(total, d_params):
                for p in d_params:
                    p.grad = None
                value = torch_item(d_loss)
                bad = value if not math.isfinite(value) else math.nan
                # Pyro annotates the value as numbers.Number, which floats are not for mypy.
                warn_if_nan(bad, f"critic loss (inner update {k + 1} of {self.n_critic})")  # type: ignore[arg-type]
                return bad, reported[1]
            critic_optim(d_params)
            self.critic_updates += 1
            self.after_critic_update()
        for p in d_params:  # the generator's gradient reaches the players, not the critic
            p.requires_grad_(False)
        try:
            out_real = self.discriminate(real, batch) if self.generator_uses_real else None
            g_loss = self.generator_loss(out_real, self.discriminate(fake, batch))
        finally:
            for p in d_params:
                p.requires_grad_(True)
        if g_loss.requires_grad:
            g_loss.backward()
        # Pyro's overloads of warn_if_nan name Tensor and Number; a float is a Number at run time.
        warn_if_nan(reported[0], "critic loss")  # type: ignore[call-overload]
        warn_if_nan(reported[1], "generator loss")  # type: ignore[call-overload]
        return reported

    # ------------------------------------------------------------------ undoing a failed step

    def begin_step(self) -> None:
        """Save what the inner critic updates of the coming step change (the critic's
        parameters, its optimizer state, the update count), for :meth:`undo_step`. Nothing
        to save without ``critic_optim``: the critic is then updated with the players."""
        if self.critic_optim is None:
            return
        params: list[torch.Tensor] = list(self.discriminator.parameters())
        self._before_step = (
            OptimSnapshot(self.critic_optim, params, self._undo_buffers),
            self.critic_updates,
        )

    def undo_step(self) -> None:
        """Put the critic back as it was at :meth:`begin_step` (``pgm.fit`` does this when the
        step fails after inner critic updates, so that a failed step updates nothing)."""
        if self._before_step is not None:
            snapshot, self.critic_updates = self._before_step
            snapshot.restore()
            self._before_step = None

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, Any]:
        """The inner critic optimizer's state (by param name) and the update count."""
        optim = {} if self.critic_optim is None else self.critic_optim.get_state()
        return {"critic_optim": optim, "critic_updates": self.critic_updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict`."""
        if self.critic_optim is not None and state.get("critic_optim"):
            self.critic_optim.set_state(dict(state["critic_optim"]))
        self.critic_updates = int(state.get("critic_updates", 0))


def _finite(loss: torch.Tensor, params: list[torch.Tensor]) -> bool:
    """Whether ``loss`` and every gradient are finite (a non-finite entry makes its norm so)."""
    grads = [p.grad for p in params if p.grad is not None]
    total = loss.detach().sum()
    if grads:
        total = total + torch.stack(foreach_norm(grads)).sum().to(total.dtype)
    return bool(torch.isfinite(total))


class GANLoss(AdversarialLoss):
    """GAN and f-GAN objectives: ``min_G max_D  E_P[g_f(D(x))] - E_Q[f*(g_f(D(x)))]``.

    ``divergence="js"`` is the GAN of Goodfellow et al. (2014) with a logit
    discriminator ``D``: ``L_D = -Σ_B [log σ(D(x)) + log(1 - σ(D(G(z))))]``,
    whose value at the optimal ``D* = p/(p+q)`` is ``-(2·JS(P, Q) - log 4)``
    per datapoint (an affine transform of f-GAN's JS bound). Other divergences
    (``"kl"``, ``"reverse_kl"``, ``"pearson"``, ``"neyman"``, ``"hellinger"``,
    ``"tv"``, see :data:`~pyro_genmodels.infer.fgan.F_DIVERGENCES`) use f-GAN's
    activation ``g_f`` and conjugate ``f*``: ``L_D = -Σ_B (g_f(D(x_real)) -
    f*(g_f(D(x_fake))))``, so ``-L_D / B`` estimates a lower bound on
    ``D_f(P_data || Q_model)``. The generator minimizes ``Σ_B -f*(g_f(D))``
    (``"minimax"``) or ``-Σ_B g_f(D)`` (``"non-saturating"``; for ``"js"``,
    ``-Σ log σ(D(G(z)))``).

    Args:
        discriminator: ``nn.Module`` mapping the observed value(s) ``(B, ...)`` to
            ``(B,)`` or ``(B, 1)`` unconstrained scores.
        divergence: ``"js"`` (GAN) or an f-GAN divergence name.
        generator_loss: ``"non-saturating"`` (default) or ``"minimax"``.
        r1_weight: ``γ >= 0``: adds Mescheder et al.'s zero-centred R1 penalty
            ``(γ/2) Σ_B ‖∇_x D(x)‖²`` on the data to ``L_D`` (0, the default: none).
            It keeps the discriminator from sharpening without bound near the
            data, which makes the non-saturating GAN converge where it would
            otherwise oscillate or drop modes (``benchmarks/adversarial.py``:
            all 25 modes of the 25-Gaussian grid).
        n_critic, critic_optim, name: the update schedule and param store
            prefix (see :mod:`pyro_genmodels.infer.adversarial`).

    Returns (``loss``/``loss_and_grads``): the pair ``(L_D, L_G)`` of floats.

    >>> import pyro, pyro.distributions as dist
    >>> from pyro_genmodels.nn import MLP
    >>> G, D = MLP(2, [8], 2), MLP(2, [8], 1)
    >>> def generator(x):
    ...     pyro.module("generator", G)
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
    ...         pyro.sample("x", dist.Delta(G(z), event_dim=1), obs=x)
    >>> svi = pyro.infer.SVI(generator, lambda x: None, pyro.optim.Adam({"lr": 1e-3}),
    ...                      loss=GANLoss(D))
    >>> d_loss, g_loss = svi.step(torch.randn(16, 2))
    >>> sorted({k.split("$$$")[0] for k in pyro.get_param_store()})
    ['discriminator', 'generator']

    References:
        Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014.
        Nowozin, Cseke, Tomioka, "f-GAN: Training Generative Neural Samplers
        using Variational Divergence Minimization", NeurIPS 2016.
        Mescheder, Geiger, Nowozin, "Which Training Methods for GANs do
        actually Converge?", ICML 2018 (the R1 penalty).
    """

    def __init__(
        self,
        discriminator: nn.Module,
        divergence: str = "js",
        generator_loss: str = "non-saturating",
        *,
        r1_weight: float = 0.0,
        n_critic: int = 1,
        critic_optim: pyro.optim.PyroOptim | None = None,
        name: str = "discriminator",
    ) -> None:
        super().__init__(discriminator, n_critic=n_critic, critic_optim=critic_optim, name=name)
        if divergence not in F_DIVERGENCES:
            raise ValueError(
                f"divergence must be one of {sorted(F_DIVERGENCES)}, got {divergence!r}"
            )
        if generator_loss not in GENERATOR_LOSSES:
            raise ValueError(
                f"generator_loss must be one of {GENERATOR_LOSSES}, got {generator_loss!r}"
            )
        self.divergence, self.generator_kind = divergence, generator_loss
        self._f = get_divergence(divergence)
        self.r1_weight = check_real("r1_weight", r1_weight, minimum=0.0)

    def settings(self) -> dict[str, Any]:
        """The option kept under another name (a resumed ``fit`` must keep it)."""
        return {"generator_loss": self.generator_kind}

    def penalty(self, real: Values, fake: Values) -> torch.Tensor | None:
        """The R1 penalty ``(γ/2) Σ_B ‖∇_x D(x)‖²`` on the data; ``None`` when ``γ = 0``."""
        if self.r1_weight == 0:
            return None
        first = next(iter(real.values()))
        return 0.5 * self.r1_weight * self.input_grad_sq(real, first.shape[:1]).sum()

    def critic_loss(self, out_real: torch.Tensor, out_fake: torch.Tensor) -> torch.Tensor:
        if self.divergence == "js":
            return F.softplus(-out_real).sum() + F.softplus(out_fake).sum()
        f = self._f
        return -(f.activation(out_real).sum() - f.conjugate(f.activation(out_fake)).sum())

    def generator_loss(self, out_real: torch.Tensor | None, out_fake: torch.Tensor) -> torch.Tensor:
        minimax = self.generator_kind == "minimax"
        if self.divergence == "js":
            return -F.softplus(out_fake).sum() if minimax else F.softplus(-out_fake).sum()
        t = self._f.activation(out_fake)
        return -self._f.conjugate(t).sum() if minimax else -t.sum()


class LSGANLoss(AdversarialLoss):
    """Least-squares GAN: ``L_D = ½Σ_B[(D(x)-1)² + D(G(z))²]``, ``L_G = ½Σ_B (D(G(z))-1)²``.

    This is Mao et al.'s 0-1 coding (targets ``a=0`` for generated data,
    ``b=1`` for data, ``c=1`` for the generator), their practical choice; with
    ``a=-1, b=1, c=0`` the generator would minimize the Pearson χ² divergence
    between ``P + Q`` and ``2Q`` (their Theorem 1).

    Args:
        discriminator: ``nn.Module``, values ``(B, ...)`` → ``(B,)`` or ``(B, 1)``.
        n_critic, critic_optim, name: see :mod:`pyro_genmodels.infer.adversarial`.

    >>> loss = LSGANLoss(torch.nn.Linear(2, 1))
    >>> float(loss.critic_loss(torch.ones(3), torch.zeros(3)))
    0.0

    Reference: Mao, Li, Xie, Lau, Wang, Smolley, "Least Squares Generative
    Adversarial Networks", ICCV 2017.
    """

    def critic_loss(self, out_real: torch.Tensor, out_fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((out_real - 1) ** 2).sum() + 0.5 * (out_fake**2).sum()

    def generator_loss(self, out_real: torch.Tensor | None, out_fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((out_fake - 1) ** 2).sum()
