"""The generic contract checks of torch.distributions, Pyro and zuko over every public
distribution of the package.

Registering a distribution is one line appended to ``CASES`` (after the imports of its
module)::

    CASES.append(Case("energy-quadratic", lambda device: make_energy(device), shapes={...}))

``Case(id, make, shapes=None, outside=math.nan, scores_any_value=True)``:

- ``make(device)`` builds a small float64 instance on ``device`` (networks of a few
  units); parameters come from the global seed (the tests seed it), anything else
  (contexts, labels) from a fixed generator, so that two builds under different seeds
  differ only in their ``nn.Module`` parameters.
- ``shapes``: the keyword arguments of ``type(d).infer_shapes`` that give
  ``(d.batch_shape, d.event_shape)``; ``None`` when the class does not infer its shapes
  (``infer_shapes`` must then raise ``NotImplementedError``).
- ``outside``: a number outside the support (NaN for real supports), used to check
  that validation raises a ``ValueError``, inside ``pyro.plate`` too.
- ``scores_any_value=False`` for densities that can only score their own samples
  (flows without an inverse: planar, radial, sylvester).

Every public ``Distribution`` subclass defined in ``pyro_genmodels.distributions`` or
``pyro_genmodels.models`` must have a case: ``test_every_public_distribution_is_registered``
fails otherwise. The checks (torch's ``test_distributions.py``, Pyro's
``tests/distributions/test_distributions.py``, zuko's ``test_flows.py``): support and
constraint attributes on the class and the instance; ``expand`` (shapes, a ``ValueError``
for a shape the batch shape does not expand to, ``validate_args`` and the subclass kept);
``sample``/``log_prob`` shapes under ``sample_shape x batch_shape`` (empty sample shapes
included); values broadcast against the batch shape, or a ``ValueError``; validation inside
``pyro.plate``; ``infer_shapes``; state-dict and pickle round trips.
"""

from __future__ import annotations

import importlib
import inspect
import io
import math
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import constraints
from torch import nn

import pyro_genmodels.distributions
import pyro_genmodels.models
from pyro_genmodels import flows
from pyro_genmodels.distributions import (
    AutoregressiveDistribution,
    BernoulliMixture,
    EnergyDistribution,
)
from pyro_genmodels.infer import LangevinSampler
from pyro_genmodels.models import FlowDensity
from pyro_genmodels.nn import FVSBN, MADE, MLP, NADE, RNN, EnergyMLP, PixelCNN

DTYPE = torch.float64


@dataclass
class Case:
    id: str
    make: Callable[[torch.device], dist.TorchDistribution]
    shapes: dict[str, Any] | None = None
    outside: float = math.nan
    scores_any_value: bool = True
    marks: list = field(default_factory=list)


CASES: list[Case] = []


def _fixed(*shape: int) -> torch.Generator:
    return torch.Generator().manual_seed(sum(shape) + 7)


# ---- BernoulliMixture ---------------------------------------------------------------------
def _mixture(batch: tuple[int, ...]) -> Callable[[torch.device], BernoulliMixture]:
    def make(device: torch.device) -> BernoulliMixture:
        logits = torch.randn(batch + (3,), dtype=DTYPE)
        probs = torch.rand(batch + (3, 4), dtype=DTYPE)
        return BernoulliMixture(logits.to(device), probs.to(device))

    return make


for _batch in [(), (2, 1)]:
    CASES.append(
        Case(
            f"mixture-batch{_batch}",
            _mixture(_batch),
            {"logits": _batch + (3,), "probs": _batch + (3, 4)},
            outside=0.5,
        )
    )

