"""Normalizing flows on Pyro's transforms.

Transforms Pyro lacks (each a ``TransformModule`` or ``Transform``):
:class:`AdditiveCoupling` (NICE) and its :class:`DiagonalScaling`,
:class:`AffineCoupling` (Real NVP's, in the density direction, soft-clamped),
:class:`ActNorm` (data-dependent initialization), :class:`Squeeze` and
:class:`MultiscaleSplit` for image tensors, :class:`Sylvester` flows,
:class:`Inverse` (a module's inverse as a module), :class:`Flip`, :class:`EvenOdd`,
:class:`MaskedAffineAutoregressive` (Pyro's, with a dtype-safe inverse),
:class:`LogitTransform`, :class:`RQSplineCoupling` and
:class:`RQSplineAutoregressive` (rational-quadratic spline layers), and the
conditional :class:`ConditionalAdditiveCoupling`, :class:`ConditionalAffineCoupling`,
:class:`ConditionalRQSplineCoupling`, :class:`ConditionalRQSplineAutoregressive`,
:class:`ConditionalSplineCoupling` (Pyro's rational spline coupling with a context),
:class:`ConditionalMultiscaleSplit` and :class:`ConditionalSylvester`.
:class:`GaussianAffine` (``x = loc + L z``) and :func:`start_at_gaussian` start a
flow at the full-covariance Gaussian fitted to the data (:func:`gaussian_fit`).
:func:`set_cache_size` sets the cache size of every layer of a flow and
:func:`clear_cache` empties their caches.

Builders (``input_dim -> transform``, optional ``context_dim``): :func:`nice`,
:func:`realnvp`, :func:`maf`, :func:`iaf`, :func:`planar`, :func:`radial`,
:func:`sylvester`, :func:`spline`, :func:`glow`, each taking ``cache_size``;
:func:`builder` binds keyword arguments for ``AutoNormalizingFlow``. Each has one
:class:`FlowRecord` of its properties in :data:`RECORDS` (invertible, network
passes to score and to sample, image and context support, documented options);
:data:`BUILDERS`, :data:`INVERTIBLE` and every consumer's choices derive from it
(:func:`names`, :func:`check_flow`).

Layout: ``_assembly`` (helpers every builder uses), ``builders`` (vector
builders), ``glow``, ``gaussian``, ``registry`` (the records, :func:`builder`).

>>> import torch, pyro.distributions as dist
>>> from pyro_genmodels import flows
>>> d = dist.TransformedDistribution(dist.Normal(torch.zeros(2), 1.0).to_event(1),
...                                  flows.realnvp(2, num_layers=2))
>>> d.sample((5,)).shape
torch.Size([5, 2])
"""

from pyro_genmodels.flows._assembly import MASKS
from pyro_genmodels.flows.actnorm import ActNorm
from pyro_genmodels.flows.autoregressive import (
    ConditionalMaskedAffineAutoregressive,
    MaskedAffineAutoregressive,
)
from pyro_genmodels.flows.basic import (
    EvenOdd,
    Flip,
    Inverse,
    LogitTransform,
    clear_cache,
    set_cache_size,
)
from pyro_genmodels.flows.builders import (
    iaf,
    maf,
    nice,
    planar,
    radial,
    realnvp,
    spline,
    sylvester,
)
from pyro_genmodels.flows.coupling import (
    AdditiveCoupling,
    AffineCoupling,
    ConditionalAdditiveCoupling,
    ConditionalAffineCoupling,
    ConditionalSplineCoupling,
    DiagonalScaling,
    additive_coupling,
    conditional_additive_coupling,
    conditional_spline_coupling,
    soft_clamp,
)
from pyro_genmodels.flows.gaussian import GaussianAffine, gaussian_fit, start_at_gaussian
from pyro_genmodels.flows.glow import ConvCoupling, glow
from pyro_genmodels.flows.multiscale import ConditionalMultiscaleSplit, MultiscaleSplit, Squeeze
from pyro_genmodels.flows.registry import (
    BUILDERS,
    INVERTIBLE,
    NO_INVERSE,
    RECORDS,
    FlowRecord,
    builder,
    check_flow,
    names,
    without_inverse,
)
from pyro_genmodels.flows.spline import (
    ConditionalRQSplineAutoregressive,
    ConditionalRQSplineCoupling,
    RQSplineAutoregressive,
    RQSplineCoupling,
    rational_quadratic_spline,
)
from pyro_genmodels.flows.sylvester import ConditionalSylvester, ConditionedSylvester, Sylvester

TRANSFORMS = (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ConditionalAdditiveCoupling,
    ConditionalAffineCoupling,
    ConditionalMaskedAffineAutoregressive,
    ConditionalMultiscaleSplit,
    ConditionalRQSplineAutoregressive,
    ConditionalRQSplineCoupling,
    ConditionalSplineCoupling,
    ConditionalSylvester,
    ConditionedSylvester,
    DiagonalScaling,
    EvenOdd,
    Flip,
    GaussianAffine,
    Inverse,
    LogitTransform,
    MaskedAffineAutoregressive,
    MultiscaleSplit,
    RQSplineAutoregressive,
    RQSplineCoupling,
    Squeeze,
    Sylvester,
)

__all__ = [
    "BUILDERS",
    "INVERTIBLE",
    "MASKS",
    "NO_INVERSE",
    "RECORDS",
    "TRANSFORMS",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "ConditionalAdditiveCoupling",
    "ConditionalAffineCoupling",
    "ConditionalMaskedAffineAutoregressive",
    "ConditionalMultiscaleSplit",
    "ConditionalRQSplineAutoregressive",
    "ConditionalRQSplineCoupling",
    "ConditionalSplineCoupling",
    "ConditionalSylvester",
    "ConditionedSylvester",
    "ConvCoupling",
    "DiagonalScaling",
    "EvenOdd",
    "FlowRecord",
    "GaussianAffine",
    "Flip",
    "Inverse",
    "LogitTransform",
    "MaskedAffineAutoregressive",
    "MultiscaleSplit",
    "RQSplineAutoregressive",
    "RQSplineCoupling",
    "Squeeze",
    "Sylvester",
    "additive_coupling",
    "builder",
    "check_flow",
    "clear_cache",
    "conditional_additive_coupling",
    "conditional_spline_coupling",
    "gaussian_fit",
    "glow",
    "iaf",
    "maf",
    "names",
    "nice",
    "planar",
    "radial",
    "rational_quadratic_spline",
    "realnvp",
    "spline",
    "set_cache_size",
    "start_at_gaussian",
    "soft_clamp",
    "sylvester",
    "without_inverse",
]
