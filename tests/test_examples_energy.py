"""Smoke runs of the energy-based examples: each ``main(quick=True)`` trains briefly."""

import math

from example_loader import load_example as _load


def test_ebm_toy2d_quick(capsys):
    out = _load("ebm_toy2d").main(quick=True)
    assert set(out["nll"]) == {"pcd", "exact", "sliced", "denoising", "nce", "multi-level"}
    assert all(map(math.isfinite, out["nll"].values()))
    assert len(out["figure"].axes) == 2 * len(out["nll"])
    assert "entropy floor" in capsys.readouterr().out


def test_ebm_digits_quick(capsys):
    out = _load("ebm_digits").main(quick=True)
    assert math.isfinite(out["test_nll"]) and out["stderr"] > 0
    assert out["samples"].shape == (64, 64)
    assert "AIS" in capsys.readouterr().out
