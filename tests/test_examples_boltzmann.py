"""Smoke runs of the Boltzmann examples: each ``main(quick=True)`` trains briefly and scores."""

import math

import torch
from example_loader import load_example as _load


def test_rbm_mnist5k_quick(capsys, tmp_path):
    out = _load("rbm_mnist5k").main(quick=True, out=str(tmp_path))
    assert 0 < out["test_nll"] < 784 * math.log(2) + 10 and out["stderr"] < 1
    assert out["samples"].shape == (4, 784)
    assert bool(((out["samples"] == 0) | (out["samples"] == 1)).all())
    assert set(out["inference"].posterior.data_vars) == {"v", "h"}
    assert len(list(tmp_path.glob("*.png"))) == 2
    assert "AIS" in capsys.readouterr().out


def test_dbm_digits_quick(capsys):
    out = _load("dbm_digits").main(quick=True)
    assert 0 < out["rbm_nll"] < 64 * math.log(2) + 5
    assert out["dbm_bound"] < 64 * math.log(2) + 5 and out["dbm_stderr"] < 1
    assert (
        out["samples"].shape == (32, 64)
        and torch.isin(out["samples"], torch.tensor([0.0, 1.0])).all()
    )
    assert "bound" in capsys.readouterr().out
