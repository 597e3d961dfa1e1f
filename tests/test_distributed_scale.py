"""Data-parallel ``fit`` beyond per-datapoint sums: 2 gloo processes equal 1 process.

- Adversarial losses with inner critic updates (``critic_optim``): ``GANLoss`` with
  ``n_critic=2`` and ``WGANLoss`` (weight clipping); and ``GANLoss`` with simultaneous
  updates (no ``critic_optim``: both players' gradients summed like any other). The
  generator's noise is a second data tensor (``model(x, z)`` observes ``x`` at
  ``Delta(G(z))``), so nothing is random. Each rank starts from *different* network
  weights (rank-dependent seeds): the broadcast of the param store (critic included)
  must make them rank 0's. The 2-process runs stop after 2 epochs, resume from their
  checkpoint (critic optimizer state in the loss's state) and finish 4; generator and
  critic must equal a 1-process run stopped alike.
- Plate scaling: a MAP model with a global latent (``loc``, a Delta guide) and a local
  latent per datapoint, once in ``pyro.plate("data", len(x))`` and once in
  ``pyro.plate("data", N, subsample=idx)``; without the scaling the prior would count
  twice and the subsampled likelihood would be scaled by ``N/b_r`` instead of ``N/B``.
- The zoo's AIS scoring of a small RBM: the free energies split across ranks, AIS's
  ``log Ẑ`` and the energy-distance samples drawn by rank 0 and broadcast.

Batches of 8 over 21 rows: the last global batch of 5 splits unevenly into 3 + 2.
Everything is float64 and noise-free, so the comparisons are within 1e-5 (float64
summation orders are the only difference).
"""

from __future__ import annotations

import os

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from gloo_helpers import run_on_ranks
from torch import nn

from pyro_genmodels import zoo
from pyro_genmodels.data import from_tensors
from pyro_genmodels.infer import GANLoss, WGANLoss
from pyro_genmodels.training import fit

N, D, BATCH, EPOCHS, STOP, WORLD = 21, 2, 8, 4, 2, 2


def _gan(kind: str, rank: int):
    """(model, loss, data): generator and critic initialized from a rank-dependent seed."""
    torch.manual_seed(1 + 100 * rank)
    gen = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, D)).double()
    critic = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 1)).double()

    def model(x, z):
        pyro.module("generator", gen)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Delta(gen(z), event_dim=1), obs=x)

    if kind == "gan":
        loss = GANLoss(critic, critic_optim=pyro.optim.Adam({"lr": 0.05}), n_critic=2)
    elif kind == "gan-simultaneous":  # no critic_optim: fit's optimizer steps both players
        loss = GANLoss(critic)
    else:
        loss = WGANLoss(critic, pyro.optim.RMSprop({"lr": 0.02}), clip_value=0.3, n_critic=2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, dtype=torch.float64, generator=g) * 0.5 + 1.0
    z = torch.randn(N, 2, dtype=torch.float64, generator=g)
    return model, loss, (x, z)


def _map_model(x, idx, subsample):
    loc = pyro.sample("loc", dist.Normal(x.new_zeros(D), 1.0).to_event(1))
    plate = pyro.plate("data", N, subsample=idx) if subsample else pyro.plate("data", len(x))
    with plate:
        z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)


def _map_guide(x, idx, subsample):
    loc = pyro.param("loc_q", x.new_zeros(D))
    zq = pyro.param("z_q", x.new_zeros(N, D))
    pyro.sample("loc", dist.Delta(loc, event_dim=1))
    plate = pyro.plate("data", N, subsample=idx) if subsample else pyro.plate("data", len(x))
    with plate:
        pyro.sample("z", dist.Delta(zq[idx], event_dim=1))


def _params() -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in pyro.get_param_store().items()}


def _run_gan(kind: str, rank: int, epochs: int, ckpt, resume: bool = False, **kwargs):
    pyro.clear_param_store()
    model, loss, data = _gan(kind, rank)
    h = fit(model, lambda x, z: None, data, loss=loss, optim=pyro.optim.Adam({"lr": 0.03}),
            epochs=epochs, batch_size=BATCH, seed=3, progress=False, checkpoint_dir=ckpt,
            resume=resume, **kwargs)  # fmt: skip
    return {"history": h[["loss_0", "loss_1"]].to_numpy(), "params": _params()}


