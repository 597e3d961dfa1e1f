"""One autoregressive distribution over any conditioner (FVSBN, NADE, MADE, PixelCNN, RNN)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints

from pyro_genmodels._checks import (
    broadcast_value_shape,
    check_expand_shape,
    check_int,
    check_positive_float,
)
from pyro_genmodels._compat import checked_instance
from pyro_genmodels._dtypes import parameters_dtype, to_dtype
from pyro_genmodels.data.validation import check_finite
from pyro_genmodels.nn.autoregressive.base import Conditioner


class _Likelihood:
    """Elementwise conditional ``p(x_d | θ_d)``: ``log_prob((*, P), (*)) -> (*)``."""

    name = ""
    discrete = True
    base_support: constraints.Constraint  # the support of one position
    expectation: str  # the support in words, for error messages

    def __init__(self, num_params: int) -> None:
        self.num_params = num_params

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, params: torch.Tensor, temperature: float) -> torch.Tensor:
        raise NotImplementedError

    def invalid(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean mask of values outside the support."""
        raise NotImplementedError


class _Bernoulli(_Likelihood):
    name, expectation, base_support = "bernoulli", "values in {0, 1}", constraints.boolean

    def log_prob(self, params, x):
        return -F.binary_cross_entropy_with_logits(params[..., 0], x, reduction="none")

    def sample(self, params, temperature):
        return torch.bernoulli(torch.sigmoid(params[..., 0] / temperature))

    def invalid(self, x):
        return (x != 0) & (x != 1)


class _Categorical(_Likelihood):
    name = "categorical"

    def __init__(self, num_params: int) -> None:
        super().__init__(num_params)
        self.expectation = f"integers in [0, {num_params})"
        self.base_support = constraints.integer_interval(0, num_params - 1)

    def log_prob(self, params, x):
        return params.log_softmax(-1).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)

    def sample(self, params, temperature):
        flat = (params / temperature).reshape(-1, params.shape[-1])
        return torch.multinomial(flat.softmax(-1), 1).reshape(params.shape[:-1]).to(params.dtype)

    def invalid(self, x):
        return (x != x.round()) | (x < 0) | (x > self.num_params - 1)