# ---- AutoregressiveDistribution: every conditioner x likelihood x context ------------------
_PARAMS = {"bernoulli": (1, None), "categorical": (3, 3), "gaussian": (2, None), "dmol": (6, 4)}
_OUTSIDE = {"bernoulli": 0.5, "categorical": 3.0, "gaussian": math.nan, "dmol": 0.5}
_CONDITIONERS: dict[str, Callable[[int, int | None, int], nn.Module]] = {
    "fvsbn": lambda p, lv, c: FVSBN(3, num_params=p, context_dim=c, input_levels=lv),
    "nade": lambda p, lv, c: NADE(3, 4, num_params=p, context_dim=c, input_levels=lv),
    "made": lambda p, lv, c: MADE(3, [6], num_params=p, context_dim=c, input_levels=lv),
    "made-ensemble": lambda p, lv, c: MADE(
        3, [6], num_params=p, num_masks=2, context_dim=c, input_levels=lv
    ),
    "pixelcnn": lambda p, lv, c: PixelCNN(
        (1, 2, 2), 4, 1, num_params=p, kernel_size=3, context_dim=c, input_levels=lv
    ),
    "rnn": lambda p, lv, c: RNN(4, num_params=p, vocab_size=lv, context_dim=c),
    "rnn-vectors": lambda p, lv, c: RNN(4, num_params=p, features=2, context_dim=c),
}
# context: none (batch ()), float vectors (2, 1, 3) (batch (2, 1)), labels (3,) (batch (3,)),
# and for sequences valid lengths (3,) (batch (3,))
_CONTEXTS = ("none", "vectors", "labels", "lengths")


def _autoregressive(kind: str, likelihood: str, context: str):
    p, levels = _PARAMS[likelihood]
    sequence = kind.startswith("rnn")

    def make(device: torch.device) -> AutoregressiveDistribution:
        net = _CONDITIONERS[kind](p, levels, 0 if context in ("none", "lengths") else 3)
        net = net.to(device=device, dtype=DTYPE).eval()
        kwargs: dict[str, Any] = {"levels": levels} if likelihood == "dmol" else {}
        if sequence:
            kwargs["length"] = 3
        if context == "vectors":
            kwargs["context"] = torch.randn(2, 1, 3, generator=_fixed(1), dtype=DTYPE).to(device)
        elif context == "labels":
            kwargs["context"] = torch.tensor([2, 0, 1], device=device)
        elif context == "lengths":
            kwargs["lengths"] = torch.tensor([3, 1, 0], device=device)
        return AutoregressiveDistribution(net, likelihood, **kwargs)

    event = {"pixelcnn": (1, 2, 2), "rnn-vectors": (3, 2)}.get(kind, (3,))
    shapes: dict[str, Any] = {"conditioner": event}
    if context == "vectors":
        shapes["context"] = (2, 1, 3)
    elif context == "labels":
        shapes["context"] = (3, 3)  # the one-hot encoding of the labels
    elif context == "lengths":
        shapes["lengths"] = (3,)
    return make, shapes


for _kind in _CONDITIONERS:
    for _lik in _PARAMS:
        for _ctx in _CONTEXTS:
            if _ctx == "lengths" and not _kind.startswith("rnn"):
                continue
            _make, _shapes = _autoregressive(_kind, _lik, _ctx)
            CASES.append(Case(f"ar-{_kind}-{_lik}-{_ctx}", _make, _shapes, _OUTSIDE[_lik]))


