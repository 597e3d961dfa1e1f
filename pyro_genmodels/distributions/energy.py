"""Energy-based densities ``p(x) = q(x) exp(-E(x)) / Z`` on a base ``q`` (or Lebesgue measure),
with a known, estimated or unknown ``Z``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions import Distribution, Transform, TransformedDistribution
from torch.distributions.transforms import ComposeTransform

from pyro_genmodels._checks import check_finite, check_hidden_dims, check_real
from pyro_genmodels._compat import validate_sample
from pyro_genmodels._dtypes import parameters_dtype, to_dtype
from pyro_genmodels.distributions._energy_checks import checking_energies, unchecked_energies
from pyro_genmodels.distributions.adaptive import AdaptiveLangevinSampler

__all__ = ["EnergyDistribution", "latent_form", "unchecked_energies"]


def latent_form(q: Any) -> tuple[Distribution, Transform] | None:
    """``(q₀, T)`` with ``q = T#q₀`` when ``q`` is a flow (a torch ``TransformedDistribution``
    or an unconditional :class:`~pyro_genmodels.models.flow.FlowDistribution`), else None.

    >>> import pyro.distributions as dist
    >>> q = dist.TransformedDistribution(dist.Normal(torch.zeros(2), 1.0).to_event(1),
    ...                                  [dist.transforms.ExpTransform()])
    >>> base0, transform = latent_form(q)
    >>> base0.event_shape, latent_form(dist.Normal(torch.zeros(2), 1.0).to_event(1))
    (torch.Size([2]), None)
    """
    if isinstance(q, TransformedDistribution):
        return q.base_dist, ComposeTransform(list(q.transforms))
    flow, base0 = getattr(q, "flow", None), getattr(q, "base", None)
    if (
        isinstance(flow, Transform)
        and isinstance(base0, Distribution)
        and getattr(q, "context", None) is None
    ):
        return base0, ComposeTransform([flow, *getattr(q, "transforms", [])])
    return None


def _factory_kwargs(*candidates: Any) -> dict[str, Any]:
    """``device``/``dtype`` of the first floating tensor or module parameter found."""
    for obj in candidates:
        if isinstance(obj, torch.Tensor) and obj.is_floating_point():
            return {"device": obj.device, "dtype": obj.dtype}
        if isinstance(obj, torch.nn.Module):
            for p in obj.parameters():
                if p.is_floating_point():
                    return {"device": p.device, "dtype": p.dtype}
            for b in obj.buffers():
                if b.is_floating_point():
                    return {"device": b.device, "dtype": b.dtype}
    return {"device": torch.device("cpu"), "dtype": torch.get_default_dtype()}


class EnergyDistribution(TorchDistribution):
    """``log p(x) = log q(x) − E(x) − log Z``: an energy on a base density ``q`` (or on
    Lebesgue measure, ``log q = 0``), with ``log Z`` given, estimated (AIS) or unknown (0).

    The energy is any callable ``nn.Module``: ``energy(x) -> (*,)`` or ``(*, 1)``
    for ``x`` of shape ``(*, *event_shape)``, or ``energy(x, context)`` when a
    ``context`` is given. Without ``log_normalizer`` the density is known only
    up to a constant (``.normalized is False``): enough for MCMC (HMC, NUTS,
    :class:`~pyro_genmodels.infer.Langevin`) and the energy-based losses, but not for
    reporting a likelihood — :func:`pyro_genmodels.infer.ais` estimates ``log Z``.

    **Base measure.** With ``base=q`` (any distribution with ``log_prob`` and
    ``sample``, batch shape ``()``: a Gaussian, a trained flow's
    :meth:`~pyro_genmodels.models.FlowDensity.distribution`, an autoregressive model)
    the energy is a residual that tilts ``q``: ``E ≡ 0`` gives back ``q`` with
    ``log Z = 0`` exactly, so a small residual starts from a good model and ``log Z``
    stays cheap to estimate (the way EBMs beat flows: Nash & Durkan 2019, Gao et al.
    2020, Deng et al. 2020). Samplers start their chains from ``q``; where ``q`` is a
    flow ``T#q₀`` the default sampler moves in its latent space (NeuTra); AIS anneals
    from ``q``; :class:`~pyro_genmodels.infer.NCELoss` takes ``q`` as its noise.
    :meth:`potential` is ``U(x) = E(x) − log q(x)``, what samplers and losses move on.

    ``sample(shape)`` runs ``self.sampler`` (an
    :class:`~pyro_genmodels.distributions.samplers.EnergySampler`); the default for a real
    support is :class:`~pyro_genmodels.distributions.adaptive.AdaptiveLangevinSampler`
    (MALA, step size adapted towards 0.574 acceptance over 500 moves, 500 more kept),
    whose ``diagnostics`` report the acceptance rate, an ESS and split R-hat, with a
    warning when the chains did not mix. Samples are approximate and carry no gradient
    (``has_rsample`` is False).

    Args:
        energy: callable (usually an ``nn.Module``) returning ``E(x)``.
        event_shape: shape of one datapoint, e.g. ``(2,)`` or ``(64,)`` (default: the
            base's event shape).
        log_normalizer: optional scalar (or ``batch_shape``) tensor ``log Z``;
            may be a ``pyro.param`` (then :class:`~pyro_genmodels.infer.NCELoss` learns it).
            NaN or ``±inf`` is a ``ValueError`` when arguments are validated (the default).
        sampler: an ``EnergySampler``; default adaptive MALA for real supports.
        context: optional ``(*batch, C)`` tensor passed as ``energy(x, context)``;
            its leading dims are the batch shape (a noise level ``σ`` of shape
            ``(*batch, 1)`` makes a noise-conditional energy).
        support: a constraint on one element (``constraints.real`` by default,
            ``constraints.boolean`` for binary data); it is made to cover the event.
            With a base and the default, the base's support.
        validate_args: as for torch distributions; energies are also checked
            for their shape and for finite values under ``pyro.enable_validation``.
        base: ``q``, a distribution of batch shape ``()`` and this event shape, or None.

    Example:
        >>> import torch, pyro.distributions as dist
        >>> energy = lambda x: 0.5 * (x**2).sum(-1)
        >>> d = EnergyDistribution(energy, event_shape=(2,))
        >>> d.normalized, tuple(d.log_prob(torch.zeros(5, 2)).shape)
        (False, (5,))
        >>> import math
        >>> n = EnergyDistribution(energy, (2,), log_normalizer=torch.tensor(math.log(2 * math.pi)))
        >>> round(float(n.log_prob(torch.zeros(2))), 4)  # log N(0; 0, I) in 2-D
        -1.8379
        >>> q = dist.Normal(torch.zeros(2), 1.0).to_event(1)
        >>> tilt = EnergyDistribution(lambda x: x.sum(-1), base=q)  # q(x) e^{-x1-x2}: N(-1, I)
        >>> round(float(tilt.log_prob(torch.zeros(2)) - 1.0), 4)  # log Z = 1 (known here)
        -2.8379

    References:
        LeCun, Chopra, Hadsell, Ranzato, Huang, "A Tutorial on Energy-Based Learning", 2006.
        Du & Mordatch, "Implicit Generation and Generalization in Energy-Based Models", 2019.
        Nash & Durkan, "Autoregressive Energy Machines", ICML 2019.
        Gao, Nijkamp, Kingma, Xu, Dai, Wu, "Flow Contrastive Estimation of Energy-Based
        Models", CVPR 2020.
    """

    arg_constraints: dict[str, Any] = {}
    has_rsample = False

    def __init__(
        self,
        energy: Callable[..., torch.Tensor],
        event_shape: Any = None,
        log_normalizer: torch.Tensor | None = None,
        sampler: Any = None,
        context: torch.Tensor | None = None,
        support: constraints.Constraint = constraints.real,
        validate_args: bool | None = None,
        base: Distribution | None = None,
    ) -> None:
        if not callable(energy):
            raise TypeError(f"energy must be callable (an nn.Module), got {type(energy).__name__}")
        if base is not None and not (
            isinstance(base, Distribution) and callable(getattr(base, "log_prob", None))
        ):
            raise TypeError(
                f"base must be a torch/Pyro distribution or None, got {type(base).__name__}"
            )
        if event_shape is None:
            if base is None:
                raise ValueError("EnergyDistribution needs event_shape (or a base to take it from)")
            event_shape = tuple(base.event_shape)
        if isinstance(event_shape, int) and not isinstance(event_shape, bool):
            event_shape = (event_shape,)
        event_shape = check_hidden_dims(event_shape, name="event_shape")  # sizes >= 1
        if context is not None and not isinstance(context, torch.Tensor):
            raise TypeError(f"context must be a torch.Tensor or None, got {type(context).__name__}")
        if context is not None and context.dim() < 1:
            raise ValueError(
                f"context must have shape (*batch, C), got shape {tuple(context.shape)}"
            )
        if log_normalizer is not None and not isinstance(log_normalizer, torch.Tensor):
            raise TypeError(
                "log_normalizer must be a torch.Tensor or None, "
                f"got {type(log_normalizer).__name__}"
            )
        if not isinstance(support, constraints.Constraint):
            raise TypeError(f"support must be a torch constraint, got {type(support).__name__}")
        if sampler is not None and not (
            callable(getattr(sampler, "run", None)) and callable(getattr(sampler, "init", None))
        ):
            raise TypeError(
                "sampler must be an EnergySampler (with init and run), "
                f"got {type(sampler).__name__}"
            )
        event_shape = torch.Size(event_shape)
        if base is not None and (base.batch_shape != () or base.event_shape != event_shape):
            raise ValueError(
                f"base must have batch_shape () and event_shape {tuple(event_shape)}, got "
                f"{tuple(base.batch_shape)} and {tuple(base.event_shape)}"
            )
        if base is not None and support is constraints.real and base.support is not None:
            support = base.support
        self.energy = energy
        self.context = context
        self.log_normalizer = log_normalizer
        self._sampler = sampler
        self.base = base
        extra = len(event_shape) - support.event_dim
        self._support = constraints.independent(support, extra) if extra > 0 else support
        batch_shape = context.shape[:-1] if context is not None else torch.Size()
        if log_normalizer is not None:
            batch_shape = torch.broadcast_shapes(batch_shape, log_normalizer.shape)
        super().__init__(batch_shape, event_shape, validate_args=validate_args)
        if log_normalizer is not None and self._validate_args:
            check_finite(log_normalizer, "log_normalizer")  # log Z = ±inf or NaN: no density

    @constraints.dependent_property
    def support(self) -> constraints.Constraint:
        return self._support

    @classmethod
    def infer_shapes(cls, **arg_shapes: Any) -> Any:
        """Not inferable: the event shape is a constructor argument, not a parameter's shape."""
        raise NotImplementedError(
            "EnergyDistribution takes its event_shape as an argument; it cannot be inferred"
        )

    @property
    def normalized(self) -> bool:
        """Whether ``log_prob`` includes ``log Z`` (a ``log_normalizer`` was given)."""
        return self.log_normalizer is not None

    @property
    def sampler(self) -> Any:
        """The sampler ``sample`` runs (adaptive MALA by default for a real support)."""
        if self._sampler is None:
            if self._support.is_discrete:
                raise ValueError(
                    "EnergyDistribution with a discrete support has no default sampler; "
                    "pass sampler= (e.g. a block-Gibbs sampler)"
                )
            self._sampler = AdaptiveLangevinSampler()
        return self._sampler

    @property
    def has_sampler(self) -> bool:
        """Whether a sampler was given (else :attr:`sampler` makes the default)."""
        return self._sampler is not None

    def latent_form(self) -> tuple[Distribution, Transform] | None:
        """``(q₀, T)`` when the base is a flow ``T#q₀`` (see :func:`latent_form`), else None."""
        return None if self.base is None else latent_form(self.base)

    def base_log_prob(self, x: torch.Tensor) -> torch.Tensor | float:
        """``log q(x)`` of shape ``(*sample, *batch)`` (the float 0 without a base)."""
        if self.base is None:
            return 0.0
        out = self.base.log_prob(x)
        lead = x.shape[: x.dim() - len(self.event_shape)]
        full = torch.broadcast_shapes(lead, self.batch_shape)
        return out.expand(full) if out.shape != full else out

    def potential(self, x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        """``U(x) = β E(x) − log q(x)``, shape ``(*sample, *batch)``: the negative
        unnormalized log density (``β = 1``) that samplers move on."""
        e = self.energy_of(x)
        if beta != 1.0:
            e = check_real("beta", beta) * e
        return e - self.base_log_prob(x) if self.base is not None else e

    def factory_kwargs(self) -> dict[str, Any]:
        """``{"device", "dtype"}`` of the energy's parameters (else context, else log Z)."""
        return _factory_kwargs(self.energy, self.context, self.log_normalizer)

    def expand(self, batch_shape: Any, _instance: Any = None) -> EnergyDistribution:
        batch_shape = torch.Size(batch_shape)
        try:  # an unbatched distribution (the usual site) expands to any shape
            if self.batch_shape and torch.broadcast_shapes(batch_shape, self.batch_shape) != (
                batch_shape
            ):
                raise RuntimeError
        except RuntimeError:
            raise ValueError(
                f"cannot expand EnergyDistribution of batch_shape {tuple(self.batch_shape)} "
                f"to {tuple(batch_shape)}"
            ) from None
        context = self.context
        if context is not None:
            context = context.expand(batch_shape + context.shape[-1:])
        log_z = self.log_normalizer
        if log_z is not None:
            log_z = log_z.expand(batch_shape)
        new = type(self).__new__(type(self)) if _instance is None else _instance
        new.energy, new.context, new.log_normalizer = self.energy, context, log_z
        new._sampler, new._support, new.base = self._sampler, self._support, self.base
        TorchDistribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def energy_of(self, x: torch.Tensor) -> torch.Tensor:
        """``E(x)`` of shape ``(*sample, *batch)`` for ``x`` of ``(*sample, *batch, *event)``."""
        event_dim = len(self.event_shape)
        if x.dim() < event_dim or x.shape[x.dim() - event_dim :] != self.event_shape:
            raise ValueError(
                f"EnergyDistribution expects x of shape (*, {str(tuple(self.event_shape))[1:]}, "
                f"got shape {tuple(x.shape)}"
            )
        lead = x.shape[: x.dim() - event_dim]
        try:
            full = (
                lead if lead == self.batch_shape else torch.broadcast_shapes(lead, self.batch_shape)
            )
        except RuntimeError:
            raise ValueError(
                f"x of shape {tuple(x.shape)} does not broadcast against the batch shape "
                f"{tuple(self.batch_shape)} (event shape {tuple(self.event_shape)})"
            ) from None
        if self.context is None:
            out = self.energy(x)
        else:
            lead = full
            x = x.expand(lead + self.event_shape)
            out = self.energy(x, self.context.expand(lead + self.context.shape[-1:]))
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"energy must return a torch.Tensor, got {type(out).__name__}")
        if out.shape == lead + (1,):
            out = out.squeeze(-1)
        if out.shape != lead:
            raise ValueError(
                f"energy must return shape {tuple(lead)} or {tuple(lead) + (1,)} for inputs "
                f"of shape {tuple(x.shape)}, got shape {tuple(out.shape)}"
            )
        check = checking_energies()
        if check and not torch.isfinite(out).all():
            raise ValueError(
                f"energy returned non-finite values ({int((~torch.isfinite(out)).sum())} of "
                f"{out.numel()}); check the network and its inputs"
            )
        return out.expand(full) if out.shape != full else out

    def unnormalized_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log q(x) − E(x)``, shape ``sample_shape + batch_shape``; ``x`` must be a tensor (the
        energy network reads one), anything else is a ``TypeError``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                "EnergyDistribution.log_prob expects a torch.Tensor value of shape "
                f"(*batch, {', '.join(map(str, self.event_shape))}), got {type(x).__name__} {x!r}"
            )
        x = to_dtype(x, parameters_dtype(self.energy))  # scoring follows training's dtype rule
        if self._validate_args and x.numel() > 0:  # torch's check cannot reshape empty values
            validate_sample(self, x)
        return -self.potential(x)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log q(x) − E(x) − log Z`` (``log Z = 0`` when unknown: see :attr:`normalized`)."""
        out = self.unnormalized_log_prob(value)
        if self.log_normalizer is not None:
            out = out - self.log_normalizer
        return out

    def sample(self, sample_shape: Any = ()) -> torch.Tensor:
        """Approximate draws ``sample_shape + batch_shape + event_shape`` from the sampler."""
        return self.sampler.sample(self, torch.Size(sample_shape))

    def __repr__(self) -> str:
        return (
            f"EnergyDistribution(energy={type(self.energy).__name__}, "
            f"event_shape={tuple(self.event_shape)}, batch_shape={tuple(self.batch_shape)}, "
            f"normalized={self.normalized}"
            + ("" if self.base is None else f", base={type(self.base).__name__}")
            + ")"
        )
