"""Constructor and argument checks that name the argument (conditioners, PSIS k-hat)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_genmodels.diagnostics import psis_khat
from pyro_genmodels.nn import FVSBN, MADE, NADE, RNN, PixelCNN

BUILDERS = {
    "FVSBN": lambda **kw: FVSBN(4, **kw),
    "NADE": lambda **kw: NADE(4, 8, **kw),
    "MADE": lambda **kw: MADE(4, [8], **kw),
    "PixelCNN": lambda **kw: PixelCNN((1, 2, 2), channels=4, num_layers=1, **kw),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"context_dim": -1}, ValueError, "context_dim must be an int >= 0.*got -1"),
        ({"context_dim": 2.0}, TypeError, "context_dim must be an int"),
        ({"input_levels": 1}, ValueError, "input_levels must be None or an int K >= 2.*got 1"),
        ({"input_levels": 0}, ValueError, "input_levels"),
        ({"input_levels": 2.5}, TypeError, "input_levels"),
    ],
)
def test_conditioner_constructors_check_context_dim_and_input_levels(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        BUILDERS[name](**kwargs)


def test_rnn_checks_context_dim():
    with pytest.raises(ValueError, match="context_dim"):
        RNN(hidden_dim=4, vocab_size=3, context_dim=-2)


def test_made_with_two_levels_is_finite():
    net = MADE(4, [8], input_levels=2)
    assert bool(torch.isfinite(net(torch.tensor([[0.0, 1.0, 1.0, 0.0]]))).all())


def test_psis_khat_needs_more_than_20_samples():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))

    with pytest.raises(ValueError, match="num_samples must be > 20.*got 20"):
        psis_khat(model, guide, torch.zeros(2), num_samples=20)
    assert psis_khat(model, guide, torch.zeros(2), num_samples=21).shape == (2,)
