"""Data-parallel ``fit``: 2 gloo processes on CPU equal 1 process on the same global batch.

Each case trains in float64 with a loss free of sampling noise: MADE (exact
``-log p(x)``, fed by a DataLoader), a RealNVP flow, a Glow flow (ActNorm's
data-dependent initialization on the global first batch, the LU factors of its
1x1 convolutions), and exact score matching
of an energy network (``ScoreMatchingLoss("exact", noise_scale=0)``: double backward, ``∇_θ``
of a function of ``∇ₓ E``), and a VAE trained by ``Trace_ELBO`` whose
reparameterization noise is fixed per datapoint: ``εᵢ`` of epoch ``e`` is drawn
from a generator seeded by ``(e, i)`` (:class:`_IndexedNoise`), so the union of
the ranks' noise is the single process's noise for the same datapoints. The
2-process run stops after 2 epochs, resumes from its checkpoint and finishes 4
epochs; the parameters must equal a 1-process
run stopped and resumed alike within 1e-5 (the only differences are float64
summation orders).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist_
import pytest
import torch
from gloo_helpers import run_on_ranks
from pyro.poutine.messenger import Messenger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pyro_genmodels.distributions import AutoregressiveDistribution, EnergyDistribution
from pyro_genmodels.infer import ScoreMatchingLoss, log_likelihood
from pyro_genmodels.models import VAE, FlowDensity
from pyro_genmodels.nn import MADE
from pyro_genmodels.parallel import local_rows
from pyro_genmodels.training import fit

N, D, BATCH, EPOCHS, STOP = 21, 4, 8, 4, 2  # the last batch of 5 splits into 3 + 2
WORLD = 2


def _data(kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if kind in ("made", "vae"):
        return torch.bernoulli(torch.full((N, D), 0.4, dtype=torch.float64), generator=g)
    return torch.randn(N, D, dtype=torch.float64, generator=g) * 2 + 1


_EPOCH = [0]  # the epoch being trained, set by _EpochClock for the VAE's noise


class _EpochClock:
    """A callback recording the current epoch (the key of the VAE's noise)."""

    def on_epoch_start(self, state) -> None:
        _EPOCH[0] = state.epoch


class _IndexedNoise(Messenger):
    """Draw the guide's ``z`` as ``loc + scale · εᵢ`` with ``εᵢ ~ N(0, I)`` from a generator
    seeded by ``(epoch, i)`` for datapoint ``i``: reparameterized, fresh every epoch, and
    independent of which rank holds the datapoint."""

    def __init__(self, idx: torch.Tensor) -> None:
        super().__init__()
        self.idx = idx

    def _pyro_sample(self, msg) -> None:
        if msg["name"] != "z" or msg["is_observed"]:
            return
        base = msg["fn"]
        while hasattr(base, "base_dist"):
            base = base.base_dist
        eps = torch.stack([
            torch.randn(base.loc.shape[-1], dtype=base.loc.dtype,
                        generator=torch.Generator().manual_seed(1000 * _EPOCH[0] + int(i)))
            for i in self.idx
        ]).to(base.loc.device)  # fmt: skip
        msg["value"] = base.loc + base.scale * eps


def _setup(kind: str):
    """(model, guide, loss) of a case, its parameters drawn from a fixed seed."""
    torch.manual_seed(1)
    if kind == "made":
        net = MADE(D, [16]).double()

        def model(x):
            pyro.module("made", net)
            with pyro.plate("data", x.shape[0]):
                pyro.sample("x", AutoregressiveDistribution(net, "bernoulli"), obs=x)

        return model, lambda x: None, pyro.infer.Trace_ELBO()
    if kind == "vae":
        vae = VAE(D, 2, hidden_dims=[8]).double()

        def vae_guide(x, idx):
            with _IndexedNoise(idx.long()):
                vae.guide(x)

        return (lambda x, idx: vae.model(x)), vae_guide, pyro.infer.Trace_ELBO()
    if kind == "flow":
        flow = FlowDensity(D, "realnvp", num_layers=2, hidden_dims=[8]).double()
        return flow.model, flow.guide, pyro.infer.Trace_ELBO()
    if kind == "glow":  # ActNorm (data-dependent init) and LU-parameterized 1x1 convolutions
        flow = FlowDensity(D, "glow", num_layers=2, hidden_dims=[8]).double()
        return flow.model, flow.guide, pyro.infer.Trace_ELBO()
    energy = nn.Sequential(nn.Linear(D, 16), nn.Tanh(), nn.Linear(16, 1)).double()

    def energy_model(x):
        pyro.module("energy", energy)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", EnergyDistribution(energy, (D,)), obs=x)

    # exact score matching: ½‖∇ₓE‖² − tr ∇²ₓE summed over the data (double backward)
    return energy_model, (lambda x: None), ScoreMatchingLoss("exact", noise_scale=0)


def _run(kind: str, epochs: int, loader: bool = False, **kwargs):
    """Train ``kind``; ``loader=True`` feeds the data through a DataLoader (same batches)."""
    model, guide, loss = _setup(kind)
    data = _data(kind)
    if loader:
        data = DataLoader(TensorDataset(data), batch_size=BATCH, shuffle=True)
        kwargs["batch_size"] = None
    if kind == "vae":  # the datapoints' indices key their noise
        data = (data, torch.arange(N, dtype=torch.float64))
        kwargs["callbacks"] = [_EpochClock()]
    kwargs.setdefault("batch_size", BATCH)
    h = fit(model, guide, data, loss=loss, optim=pyro.optim.Adam({"lr": 0.05}),
            epochs=epochs, seed=3, progress=False, **kwargs)  # fmt: skip
    return h, {k: v.detach().clone() for k, v in pyro.get_param_store().items()}


_LOGLIK_X = torch.linspace(-2, 3, 7, dtype=torch.float64)  # shares of 4 and 3 rows


def _gauss_model(x):
    """``z ~ N(0, 1)``, ``x | z ~ N(z, 1)``: ``p(x) = N(x; 0, 2)``."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist_.Normal(torch.zeros_like(x), 1.0))
        pyro.sample("x", dist_.Normal(z, 1.0), obs=x)


def _gauss_posterior(x):
    """The exact posterior ``N(x / 2, 1 / 2)``: every importance weight equals ``p(x)``."""
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist_.Normal(x / 2, 0.5**0.5))


def _worker(rank: int, out: str, kinds: list[str]) -> dict:
    results = {}
    for kind in kinds:
        ckpt = os.path.join(out, kind)
        pyro.clear_param_store()
        fed = kind == "made"  # MADE reads a DataLoader: the same batches as the tensors
        _run(kind, STOP, fed, distributed=True, checkpoint_dir=ckpt)
        pyro.clear_param_store()  # a fresh start, as a relaunched job
        h, params = _run(kind, EPOCHS, fed, distributed=True, checkpoint_dir=ckpt, resume=True)
        results[kind] = {"loss": h["loss"].tolist(), "params": params}
    results["loglik"] = log_likelihood(_gauss_model, _gauss_posterior, _LOGLIK_X, num_samples=3)
    rows = local_rows(len(_LOGLIK_X))
    results["rows"] = [rows.start, rows.stop]
    return results


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    kinds = ["made", "flow", "glow", "score", "vae"]
    return run_on_ranks(_worker, out, kinds, world=WORLD)


@pytest.mark.parametrize("kind", ["made", "flow", "glow", "score", "vae"])
def test_two_processes_equal_one(two_process_results, kind, tmp_path):
    """Against one process stopped and resumed alike (checkpoints are compared like for like)."""
    pyro.clear_param_store()
    _run(kind, STOP, checkpoint_dir=tmp_path)
    pyro.clear_param_store()
    ref_history, ref = _run(kind, EPOCHS, checkpoint_dir=tmp_path, resume=True)
    for rank in range(WORLD):
        got = two_process_results[rank][kind]
        np.testing.assert_allclose(got["loss"], ref_history["loss"], rtol=0, atol=1e-5)
        assert got["params"].keys() == ref.keys()
        for name, value in ref.items():
            torch.testing.assert_close(got["params"][name], value, rtol=0, atol=1e-5)
    assert ref_history["loss"].iloc[-1] < ref_history["loss"].iloc[0] - 0.05  # it trained


def test_log_likelihood_is_split_and_gathered(two_process_results):
    exact = dist_.Normal(0.0, 2.0**0.5).log_prob(_LOGLIK_X)
    for rank, rows in enumerate([[0, 4], [4, 7]]):
        assert two_process_results[rank]["rows"] == rows  # each rank scored its share
        torch.testing.assert_close(two_process_results[rank]["loglik"], exact)


def test_setup_without_a_process_group():
    from pyro_genmodels.parallel import make_strategy

    strategy = make_strategy(None, None)
    assert (strategy.rank, strategy.world, strategy.device) == (0, 1, None)
    with pytest.raises(TypeError, match="distributed must be True, False or None"):
        make_strategy("yes", None)
    env = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR") if k in os.environ}
    try:
        with pytest.raises(ValueError, match="torchrun's environment variables; missing"):
            make_strategy(True, None)
    finally:
        os.environ.update(env)


def test_torchrun_cli_equals_one_process(tmp_path):
    """``torchrun --nproc_per_node=2 -m pyro_genmodels train`` (process group from torchrun's
    environment, rank 0 writing the run) against the same command in one process (float32)."""
    from pyro_genmodels.cli import WEIGHTS, main
    from pyro_genmodels.training.files import load_checkpoint

    args = ["train", "made", "--data", "digits", "--epochs", "1", "--hidden", "16"]
    args += ["--batch-size", "100", "--quiet"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": root}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*launch, "-m", "pyro_genmodels", *args, "--out", str(tmp_path / "two")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    main([*args, "--out", str(tmp_path / "one")])
    two, one = (pd.read_csv(tmp_path / d / "history.csv") for d in ("two", "one"))
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-6)
    w2, w1 = (load_checkpoint(tmp_path / d / WEIGHTS)["state_dict"] for d in ("two", "one"))
    assert w2.keys() == w1.keys()
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], rtol=1e-4, atol=1e-5)
