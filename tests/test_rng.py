"""``seed_all``: the streams ``pyro.set_rng_seed`` gives, without its accelerator cost."""

import random

import numpy as np
import pyro
import pytest
import torch

from pyro_genmodels.training import rng


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


@pytest.mark.parametrize("seed", [0, 7, 2**31 + 5])
def test_seed_all_gives_pyro_set_rng_seed_streams(seed):
    pyro.set_rng_seed(seed)
    expected = _draws()
    torch.rand(10), np.random.rand(10), random.random()  # move every stream on
    rng.seed_all(seed)
    assert _draws() == expected


def test_seed_all_defers_to_pyro_where_an_accelerator_is_present(monkeypatch):
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is None:
        pytest.skip("torch.accelerator needs torch >= 2.6")
    calls = []
    monkeypatch.setattr(accelerator, "is_available", lambda: True)
    monkeypatch.setattr(pyro, "set_rng_seed", calls.append)
    rng.seed_all(3)
    assert calls == [3]


@pytest.mark.parametrize(
    "seed, error", [(-1, ValueError), (2**32, ValueError), (1.5, TypeError), ("0", TypeError)]
)
def test_seed_all_refuses_what_numpy_cannot_seed_with_a_named_error(seed, error):
    with pytest.raises(error, match="seed"):
        rng.seed_all(seed)