# ---- FlowDistribution: every builder, unconditional, conditional, class-conditional --------
def _perturb(module: nn.Module) -> None:
    """Parameters away from the identity flow (fresh flows start close to it)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    for m in module.modules():
        if isinstance(m, flows.ActNorm):
            m.initialized.fill_(True)


def _flow(name: str, context: str, dim: int = 2, **kwargs: Any):
    def make(device: torch.device) -> pyro_genmodels.models.FlowDistribution:
        extra: dict[str, Any] = {}
        if context == "vectors":
            extra["context_dim"] = 3
        elif context == "labels":
            extra["num_classes"] = 3
        density = FlowDensity(dim, name, num_layers=2, hidden_dims=[6], **extra, **kwargs)
        density = density.to(device=device, dtype=DTYPE).eval()
        _perturb(density)
        c = None
        if context == "vectors":
            c = torch.randn(2, 1, 3, generator=_fixed(2), dtype=DTYPE).to(device)
        elif context == "labels":
            c = torch.tensor([2, 0, 1], device=device)
        return density.distribution(c)

    shapes: dict[str, Any] = {"base": (dim,)}
    if context == "vectors":
        shapes["context"] = (2, 1, 3)
    elif context == "labels":
        shapes["context"] = (3, 3)
    return make, shapes


for _name in flows.INVERTIBLE:  # FlowDensity refuses builders without an inverse
    for _ctx in ("none", "vectors", "labels"):
        _make, _shapes = _flow(_name, _ctx)
        CASES.append(Case(f"flow-{_name}-{_ctx}", _make, _shapes))
_make, _shapes = _flow("realnvp", "vectors", preprocess="logit", levels=4)
CASES.append(Case("flow-realnvp-logit-levels", _make, _shapes, outside=9.0))
_make, _shapes = _flow("spline", "labels", kind="autoregressive")
CASES.append(Case("flow-spline-autoregressive-labels", _make, _shapes))
for _ctx in ("none", "labels"):
    _make, _shapes = _flow("glow", _ctx, dim=16, image_shape=(1, 4, 4), num_scales=2)
    CASES.append(Case(f"flow-glow-multiscale-{_ctx}", _make, _shapes))


# ---- EnergyDistribution: unnormalized, normalized (a log Z tensor), conditional ------------
class _ConditionalEnergy(nn.Module):
    """``E(x, c) = MLP([x, c])``, a few units (x: 2 dims, c: 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = MLP(5, [4], 1, activation=nn.SiLU)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, c], -1)).squeeze(-1) + 0.5 * (x**2).sum(-1)


def _energy(kind: str) -> Callable[[torch.device], EnergyDistribution]:
    def make(device: torch.device) -> EnergyDistribution:
        sampler = LangevinSampler(0.05, 10)  # a short chain keeps the checks fast
        if kind == "conditional":
            net = _ConditionalEnergy().to(device=device, dtype=DTYPE)
            c = torch.randn(2, 1, 3, generator=_fixed(3), dtype=DTYPE).to(device)
            return EnergyDistribution(net, (2,), sampler=sampler, context=c)
        net = EnergyMLP(2, [4]).to(device=device, dtype=DTYPE)
        log_z = torch.tensor(1.5, dtype=DTYPE, device=device) if kind == "normalized" else None
        return EnergyDistribution(net, (2,), log_normalizer=log_z, sampler=sampler)

    return make


for _kind in ("unnormalized", "normalized", "conditional"):
    CASES.append(Case(f"energy-{_kind}", _energy(_kind)))


# ---- the checks ---------------------------------------------------------------------------
def _params(cases: list[Case]) -> list:
    return [pytest.param(c, id=c.id, marks=c.marks) for c in cases]


def _build(case: Case, device: torch.device, seed: int = 0):
    torch.manual_seed(seed)
    return case.make(device)


def _target(batch: torch.Size) -> torch.Size:
    """A batch shape that ``batch`` expands to, with a new leading dim and no size 1."""
    return torch.Size((3,) + tuple(s if s > 1 else 2 for s in batch))


def _first(x: torch.Tensor, batch: torch.Size) -> torch.Tensor:
    """The event of the first batch element of ``x`` ``(*batch, *event)``."""
    return x[(0,) * len(batch)]


