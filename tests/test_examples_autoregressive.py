"""Smoke runs of the autoregressive examples: each ``main(quick=True)`` trains briefly."""

import math

import pytest
import torch
from example_loader import load_example as _load


@pytest.fixture(autouse=True)
def _one_thread():
    """Step-by-step samplers run tiny ops: one thread avoids oversubscription on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_autoregressive_digits_quick(capsys, tmp_path):
    out = _load("autoregressive_digits").main(quick=True, out=str(tmp_path))
    nll = out["table"].set_index("model")["test_nll_nats"]
    assert set(nll.index) == {"fvsbn", "nade", "made", "made-ensemble", "pixelcnn", "lstm"}
    # after one epoch every model is a proper density: 0 < NLL < 64 log 2 + slack
    assert ((nll > 0) & (nll < 64 * math.log(2) + 10)).all()
    assert len(list(tmp_path.glob("*_samples.png"))) == 6
    assert "pixelcnn" in capsys.readouterr().out


def test_pixelcnn_mnist5k_quick(capsys):
    out = _load("pixelcnn_mnist5k").main(quick=True)
    assert 0 < out["test_nll"] < 784 * math.log(2) + 50
    assert out["samples"].shape == (2, 1, 28, 28)
    assert bool(((out["samples"] == 0) | (out["samples"] == 1)).all())
    assert "bits/dim" in capsys.readouterr().out


def test_lstm_sequences_quick(capsys):
    module = _load("lstm_sequences")
    out = module.main(quick=True)
    assert 0 < out["nats_per_char"] < math.log(30)  # below a uniform guess over the vocabulary
    assert all(s.endswith(".") for texts in out["samples"].values() for s in texts)
    ids, lengths = module.encode(["ab.", "b."], "ab.")
    assert ids.tolist() == [[0.0, 1.0, 2.0], [1.0, 2.0, 0.0]] and lengths.tolist() == [3, 2]
    assert "nats/char" in capsys.readouterr().out
