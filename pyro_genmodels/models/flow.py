"""Flow density models: maximum likelihood with Pyro, plain or conditional, with
dequantization and logit preprocessing for image data.

``FlowDensity`` is a ``PyroModule`` whose ``model(x)`` observes ``x`` at the site
``"x"`` (inside ``pyro.plate("data", N)``) under ``distribution()``, a
``TransformedDistribution`` of a standard normal through a flow of
:mod:`pyro_genmodels.flows`. With no latent site its guide is empty and
``Trace_ELBO`` is the exact negative log-likelihood; with dequantization the
dequantization noise ``u`` is the latent site ``"u"`` and the ELBO is the
dequantized bound, uniform (Theis et al. 2016) or variational (Flow++).

References:
    Density estimation using Real NVP. L. Dinh, J. Sohl-Dickstein, S. Bengio, 2017.
    A note on the evaluation of generative models. L. Theis, A. van den Oord,
    M. Bethge, 2016.
    Flow++: Improving Flow-Based Generative Models with Variational Dequantization
    and Architecture Design. J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel, 2019.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints
from pyro.distributions.conditional import ConditionalTransform, ConditionalTransformModule
from pyro.nn import PyroModule, pyro_method
from torch.distributions import transforms as TT

from pyro_genmodels import flows
from pyro_genmodels._checks import (
    broadcast_value_shape,
    check_expand_shape,
    check_int,
    check_positive_int,
    validating,
)
from pyro_genmodels._dtypes import to_dtype
from pyro_genmodels.data.validation import check_data, check_finite

PREPROCESS = (None, "logit")
DEQUANTIZE = (None, "uniform", "variational")
_Size = torch.Size | list[int] | tuple[int, ...]


def _check_choice(name: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


class FlowDistribution(TorchDistribution):
    """``log p(x | c) = log p_0(f_c^{-1}(x)) + log|det J_{f_c^{-1}}(x)|``: a base density
    pushed through a flow ``f`` (conditioned on ``c``), then through fixed ``transforms``.

    What :meth:`FlowDensity.distribution` returns. Values broadcast against the batch
    shape like any torch distribution's: a context ``(4, 1, C)`` scores data ``(5, D)``
    as ``(4, 5)`` (what enumeration and vectorized particles produce); every call
    flattens values and contexts to rows ``(N, D)``, ``(N, C)`` for the flow's networks.
    ``log_prob`` of the tensor that :meth:`sample` returned reuses the transform that
    drew it, so flows without an inverse (planar, radial, sylvester) score their
    own samples from the cache; any other value raises ``NotImplementedError`` naming
    the layers without an inverse and the invertible flows (:data:`flows.INVERTIBLE
    <pyro_genmodels.flows.INVERTIBLE>`) to use instead.

    Args:
        flow: a ``Transform`` (unconditional) or a ``ConditionalTransform`` (needs ``context``).
        base: ``p_0``, batch shape ``()``, event shape ``(D,)``.
        context: ``(*batch, C)`` floats, or None.
        transforms: fixed transforms applied after the flow (preprocessing).
        support: the constraint on values (default: the real vectors).

    Shapes: ``log_prob`` of ``(*sample, *batch, D)`` -> ``(*sample, *batch)``;
    ``sample(sample_shape)`` -> ``(*sample_shape, *batch, D)``.

    >>> import torch, pyro.distributions as dist
    >>> from pyro_genmodels import flows
    >>> base = dist.Normal(torch.zeros(2), 1.0).to_event(1)
    >>> d = FlowDistribution(flows.realnvp(2, 2, [8], context_dim=3), base, torch.zeros(4, 1, 3))
    >>> d.batch_shape, d.log_prob(torch.zeros(5, 2)).shape, d.sample((6,)).shape
    (torch.Size([4, 1]), torch.Size([4, 5]), torch.Size([6, 4, 1, 2]))

    References:
        Variational Inference with Normalizing Flows. D. J. Rezende, S. Mohamed, 2015.
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(
        self,
        flow: TT.Transform | ConditionalTransform,
        base: TorchDistribution,
        context: torch.Tensor | None = None,
        transforms: Sequence[TT.Transform] = (),
        support: constraints.Constraint | None = None,
        validate_args: bool | None = None,
    ) -> None:
        conditional = isinstance(flow, ConditionalTransform)
        if not conditional and not isinstance(flow, TT.Transform):
            raise TypeError(f"flow must be a Transform or ConditionalTransform, got {flow!r}")
        if not isinstance(base, torch.distributions.Distribution):
            raise TypeError(f"base must be a Distribution, got {type(base).__name__}")
        if base.batch_shape != () or len(base.event_shape) != 1:
            raise ValueError(
                "base must have batch_shape () and event_shape (D,), got "
                f"{tuple(base.batch_shape)} and {tuple(base.event_shape)}"
            )
        if conditional != (context is not None):
            need = "needs a context (*batch, C)" if conditional else "takes no context"
            raise ValueError(f"this flow {need}, got context={_shape_of(context)}")
        if context is not None and (
            not isinstance(context, torch.Tensor)
            or not context.is_floating_point()
            or context.dim() < 1
        ):
            raise TypeError(f"context must be a float Tensor (*batch, C), got {context!r}")
        self.flow, self.base, self.context = flow, base, context
        self.transforms = list(transforms)
        self._support = constraints.real_vector if support is None else support
        self._drawn: tuple | None = None  # (returned sample, its rows, the transform)
        batch_shape = torch.Size() if context is None else context.shape[:-1]
        super().__init__(batch_shape, base.event_shape, validate_args=validate_args)
        if self._validate_args and context is not None:
            check_finite(context, "FlowDistribution context")

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self) -> constraints.Constraint:
        return self._support

    @classmethod
    def infer_shapes(cls, **arg_shapes: Any) -> tuple[torch.Size, torch.Size]:
        """``(batch_shape, event_shape)`` from the shapes of the arguments: ``base`` stands
        for its event shape ``(D,)``, ``context`` is ``(*batch, C)``; ``flow``,
        ``transforms`` and ``support`` do not shape the distribution.

        >>> FlowDistribution.infer_shapes(base=(2,), context=(4, 1, 3))
        (torch.Size([4, 1]), torch.Size([2]))
        """
        unknown = set(arg_shapes) - {"flow", "base", "context", "transforms", "support"}
        if unknown or "base" not in arg_shapes:
            raise TypeError(
                f"infer_shapes takes base=(D,) and context=(*batch, C), got {sorted(arg_shapes)}"
            )
        context = arg_shapes.get("context")
        batch = torch.Size(() if context is None else context[:-1])
        return batch, torch.Size(arg_shapes["base"])

    def expand(self, batch_shape, _instance=None) -> FlowDistribution:
        batch_shape = check_expand_shape(type(self).__name__, self.batch_shape, batch_shape)
        new = self._get_checked_instance(FlowDistribution, _instance)
        new.flow, new.base, new.transforms = self.flow, self.base, self.transforms
        new._support, new._drawn = self._support, None
        new.context = None
        if self.context is not None:
            new.context = self.context.expand(batch_shape + self.context.shape[-1:])
        super(FlowDistribution, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _rows(self, batch: torch.Size, n: int) -> dist.TransformedDistribution:
        """The flow on ``n`` rows of ``batch``: the context expanded and flattened."""
        flow = self.flow
        if self.context is not None and isinstance(flow, ConditionalTransform):
            c = self.context.expand(batch + self.context.shape[-1:]).reshape(n, -1)
            flow = flow.condition(c)
        return dist.TransformedDistribution(
            self.base.expand((n,)), [flow, *self.transforms], validate_args=False
        )

    def _check_invertible(self) -> None:
        """``NotImplementedError`` when a layer has no inverse: a point the distribution did not
        draw cannot be mapped back to the base, so it cannot be scored."""
        layers = flows.without_inverse(self.flow) + [
            name for t in self.transforms for name in flows.without_inverse(t)
        ]
        if layers:
            raise NotImplementedError(
                f"FlowDistribution.log_prob: the flow's layers {sorted(set(layers))} have no "
                "closed-form inverse, so it scores only its own samples (the very tensor that "
                "sample()/rsample() returned, read from the cache), and this value was not drawn "
                "by it. To score other points use an invertible flow (pgm.flows.INVERTIBLE: "
                f"{', '.join(flows.INVERTIBLE)}), e.g. maf, realnvp or spline"
            )

    def rsample(self, sample_shape: _Size = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        n = shape.numel()
        if n == 0:
            return self.base.sample((0,)).reshape(shape + self.event_shape)
        d = self._rows(shape, n)
        rows = d.rsample()
        out = rows.reshape(shape + self.event_shape)
        self._drawn = (out, rows, d)
        return out

    def sample(self, sample_shape: _Size = ()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        batch = broadcast_value_shape("FlowDistribution", value, self.batch_shape, self.event_shape)
        dtype = self.base.sample((0,)).dtype
        value = to_dtype(value, dtype)  # scoring follows training's dtype rule
        n = batch.numel()
        if n == 0:  # no rows: nothing to check or score, the networks are not called
            return torch.zeros(batch, dtype=dtype, device=value.device)
        if self._validate_args:
            self._validate_sample(value)
        if self._drawn is not None and value is self._drawn[0]:
            rows, d = self._drawn[1], self._drawn[2]
        else:
            self._check_invertible()
            rows = value.expand(batch + self.event_shape)
            rows = rows if rows.shape == (n,) + self.event_shape else rows.reshape(n, -1)
            d = self._rows(batch, n)
        return d.log_prob(rows).reshape(batch)


def _shape_of(x: object) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else repr(x)


class FlowDensity(PyroModule):
    """A normalizing-flow density ``log p(x) = log N(f^{-1}(x); 0, I) + log|det J_{f^{-1}}(x)|``.

    Args:
        dim: ``D``, the size of a flat datapoint.
        flow: an invertible builder, one of :data:`pyro_genmodels.flows.INVERTIBLE`.
        num_layers, hidden_dims: passed to the builder.
        context_dim: size ``C`` of a context vector: a conditional density ``p(x | c)``.
        num_classes: a class-conditional density ``p(x | y)``: the context is the
            one-hot label (``context_dim`` must then be None).
        preprocess: ``"logit"`` puts :class:`~pyro_genmodels.flows.LogitTransform`
            (``alpha``) last, so the flow models data in ``[0, 1]`` (or ``[0, levels)``).
        levels: for pixel data: the flow's data space is ``[0, levels)^D`` (an
            ``AffineTransform`` by ``levels`` follows the logit), so densities are in
            the original pixel units (bits/dim as in the literature).
        dequantize: with ``levels``, ``"uniform"`` or ``"variational"``: ``model(x)``
            takes integer pixels ``x`` and adds noise ``u`` (latent site ``"u"``):
            uniform ``q(u) = U[0, 1)^D``, or a conditional flow ``q(u | x)``
            (``realnvp`` with ``num_layers`` layers, squashed by a sigmoid).
        **flow_kwargs: other builder arguments (``image_shape`` for ``glow``, ...).

    Shapes: ``x`` ``(N, D)``; ``context`` ``(N, C)`` floats or ``(N,)`` labels.

    >>> import torch, pyro
    >>> flow = FlowDensity(2, "realnvp", num_layers=2, hidden_dims=[16])
    >>> x = torch.randn(8, 2)
    >>> nll = pyro.infer.Trace_ELBO().loss(flow.model, flow.guide, x) / 8
    >>> flow.distribution().log_prob(x).shape, flow.sample(3).shape
    (torch.Size([8]), torch.Size([3, 2]))

    References:
        Normalizing Flows for Probabilistic Modeling and Inference. G. Papamakarios,
        E. Nalisnick, D. J. Rezende, S. Mohamed, B. Lakshminarayanan, 2021.
    """

    #: ``model`` and ``guide`` draw the same sites at every call: ``fit`` may compile them
    static_structure = True

    def __init__(
        self,
        dim: int,
        flow: str = "realnvp",
        num_layers: int = 4,
        hidden_dims: Sequence[int] | None = None,
        context_dim: int | None = None,
        num_classes: int | None = None,
        preprocess: str | None = None,
        alpha: float = 0.05,
        levels: int | None = None,
        dequantize: str | None = None,
        **flow_kwargs,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        flows.check_flow("flow", flow, flows.INVERTIBLE)  # a density of any point
        _check_choice("preprocess", preprocess, PREPROCESS)
        _check_choice("dequantize", dequantize, DEQUANTIZE)
        if num_classes is not None:
            if context_dim is not None:
                raise ValueError("give num_classes or context_dim, not both")
            context_dim = check_positive_int("num_classes", num_classes)
        if dequantize is not None and levels is None:
            raise ValueError(f"dequantize={dequantize!r} needs levels (the number of pixel values)")
        self.levels = None if levels is None else check_positive_int("levels", levels)
        self.num_classes, self.context_dim = num_classes, context_dim
        self.flow_name, self.preprocess, self.dequantize = flow, preprocess, dequantize
        self.flow = flows.builder(
            flow,
            num_layers=num_layers,
            hidden_dims=hidden_dims,
            context_dim=context_dim,
            **flow_kwargs,
        )(dim)
        self.post: list[TT.Transform] = []  # fixed transforms after the flow (no parameters)
        if preprocess == "logit":
            self.post.append(flows.LogitTransform(alpha))
        if self.levels is not None:
            self.post.append(TT.AffineTransform(0.0, float(self.levels), event_dim=1))
        if dequantize == "variational":
            self.dequantizer = flows.realnvp(dim, num_layers, hidden_dims, context_dim=dim)
        self.register_buffer("_zero", torch.zeros(()))

    def _context(self, context: object) -> torch.Tensor | None:
        if self.context_dim is None:
            if context is not None:
                raise ValueError("context given to an unconditional FlowDensity")
            return None
        if context is None:
            raise ValueError(f"this FlowDensity needs a context of shape (N, {self.context_dim})")
        if not isinstance(context, torch.Tensor):
            raise TypeError(f"context must be a torch.Tensor, got {type(context).__name__}")
        if self.num_classes is not None:
            if context.is_floating_point() or context.dtype == torch.bool:
                raise ValueError(
                    f"context must be integer labels of shape (*batch,), got {context.dtype} "
                    f"{tuple(context.shape)}"
                )
            if ((context < 0) | (context >= self.num_classes)).any():
                raise ValueError(f"labels must lie in {{0, ..., {self.num_classes - 1}}}")
            return F.one_hot(context.long(), self.num_classes).to(self._zero)
        if context.shape[-1:] != (self.context_dim,) or not context.is_floating_point():
            got = tuple(context.shape)
            raise ValueError(
                f"context must be floats of shape (*batch, {self.context_dim}), got {got}"
            )
        return to_dtype(context.to(self._zero.device), self._zero.dtype)  # as fit converts it

    def base(self) -> dist.TorchDistribution:
        """``N(0, I_D)`` on the module's device and dtype."""
        return dist.Normal(self._zero.expand(self.dim), 1.0).to_event(1)

    def support(self) -> constraints.Constraint:
        """The values of ``x``: real vectors, or the box that ``preprocess="logit"``
        maps onto (``levels`` scales it)."""
        logit = next((t for t in self.post if isinstance(t, flows.LogitTransform)), None)
        if logit is None:
            return constraints.real_vector
        top = 1.0 if self.levels is None else float(self.levels)
        box = cast(constraints.interval, logit.codomain)
        return constraints.independent(
            constraints.interval(box.lower_bound * top, box.upper_bound * top), 1
        )

    def distribution(self, context: torch.Tensor | None = None) -> FlowDistribution:
        """``p(x)`` (or ``p(x | context)``), event shape ``(D,)``, batch shape ``()``
        (or ``context``'s batch shape): a :class:`FlowDistribution`.

        The flow's caches are emptied first, so a fresh distribution never answers
        from a pair remembered before a parameter update; a distribution kept across
        optimizer steps should be rebuilt."""
        c = self._context(context)
        flow = flows.clear_cache(self.flow) if c is None else self.flow
        return FlowDistribution(flow, self.base(), c, self.post, support=self.support())

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(x)`` of continuous data ``x`` ``(N, D)`` (in ``[0, levels)`` with
        ``levels``); returns ``(N,)`` (or ``x``'s rows broadcast against the context's
        batch shape)."""
        x = self._check_x(x, continuous=True)
        return self.distribution(context).log_prob(x)

    def sample(self, n: int, context: torch.Tensor | None = None) -> torch.Tensor:
        """``n >= 0`` draws ``(n, D)``; with a context ``(n, C)`` (or labels ``(n,)``),
        one per row (``n`` must then be the number of rows)."""
        check_int("n", n, minimum=0)
        d = self.distribution(context)
        if context is not None and d.batch_shape != (n,):
            raise ValueError(
                f"sample(n, context) draws one value per context row: the context's batch "
                f"shape must be ({n},), got {tuple(d.batch_shape)}"
            )
        return d.sample(() if context is not None else (n,))

    def _check_x(self, x: object, continuous: bool) -> torch.Tensor:
        values = validating()  # the value checks read every value: they follow Pyro's switch
        t = check_data(x, "x", event_dim=self.dim, values=values)
        if not t.is_floating_point():
            t = t.to(self._zero.dtype)
        if not values or (self.levels is None and self.preprocess != "logit"):
            return t
        top = 1.0 if self.levels is None else float(self.levels)
        bad = (t < 0) | (t > top if continuous else t > top - 1)
        if not continuous:
            bad = bad | (t != torch.floor(t))
        if bad.any():
            what = f"in [0, {top:g}]" if continuous else f"integers in {{0, ..., {int(top) - 1}}}"
            raise ValueError(
                f"x must hold {what}; found values in [{t.min().item():.3g}, {t.max().item():.3g}]"
            )
        return t

    def _q_u(self, x: torch.Tensor) -> dist.TorchDistribution:
        """The dequantization distribution ``q(u | x)`` on ``[0, 1)^D``."""
        if self.dequantize == "uniform":
            return dist.Uniform(torch.zeros_like(x), 1.0).to_event(1)
        # built with context_dim=dim when dequantize="variational", which needs levels
        dequantizer = cast(ConditionalTransformModule, self.dequantizer)
        flow = dequantizer.condition(x / float(cast(int, self.levels)))
        base = dist.Normal(torch.zeros_like(x), 1.0).to_event(1)
        return dist.TransformedDistribution(base, [flow, TT.SigmoidTransform()])

    @pyro_method
    def model(self, x: torch.Tensor, context: torch.Tensor | None = None) -> None:
        """``x ~ p(x | context)`` inside ``pyro.plate("data", N)``; with dequantization,
        ``u ~ U[0, 1)^D`` and ``x + u`` is observed."""
        x = self._check_x(x, continuous=self.dequantize is None)
        d = self.distribution(context)
        with pyro.plate("data", x.shape[0]):
            if self.dequantize is None:
                pyro.sample("x", d, obs=x)
                return
            u = pyro.sample("u", dist.Uniform(torch.zeros_like(x), 1.0).to_event(1))
            pyro.sample("x", d, obs=x + u)

    @pyro_method
    def guide(self, x: torch.Tensor, context: torch.Tensor | None = None) -> None:
        """Empty (exact likelihood), or ``u ~ q(u | x)`` for dequantization."""
        if self.dequantize is None:
            return
        x = self._check_x(x, continuous=False)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("u", self._q_u(x))