@pytest.mark.parametrize("case", _params(CASES))
def test_support_and_constraints_on_class_and_instance(case, device):
    d = _build(case, device)
    cls = type(d)
    assert isinstance(cls.arg_constraints, dict) and isinstance(d.arg_constraints, dict)
    for name, constraint in d.arg_constraints.items():
        assert isinstance(constraint, constraints.Constraint)
        assert isinstance(cls.arg_constraints[name], constraints.Constraint)
        assert bool(constraint.check(getattr(d, name)).all()), name
    assert isinstance(cls.support, constraints.Constraint)
    assert isinstance(d.support, constraints.Constraint)
    assert d.support.event_dim == len(d.event_shape)
    for attr in ("event_dim", "is_discrete"):  # the class may not know them statically
        try:
            assert getattr(cls.support, attr) == getattr(d.support, attr)
        except NotImplementedError:
            pass
    assert isinstance(d.has_rsample, bool) and isinstance(cls.has_rsample, bool)
    x = d.sample()
    assert bool(d.support.check(x).all())


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("case", _params(CASES))
def test_expand_shapes_errors_validation_and_subclass(case, validate, device):
    with pyro.validation_enabled(validate):
        d = _build(case, device)
        target = _target(d.batch_shape)
        e = d.expand(target)
        assert type(e) is type(d)
        assert (e.batch_shape, e.event_shape) == (target, d.event_shape)
        assert e._validate_args is validate
        x = e.sample((2,))
        assert x.shape == (2,) + target + d.event_shape
        assert e.log_prob(x).shape == (2,) + target
        with pytest.raises(ValueError, match="expand"):
            e.expand(target[:-1] + (target[-1] + 1,))
        with pytest.raises(ValueError, match="expand"):
            e.expand(target[1:])
    # an explicit setting outlives the global one, through expand too
    d = _build(case, device)
    d._validate_args = validate  # what the constructor's validate_args=validate sets
    with pyro.validation_enabled(not validate):
        assert d.expand(target)._validate_args is validate
        assert d.expand(target).expand((2,) + target)._validate_args is validate


@pytest.mark.parametrize("sample_shape", [(), (2,), (0,), (2, 1)], ids=str)
@pytest.mark.parametrize("case", _params(CASES))
def test_sample_and_log_prob_shapes(case, sample_shape, device):
    d = _build(case, device)
    x = d.sample(sample_shape)
    assert x.shape == sample_shape + d.batch_shape + d.event_shape
    assert x.device.type == device.type
    lp = d.log_prob(x)
    assert lp.shape == sample_shape + d.batch_shape
    assert lp.dtype == DTYPE and lp.device.type == device.type
    assert bool(torch.isfinite(lp).all())
    if d.has_rsample:
        assert d.rsample(sample_shape).shape == x.shape


@pytest.mark.parametrize("case", _params(CASES))
def test_values_broadcast_against_the_batch_shape(case, device):
    d = _build(case, device)
    batch, event = d.batch_shape, d.event_shape
    x = d.sample((5,))  # (5, *batch, *event)
    rows = x[(slice(None),) + (0,) * len(batch)]  # (5, *event)
    if case.scores_any_value:
        one = rows[0]
        torch.testing.assert_close(d.log_prob(one), d.log_prob(one.expand(batch + event)))
        # (5, 1, ..., 1, *event) against batch: (5, *batch)
        lifted = rows.reshape((5,) + (1,) * len(batch) + event)
        lp = d.log_prob(lifted)
        assert lp.shape == (5,) + batch
        torch.testing.assert_close(lp, d.log_prob(lifted.expand((5,) + batch + event)))
        if len(batch) == 0 or batch[-1] == 1:  # rows (5, *event) line up with the last dim
            shape = torch.broadcast_shapes((5,), batch)
            lp = d.log_prob(rows)
            assert lp.shape == shape
            torch.testing.assert_close(lp, d.log_prob(rows.expand(shape + event).clone()))
    e = d.expand(_target(batch))
    bad = rows[:1].expand((e.batch_shape[-1] + 1,) + event)
    with pytest.raises(ValueError, match="broadcast"):
        e.log_prob(bad)


