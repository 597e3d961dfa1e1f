"""Flow builders on vectors: each returns one transform (base to data direction)
usable in ``TransformedDistribution``, as ``init_transform_fn`` of
``pyro.infer.autoguide.AutoNormalizingFlow`` (through
:func:`~pyro_genmodels.flows.builder`), and, given ``context_dim``, as a
``ConditionalTransformModule`` whose ``condition(context)`` is the flow for that
context. Glow (vectors and images) is in :mod:`~pyro_genmodels.flows.glow`; the
record of every builder's properties in :mod:`~pyro_genmodels.flows.registry`.

Every builder's permutations are deterministic (reversals, even/odd
interleaving, or fixed orders in autoregressive networks), so a model rebuilt
from the same arguments accepts a saved ``state_dict``. ``cache_size`` (0 or 1)
is set on every layer (:func:`~pyro_genmodels.flows.set_cache_size`); flows
without a closed-form inverse (planar, radial, Sylvester) need 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch  # noqa: F401 (doctests)
from pyro.distributions import transforms as T
from torch.distributions import Transform

from pyro_genmodels.flows._assembly import (
    Flow,
    arn,
    check_args,
    check_own_samples_cache,
    compose,
    couplings,
    default_hidden,
    dense,
    norm_layers,
)
from pyro_genmodels.flows._checks import check_hidden, check_int, check_positive_float
from pyro_genmodels.flows.autoregressive import (
    ConditionalMaskedAffineAutoregressive,
    MaskedAffineAutoregressive,
)
from pyro_genmodels.flows.basic import Flip, Inverse
from pyro_genmodels.flows.coupling import (
    AdditiveCoupling,
    AffineCoupling,
    ConditionalAdditiveCoupling,
    ConditionalAffineCoupling,
    DiagonalScaling,
)
from pyro_genmodels.flows.spline import (
    ConditionalRQSplineAutoregressive,
    ConditionalRQSplineCoupling,
    RQSplineAutoregressive,
    RQSplineCoupling,
)
from pyro_genmodels.flows.sylvester import ConditionalSylvester, Sylvester

SPLINE_KINDS = ("coupling", "autoregressive")


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
    check_args(input_dim, num_layers, context_dim, 2)
    hidden = check_hidden(hidden_dims, default_hidden(input_dim))
    cls = AdditiveCoupling if context_dim is None else ConditionalAdditiveCoupling

    def layer(d: int) -> list[Transform]:
        return [cls(d, dense(d, context_dim, hidden, [input_dim - d]))]

    parts = [DiagonalScaling(input_dim), *couplings(input_dim, num_layers, mask, layer)]
    return compose(parts, context_dim, cache_size)


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
    check_args(input_dim, num_layers, context_dim, 2)
    hidden = check_hidden(hidden_dims, default_hidden(input_dim))
    norm_layers(norm, input_dim)
    cls = AffineCoupling if context_dim is None else ConditionalAffineCoupling

    def layer(d: int) -> list[Transform]:
        return [cls(d, dense(d, context_dim, hidden, [input_dim - d, input_dim - d]))]

    parts: list[Transform] = []
    for part in couplings(input_dim, num_layers, mask, layer):
        parts += [part, *norm_layers(norm, input_dim)] if isinstance(part, Flip) else [part]
    return compose(parts, context_dim, cache_size)


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
        net = arn(input_dim, context_dim, hidden, [1, 1], i)
        if context_dim is None:
            t = MaskedAffineAutoregressive(net)
            parts.append(Inverse(t) if inverse else t)
        else:
            t = ConditionalMaskedAffineAutoregressive(net)
            parts.append(t.inv if inverse else t)
    return compose(parts, context_dim, cache_size)


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
    check_args(input_dim, num_layers, context_dim)
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
    check_args(input_dim, num_layers, context_dim)
    return _autoregressive(input_dim, num_layers, hidden_dims, context_dim, False, cache_size)


def _residual(name, layer, conditional, input_dim, num_layers, hidden_dims, context_dim, cache):
    """``num_layers`` of Pyro's ``layer(D)``, or with a context of
    ``conditional(D, C, hidden)`` (planar and radial flows)."""
    check_args(input_dim, num_layers, context_dim)
    check_own_samples_cache(name, cache)
    if context_dim is None:
        return compose([layer(input_dim) for _ in range(num_layers)], None, cache)
    hidden = check_hidden(hidden_dims, default_hidden(input_dim))
    parts = [conditional(input_dim, context_dim, hidden) for _ in range(num_layers)]
    return compose(parts, context_dim, cache)


def planar(
    input_dim: int,
    num_layers: int = 4,
    hidden_dims: Sequence[int] | None = None,
    context_dim: int | None = None,
    cache_size: int = 1,
) -> Flow:
    """Planar flows ``y = x + u tanh(w^T x + b)`` (no closed-form inverse: densities
    only of the flow's own samples, read from the cache, so ``cache_size`` must be 1).
    ``hidden_dims`` is used with a context.

    >>> planar(2, num_layers=3)(torch.zeros(4, 2)).shape
    torch.Size([4, 2])

    References:
        Variational Inference with Normalizing Flows. D. J. Rezende, S. Mohamed, 2015.
    """
    return _residual(
        "planar",
        T.Planar,
        T.conditional_planar,
        input_dim,
        num_layers,
        hidden_dims,
        context_dim,
        cache_size,
    )


def radial(
    input_dim: int,
    num_layers: int = 4,
    hidden_dims: Sequence[int] | None = None,
    context_dim: int | None = None,
    cache_size: int = 1,
) -> Flow:
    """Radial flows ``y = x + b h(a, r) (x - x_0)``, ``r = |x - x_0|`` (no closed-form
    inverse: ``cache_size`` must be 1, as for :func:`planar`). ``hidden_dims`` is
    used with a context.

    >>> radial(2, num_layers=3)(torch.zeros(4, 2)).shape
    torch.Size([4, 2])

    References:
        Variational Inference with Normalizing Flows. D. J. Rezende, S. Mohamed, 2015.
    """
    return _residual(
        "radial",
        T.Radial,
        T.conditional_radial,
        input_dim,
        num_layers,
        hidden_dims,
        context_dim,
        cache_size,
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
    product of Householder reflections (no closed-form inverse: ``cache_size`` must
    be 1, as for :func:`planar`).

    >>> sylvester(3, num_layers=2)(torch.zeros(4, 3)).shape
    torch.Size([4, 3])

    References:
        Sylvester Normalizing Flows for Variational Inference. R. van den Berg,
        L. Hasenclever, J. M. Tomczak, M. Welling, 2018.
    """
    check_args(input_dim, num_layers, context_dim)
    check_int("num_householder", num_householder)
    check_own_samples_cache("sylvester", cache_size)
    if context_dim is None:
        parts = [Sylvester(input_dim, num_householder) for _ in range(num_layers)]
        return compose(parts, None, cache_size)
    hidden = check_hidden(hidden_dims, default_hidden(input_dim))
    parts = [
        ConditionalSylvester.build(input_dim, context_dim, hidden, num_householder)
        for _ in range(num_layers)
    ]
    return compose(parts, context_dim, cache_size)


def _spline_coupling(input_dim, context_dim, hidden, count_bins, bound, d) -> list[Transform]:
    m = input_dim - d
    net = dense(d, context_dim, hidden, [m * count_bins, m * count_bins, m * (count_bins - 1)])
    if context_dim is None:
        return [RQSplineCoupling(d, net, count_bins, bound)]
    return [ConditionalRQSplineCoupling(d, net, count_bins, bound)]


def _spline_ar(input_dim, context_dim, hidden, count_bins, bound, i) -> Transform:
    net = arn(input_dim, context_dim, hidden, [count_bins, count_bins, count_bins - 1], i)
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
    """Neural spline flows: monotonic rational-quadratic splines ``g`` on
    ``[-bound, bound]`` (identity outside), ``count_bins`` bins each, in coupling
    layers ``x_2 = g(y_2; theta(y_1))`` (``kind="coupling"``:
    :class:`~pyro_genmodels.flows.RQSplineCoupling`, one pass both ways, with
    ``mask`` as in :func:`realnvp`) or autoregressive layers
    ``x_i = g(y_i; theta(y_{<i}))`` (``kind="autoregressive"``:
    :class:`~pyro_genmodels.flows.RQSplineAutoregressive`, density one pass,
    sampling ``D`` passes, as MAF). Either kind is the identity at zero network
    outputs. Shapes ``(*, D) -> (*, D)``.

    >>> spline(2, num_layers=2, hidden_dims=[8])(torch.zeros(4, 2)).shape
    torch.Size([4, 2])

    References:
        Neural Spline Flows. C. Durkan, A. Bekasov, I. Murray, G. Papamakarios, 2019.
    """
    if kind not in SPLINE_KINDS:
        raise ValueError(f"kind must be one of {SPLINE_KINDS}, got {kind!r}")
    check_args(input_dim, num_layers, context_dim, 2 if kind == "coupling" else 1)
    check_int("count_bins", count_bins, 2)
    check_positive_float("bound", bound)
    hidden = check_hidden(hidden_dims, default_hidden(input_dim))
    if kind == "coupling":
        layer = partial(_spline_coupling, input_dim, context_dim, hidden, count_bins, bound)
        parts = couplings(input_dim, num_layers, mask, layer)
    else:
        parts = [
            _spline_ar(input_dim, context_dim, hidden, count_bins, bound, i)
            for i in range(num_layers)
        ]
    return compose(parts, context_dim, cache_size)
