"""Conformance of every autoregressive conditioner: normalization, autoregressive Jacobian,
incremental sampler == naive sampler, context, errors.

A new public :class:`pgm.nn.Conditioner` must be added to ``CONFORMANCE``
(``test_every_public_conditioner_is_registered`` fails otherwise).
"""

import itertools

import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels.distributions import AutoregressiveDistribution
from pyro_genmodels.nn import FVSBN, MADE, NADE, RNN, Conditioner, PixelCNN


def _made(**kw):
    return MADE(6, [16, 12], num_masks=3, **kw)


# name -> (factory(ordering, **kw) of a binary conditioner with D <= 10, orderings to test,
#          AutoregressiveDistribution keyword arguments)
CONFORMANCE = {
    "FVSBN": (lambda o=None, **kw: FVSBN(6, ordering=o, **kw), [None, [5, 3, 1, 0, 2, 4]], {}),
    "NADE": (lambda o=None, **kw: NADE(6, 5, ordering=o, **kw), [None, [2, 0, 5, 1, 4, 3]], {}),
    "MADE": (
        lambda o=None, **kw: MADE(6, [16, 12], ordering=o, **kw),
        [None, [3, 5, 0, 1, 4, 2]],
        {},
    ),
    "MADE-ensemble": (lambda o=None, **kw: _made(ordering=o, **kw), [None, [1, 0, 3, 2, 5, 4]], {}),
    "PixelCNN": (lambda o=None, **kw: PixelCNN((1, 3, 3), 4, 1, **kw), [None], {}),
    "PixelCNN-rgb": (lambda o=None, **kw: PixelCNN((2, 2, 2), 4, 1, gated=True, **kw), [None], {}),
    "RNN": (lambda o=None, **kw: RNN(6, cell="lstm", **kw), [None], {"length": 7}),
    "RNN-gru": (lambda o=None, **kw: RNN(5, cell="gru", num_layers=2, **kw), [None], {"length": 6}),
}
COVERS = {"FVSBN": FVSBN, "NADE": NADE, "MADE": MADE, "PixelCNN": PixelCNN, "RNN": RNN}


def _randomize(net, dtype, device, scale=0.7):
    """Random non-zero weights (FVSBN starts at zero) so no test is vacuous."""
    torch.manual_seed(1)
    net = net.to(device=device, dtype=dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(scale * torch.randn_like(p))
    return net


def _all_binary(event_shape, dtype, device):
    d = event_shape.numel()
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=dtype, device=device)
    return states.reshape((-1,) + tuple(event_shape))


def test_every_public_conditioner_is_registered():
    public = {
        name
        for name in pgm.nn.__all__
        if isinstance(getattr(pgm.nn, name), type)
        and issubclass(getattr(pgm.nn, name), Conditioner)
        and getattr(pgm.nn, name) is not Conditioner
    }
    assert public == set(COVERS), (
        f"register every conditioner in CONFORMANCE: {public - set(COVERS)}"
    )
    built = {type(factory()) for factory, _, _ in CONFORMANCE.values()}
    assert built == set(COVERS.values())


@pytest.mark.parametrize("name", CONFORMANCE)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_enumeration_normalizes(name, mode, device, dtype):
    factory, orderings, kwargs = CONFORMANCE[name]
    for ordering in orderings:
        net = _randomize(factory(ordering), dtype, device).train(mode == "train")
        d = AutoregressiveDistribution(net, "bernoulli", **kwargs)
        assert d.event_shape.numel() <= 10
        total = d.log_prob(_all_binary(d.event_shape, dtype, device)).exp().sum().detach()
        assert abs(float(total) - 1.0) < 1e-5, (name, ordering, float(total))


def _blocks(net, event_shape):
    """Block index (position in the generation order) of every flat dimension."""
    order = net.ordering_for(torch.Size(event_shape)).cpu()
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank // net.block_size


@pytest.mark.parametrize("name", CONFORMANCE)
def test_jacobian_is_strictly_lower_triangular_in_order(name, dtype):
    factory, orderings, kwargs = CONFORMANCE[name]
    for ordering, mask in itertools.product(orderings, range(3)):
        net = factory(ordering) if "RNN" not in name else factory(features=2)
        net = _randomize(net, dtype, "cpu")
        if mask >= net.num_orderings:
            continue
        net.set_ordering(mask)
        event = net.event_shape_for(kwargs.get("length"))
        x = torch.randn(event, dtype=dtype)
        jac = torch.autograd.functional.jacobian(net, x)
        d = event.numel()
        jac = jac.reshape(d, net.num_params, d).abs().sum(1)  # (output dim, input dim)
        block = _blocks(net, event)
        allowed = block[None, :] < block[:, None]
        assert float(jac[~allowed].max()) == 0.0, (name, ordering, mask)
        assert float(jac[allowed].abs().max()) > 0, "the test would be vacuous"


