"""Loading what was trained: ``pgm.load_weights`` (a ``fit`` checkpoint into fresh modules)
and ``pgm.load_run`` (a command-line run, rebuilt), with clear refusals."""

from __future__ import annotations

import re
import subprocess
import sys

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels.cli import main
from pyro_genmodels.params import find_modules
from pyro_genmodels.training.files import load_checkpoint

X = pgm.data.load("digits", binarize=True).train[:96]


def _vae(hidden=16, seed=0):
    torch.manual_seed(seed)
    return pgm.models.VAE(64, 2, hidden_dims=(hidden,))


def _fit(model, folder, **kwargs):
    return pgm.fit(model.model, model.guide, X, loss=pyro.infer.Trace_ELBO(), epochs=2,
                   batch_size=32, checkpoint_dir=folder, progress=False, **kwargs)  # fmt: skip


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_load_weights_of_a_fit_folder_the_best_epoch_or_the_last(tmp_path):
    trained = _vae()
    _fit(trained, tmp_path)
    fresh = _vae(seed=1)
    assert not _same(fresh, trained)
    loaded = pgm.load_weights(tmp_path, fresh)  # no best.pt: checkpoint.pt, the last epoch
    assert loaded.path.name == "checkpoint.pt" and loaded.epoch == 2 and _same(fresh, trained)
    # with validation and keep_best the folder's best.pt is read, the epoch that fit kept
    best_run, folder = _vae(), tmp_path / "best"
    _fit(best_run, folder, validation=X[:32], keep_best=True)
    fresh = _vae(seed=2)
    loaded = pgm.load_weights(folder, fresh)
    assert loaded.path.name == "best.pt" and _same(fresh, best_run)
    assert loaded.epoch == load_checkpoint(folder / "best.pt")["epoch"]
    last = _vae(seed=3)
    assert pgm.load_weights(folder / "checkpoint.pt", last).epoch == 2


def test_modules_that_do_not_fit_are_refused_and_nothing_is_loaded(tmp_path):
    _fit(_vae(), tmp_path)
    target = tmp_path / "checkpoint.pt"
    untouched = _vae(seed=4)
    before = {k: v.clone() for k, v in untouched.state_dict().items()}
    cases = [
        ((untouched, _vae()), "holds the weights of 1 module(s) ['VAE'], but 2 were given"),
        ((torch.nn.Linear(2, 1),), "module 0 was a VAE, got a Linear"),
        ((_vae(hidden=32),), "has shape (16, 64) in the file and (32, 64) in the module"),
        ((pgm.models.VAE(64, 2, hidden_dims=(16, 16)),), "entries missing from the file"),
    ]
    for modules, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            pgm.load_weights(target, *modules)
    assert all(torch.equal(v, before[k]) for k, v in untouched.state_dict().items())
    with pytest.raises(TypeError, match=r"modules\[0\] must be a torch.nn.Module"):
        pgm.load_weights(target, "vae")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no weights"):
        pgm.load_weights(tmp_path / "empty", _vae())


def test_params_of_no_module_are_loaded_into_the_param_store(tmp_path):
    net = torch.nn.Linear(1, 1)

    def model(x):
        pyro.module("net", net)
        scale = pyro.param("scale", torch.ones(()), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            loc = net(x.new_zeros(x.shape[0], 1)).squeeze(-1)
            pyro.sample("x", dist.Normal(loc, scale), obs=x)

    def guide(x):
        pass

    x = 3.0 * torch.randn(20)
    pgm.fit(model, guide, x, loss=pyro.infer.Trace_ELBO(), epochs=3, batch_size=20,
            checkpoint_dir=tmp_path, progress=False)  # fmt: skip
    trained_scale = pyro.param("scale").item()
    pyro.clear_param_store()
    fresh = torch.nn.Linear(1, 1)
    with pytest.raises(ValueError, match=r"Pyro params of no module, \['scale'\]"):
        pgm.load_weights(tmp_path, fresh)
    assert pgm.load_weights(tmp_path, fresh, params=False).epoch == 3
    model(x)  # the param exists, with its constraint
    pgm.load_weights(tmp_path, fresh)
    assert pyro.param("scale").item() == pytest.approx(trained_scale, rel=1e-6)
    assert trained_scale != 1.0 and torch.equal(fresh.weight, net.weight)
    pyro.clear_param_store()


def test_load_run_rebuilds_a_command_line_run(tmp_path):
    run = tmp_path / "vae"
    cli = main(["train", "vae", "--epochs", "2", "--z-dim", "2", "--hidden", "16",
                "--validation-fraction", "0.2", "--out", str(run), "--quiet"])  # fmt: skip
    setup = pgm.load_run(run)
    trained = cli["trained"].setup.module
    assert type(setup.module) is type(trained) and _same(setup.module, trained)
    # the validation split is carved again: the test split and training rows are the run's
    assert torch.equal(setup.train, cli["trained"].setup.train)
    best = pgm.load_run(run / "checkpoints" / "best.pt")
    assert _same(best.module, trained)  # keep_best put the best epoch back before model.pt
    assert setup.sample(3).shape == (3, 64)


def test_load_run_of_a_checkpoint_with_several_modules(tmp_path):
    run = tmp_path / "gan"
    cli = main(["train", "gan", "--epochs", "1", "--hidden", "16", "--out", str(run), "--quiet"])
    setup = pgm.load_run(run / "checkpoints" / "checkpoint.pt")
    modules = find_modules(setup.model, setup.guide, setup.loss)
    assert len(modules) == 2 and _same(setup.module, cli["trained"].setup.module)


def test_load_run_names_what_it_needs(tmp_path):
    with pytest.raises(FileNotFoundError, match="train a model first"):
        pgm.load_run(tmp_path / "missing")
    (tmp_path / "best.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"pgm.load_weights\(path, \*modules\)"):
        pgm.load_run(tmp_path / "best.pt")


def test_the_top_level_names_stay_lazy():
    code = (
        "import sys, pyro_genmodels as pgm; f = (pgm.load_run, pgm.load_weights); "
        "print(sorted(m for m in ('torch', 'pyro') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
    assert pgm.load_run.__module__ == "pyro_genmodels.runs" and "load_weights" in dir(pgm)


def test_load_weights_into_modules_on_any_device(device, tmp_path):
    """Checkpoints are read on the CPU and copied into the modules where they live."""
    trained = _vae()
    _fit(trained, tmp_path)
    fresh = _vae(seed=5).to(device)
    pgm.load_weights(tmp_path, fresh)
    assert all(p.device == torch.device(device) for p in fresh.parameters())
    assert all(torch.equal(a.cpu(), b) for a, b in zip(fresh.parameters(), trained.parameters()))
