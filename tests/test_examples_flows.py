"""Smoke runs of the flow examples: each ``main(quick=True)`` trains briefly."""

import math

import pytest
from example_loader import load_example as _load


def test_flow_toy2d_quick(capsys):
    out = _load("flow_toy2d").main(quick=True)
    assert set(out["entropy"]) <= set(out["nll"]) and all(map(math.isfinite, out["nll"].values()))
    assert len(out["figure"].axes) == len(out["nll"])
    assert "entropy floor" in capsys.readouterr().out


def test_iaf_vae_mnist5k_quick(capsys):
    out = _load("iaf_vae_mnist5k").main(quick=True)
    assert 0 < out["diag"] < 784 * math.log(2) + 50 and 0 < out["iaf"] < 784 * math.log(2) + 50
    assert "IW-8" in capsys.readouterr().out


@pytest.mark.parametrize("conditional", [False, True])
def test_glow_digits_quick(capsys, conditional):
    out = _load("glow_digits").main(quick=True, conditional=conditional)
    assert math.isfinite(out["test_nll"]) and len(out["history"]) == 1
    # pixels live in [0, 17): the uniform density there scores 64 log 17 = 181.3 nats; one quick
    # epoch already beats it (150.7 and 151.3 measured); bits/dim = NLL / (64 log 2)
    assert out["test_nll"] < 64 * math.log(17) - 15
    assert out["bits_per_dim"] * 64 * math.log(2) == pytest.approx(out["test_nll"])
    printed = capsys.readouterr().out
    assert "bits/dim" in printed and ("p(x | y)" in printed) == conditional