@pytest.mark.parametrize("name", CONFORMANCE)
def test_incremental_step_matches_one_pass(name, device, dtype):
    factory, orderings, kwargs = CONFORMANCE[name]
    net = _randomize(factory(orderings[-1], context_dim=3), dtype, device)
    event = net.event_shape_for(kwargs.get("length"))
    x = (torch.rand((4,) + tuple(event), dtype=dtype, device=device) < 0.5).to(dtype)
    ctx = torch.randn(4, 3, dtype=dtype, device=device)
    full = net(x, ctx).reshape(4, -1, net.num_params)
    order = net.ordering_for(event).to(device)
    state, b = net.init_state(torch.zeros_like(x), ctx), net.block_size
    for i in range(event.numel() // b):
        idx = order[i * b : (i + 1) * b]
        # only blocks < i are visible to the step: hide the rest
        seen = torch.zeros_like(x).reshape(4, -1)
        seen[:, order[: i * b]] = x.reshape(4, -1)[:, order[: i * b]]
        params, state = net.step(state, seen.reshape(x.shape), i, ctx)
        torch.testing.assert_close(params, full[:, idx])


@pytest.mark.parametrize("name", CONFORMANCE)
def test_context_changes_density_and_stays_normalized(name, device, dtype):
    factory, orderings, kwargs = CONFORMANCE[name]
    net = _randomize(factory(context_dim=2), dtype, device).eval()
    ctx = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=dtype, device=device)
    d = AutoregressiveDistribution(net, "bernoulli", context=ctx, **kwargs)
    assert d.batch_shape == (2,)
    states = _all_binary(d.event_shape, dtype, device)
    lp = d.log_prob(states.unsqueeze(1)).detach()  # (2^D, 2)
    torch.testing.assert_close(lp.exp().sum(0), torch.ones(2, dtype=dtype, device=device))
    assert float((lp[:, 0] - lp[:, 1]).abs().max()) > 1e-3


def test_made_ensemble_is_the_mean_of_its_masks(dtype):
    net = _randomize(_made(), dtype, "cpu").eval()
    x = _all_binary(torch.Size([6]), dtype, "cpu")
    ensemble = AutoregressiveDistribution(net, "bernoulli").log_prob(x).exp()
    singles = []
    for k in range(3):
        net.set_ordering(k)
        singles.append(AutoregressiveDistribution(MADEView(net, k), "bernoulli").log_prob(x).exp())
    torch.testing.assert_close(ensemble, torch.stack(singles).mean(0))
    assert net.mask_index == 2  # evaluation restores the selected mask


class MADEView(Conditioner):
    """One mask of a MADE as a single-ordering conditioner."""

    def __init__(self, made, k):
        super().__init__()
        self.made, self.k, self.event_shape = made, k, made.event_shape

    def _forward(self, x, context):
        self.made.set_ordering(self.k)
        return self.made._forward(x, context)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: FVSBN(0), "input_dim"),
        (lambda: FVSBN(3, ordering=[0, 0, 1]), "permutation"),
        (lambda: NADE(4, hidden_dim=-1), "hidden_dim"),
        (lambda: MADE(4, []), "hidden layer"),
        (lambda: MADE(4, [8], num_masks=0), "num_masks"),
        (lambda: PixelCNN((8, 8)), "image_shape"),
        (lambda: PixelCNN((1, 8, 8), kernel_size=4), "odd"),
        (lambda: RNN(8, cell="transformer"), "cell"),
        (lambda: RNN(8, vocab_size=3, features=2), "not both"),
    ],
)
def test_constructor_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_forward_errors():
    net = NADE(4, 3)
    with pytest.raises(ValueError, match=r"\(\*batch, 4\)"):
        net(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="context_dim=0"):
        net(torch.zeros(2, 4), torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"context of shape \(\*batch, 2\)"):
        NADE(4, 3, context_dim=2)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="length"):
        RNN(4).event_shape_for(None)
    with pytest.raises(ValueError, match="ordering index"):
        MADE(4, [8], num_masks=2).set_ordering(2)
