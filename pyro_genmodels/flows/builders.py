"""Flow builders: each returns one transform (base to data direction) usable in
``TransformedDistribution``, as ``init_transform_fn`` of
``pyro.infer.autoguide.AutoNormalizingFlow`` (through :func:`builder`), and,
given ``context_dim``, as a ``ConditionalTransformModule`` whose
``condition(context)`` is the flow for that context.

Every builder's permutations are deterministic (reversals, even/odd
interleaving, or fixed orders in autoregressive networks), so a model rebuilt
from the same arguments accepts a saved ``state_dict``. ``cache_size`` (0 or 1)
is set on every layer (:func:`~pyro_genmodels.flows.set_cache_size`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import cached_property, partial

import torch
from pyro.distributions import constraints
from pyro.distributions import transforms as T
from pyro.distributions.conditional import ConditionalComposeTransformModule
from pyro.distributions.torch_transform import ComposeTransformModule
from pyro.nn import AutoRegressiveNN, ConditionalAutoRegressiveNN, ConditionalDenseNN, DenseNN
from torch.distributions import Transform

from pyro_genmodels.flows._checks import check_hidden, check_int, check_positive_float
from pyro_genmodels.flows.actnorm import ActNorm
from pyro_genmodels.flows.autoregressive import (
    ConditionalMaskedAffineAutoregressive,
    MaskedAffineAutoregressive,
)
from pyro_genmodels.flows.basic import EvenOdd, Flip, Inverse, set_cache_size
from pyro_genmodels.flows.coupling import (
    AdditiveCoupling,
    AffineCoupling,
    ConditionalAdditiveCoupling,
    ConditionalAffineCoupling,
    ConditionalSplineCoupling,
    DiagonalScaling,
    _spline_param_dims,
)
from pyro_genmodels.flows.spline import ConditionalRQSplineAutoregressive, RQSplineAutoregressive
from pyro_genmodels.flows.sylvester import ConditionalSylvester, Sylvester

Flow = ComposeTransformModule | ConditionalComposeTransformModule
NORMS = (None, "actnorm", "batchnorm")
MASKS = ("alternate", "halves")


def default_hidden(input_dim: int) -> list[int]:
    """Two hidden layers of ``min(512, max(64, 4 D))`` units."""
    return [min(512, max(64, 4 * input_dim))] * 2


def _args(input_dim: object, num_layers: object, context_dim: object, least: int = 1) -> None:
    check_int("input_dim", input_dim, least)
    check_int("num_layers", num_layers)
    if context_dim is not None:
        check_int("context_dim", context_dim)


class _Compose(ComposeTransformModule):
    """Pyro's composition with its domain and codomain computed once: its parts are
    fixed, and torch recomputes both (recursively) at every access, several times per
    ``log_prob``."""

    @cached_property
    def domain(self) -> constraints.Constraint:
        return ComposeTransformModule.domain.fget(self)

    @cached_property
    def codomain(self) -> constraints.Constraint:
        return ComposeTransformModule.codomain.fget(self)


class _ConditionalCompose(ConditionalComposeTransformModule):
    """Pyro's conditional composition whose conditioned flows carry the cache size
    on every layer."""

    def condition(self, context: torch.Tensor) -> ComposeTransformModule:
        parts = [t.condition(context) for t in self.transforms]
        return set_cache_size(_Compose(parts), self._cache_size)


def _compose(parts: list, context_dim: int | None, cache_size: int = 1) -> Flow:
    if context_dim is None:
        return set_cache_size(_Compose(parts, cache_size=1), cache_size)
    return set_cache_size(_ConditionalCompose(parts, cache_size=cache_size), cache_size)


def _couplings(input_dim: int, num_layers: int, mask: str, layer: Callable) -> list[Transform]:
    """``layer(split_dim)`` (a list of transforms) ``num_layers`` times, reversals
    between. ``mask="halves"`` splits at ``D // 2``; ``"alternate"`` wraps the stack in
    :class:`EvenOdd`, so the layers condition on the even and the odd entries in turn
    (split sizes alternate for odd ``D``)."""
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
    d, parts = input_dim // 2, []
    for i in range(num_layers):
        # the density direction meets the layers last to first, each after a reversal
        evens_first = mask == "alternate" and (num_layers - 1 - i) % 2 == 1
        parts += [*layer(input_dim - d if evens_first else d), Flip()]
    if mask == "halves" or input_dim == 2:  # EvenOdd is the identity on pairs
        return parts
    return [EvenOdd(), *parts, Inverse(EvenOdd())]


def _dense(in_dim: int, context_dim: int | None, hidden: list[int], out: list[int]):
    if context_dim is None:
        return DenseNN(in_dim, hidden, out)
    return ConditionalDenseNN(in_dim, context_dim, hidden, out)


def _arn(input_dim: int, context_dim: int | None, hidden: list[int], out: list[int], i: int):
    """A MADE with the identity order on even layers and the reversed one on odd layers."""
    order = torch.arange(input_dim)
    order = order.flip(0) if i % 2 else order
    if context_dim is None:
        return AutoRegressiveNN(input_dim, hidden, out, permutation=order)
    return ConditionalAutoRegressiveNN(input_dim, context_dim, hidden, out, permutation=order)


def _norm(norm: str | None, input_dim: int) -> list[Transform]:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if norm == "actnorm":
        return [ActNorm(input_dim)]
    return [T.BatchNorm(input_dim)] if norm == "batchnorm" else []


def nice(
    input_dim: int,
    num_layers: int = 4,
    hidden_dims: Sequence[int] | None = None,
    context_dim: int | None = None,
    mask: str = "alternate",
    cache_size: int = 1,
) -> Flow:
    """NICE: additive couplings ``y_2 = x_2 + m(x_1)``, then the diagonal scaling
    ``y = exp(s) x``; ``log|det J| = sum(s)``.

    ``mask="alternate"`` conditions on the even and the odd entries in turn (the
    paper's partition); ``"halves"`` on the first and the second half.
    Shapes ``(*, D) -> (*, D)``.

    >>> import torch, pyro.distributions as dist
    >>> d = dist.TransformedDistribution(dist.Normal(torch.zeros(2), 1.0).to_event(1), nice(2))
    >>> d.log_prob(torch.zeros(3, 2)).shape
    torch.Size([3])

    References:
        NICE: Non-linear Independent Components Estimation. L. Dinh, D. Krueger,
        Y. Bengio, 2015.
    """
    _args(input_dim, num_layers, context_dim, 2)
    hidden = check_hidden(hidden_dims, default_hidden(input_dim))
    cls = AdditiveCoupling if context_dim is None else ConditionalAdditiveCoupling

    def layer(d: int) -> list[Transform]:
        return [cls(d, _dense(d, context_dim, hidden, [input_dim - d]))]

    parts = [DiagonalScaling(input_dim), *_couplings(input_dim, num_layers, mask, layer)]
    return _compose(parts, context_dim, cache_size)


def realnvp(
    input_dim: int,
    num_layers: int = 4,
    hidden_dims: Sequence[int] | None = None,
    context_dim: int | None = None,
    norm: str | None = None,
    mask: str = "alternate",
    cache_size: int = 1,
) -> Flow:
    """Real NVP: affine couplings, in the density direction (data ``y`` to base ``x``)
    ``x_2 = y_2 exp(s(y_1)) + t(y_1)`` (:class:`~pyro_genmodels.flows.AffineCoupling`),
    each preceded in that direction by ``norm`` (``"actnorm"`` or ``"batchnorm"``).

    ``mask="alternate"`` conditions on the even and the odd entries in turn (the
    paper's checkerboard on vectors); ``"halves"`` on the first and the second half.
    Shapes ``(*, D) -> (*, D)``.

    >>> realnvp(4, num_layers=2, hidden_dims=[8])(torch.zeros(3, 4)).shape
    torch.Size([3, 4])

    References:
        Density estimation using Real NVP. L. Dinh, J. Sohl-Dickstein, S. Bengio, 2017.
    """
    _args(input_dim, num_layers, context_dim, 2)
    hidden = check_hidden(hidden_dims, default_hidden(input_dim))
    _norm(norm, input_dim)
    cls = AffineCoupling if context_dim is None else ConditionalAffineCoupling

    def layer(d: int) -> list[Transform]:
        return [cls(d, _dense(d, context_dim, hidden, [input_dim - d, input_dim - d]))]

    parts: list[Transform] = []
    for part in _couplings(input_dim, num_layers, mask, layer):
        parts += [part, *_norm(norm, input_dim)] if isinstance(part, Flip) else [part]
    return _compose(parts, context_dim, cache_size)


def _autoregressive(
    input_dim: int,
    num_layers: int,
    hidden_dims,
    context_dim: int | None,
    inverse: bool,
    cache_size: int,
) -> Flow:
    hidden = check_hidden(hidden_dims, default_hidden(input_dim))
    parts: list[Transform] = []
    for i in range(num_layers):
        net = _arn(input_dim, context_dim, hidden, [1, 1], i)
        if context_dim is None:
            t = MaskedAffineAutoregressive(net)
            parts.append(Inverse(t) if inverse else t)
        else:
            t = ConditionalMaskedAffineAutoregressive(net)
            parts.append(t.inv if inverse else t)
    return _compose(parts, context_dim, cache_size)


def maf(
    input_dim: int,
    num_layers: int = 4,
    hidden_dims: Sequence[int] | None = None,
    context_dim: int | None = None,
    cache_size: int = 1,
) -> Flow:
    """MAF: ``x_i = mu_i(x_{<i}) + exp(a_i(x_{<i})) z_i`` (base ``z`` to data ``x``).

    The density direction ``z_i = (x_i - mu_i(x_{<i})) exp(-a_i)`` is one MADE pass
    per layer (each layer is an :class:`~pyro_genmodels.flows.Inverse` of Pyro's
    ``AffineAutoregressive``); sampling costs ``D`` passes. Orders alternate
    between identity and reversal. Shapes ``(*, D) -> (*, D)``.

    >>> maf(3, num_layers=2, hidden_dims=[8]).inv(torch.zeros(5, 3)).shape
    torch.Size([5, 3])

    References:
        Masked Autoregressive Flow for Density Estimation. G. Papamakarios,
        T. Pavlakou, I. Murray, 2017.
    """
    _args(input_dim, num_layers, context_dim)
    return _autoregressive(input_dim, num_layers, hidden_dims, context_dim, True, cache_size)


def iaf(
    input_dim: int,
    num_layers: int = 4,
    hidden_dims: Sequence[int] | None = None,
    context_dim: int | None = None,
    cache_size: int = 1,
) -> Flow:
    """IAF: ``y_i = mu_i(x_{<i}) + exp(a_i(x_{<i})) x_i``; sampling and scoring its own
    samples are one MADE pass per layer (densities of other points cost ``D``).

    Shapes ``(*, D) -> (*, D)``.

    >>> iaf(3, num_layers=2, hidden_dims=[8])(torch.zeros(5, 3)).shape
    torch.Size([5, 3])

    References:
        Improved Variational Inference with Inverse Autoregressive Flow.
        D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling, 2016.
    """
    _args(input_dim, num_layers, context_dim)
    return _autoregressive(input_dim, num_layers, hidden_dims, context_dim, False, cache_size)


def _residual(layer, conditional, input_dim, num_layers, hidden_dims, context_dim, cache_size):
    """``num_layers`` of Pyro's ``layer(D)``, or with a context of
    ``conditional(D, C, hidden)`` (planar and radial flows)."""
    _args(input_dim, num_layers, context_dim)
    if context_dim is None:
        return _compose([layer(input_dim) for _ in range(num_layers)], None, cache_size)
    hidden = check_hidden(hidden_dims, default_hidden(input_dim))
    parts = [conditional(input_dim, context_dim, hidden) for _ in range(num_layers)]
    return _compose(parts, context_dim, cache_size)


def planar(
    input_dim: int,
    num_layers: int = 4,
    hidden_dims: Sequence[int] | None = None,
    context_dim: int | None = None,
    cache_size: int = 1,
) -> Flow:
    """Planar flows ``y = x + u tanh(w^T x + b)`` (no closed-form inverse: densities
    only of the flow's own samples). ``hidden_dims`` is used with a context.

    >>> planar(2, num_layers=3)(torch.zeros(4, 2)).shape
    torch.Size([4, 2])

    References:
        Variational Inference with Normalizing Flows. D. J. Rezende, S. Mohamed, 2015.
    """
    return _residual(
        T.Planar, T.conditional_planar, input_dim, num_layers, hidden_dims, context_dim, cache_size
    )


def radial(
    input_dim: int,
    num_layers: int = 4,
    hidden_dims: Sequence[int] | None = None,
    context_dim: int | None = None,
    cache_size: int = 1,
) -> Flow:
    """Radial flows ``y = x + b h(a, r) (x - x_0)``, ``r = |x - x_0|`` (no closed-form
    inverse). ``hidden_dims`` is used with a context.

    >>> radial(2, num_layers=3)(torch.zeros(4, 2)).shape
    torch.Size([4, 2])

    References:
        Variational Inference with Normalizing Flows. D. J. Rezende, S. Mohamed, 2015.
    """
    return _residual(
        T.Radial, T.conditional_radial, input_dim, num_layers, hidden_dims, context_dim, cache_size
    )


def sylvester(
    input_dim: int,
    num_layers: int = 4,
    hidden_dims: Sequence[int] | None = None,
    context_dim: int | None = None,
    num_householder: int = 2,
    cache_size: int = 1,
) -> Flow:
    """Orthogonal Sylvester flows ``y = x + Q R tanh(S Q^T x + b)`` with ``Q`` a
    product of Householder reflections (no closed-form inverse).

    >>> sylvester(3, num_layers=2)(torch.zeros(4, 3)).shape
    torch.Size([4, 3])

    References:
        Sylvester Normalizing Flows for Variational Inference. R. van den Berg,
        L. Hasenclever, J. M. Tomczak, M. Welling, 2018.
    """
    _args(input_dim, num_layers, context_dim)
    check_int("num_householder", num_householder)
    if context_dim is None:
        parts = [Sylvester(input_dim, num_householder) for _ in range(num_layers)]
        return _compose(parts, None, cache_size)
    hidden = check_hidden(hidden_dims, default_hidden(input_dim))
    parts = [
        ConditionalSylvester.build(input_dim, context_dim, hidden, num_householder)
        for _ in range(num_layers)
    ]
    return _compose(parts, context_dim, cache_size)


def _spline_coupling(input_dim, context_dim, hidden, count_bins, bound, d) -> list[Transform]:
    dims = _spline_param_dims(input_dim - d, count_bins, "linear")
    net = _dense(d, context_dim, hidden, dims)
    if context_dim is None:
        return [T.SplineCoupling(input_dim, d, net, count_bins, bound)]
    return [ConditionalSplineCoupling(input_dim, d, net, count_bins, bound)]


def _spline_ar(input_dim, context_dim, hidden, count_bins, bound, i) -> Transform:
    net = _arn(input_dim, context_dim, hidden, [count_bins, count_bins, count_bins - 1], i)
    if context_dim is None:
        return Inverse(RQSplineAutoregressive(net, count_bins, bound))
    return ConditionalRQSplineAutoregressive(net, count_bins, bound).inv


def spline(
    input_dim: int,
    num_layers: int = 4,
    hidden_dims: Sequence[int] | None = None,
    context_dim: int | None = None,
    kind: str = "coupling",
    count_bins: int = 8,
    bound: float = 3.0,
    mask: str = "alternate",
    cache_size: int = 1,
) -> Flow:
    """Neural spline flows: monotonic splines on ``[-bound, bound]`` (identity
    outside), in coupling layers (``kind="coupling"``: Pyro's rational-linear
    ``SplineCoupling``, with ``mask`` as in :func:`realnvp`) or autoregressive
    layers (``kind="autoregressive"``: rational-quadratic
    :class:`~pyro_genmodels.flows.RQSplineAutoregressive`, density direction one
    pass, as MAF).

    >>> spline(2, num_layers=2, hidden_dims=[8])(torch.zeros(4, 2)).shape
    torch.Size([4, 2])

    References:
        Neural Spline Flows. C. Durkan, A. Bekasov, I. Murray, G. Papamakarios, 2019.
        Invertible Generative Modeling using Linear Rational Splines.
        H. M. Dolatabadi, S. Erfani, C. Leckie, 2020.
    """
    if kind not in ("coupling", "autoregressive"):
        raise ValueError(f"kind must be 'coupling' or 'autoregressive', got {kind!r}")
    _args(input_dim, num_layers, context_dim, 2 if kind == "coupling" else 1)
    check_int("count_bins", count_bins, 2)
    check_positive_float("bound", bound)
    hidden = check_hidden(hidden_dims, default_hidden(input_dim))
    if kind == "coupling":
        layer = partial(_spline_coupling, input_dim, context_dim, hidden, count_bins, bound)
        parts = _couplings(input_dim, num_layers, mask, layer)
    else:
        parts = [
            _spline_ar(input_dim, context_dim, hidden, count_bins, bound, i)
            for i in range(num_layers)
        ]
    return _compose(parts, context_dim, cache_size)


def _glow(*args, **kwargs) -> Flow:
    from pyro_genmodels.flows.glow import glow

    return glow(*args, **kwargs)


BUILDERS: dict[str, Callable[..., Flow]] = {
    "nice": nice,
    "realnvp": realnvp,
    "maf": maf,
    "iaf": iaf,
    "planar": planar,
    "radial": radial,
    "sylvester": sylvester,
    "spline": spline,
    "glow": _glow,
}
INVERTIBLE = ("nice", "realnvp", "maf", "iaf", "spline", "glow")


def builder(name: str, **kwargs) -> Callable[..., Flow]:
    """``input_dim -> flow``: the builder ``name`` with ``kwargs`` bound, e.g. the
    ``init_transform_fn`` of ``AutoNormalizingFlow``.

    >>> make = builder("realnvp", num_layers=2, hidden_dims=[8])
    >>> make(4).inv(torch.zeros(1, 4)).shape
    torch.Size([1, 4])
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown flow {name!r}; expected one of {sorted(BUILDERS)}")
    fn = BUILDERS[name]
    target = fn if name != "glow" else _glow_signature()
    try:
        inspect.signature(target).bind_partial(**kwargs)
    except TypeError as e:
        raise TypeError(f"builder({name!r}, ...) got invalid keyword arguments: {e}") from None
    return partial(fn, **kwargs)


def _glow_signature() -> Callable:
    from pyro_genmodels.flows.glow import glow

    return glow