@pytest.mark.parametrize("case", _params(CASES))
def test_validation_inside_pyro_plate(case, device):
    d = _build(case, device)
    d._validate_args = True  # what the constructor's validate_args=True sets
    batch = d.batch_shape
    good = d.sample()
    bad = good.clone()
    bad.reshape(-1)[0] = case.outside

    def model(obs):
        with pyro.plate("data", 4, dim=-len(batch) - 1):
            pyro.sample("x", d, obs=obs)

    with pytest.raises(ValueError):
        pyro.poutine.trace(model).get_trace(bad).compute_log_prob()
    with pytest.raises(ValueError):
        d.log_prob(bad)
    if case.scores_any_value:
        tr = pyro.poutine.trace(model).get_trace(good)
        tr.compute_log_prob()
        assert tr.nodes["x"]["log_prob"].shape == (4,) + batch
        assert tr.nodes["x"]["fn"]._validate_args is True


@pytest.mark.parametrize("case", _params(CASES))
def test_infer_shapes(case, device):
    d = _build(case, device)
    if case.shapes is None:
        with pytest.raises(NotImplementedError):
            type(d).infer_shapes()
        return
    assert type(d).infer_shapes(**case.shapes) == (d.batch_shape, d.event_shape)


def _modules(d: Any) -> dict[str, nn.Module]:
    return {k: v for k, v in sorted(vars(d).items()) if isinstance(v, nn.Module)}


def _draw_and_score(d: Any, seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        x = d.sample((3,))
        return x, d.log_prob(x)


@pytest.mark.parametrize("case", _params(CASES))
def test_state_dict_and_pickle_round_trips(case, device):
    a, b = _build(case, device, seed=0), _build(case, device, seed=1)
    expected = _draw_and_score(a)
    buffer = io.BytesIO()
    torch.save(a, buffer)
    buffer.seek(0)
    for got, want in zip(_draw_and_score(torch.load(buffer, weights_only=False)), expected):
        torch.testing.assert_close(got, want)
    mods_a, mods_b = _modules(a), _modules(b)
    assert mods_a.keys() == mods_b.keys()
    if not mods_a:
        return
    assert any(  # the two seeds give different parameters: the round trip below can fail
        not torch.equal(p, q)
        for k in mods_a
        for p, q in zip(mods_a[k].state_dict().values(), mods_b[k].state_dict().values())
    )
    for k in mods_a:
        buffer = io.BytesIO()
        torch.save(mods_a[k].state_dict(), buffer)
        buffer.seek(0)
        mods_b[k].load_state_dict(torch.load(buffer))
    for got, want in zip(_draw_and_score(b), expected):
        torch.testing.assert_close(got, want)


def _public_distribution_classes() -> set[type]:
    """Public ``Distribution`` subclasses defined anywhere in ``distributions``/``models``."""
    found = set()
    for package in (pyro_genmodels.distributions, pyro_genmodels.models):
        names = [package.__name__]
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
        for name in names:
            module = importlib.import_module(name)
            for attr, obj in vars(module).items():
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, torch.distributions.Distribution)
                    and obj.__module__.startswith(package.__name__)
                    and not attr.startswith("_")
                ):
                    found.add(obj)
    return found


def test_every_public_distribution_is_registered():
    registered = {type(_build(case, torch.device("cpu"))) for case in CASES}
    public = _public_distribution_classes()
    missing = sorted(c.__qualname__ for c in public - registered)
    assert not missing, f"distributions without a case in CASES: {missing}"
    assert {AutoregressiveDistribution, BernoulliMixture} <= public  # the discovery works


def test_the_registry_check_sees_a_new_class(monkeypatch):
    """A public distribution defined in a package module is found (and would fail above)."""

    class Unregistered(BernoulliMixture):
        pass

    Unregistered.__module__ = pyro_genmodels.distributions.mixture.__name__
    monkeypatch.setattr(pyro_genmodels.distributions.mixture, "Unregistered", Unregistered, False)
    assert Unregistered in _public_distribution_classes()
    assert Unregistered not in {type(_build(case, torch.device("cpu"))) for case in CASES}
