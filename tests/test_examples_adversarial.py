"""Smoke runs of the adversarial examples: each ``main(quick=True)`` trains briefly and scores."""

import math

from example_loader import load_example as _load


def test_gan_toy2d_quick(capsys, tmp_path):
    out = _load("gan_toy2d").main(quick=True, out=str(tmp_path / "toy.png"))
    table = out["table"]
    assert len(table) == 3 and (tmp_path / "toy.png").is_file()
    assert table["modes"].between(0, 25).all() and table["energy_distance"].map(math.isfinite).all()
    assert len(out["figure"].axes) == 3
    assert "energy_distance" in capsys.readouterr().out


def test_dcgan_mnist5k_quick(capsys, tmp_path):
    out = _load("dcgan_mnist5k").main(quick=True, out=str(tmp_path / "dcgan.png"))
    assert list(out["history"].columns[:3]) == ["epoch", "loss_0", "loss_1"]
    assert math.isfinite(out["mmd"]) and out["energy_distance"] > 0
    assert "test MMD" in capsys.readouterr().out


def test_bigan_digits_quick(capsys):
    out = _load("bigan_digits").main(quick=True)
    assert len(out["history"]) == 1
    assert 0.0 <= out["accuracy"] <= 1.0 and 0.0 <= out["random_accuracy"] <= 1.0
    assert math.isfinite(out["reconstruction_mse"])
    assert "encoder codes" in capsys.readouterr().out
