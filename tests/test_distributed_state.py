"""Data-parallel state: persistent chains kept per rank, and the zoo's exact scoring sharded.

Persistent contrastive divergence (``ContrastiveDivergenceLoss(persistent=True)``)
on 2 gloo processes: each rank advances its own replay buffer from its own
random streams (the buffers differ between ranks), the checkpoint holds both
ranks' buffers and random states, and a run stopped after 2 epochs and resumed
equals an uninterrupted 2-process run exactly (parameters and every rank's
buffer, float64). The zoo's exact test NLL (MADE, a RealNVP flow) computed by 2
processes, each scoring its share of the test rows, equals 1 process's.
"""

from __future__ import annotations

import os

import pyro
import pytest
import torch
import torch.distributed as dist
from gloo_helpers import run_on_ranks
from torch import nn

from pyro_genmodels import zoo
from pyro_genmodels.data import from_tensors
from pyro_genmodels.distributions import EnergyDistribution
from pyro_genmodels.infer import ContrastiveDivergenceLoss
from pyro_genmodels.training import fit
from pyro_genmodels.training.files import load_checkpoint

N, D, BATCH, EPOCHS, STOP, WORLD = 21, 2, 8, 4, 2, 2


def _pcd_run(epochs: int, ckpt: str, resume: bool = False):
    """PCD on an energy network; returns (params, this rank's buffers)."""
    torch.manual_seed(1)
    energy = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 1)).double()

    def model(x):
        pyro.module("energy", energy)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", EnergyDistribution(energy, (D,)), obs=x)

    loss = ContrastiveDivergenceLoss(k=2, persistent=True, buffer_size=6)
    data = torch.randn(N, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pyro.clear_param_store()
    fit(model, lambda x: None, data, loss=loss, optim=pyro.optim.Adam({"lr": 0.02}),
        epochs=epochs, batch_size=BATCH, seed=3, progress=False, checkpoint_dir=ckpt,
        resume=resume, distributed=True)  # fmt: skip
    params = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    return params, loss.state_dict()


def _zoo_data():
    g = torch.Generator().manual_seed(0)
    binary = torch.bernoulli(torch.full((40, 6), 0.3, dtype=torch.float64), generator=g)
    real = torch.rand(40, 6, dtype=torch.float64, generator=g)
    return (
        from_tensors(binary, test_fraction=0.25, binarize=True, dtype=torch.float64),
        from_tensors(real, test_fraction=0.25, dtype=torch.float64),
    )


def _zoo_scores() -> dict[str, float]:
    """Exact test NLL of an untrained MADE and RealNVP (parameters from a fixed seed), and
    the sample scores of 50 draws (rank 0's draws, broadcast: the same on every rank)."""
    binary, real = _zoo_data()
    out = {}
    for name, data, kwargs in [("made", binary, {"hidden": 8}),
                               ("flow-realnvp", real, {"num_layers": 2, "hidden": 8})]:  # fmt: skip
        torch.manual_seed(2)
        setup = zoo.build(name, data, **kwargs)
        setup.module.double()
        out[name] = zoo.evaluate(setup)["test_nll_nats"]
        pyro.set_rng_seed(3 + dist.get_rank() if dist.is_initialized() else 3)
        for key, value in zoo.generated_scores(setup, data, 50).items():
            out[f"{name} {key}"] = value
    return out


def _worker(rank: int, out: str) -> dict:
    whole = _pcd_run(EPOCHS, os.path.join(out, "whole"))
    stopped = os.path.join(out, "stopped")
    mid = _pcd_run(STOP, stopped)
    resumed = _pcd_run(EPOCHS, stopped, resume=True)
    results = {"whole": whole, "mid": mid, "resumed": resumed, "zoo": _zoo_scores()}
    return results


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_state")
    ranks = run_on_ranks(_worker, out, world=WORLD)
    return ranks, load_checkpoint(out / "whole" / "checkpoint.pt")


def test_pcd_buffers_are_per_rank_and_resume_exactly(results):
    ranks, final = results
    buffers = [r["whole"][1]["buffer.x"] for r in ranks]
    assert buffers[0].shape == buffers[1].shape == (6, D)
    assert not torch.allclose(buffers[0], buffers[1])  # each rank its own chains
    for rank, r in enumerate(ranks):
        params, state = r["whole"]
        got_params, got_state = r["resumed"]
        assert got_state.keys() == state.keys()
        assert torch.equal(got_state["buffer.x"], state["buffer.x"])
        assert got_params.keys() == params.keys()
        for name in params:
            assert torch.equal(got_params[name], params[name]), name
        # the checkpoint holds this rank's chains (and rank 0's at the top level)
        assert torch.equal(final["rank_states"][rank]["loss_state"]["buffer.x"], state["buffer.x"])
    assert torch.equal(final["loss_state"]["buffer.x"], buffers[0])
    # the resumed run started from each rank's own chains, which had moved on since
    assert not torch.equal(ranks[1]["mid"][1]["buffer.x"], buffers[1])


def test_zoo_exact_scores_equal_one_process(results):
    ranks, _ = results
    one = _zoo_scores()
    for r in ranks:
        assert r["zoo"].keys() == one.keys()
        for name, value in one.items():
            assert abs(r["zoo"][name] - value) < 1e-9, name