class _Gaussian(_Likelihood):
    name, expectation, base_support, discrete = "gaussian", "finite reals", constraints.real, False

    @staticmethod
    def _loc_scale(params):
        return params[..., 0], params[..., 1].clamp(-12.0, 12.0).exp()

    def log_prob(self, params, x):
        loc, scale = self._loc_scale(params)
        return -0.5 * ((x - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)

    def sample(self, params, temperature):
        loc, scale = self._loc_scale(params)
        return loc + temperature * scale * torch.randn_like(loc)

    def invalid(self, x):
        return ~torch.isfinite(x)


class _DiscretizedLogisticMixture(_Likelihood):
    """PixelCNN++'s discretized logistic mixture on ``levels`` values mapped to [-1, 1]."""

    name = "dmol"

    def __init__(self, num_params: int, levels: int) -> None:
        super().__init__(num_params)
        self.levels = levels
        self.expectation = f"integers in [0, {levels})"
        self.base_support = constraints.integer_interval(0, levels - 1)

    def _split(self, params):
        logits, loc, log_scale = params.chunk(3, dim=-1)
        return logits, loc, log_scale.clamp(-7.0, 7.0)

    def log_prob(self, params, x):
        logits, loc, log_scale = self._split(params)
        half = 1.0 / (self.levels - 1)
        centred = (2.0 * x / (self.levels - 1) - 1.0).unsqueeze(-1) - loc
        inv = torch.exp(-log_scale)
        plus, minus = inv * (centred + half), inv * (centred - half)
        # log(σ(a) - σ(b)) = a + log(1 - e^{b-a}) - softplus(a) - softplus(b), exact for a > b
        mid = plus + torch.log(-torch.expm1(minus - plus)) - F.softplus(plus) - F.softplus(minus)
        low = -F.softplus(-plus)  # log σ(plus): the lowest bin takes the left tail
        high = -F.softplus(minus)  # log(1 - σ(minus)): the highest bin the right tail
        xs = x.unsqueeze(-1)
        log_bin = torch.where(xs <= 0, low, torch.where(xs >= self.levels - 1, high, mid))
        return torch.logsumexp(logits.log_softmax(-1) + log_bin, dim=-1)

    def sample(self, params, temperature):
        logits, loc, log_scale = self._split(params)
        flat = (logits / temperature).reshape(-1, logits.shape[-1])
        k = torch.multinomial(flat.softmax(-1), 1).reshape(logits.shape[:-1] + (1,))
        mu = loc.gather(-1, k).squeeze(-1)
        s = log_scale.gather(-1, k).squeeze(-1).exp() * temperature
        u = torch.rand_like(mu).clamp(1e-6, 1 - 1e-6)
        y = mu + s * (u.log() - (-u).log1p())
        return ((y + 1) / 2 * (self.levels - 1)).round().clamp(0, self.levels - 1)

    def invalid(self, x):
        return (x != x.round()) | (x < 0) | (x > self.levels - 1)


_LIKELIHOOD_NAMES = ("bernoulli", "categorical", "gaussian", "dmol")


def _make_likelihood(name: Any, num_params: int, levels: int) -> _Likelihood:
    if name not in _LIKELIHOOD_NAMES:
        raise ValueError(f"likelihood must be one of {_LIKELIHOOD_NAMES}, got {name!r}")
    need = {"bernoulli": "== 1", "gaussian": "== 2", "categorical": ">= 2", "dmol": "= 3 M"}
    ok = {
        "bernoulli": num_params == 1,
        "gaussian": num_params == 2,
        "categorical": num_params >= 2,
        "dmol": num_params % 3 == 0,
    }[name]
    if not ok:
        raise ValueError(
            f"likelihood {name!r} needs a conditioner with num_params {need[name]}, "
            f"got num_params={num_params}"
        )
    if name == "dmol":
        check_int("levels", levels, minimum=2)
        return _DiscretizedLogisticMixture(num_params, levels)
    return {"bernoulli": _Bernoulli, "categorical": _Categorical, "gaussian": _Gaussian}[name](
        num_params
    )


def _describe(x: Any) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


class AutoregressiveDistribution(TorchDistribution):
    """``p(x | c) = Π_d p(x_{π(d)} | θ_{π(d)}(x_{π(<d)}, c))`` over a conditioner network.

    The conditioner is a :class:`~pyro_genmodels.nn.Conditioner`.
    ``log_prob`` is one pass of the conditioner (in eval mode a MADE with
    several masks gives the ensemble ``log 1/M Σ_m p_m(x)``; in training mode one
    random mask per call). ``sample`` generates in the conditioner's order
    using its incremental :meth:`~pyro_genmodels.nn.Conditioner.step`
    (``incremental=False``: the naive sampler, one full pass per block).

    Args:
        conditioner: the network (FVSBN, NADE, MADE, PixelCNN, RNN, ...); register
            it in the model with ``pyro.module``.
        likelihood: ``"bernoulli"`` (P = 1), ``"categorical"`` (P = K levels),
            ``"gaussian"`` (P = 2: loc, log-scale) or ``"dmol"`` (discretized
            mixture of ``P/3`` logistics over ``levels`` integer values).
        context: optional ``(*batch, context_dim)`` float conditioning vector, or integer
            class labels ``(*batch,)`` in ``[0, context_dim)`` (one-hot encoded here).
        temperature: > 0; divides logits / multiplies scales when sampling.
        length: sequence length ``T`` for sequence conditioners (RNN).
        lengths: optional ``(*batch,)`` integer valid lengths of padded sequences:
            positions ``t >= lengths`` are ignored by ``log_prob`` and sampled as 0.
        levels: number of pixel values of the ``"dmol"`` likelihood.

    Shapes: ``event_shape`` is the conditioner's (``(D,)``, ``(T,)``, ``(T, F)``
    or ``(C, H, W)``); ``batch_shape`` that of ``context``/``lengths``;
    ``log_prob`` of ``(*sample, *batch, *event)`` → ``(*sample, *batch)``.

    References: Larochelle & Murray, "The Neural Autoregressive Distribution
    Estimator", 2011; Germain et al., "MADE", 2015; van den Oord et al.,
    "Pixel Recurrent Neural Networks", 2016; Salimans et al., "PixelCNN++", 2017.

    >>> import torch
    >>> from pyro_genmodels.nn import NADE
    >>> d = AutoregressiveDistribution(NADE(3, hidden_dim=4), "bernoulli")
    >>> x = torch.tensor([[a, b, c] for a in (0., 1.) for b in (0., 1.) for c in (0., 1.)])
    >>> round(d.log_prob(x).exp().sum().item(), 5), d.sample((2,)).shape
    (1.0, torch.Size([2, 3]))
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(
        self,
        conditioner: Conditioner,
        likelihood: str = "bernoulli",
        context: torch.Tensor | None = None,
        temperature: float = 1.0,
        length: int | None = None,
        lengths: torch.Tensor | None = None,
        levels: int = 256,
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(conditioner, Conditioner):
            raise TypeError(
                "conditioner must be a pyro_genmodels.nn.Conditioner (FVSBN, NADE, MADE, "
                f"PixelCNN, RNN), got {type(conditioner).__name__}"
            )
        self.conditioner = conditioner
        self.likelihood = _make_likelihood(likelihood, conditioner.num_params, levels)
        self.temperature = check_positive_float("temperature", temperature)
        if lengths is not None:
            if not isinstance(lengths, torch.Tensor) or lengths.is_floating_point():
                raise TypeError(
                    f"lengths must be an integer Tensor (*batch,), got {_describe(lengths)}"
                )
            length = int(lengths.max()) if length is None else length
        event_shape = conditioner.event_shape_for(length)
        if lengths is not None and bool(((lengths < 0) | (lengths > event_shape[0])).any()):
            raise ValueError(f"lengths must lie in [0, {event_shape[0]}], got {lengths.tolist()}")
        self.lengths = lengths
        self.context = self._check_context(context)
        shapes = [] if self.context is None else [self.context.shape[:-1]]
        shapes += [] if lengths is None else [lengths.shape]
        batch_shape = torch.broadcast_shapes(*shapes) if shapes else torch.Size()
        super().__init__(batch_shape, event_shape, validate_args=validate_args)
        if self._validate_args and self.context is not None:
            check_finite(self.context, "AutoregressiveDistribution context")

    def _one_hot_labels(self, labels: torch.Tensor, dim: int) -> torch.Tensor:
        """Integer class labels ``(*batch,)`` as one-hot contexts ``(*batch, dim)``."""
        if dim == 0 or labels.dtype == torch.bool:
            raise TypeError(
                f"integer context (class labels) needs a conditioner with context_dim = number "
                f"of classes > 0, got context_dim={dim} and labels of dtype {labels.dtype}"
            )
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= dim):
            raise ValueError(
                f"class labels used as context must lie in [0, {dim}), got values in "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
        param = next(self.conditioner.parameters())
        return torch.nn.functional.one_hot(labels.long(), dim).to(param.dtype)

    def _check_context(self, context: torch.Tensor | None) -> torch.Tensor | None:
        dim = self.conditioner.context_dim
        if context is None:
            if dim:
                raise ValueError(
                    f"the conditioner needs a context of shape (*batch, {dim}), got None"
                )
            return None
        if isinstance(context, torch.Tensor) and not context.is_floating_point():
            return self._one_hot_labels(context, dim)
        if not isinstance(context, torch.Tensor) or context.dim() == 0:
            raise TypeError(f"context must be a Tensor (*batch, {dim}), got {_describe(context)}")
        if context.shape[-1] != dim:
            raise ValueError(
                f"context must have shape (*batch, {dim}) for this conditioner, "
                f"got {tuple(context.shape)}"
            )
        return context

    @constraints.dependent_property
    def support(self) -> constraints.Constraint:
        """The likelihood's values on every position of the event."""
        return constraints.independent(self.likelihood.base_support, len(self.event_shape))

    @classmethod
    def infer_shapes(cls, **arg_shapes: Any) -> tuple[torch.Size, torch.Size]:
        """``(batch_shape, event_shape)`` from the shapes of the arguments: ``conditioner``
        stands for its event shape (``conditioner.event_shape_for(length)``), ``context``
        is ``(*batch, context_dim)`` (for class labels ``(*batch,)``, the shape of their
        one-hot encoding ``(*batch, num_classes)``), ``lengths`` is ``(*batch,)``; the
        other arguments do not shape the distribution.

        >>> AutoregressiveDistribution.infer_shapes(conditioner=(5,), context=(4, 1, 3))
        (torch.Size([4, 1]), torch.Size([5]))
        """
        known = {"conditioner", "likelihood", "context", "temperature", "length", "lengths"}
        if set(arg_shapes) - known - {"levels"} or "conditioner" not in arg_shapes:
            raise TypeError(
                "infer_shapes takes conditioner=event_shape, context=(*batch, C) and "
                f"lengths=(*batch,), got {sorted(arg_shapes)}"
            )
        context, lengths = arg_shapes.get("context"), arg_shapes.get("lengths")
        shapes = [] if context is None else [torch.Size(context[:-1])]
        shapes += [] if lengths is None else [torch.Size(lengths)]
        return torch.broadcast_shapes(*shapes), torch.Size(arg_shapes["conditioner"])

    def expand(self, batch_shape, _instance=None) -> AutoregressiveDistribution:
        batch_shape = check_expand_shape(type(self).__name__, self.batch_shape, batch_shape)
        new = checked_instance(self, AutoregressiveDistribution, _instance)
        new.conditioner, new.likelihood, new.temperature = (
            self.conditioner,
            self.likelihood,
            self.temperature,
        )
        new.context = None
        if self.context is not None:
            new.context = self.context.expand(batch_shape + self.context.shape[-1:])
        new.lengths = None if self.lengths is None else self.lengths.expand(batch_shape)
        super(AutoregressiveDistribution, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    # ---- helpers --------------------------------------------------------------------
    def _pad_mask(self, batch: torch.Size, like: torch.Tensor) -> torch.Tensor | None:
        """``(*batch, *event)`` True where a position is valid (None: all are)."""
        if self.lengths is None:
            return None
        t = torch.arange(self.event_shape[0], device=like.device)
        valid = t < self.lengths.to(like.device).expand(batch)[..., None]
        return valid.reshape(valid.shape + (1,) * (len(self.event_shape) - 1)).expand(
            batch + self.event_shape
        )

    def _flat_context(self, batch: torch.Size, n: int) -> torch.Tensor | None:
        if self.context is None:
            return None
        return self.context.expand(batch + self.context.shape[-1:]).reshape(
            n, self.context.shape[-1]
        )

    def _check_support(self, value: torch.Tensor) -> None:
        bad = self.likelihood.invalid(value)
        if bool(bad.any()):
            raise ValueError(
                f"AutoregressiveDistribution(likelihood={self.likelihood.name!r}) expects "
                f"{self.likelihood.expectation}; got {int(bad.sum())} invalid values, "
                f"e.g. {float(value[bad][0])}"
            )

    # ---- density --------------------------------------------------------------------
    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        batch = broadcast_value_shape(
            "AutoregressiveDistribution", value, self.batch_shape, self.event_shape
        )
        value = to_dtype(value, parameters_dtype(self.conditioner)).expand(batch + self.event_shape)
        valid = self._pad_mask(batch, value)
        if valid is not None:
            value = torch.where(valid, value, torch.zeros_like(value))
        if self._validate_args:
            self._check_support(value)
        flat = value.reshape((batch.numel(),) + self.event_shape)
        if flat.shape[0] == 0:  # no rows: nothing to score, the network is not called
            like = next(self.conditioner.parameters())
            return torch.zeros(batch, dtype=like.dtype, device=value.device)
        ctx = self._flat_context(batch, flat.shape[0])
        net, m = self.conditioner, self.conditioner.num_orderings
        if m == 1:
            terms = self._log_prob_terms(flat, ctx)
        elif net.training:
            net.set_ordering(int(torch.randint(m, ())))
            terms = self._log_prob_terms(flat, ctx)
        else:
            terms = self._ensemble_terms(flat, ctx, valid, batch)
        if valid is not None and terms.dim() > 1:
            terms = terms * valid.reshape(terms.shape)
        return terms.reshape(flat.shape[0], -1).sum(-1).reshape(batch)

    def _log_prob_terms(self, flat: torch.Tensor, ctx: torch.Tensor | None) -> torch.Tensor:
        return self.likelihood.log_prob(self.conditioner(flat, ctx), flat)

    def _ensemble_terms(self, flat, ctx, valid, batch) -> torch.Tensor:
        """``log 1/M Σ_m p_m(x)`` per event (shape ``(N, 1)``)."""
        net, m, previous = (
            self.conditioner,
            self.conditioner.num_orderings,
            self.conditioner.mask_index,
        )
        per_mask = []
        try:
            for index in range(m):
                net.set_ordering(index)
                terms = self._log_prob_terms(flat, ctx)
                if valid is not None:
                    terms = terms * valid.reshape(terms.shape)
                per_mask.append(terms.reshape(flat.shape[0], -1).sum(-1))
        finally:
            net.set_ordering(previous)
        return (torch.logsumexp(torch.stack(per_mask), 0) - math.log(m))[:, None]

    # ---- sampling -------------------------------------------------------------------
    def sample(
        self, sample_shape: torch.Size | list[int] | tuple[int, ...] = (), incremental: bool = True
    ) -> torch.Tensor:
        """Draws ``sample_shape + batch_shape + event_shape`` values in the conditioner's order."""
        shape = torch.Size(sample_shape) + self.batch_shape
        n = shape.numel()
        like = next(self.conditioner.parameters())
        x = torch.zeros((n,) + self.event_shape, dtype=like.dtype, device=like.device)
        ctx = self._flat_context(shape, n)
        with torch.no_grad():
            if n == 0:  # no rows to draw
                pass
            elif self.conditioner.num_orderings == 1:
                self._fill(x, ctx, incremental)
            else:
                self._fill_mixture(x, ctx, incremental)
        x = x.reshape(shape + self.event_shape)
        valid = self._pad_mask(shape, x)
        return x if valid is None else torch.where(valid, x, torch.zeros_like(x))

    def _fill_mixture(self, x, ctx, incremental) -> None:
        """Each draw picks one of the M orderings uniformly (the ensemble is their mixture)."""
        net, previous = self.conditioner, self.conditioner.mask_index
        which = torch.randint(net.num_orderings, (x.shape[0],), device=x.device)
        try:
            for index in range(net.num_orderings):
                rows = (which == index).nonzero().squeeze(-1)
                if rows.numel():
                    net.set_ordering(index)
                    part = x[rows]
                    self._fill(part, None if ctx is None else ctx[rows], incremental)
                    x[rows] = part
        finally:
            net.set_ordering(previous)

    def _fill(self, x: torch.Tensor, ctx: torch.Tensor | None, incremental: bool) -> None:
        net, block = self.conditioner, self.conditioner.block_size
        order = net.ordering_for(self.event_shape).to(x.device)
        view = x.view(x.shape[0], -1)
        step = net.step if incremental else net.naive_step
        state = net.init_state(x, ctx) if incremental else None
        for i in range(order.numel() // block):
            params, state = step(state, x, i, ctx)
            view[:, order[i * block : (i + 1) * block]] = self.likelihood.sample(
                params, self.temperature
            ).to(x.dtype)
