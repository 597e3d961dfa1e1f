"""One record of properties per flow builder, read by every consumer.

:data:`RECORDS` maps each builder's name to a :class:`FlowRecord`; the builder
table :data:`BUILDERS`, the tuple :data:`INVERTIBLE`, the choices of
:class:`~pyro_genmodels.models.FlowDensity` and of the VAE's guide and prior
flows are derived from it (:func:`names`), and :func:`check_flow` rejects an
unknown or unsuitable choice naming the valid ones.

>>> from pyro_genmodels import flows
>>> flows.names(invertible=True, density_passes="1")
('nice', 'realnvp', 'maf', 'spline', 'glow')
>>> flows.RECORDS["planar"].invertible
False
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import partial

import pyro.distributions.transforms as T
import torch  # noqa: F401 (doctests)
from pyro.distributions.transforms.planar import ConditionedPlanar
from pyro.distributions.transforms.radial import ConditionedRadial

from pyro_genmodels.flows._assembly import MASKS, NORMS, Flow
from pyro_genmodels.flows.builders import (
    SPLINE_KINDS,
    iaf,
    maf,
    nice,
    planar,
    radial,
    realnvp,
    spline,
    sylvester,
)
from pyro_genmodels.flows.glow import glow
from pyro_genmodels.flows.sylvester import ConditionalSylvester, ConditionedSylvester, Sylvester

PASSES = ("1", "D")  # network passes per layer: one, or one per dimension


@dataclass(frozen=True)
class FlowRecord:
    """What a builder's flow can do (at its default options).

    Attributes:
        build: the builder, ``input_dim -> flow``.
        invertible: it has a closed-form inverse, so it gives the density of any
            point; otherwise only of its own samples, found in its cache.
        density_passes: network passes per layer to score a point it did not
            sample: ``"1"``, ``"D"`` (one per dimension) or ``None`` (it cannot).
        sample_passes: network passes per layer to draw (and score) a sample.
        images: it takes ``image_shape=(C, H, W)`` (convolutional, multiscale).
        conditional: it takes ``context_dim`` (a ``ConditionalTransformModule``).
        options: the documented choices of its other keyword options.
    """

    build: Callable[..., Flow]
    invertible: bool
    density_passes: str | None
    sample_passes: str
    images: bool = False
    conditional: bool = True
    options: Mapping[str, tuple] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.invertible != (self.density_passes is not None):
            raise ValueError("density_passes must be None exactly when invertible is False")
        for passes in (self.density_passes, self.sample_passes):
            if passes is not None and passes not in PASSES:
                raise ValueError(f"passes must be one of {PASSES} or None, got {passes!r}")


RECORDS: dict[str, FlowRecord] = {
    "nice": FlowRecord(nice, True, "1", "1", options={"mask": MASKS}),
    "realnvp": FlowRecord(realnvp, True, "1", "1", options={"norm": NORMS, "mask": MASKS}),
    "maf": FlowRecord(maf, True, "1", "D"),
    "iaf": FlowRecord(iaf, True, "D", "1"),
    "planar": FlowRecord(planar, False, None, "1"),
    "radial": FlowRecord(radial, False, None, "1"),
    "sylvester": FlowRecord(sylvester, False, None, "1"),
    "spline": FlowRecord(spline, True, "1", "1", options={"kind": SPLINE_KINDS, "mask": MASKS}),
    "glow": FlowRecord(glow, True, "1", "1", images=True),
}
BUILDERS: dict[str, Callable[..., Flow]] = {name: r.build for name, r in RECORDS.items()}
_PROPERTIES = tuple(f.name for f in fields(FlowRecord) if f.name not in ("build", "options"))


def names(**properties: object) -> tuple[str, ...]:
    """The builders whose records have every given property value, in
    :data:`RECORDS` order, e.g. ``names(invertible=True)``.

    >>> names(conditional=True, sample_passes="D")
    ('maf',)
    """
    unknown = set(properties) - set(_PROPERTIES)
    if unknown:
        raise ValueError(f"unknown flow properties {sorted(unknown)}; expected {_PROPERTIES}")
    return tuple(
        name
        for name, record in RECORDS.items()
        if all(getattr(record, key) == value for key, value in properties.items())
    )


INVERTIBLE = names(invertible=True)

#: Transform classes with no closed-form inverse (the layers of the builders whose record says
#: ``invertible=False``, and Pyro's): they give the density only of their own samples.
NO_INVERSE: tuple[type, ...] = (
    T.Planar,
    T.ConditionalPlanar,
    ConditionedPlanar,
    T.Radial,
    T.ConditionalRadial,
    ConditionedRadial,
    Sylvester,
    ConditionalSylvester,
    ConditionedSylvester,
)


def without_inverse(transform: object) -> list[str]:
    """The class names of the layers of ``transform`` (compositions searched, conditional or
    not) that have no closed-form inverse; empty when every layer inverts.

    >>> without_inverse(planar(2, num_layers=2)), without_inverse(realnvp(2))
    (['Planar', 'Planar'], [])
    """
    if isinstance(transform, NO_INVERSE):
        return [type(transform).__name__]
    parts = getattr(transform, "parts", None) or getattr(transform, "transforms", None) or []
    return [name for part in parts for name in without_inverse(part)]


def check_flow(
    argument: str, name: object, choices: tuple[str, ...], optional: bool = False
) -> FlowRecord:
    """The record of ``name``, or a ``ValueError`` naming ``argument``, the valid
    ``choices`` (and ``None`` when the argument is ``optional``: its caller handles
    ``None`` before) and, for a known builder outside them, its properties.

    >>> check_flow("flow", "planar", INVERTIBLE)
    Traceback (most recent call last):
    ...
    ValueError: flow must be one of ('nice', 'realnvp', 'maf', 'iaf', 'spline', 'glow'), \
got 'planar' (planar: invertible=False, density_passes=None, sample_passes='1', images=False, \
conditional=True)
    """
    if isinstance(name, str) and name in choices:
        return RECORDS[name]
    message = f"{argument} must be {'None or ' if optional else ''}one of {choices}, got {name!r}"
    if isinstance(name, str) and name in RECORDS:
        r = RECORDS[name]
        props = ", ".join(f"{key}={getattr(r, key)!r}" for key in _PROPERTIES)
        message += f" ({name}: {props})"
    raise ValueError(message)


def builder(name: str, **kwargs) -> Callable[..., Flow]:
    """``input_dim -> flow``: the builder ``name`` with ``kwargs`` bound, e.g. the
    ``init_transform_fn`` of ``AutoNormalizingFlow``.

    >>> make = builder("realnvp", num_layers=2, hidden_dims=[8])
    >>> make(4).inv(torch.zeros(1, 4)).shape
    torch.Size([1, 4])
    """
    if name not in RECORDS:
        raise ValueError(f"unknown flow {name!r}; expected one of {sorted(RECORDS)}")
    fn = RECORDS[name].build
    try:
        inspect.signature(fn).bind_partial(**kwargs)
    except TypeError as e:
        raise TypeError(f"builder({name!r}, ...) got invalid keyword arguments: {e}") from None
    return partial(fn, **kwargs)
