"""Energy-based densities ``p(x) = exp(-E(x)) / Z`` with a known, estimated or unknown ``Z``."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import torch
from pyro.distributions import TorchDistribution, constraints
from pyro.poutine.util import is_validation_enabled

from pyro_genmodels._checks import check_finite, check_hidden_dims
from pyro_genmodels._compat import validate_sample
from pyro_genmodels._dtypes import parameters_dtype, to_dtype

_CHECK_FINITE: contextvars.ContextVar[bool] = contextvars.ContextVar("check_finite", default=True)


@contextlib.contextmanager
def unchecked_energies() -> Iterator[None]:
    """Inside, ``energy_of`` lets non-finite energies through (no ``ValueError``).

    The training losses use it so that a diverging energy yields a non-finite loss
    that reaches ``pgm.fit``'s guard (which keeps the last good state) rather than
    an error in the middle of a step.
    """
    token = _CHECK_FINITE.set(False)
    try:
        yield
    finally:
        _CHECK_FINITE.reset(token)


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
    """``log p(x) = -E(x) - log Z``, with ``log Z`` given, estimated (AIS) or unknown (0).

    The energy is any callable ``nn.Module``: ``energy(x) -> (*,)`` or ``(*, 1)``
    for ``x`` of shape ``(*, *event_shape)``, or ``energy(x, context)`` when a
    ``context`` is given. Without ``log_normalizer`` the density is known only
    up to a constant (``.normalized is False``): enough for MCMC (HMC, NUTS,
    :class:`~pyro_genmodels.infer.Langevin`) and the energy-based losses, but not for
    reporting a likelihood — :func:`pyro_genmodels.infer.ais` estimates ``log Z``.

    ``sample(shape)`` runs ``self.sampler`` (an
    :class:`~pyro_genmodels.infer.samplers.EnergySampler`); the default for a real
    support is :class:`~pyro_genmodels.infer.samplers.LangevinSampler` with
    ``step_size=0.01``, ``num_steps=200`` from a standard normal start. Samples
    are approximate and carry no gradient (``has_rsample`` is False).

    Args:
        energy: callable (usually an ``nn.Module``) returning ``E(x)``.
        event_shape: shape of one datapoint, e.g. ``(2,)`` or ``(64,)``.
        log_normalizer: optional scalar (or ``batch_shape``) tensor ``log Z``;
            may be a ``pyro.param`` (then :class:`~pyro_genmodels.infer.NCELoss` learns it).
            NaN or ``±inf`` is a ``ValueError`` when arguments are validated (the default).
        sampler: an ``EnergySampler``; default Langevin for real supports.
        context: optional ``(*batch, C)`` tensor passed as ``energy(x, context)``;
            its leading dims are the batch shape (a noise level ``σ`` of shape
            ``(*batch, 1)`` makes a noise-conditional energy).
        support: a constraint on one element (``constraints.real`` by default,
            ``constraints.boolean`` for binary data); it is made to cover the event.
        validate_args: as for torch distributions; energies are also checked
            for their shape and for finite values under ``pyro.enable_validation``.

    Example:
        >>> import torch
        >>> energy = lambda x: 0.5 * (x**2).sum(-1)
        >>> d = EnergyDistribution(energy, event_shape=(2,))
        >>> d.normalized, tuple(d.log_prob(torch.zeros(5, 2)).shape)
        (False, (5,))
        >>> import math
        >>> n = EnergyDistribution(energy, (2,), log_normalizer=torch.tensor(math.log(2 * math.pi)))
        >>> round(float(n.log_prob(torch.zeros(2))), 4)  # log N(0; 0, I) in 2-D
        -1.8379

    References:
        LeCun, Chopra, Hadsell, Ranzato, Huang, "A Tutorial on Energy-Based Learning", 2006.
        Du & Mordatch, "Implicit Generation and Generalization in Energy-Based Models", 2019.
    """

    arg_constraints: dict[str, Any] = {}
    has_rsample = False

    def __init__(
        self,
        energy: Callable[..., torch.Tensor],
        event_shape: Any,
        log_normalizer: torch.Tensor | None = None,
        sampler: Any = None,
        context: torch.Tensor | None = None,
        support: constraints.Constraint = constraints.real,
        validate_args: bool | None = None,
    ) -> None:
        if not callable(energy):
            raise TypeError(f"energy must be callable (an nn.Module), got {type(energy).__name__}")
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
        self.energy = energy
        self.context = context
        self.log_normalizer = log_normalizer
        self._sampler = sampler
        event_shape = torch.Size(event_shape)
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
        """The sampler ``sample`` runs (Langevin by default for a real support)."""
        if self._sampler is None:
            from pyro_genmodels.infer.samplers import LangevinSampler

            if self._support.is_discrete:
                raise ValueError(
                    "EnergyDistribution with a discrete support has no default sampler; "
                    "pass sampler= (e.g. a block-Gibbs sampler)"
                )
            self._sampler = LangevinSampler(step_size=0.01, num_steps=200)
        return self._sampler

    def factory_kwargs(self) -> dict[str, Any]:
        """``{"device", "dtype"}`` of the energy's parameters (else context, else log Z)."""
        return _factory_kwargs(self.energy, self.context, self.log_normalizer)

    def expand(self, batch_shape: Any, _instance: Any = None) -> EnergyDistribution:
        batch_shape = torch.Size(batch_shape)
        try:
            torch.broadcast_shapes(batch_shape, self.batch_shape)
            if torch.broadcast_shapes(batch_shape, self.batch_shape) != batch_shape:
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
        new._sampler, new._support = self._sampler, self._support
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
        check = is_validation_enabled() and _CHECK_FINITE.get()
        if check and not torch.isfinite(out).all():
            raise ValueError(
                f"energy returned non-finite values ({int((~torch.isfinite(out)).sum())} of "
                f"{out.numel()}); check the network and its inputs"
            )
        return out.expand(full) if out.shape != full else out

    def unnormalized_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``-E(x)``, shape ``sample_shape + batch_shape``; ``x`` must be a tensor (the energy
        network reads one), anything else is a ``TypeError``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                "EnergyDistribution.log_prob expects a torch.Tensor value of shape "
                f"(*batch, {', '.join(map(str, self.event_shape))}), got {type(x).__name__} {x!r}"
            )
        x = to_dtype(x, parameters_dtype(self.energy))  # scoring follows training's dtype rule
        if self._validate_args and x.numel() > 0:  # torch's check cannot reshape empty values
            validate_sample(self, x)
        return -self.energy_of(x)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``-E(x) - log Z`` (``log Z = 0`` when unknown: see :attr:`normalized`)."""
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
            f"normalized={self.normalized})"
        )
