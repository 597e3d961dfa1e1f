"""Conformance registry of every flow transform and builder (and their inverses).

Each case is checked at cache sizes 0 and 1 (a conditional transform whose
constructor takes no cache size: its conditioned transform, through
``set_cache_size``) in float64 for: round trip within 1e-5; log|det J| against
``torch.autograd.functional.jacobian`` + ``slogdet`` within 1e-5 (caches bypassed
by cloning inputs); a lower-triangular Jacobian for autoregressive layers;
``forward_shape``/``inverse_shape``; a gradient for every parameter; identical
outputs after a ``state_dict`` round trip; finite values and gradients near the
edges of the domain. Batch norm is checked in eval mode (in training mode it
normalizes by the batch's statistics: not one fixed bijection). Deterministic: no
statistical failure rate.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import transforms as T
from pyro.nn import AutoRegressiveNN, ConditionalAutoRegressiveNN
from torch.distributions import Transform, constraints

from pyro_genmodels import flows

C = 3  # context size of conditional cases


@dataclass
class Case:
    make: Callable[[int], object]  # cache_size -> transform or conditional transform
    event_shape: tuple
    conditional: bool = False
    invertible: bool = True
    autoregressive: bool = False
    caches: tuple = (0, 1)  # cache sizes to check
    scale: float = 1.0  # typical magnitude of inputs


def _actnorm(event_dim, shape):
    def make(cache_size):
        t = flows.ActNorm(shape[0], event_dim=event_dim, cache_size=cache_size)
        with torch.no_grad():
            t.loc.normal_()
            t.log_scale.normal_(0.0, 0.3)
        t.initialized.fill_(True)
        return t

    return make


def _diag(cache_size):
    t = flows.DiagonalScaling(4, cache_size=cache_size)
    with torch.no_grad():
        t.log_scale.normal_(0.0, 0.5)
    return t


def _split(cache_size):
    inner = flows.ActNorm(2, event_dim=3)
    with torch.no_grad():
        inner.log_scale.normal_()
    inner.initialized.fill_(True)
    return flows.MultiscaleSplit(inner, 2, dim=-3, cache_size=cache_size)


def _b(name, **kw):
    return lambda cache_size: flows.BUILDERS[name](cache_size=cache_size, **kw)


def _conditional_split(cache_size):
    return flows.ConditionalMultiscaleSplit(flows.conditional_additive_coupling(2, C, [8]), 2, -1)


CASES: dict[str, Case] = {
    "AdditiveCoupling": Case(
        lambda c: flows.AdditiveCoupling(2, pyro.nn.DenseNN(2, [8], [2]), cache_size=c), (4,)
    ),
    "ConditionalAdditiveCoupling": Case(
        lambda c: flows.conditional_additive_coupling(4, C, [8]), (4,), True
    ),
    "AffineCoupling": Case(
        lambda c: flows.AffineCoupling(1, pyro.nn.DenseNN(1, [8], [3, 3]), cache_size=c), (4,)
    ),
    "ConditionalAffineCoupling": Case(
        lambda c: flows.ConditionalAffineCoupling(
            3, pyro.nn.ConditionalDenseNN(3, C, [8], [1, 1]), cache_size=c
        ),
        (4,),
        True,
    ),
    "ConditionalMultiscaleSplit": Case(_conditional_split, (3,), True),
    "EvenOdd": Case(lambda c: flows.EvenOdd(cache_size=c), (5,)),
    "ConditionalSplineCoupling": Case(
        lambda c: flows.conditional_spline_coupling(4, C, [8]), (4,), True
    ),
    "DiagonalScaling": Case(_diag, (4,)),
    "GaussianAffine": Case(
        lambda c: flows.GaussianAffine.from_data(
            torch.randn(20, 4) @ torch.randn(4, 4), cache_size=c
        ),
        (4,),
    ),
    "ActNorm": Case(_actnorm(1, (4,)), (4,)),
    "ActNorm-image": Case(_actnorm(3, (2, 2, 2)), (2, 2, 2)),
    "Squeeze": Case(lambda c: flows.Squeeze((2, 4, 2), cache_size=c), (2, 4, 2)),
    "MultiscaleSplit": Case(_split, (4, 2, 2)),
    "Sylvester": Case(lambda c: flows.Sylvester(4, cache_size=c), (4,), invertible=False),
    "ConditionalSylvester": Case(
        lambda c: flows.ConditionalSylvester.build(4, C, [8]), (4,), True, False
    ),
    "Inverse": Case(
        lambda c: flows.Inverse(
            flows.MaskedAffineAutoregressive(AutoRegressiveNN(4, [8], permutation=torch.arange(4))),
            cache_size=c,
        ),
        (4,),
    ),
    "MaskedAffineAutoregressive": Case(
        lambda c: flows.MaskedAffineAutoregressive(
            AutoRegressiveNN(4, [8], permutation=torch.arange(4))
        ),
        (4,),
        autoregressive=True,
    ),
    "ConditionalMaskedAffineAutoregressive": Case(
        lambda c: flows.ConditionalMaskedAffineAutoregressive(
            ConditionalAutoRegressiveNN(4, C, [8], permutation=torch.arange(4))
        ),
        (4,),
        conditional=True,
        autoregressive=True,
    ),
    "RQSplineAutoregressive": Case(
        lambda c: flows.RQSplineAutoregressive(
            AutoRegressiveNN(4, [8], param_dims=[5, 5, 4], permutation=torch.arange(4)),
            count_bins=5,
            cache_size=c,
        ),
        (4,),
        autoregressive=True,
        scale=2.0,
    ),
    "ConditionalRQSplineAutoregressive": Case(
        lambda c: flows.ConditionalRQSplineAutoregressive(
            ConditionalAutoRegressiveNN(4, C, [8], param_dims=[5, 5, 4]), count_bins=5
        ),
        (4,),
        conditional=True,
        scale=2.0,
    ),
    "AffineCoupling-image": Case(
        lambda c: flows.AffineCoupling(
            1, flows.ConvCoupling((1, 2, 2), 1, 4), cache_size=c, dim=-3
        ),
        (2, 2, 2),
    ),
    "AdditiveCoupling-image": Case(
        lambda c: flows.AdditiveCoupling(2, torch.nn.Linear(8, 4), cache_size=c, dim=-3),
        (3, 2, 2),
    ),
    "ConditionalAffineCoupling-image": Case(
        lambda c: flows.ConditionalAffineCoupling(
            1, flows.ConvCoupling((1, 2, 2), 1, 4, C), cache_size=c, dim=-3
        ),
        (2, 2, 2),
        True,
    ),
    "RQSplineCoupling": Case(
        lambda c: flows.RQSplineCoupling(
            2, pyro.nn.DenseNN(2, [8], [2 * 5, 2 * 5, 2 * 4]), count_bins=5, cache_size=c
        ),
        (4,),
        scale=2.0,
    ),
    "ConditionalRQSplineCoupling": Case(
        lambda c: flows.ConditionalRQSplineCoupling(
            1, pyro.nn.ConditionalDenseNN(1, C, [8], [3 * 5, 3 * 5, 3 * 4]), 5, cache_size=c
        ),
        (4,),
        True,
        scale=2.0,
    ),
    "Flip": Case(lambda c: flows.Flip(cache_size=c), (4,)),
    "LogitTransform": Case(lambda c: flows.LogitTransform(0.05, cache_size=c), (4,)),
}
for _name, _record in flows.RECORDS.items():
    _kw = dict(input_dim=4, num_layers=2, hidden_dims=[8])
    _inv = _record.invertible
    _caches = (0, 1) if _inv else (1,)  # without an inverse, a flow needs its cache
    CASES[f"builder:{_name}"] = Case(_b(_name, **_kw), (4,), invertible=_inv, caches=_caches)
    CASES[f"builder:{_name}|context"] = Case(
        _b(_name, context_dim=C, **_kw), (4,), True, _inv, caches=_caches
    )
    for _option, _values in _record.options.items():
        for _value in _values:
            CASES[f"builder:{_name}|{_option}={_value}"] = Case(
                _b(_name, **{_option: _value}, **_kw), (4,), invertible=_inv, caches=_caches
            )
    if _name in ("maf", "iaf"):  # one layer: the Jacobian is triangular in the identity order
        CASES[f"builder:{_name}|1 layer"] = Case(
            _b(_name, input_dim=4, num_layers=1, hidden_dims=[8]), (4,), False, _inv, True
        )
for _name in ("nice", "realnvp", "spline"):  # odd D: the alternating split sizes differ
    for _mask in flows.MASKS:
        CASES[f"builder:{_name}|D=5 {_mask}"] = Case(
            _b(_name, input_dim=5, num_layers=3, hidden_dims=[8], mask=_mask), (5,)
        )
CASES["builder:spline-autoregressive|1 layer"] = Case(
    _b("spline", input_dim=4, num_layers=1, hidden_dims=[8], kind="autoregressive"),
    (4,),
    autoregressive=True,
)
CASES["builder:spline-autoregressive|context"] = Case(
    _b("spline", input_dim=4, num_layers=1, context_dim=C, hidden_dims=[8], kind="autoregressive"),
    (4,),
    conditional=True,
)
CASES["builder:glow-image"] = Case(
    _b("glow", input_dim=16, num_layers=1, hidden_dims=[4], image_shape=(1, 4, 4)), (16,)
)
CASES["builder:glow-image|context"] = Case(
    _b("glow", input_dim=16, num_layers=1, hidden_dims=[4], image_shape=(1, 4, 4), context_dim=C),
    (16,),
    conditional=True,
)
CASES["builder:glow-image|2 scales"] = Case(
    _b("glow", input_dim=64, num_layers=1, hidden_dims=[4], image_shape=(1, 8, 8), num_scales=2),
    (64,),
)
CASES["builder:realnvp|norm=batchnorm context"] = Case(
    _b("realnvp", input_dim=4, num_layers=2, hidden_dims=[8], norm="batchnorm", context_dim=C),
    (4,),
    True,
)

PARAMS = [
    pytest.param(name, cache, direction, id=f"{name}-cache{cache}-{direction}")
    for name, case in CASES.items()
    for cache in case.caches
    for direction in (("fwd", "inv") if case.invertible else ("fwd",))
]


def _randomize_zero_params(module):
    """Zero-initialized layers (Glow's last convolutions) would hide Jacobian errors."""
    with torch.no_grad():
        for p in module.parameters():
            if p.abs().max() == 0:
                p.normal_(0.0, 0.1)


def _at_cache(t, cache):
    """``t`` with every layer at ``cache`` (for constructors without a cache size)."""
    return flows.set_cache_size(t, 0) if cache == 0 else t


def _instantiate(name, cache, direction, device, seed=0):
    case = CASES[name]
    torch.manual_seed(seed)
    obj = case.make(cache)
    if isinstance(obj, torch.nn.Module):
        obj = obj.to(device=device, dtype=torch.float64)
        _randomize_zero_params(obj)
        for m in obj.modules():
            if isinstance(m, flows.ActNorm):
                m.initialized.fill_(True)
            if isinstance(m, T.BatchNorm):  # a fixed bijection in eval mode only
                m.eval()
                m.moving_mean.normal_()
                m.moving_variance.uniform_(0.5, 2.0)
    module = obj if isinstance(obj, torch.nn.Module) else None
    context = None
    if case.conditional:
        context = torch.randn(C, dtype=torch.float64, device=device)
        t = _at_cache(obj.condition(context), cache)
    else:
        t = _at_cache(obj, cache)
    if direction == "inv":
        case = Case(**{**vars(case), "event_shape": tuple(t.forward_shape(case.event_shape))})
        t = t.inv
    return case, t, module, context


def _inputs(case, t, direction, device, batch=(3,)):
    torch.manual_seed(1)
    x = torch.randn(*batch, *case.event_shape, dtype=torch.float64, device=device)
    if direction == "inv" and isinstance(t.inv, flows.LogitTransform):
        x = torch.rand(*batch, *case.event_shape, dtype=torch.float64, device=device)
    return x * case.scale


def _event_dims(t):
    return t.domain.event_dim


def _flat_ladj(t, x):
    """log|det J| of one point ``x`` (no batch dims) summed to a scalar."""
    ladj = t.log_abs_det_jacobian(x.clone(), t(x).clone())
    return ladj.sum()


@pytest.mark.parametrize("name,cache,direction", PARAMS)
def test_round_trip(name, cache, direction, device):
    case, t, _, _ = _instantiate(name, cache, direction, device)
    x = _inputs(case, t, direction, device)
    y = t(x)
    if case.invertible:
        assert torch.allclose(t.inv(y.clone()), x, atol=1e-5, rtol=0)
        return
    with pytest.raises((NotImplementedError, KeyError)):
        t.inv(y.clone())
    if cache == 1:
        assert t.inv(y) is x  # the flow's own samples are scored through the cache


@pytest.mark.parametrize("name,cache,direction", PARAMS)
def test_log_det_matches_autograd_jacobian(name, cache, direction, device):
    case, t, _, _ = _instantiate(name, cache, direction, device)
    x = _inputs(case, t, direction, device, batch=(2,))
    d = x[0].numel()
    for i in range(x.shape[0]):
        xi = x[i]
        jac = torch.autograd.functional.jacobian(
            lambda v, xi=xi: t(v.reshape(xi.shape)).reshape(-1), xi.reshape(-1)
        )
        expected = torch.linalg.slogdet(jac.reshape(d, d))[1]
        assert torch.allclose(_flat_ladj(t, xi), expected, atol=1e-5), name
    batched = t.log_abs_det_jacobian(x.clone(), t(x).clone())
    assert batched.shape[:1] == x.shape[:1]


AUTOREGRESSIVE = [n for n, c in CASES.items() if c.autoregressive] + ["Inverse"]


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
@pytest.mark.parametrize("direction", ["fwd", "inv"])
def test_autoregressive_jacobian_is_lower_triangular(name, direction, device):
    case, t, _, _ = _instantiate(name, 1, direction, device)
    x = _inputs(case, t, direction, device)[0]
    jac = torch.autograd.functional.jacobian(lambda v: t(v), x)
    assert jac.triu(1).abs().max() == 0
    assert jac.diagonal().abs().min() > 0


@pytest.mark.parametrize("name,cache,direction", PARAMS)
def test_shapes(name, cache, direction, device):
    case, t, _, _ = _instantiate(name, cache, direction, device)
    x = _inputs(case, t, direction, device, batch=(2, 3))
    y = t(x)
    assert t.forward_shape(x.shape) == y.shape
    assert t.inverse_shape(y.shape) == x.shape
    assert t.log_abs_det_jacobian(x, y).shape[:2] == (2, 3)


@pytest.mark.parametrize("name,cache,direction", PARAMS)
def test_every_parameter_gets_a_gradient(name, cache, direction, device):
    case, t, module, _ = _instantiate(name, cache, direction, device)
    if module is None or not list(module.parameters()):
        pytest.skip("no parameters")
    x = _inputs(case, t, direction, device)
    y = t(x)
    loss = y.pow(2).sum() + t.log_abs_det_jacobian(x, y).sum()
    if case.invertible:
        loss = loss + t.inv(y.detach().clone()).pow(2).sum()
    loss.backward()
    for pname, p in module.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all()


def _score(case, t, x):
    """log_prob of ``x`` under the flow (invertible) or ``t(x)`` and its log-det."""
    if case.invertible:
        base = dist.Normal(torch.zeros_like(x[0]), 1.0).to_event(len(case.event_shape))
        return dist.TransformedDistribution(base, [t]).log_prob(x)
    y = t(x)
    return torch.cat([y.reshape(-1), t.log_abs_det_jacobian(x, y).reshape(-1)])


@pytest.mark.parametrize("name,cache,direction", PARAMS)
def test_save_load_gives_identical_log_prob(name, cache, direction, device, tmp_path):
    case, t, module, context = _instantiate(name, cache, direction, device)
    if module is None:
        pytest.skip("no state")
    x = _inputs(case, t, direction, device)
    before = _score(case, t, x)
    torch.save(module.state_dict(), tmp_path / "flow.pt")
    _, t2, module2, _ = _instantiate(name, cache, direction, device, seed=123)
    module2.load_state_dict(torch.load(tmp_path / "flow.pt", weights_only=True))
    if case.conditional:
        t2 = _at_cache(module2.condition(context), cache)
        t2 = t2.inv if direction == "inv" else t2
    assert torch.equal(_score(case, t2, x.clone()), before)


@pytest.mark.parametrize("name,cache,direction", PARAMS)
def test_finite_near_domain_edges(name, cache, direction, device):
    case, t, module, _ = _instantiate(name, cache, direction, device)
    x = _inputs(case, t, direction, device)
    domain = t.domain
    while isinstance(domain, constraints.independent):
        domain = domain.base_constraint
    if isinstance(domain, constraints._Interval):  # just inside both ends
        lo, hi = domain.lower_bound, domain.upper_bound
        edge = torch.where(x > 0.5, x.new_tensor(hi - 1e-9), x.new_tensor(lo + 1e-9))
    else:  # the real line: far out in every direction
        edge = x * 30.0
    edge = edge.clone().requires_grad_(True)
    y = t(edge)
    ladj = t.log_abs_det_jacobian(edge, y)
    assert torch.isfinite(y).all() and torch.isfinite(ladj).all()
    (y.sum() + ladj.sum()).backward()
    assert torch.isfinite(edge.grad).all()
    if module is not None:
        assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def test_registry_lists_every_public_transform_and_builder():
    covered = set()
    for name in CASES:
        _, t, module, _ = _instantiate(name, CASES[name].caches[0], "fwd", "cpu")
        covered |= {type(t), type(module)}
        if isinstance(t, torch.distributions.ComposeTransform):
            covered |= {type(p) for p in t.parts}
    public = {
        obj
        for obj in vars(flows).values()
        if inspect.isclass(obj)
        and (issubclass(obj, Transform) or issubclass(obj, dist.conditional.ConditionalTransform))
    }
    assert set(flows.TRANSFORMS) == public, "flows.TRANSFORMS must list every public transform"
    assert public <= covered, f"missing from CASES: {sorted(c.__name__ for c in public - covered)}"
    assert {n.split(":")[1].split("|")[0] for n in CASES if n.startswith("builder:")} >= set(
        flows.BUILDERS
    )


def _layers(t):
    """Every transform inside ``t`` (parts of compositions, inverses' bases, splits)."""
    stack, out = [t], []
    while stack:
        t = stack.pop()
        if isinstance(t, Transform) and all(t is not o for o in out):
            out.append(t)
            stack += list(getattr(t, "parts", ()))
            stack += [getattr(t, a) for a in ("base", "transform") if hasattr(t, a)]
            if isinstance(t._inv, Transform):
                stack.append(t._inv)
    return out


@pytest.mark.parametrize(
    "name,cache",
    [(n, c) for n in sorted(CASES) if n.startswith("builder:") for c in CASES[n].caches],
)
def test_builder_cache_size_reaches_every_layer(name, cache):
    _, t, _, _ = _instantiate(name, cache, "fwd", "cpu")
    sizes = {type(p).__name__: p._cache_size for p in _layers(t)}
    assert set(sizes.values()) == {cache}, sizes


@pytest.mark.parametrize("name", ["nice", "realnvp", "spline"])
@pytest.mark.parametrize("dim", [5, 6])
def test_alternate_mask_conditions_on_odd_then_even_entries(name, dim):
    """One coupling layer, density direction: every input that is copied (the
    conditioning set) moves all transformed outputs, every transformed input moves
    one output. With ``mask="alternate"`` the conditioning set is the odd entries;
    with ``"halves"`` the last ``D // 2``."""
    for mask, expected in (
        ("alternate", set(range(1, dim, 2))),
        ("halves", set(range(dim - dim // 2, dim))),
    ):
        torch.manual_seed(0)
        flow = flows.BUILDERS[name](dim, num_layers=1, hidden_dims=[8], mask=mask).double()
        _randomize_zero_params(flow)
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(torch.randn_like(p) * 0.3)
        x = torch.randn(dim, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(flow.inv, x)
        moved = (jac.abs() > 1e-12).sum(0)  # outputs each input moves
        assert {i for i in range(dim) if moved[i] > 1} == expected, (mask, moved)


def test_rational_quadratic_spline_identity_at_zero_and_monotone():
    """Zero parameters give the identity; any parameters give a strictly increasing
    map of the box onto itself, identity outside, continuous at the box's ends."""
    x = torch.linspace(-4.0, 4.0, 801, dtype=torch.float64)[:, None]
    zeros = [torch.zeros(1, 1, k, dtype=torch.float64) for k in (6, 6, 5)]
    y, ladj = flows.rational_quadratic_spline(x, *zeros, bound=3.0)
    assert torch.allclose(y, x, atol=1e-12) and ladj.abs().max() < 1e-12
    torch.manual_seed(0)
    params = [2 * torch.randn(1, 1, k, dtype=torch.float64) for k in (6, 6, 5)]
    y, _ = flows.rational_quadratic_spline(x, *params, bound=3.0)
    assert (y[1:] > y[:-1]).all()
    outside = x.abs() >= 3.0
    assert torch.equal(y[outside], x[outside])
    edge = torch.tensor([[-3.0 + 1e-9], [3.0 - 1e-9]], dtype=torch.float64)
    assert torch.allclose(flows.rational_quadratic_spline(edge, *params, bound=3.0)[0], edge)
