"""Smoke runs of the examples: each ``main(quick=True)`` trains briefly and reports metrics."""

import math

import torch
from example_loader import load_example as _load


def test_vae_digits_quick(capsys):
    out = _load("vae_digits").main(quick=True)
    assert out["history"]["beta"].tolist() == [0.0]  # KLAnnealing ran as a fit callback
    # A Bernoulli model of 64 pixels: 0 < NLL, and far below the uniform 64 log 2 = 44.4 + slack.
    assert 0 < out["test_nll"] < 64 * math.log(2) + 5
    assert out["test_nll"] <= -out["test_elbo"] + 1.0  # IW bound is (stochastically) tighter
    assert "bits/dim" in capsys.readouterr().out


def test_cvae_digits_quick(capsys):
    out = _load("cvae_digits").main(quick=True)
    assert len(out["history"]) == 40
    # 160 steps on 256 images: far below the uniform Bernoulli's 64 log 2 = 44.4 nats (25.7
    # measured; the untrained model scores 44.8)
    assert out["test_nll"] < 64 * math.log(2) - 10
    assert "conditional NLL" in capsys.readouterr().out


def test_ssvae_digits_quick(capsys):
    module = _load("ssvae_digits")
    out = module.main(quick=True)
    assert len(out["history"]) == 40 and math.isfinite(out["test_nll"])
    # 25 labeled images and 160 steps: q(y|x) well above chance (0.1) on 64 test digits
    # (0.55 measured with this seed; 0.08 after one epoch)
    assert out["test_accuracy"] > 0.3
    assert "test accuracy" in capsys.readouterr().out
    hidden = module.hide_labels(torch.arange(50) % 10, 0.1)
    assert (hidden >= 0).sum() == 5 and ((hidden == -1) | (hidden == torch.arange(50) % 10)).all()