def _run_map(subsample: bool, **kwargs):
    pyro.clear_param_store()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(N, D, dtype=torch.float64, generator=g) + 2.0
    idx = torch.arange(N)
    model = lambda x, i: _map_model(x, i, subsample)  # noqa: E731
    guide = lambda x, i: _map_guide(x, i, subsample)  # noqa: E731
    h = fit(model, guide, (x, idx), optim=pyro.optim.Adam({"lr": 0.1}), epochs=3,
            batch_size=BATCH, seed=3, progress=False, **kwargs)  # fmt: skip
    return {"history": h["loss"].to_numpy(), "params": _params()}


def _rbm_scores(rank: int = 0) -> tuple[dict, list[int]]:
    """The zoo scores of a small RBM and the row counts its free energies were computed on.
    Each rank seeds its generators differently before scoring: equal scores on every rank
    show that the random parts are rank 0's."""
    g = torch.Generator().manual_seed(0)
    binary = torch.bernoulli(torch.full((40, 6), 0.3, dtype=torch.float64), generator=g)
    data = from_tensors(binary, test_fraction=0.25, binarize=True, dtype=torch.float64)
    torch.manual_seed(2)
    setup = zoo.build("rbm-cd1", data, hidden=4, ais_chains=6, ais_steps=30, gibbs_steps=3)
    rbm, rows = setup.module, []
    with torch.no_grad():
        rbm.W.normal_(0.0, 0.5)  # an RBM far from independent units
    free_energy = rbm.free_energy

    def recording(v):
        rows.append(v.shape[0])
        return free_energy(v)

    rbm.free_energy = recording
    torch.manual_seed(7 + 1000 * rank)
    return zoo.evaluate(setup), rows


def _worker(rank: int, out: str) -> dict:
    results = {}
    for kind in ("gan", "gan-simultaneous", "wgan"):
        ckpt = os.path.join(out, kind)
        _run_gan(kind, rank, STOP, ckpt, distributed=True)
        results[kind] = _run_gan(kind, rank, EPOCHS, ckpt, resume=True, distributed=True)
    for subsample in (False, True):
        results[f"map-{subsample}"] = _run_map(subsample, distributed=True)
    results["rbm"] = _rbm_scores(rank)
    return results


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_scale")
    return run_on_ranks(_worker, out, world=WORLD, weights_only=False)


def _assert_same(got: dict, ref: dict) -> None:
    np.testing.assert_allclose(got["history"], ref["history"], rtol=0, atol=1e-5)
    assert got["params"].keys() == ref["params"].keys()
    for name, value in ref["params"].items():
        torch.testing.assert_close(got["params"][name], value, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["gan", "gan-simultaneous", "wgan"])
def test_inner_critic_updates_equal_one_process(two_processes, kind, tmp_path):
    _run_gan(kind, 0, STOP, tmp_path)
    ref = _run_gan(kind, 0, EPOCHS, tmp_path, resume=True)
    critic = [k for k in ref["params"] if k.startswith("discriminator$$$")]
    assert len(critic) == 4 and len(ref["params"]) == 8  # the critic is compared too
    for rank in range(WORLD):
        _assert_same(two_processes[rank][kind], ref)
    start = _gan(kind, 0)[1].discriminator.state_dict()
    moved = [
        float((ref["params"][f"discriminator$$${k}"] - v).abs().max()) for k, v in start.items()
    ]
    assert max(moved) > 1e-2  # the critic trained
    if kind == "wgan":
        assert all(
            float(v.abs().max()) <= 0.3 + 1e-12 for k, v in ref["params"].items() if k in critic
        )


@pytest.mark.parametrize("subsample", [False, True], ids=["batch-plate", "subsampled"])
def test_global_latent_and_subsampled_plate_equal_one_process(two_processes, subsample):
    ref = _run_map(subsample)
    for rank in range(WORLD):
        _assert_same(two_processes[rank][f"map-{subsample}"], ref)
    assert ref["history"][-1] < ref["history"][0] - 0.1  # it trained
    assert float(ref["params"]["loc_q"].abs().max()) > 0.1  # the prior's latent moved


def test_rbm_ais_scoring_equals_one_process(two_processes):
    ref, rows = _rbm_scores()
    assert rows == [10] and np.isfinite(ref["test_nll_nats"]) and ref["test_nll_stderr"] > 0
    for rank in range(WORLD):
        got, rows = two_processes[rank]["rbm"]
        assert rows == [5]  # each rank scored its share of the 10 test rows
        assert got.keys() == ref.keys()
        for key, value in ref.items():
            if isinstance(value, float):
                assert abs(got[key] - value) < 1e-9, key
            else:
                assert got[key] == value, key
