"""``fit(validation=, early_stopping=, keep_best=)``: held-out score, stopping, the best epoch."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_genmodels.models import VAE
from pyro_genmodels.optim import Adam
from pyro_genmodels.training import fit
from pyro_genmodels.training.files import load_checkpoint, save_checkpoint

# A scripted curve (1-based epochs): improvements at epochs 1-3, 6 and 7 (2.9, the best),
# then 3 epochs without improvement; epochs 4-5 are a 2-epoch plateau that patience 3 survives.
CURVE = [5.0, 4.0, 3.0, 3.5, 3.2, 2.95, 2.9, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
X = torch.rand(24, 6, generator=torch.Generator().manual_seed(0)).round()


def _bn_model(seed: int = 0):
    """A closure model with BatchNorm (buffers) registered by ``pyro.module``."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 6))

    def model(x):
        pyro.module("net", net)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Bernoulli(logits=net(x)).to_event(1), obs=x)

    return net, model


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _equal(a, b):
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


class Scripted:
    """Returns ``score = CURVE[epoch]`` and records the module's state at every epoch end."""

    def __init__(self, net):
        self.net, self.states = net, {}

    def __call__(self, state):
        self.states[state.epoch + 1] = _state(self.net)
        return {"score": CURVE[state.epoch]}


def _run(epochs, seed=0, **kwargs):
    pyro.clear_param_store()
    net, model = _bn_model(seed)
    script = Scripted(net)
    history = fit(model, lambda x: None, X, optim=Adam({"lr": 0.05}), epochs=epochs,
                  batch_size=8, progress=False, callbacks=[script], **kwargs)  # fmt: skip
    return net, script, history


def test_early_stopping_stops_at_the_right_epoch_and_keeps_the_best(tmp_path):
    net, script, history = _run(13, monitor="score", early_stopping=3, keep_best=True,
                                checkpoint_dir=tmp_path)  # fmt: skip
    assert list(history["epoch"]) == list(range(1, 11))  # 10 - 7 = 3 epochs without improvement
    assert _equal(_state(net), script.states[7])  # parameters and BatchNorm buffers of epoch 7
    assert not _equal(script.states[10], script.states[7])
    best = load_checkpoint(tmp_path / "best.pt")
    assert (best["epoch"], best["monitor"], best["score"]) == (7, "score", 2.9)
    assert _equal(best["modules"][0], script.states[7])


def test_without_keep_best_the_last_epoch_stays():
    net, script, history = _run(13, monitor="score", early_stopping=3)
    assert len(history) == 10 and _equal(_state(net), script.states[10])


def test_resume_mid_patience_is_exact(tmp_path):
    kwargs = {"monitor": "score", "early_stopping": 3, "keep_best": True}
    net, _, full = _run(13, **kwargs)
    _run(8, checkpoint_dir=tmp_path, **kwargs)  # stops in the patience window (best: epoch 7)
    resumed, _, history = _run(13, seed=1, checkpoint_dir=tmp_path, resume=True, **kwargs)
    assert history.drop(columns="time").equals(full.drop(columns="time"))
    assert _equal(_state(resumed), _state(net))
    with pytest.warns(UserWarning, match="stopped early after epoch 10 .*trains no further"):
        again, _, history = _run(13, seed=2, checkpoint_dir=tmp_path, resume=True, **kwargs)
    assert len(history) == 10 and _equal(_state(again), _state(net))  # stopped runs stay stopped


def test_val_loss_is_the_loss_per_datapoint_on_the_validation_data():
    train = torch.randn(16, 2, generator=torch.Generator().manual_seed(1)) + 1.0
    valid = torch.randn(8, 2, generator=torch.Generator().manual_seed(2))
    expected = []

    def model(x):
        loc = pyro.param("loc", torch.zeros(2))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)

    def closed_form(state):  # -mean log N(v; loc, I) at the epoch's end
        loc = pyro.param("loc").detach()
        nll = 0.5 * (valid - loc).pow(2).sum(-1) + math.log(2 * math.pi)
        expected.append(float(nll.mean()))

    history = fit(model, lambda x: None, train, optim=Adam({"lr": 0.1}), epochs=4, batch_size=5,
                  validation=valid, callbacks=[closed_form], progress=False)  # fmt: skip
    assert history["val_loss"].tolist() == pytest.approx(expected, rel=1e-6)


def _vae_program():
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden_dims=(8,))
    return vae, vae.model, vae.guide


def _bn_program():
    net, model = _bn_model()
    return net, model, lambda x: None


@pytest.mark.parametrize("program", [_vae_program, _bn_program])
def test_validation_changes_no_parameter_buffer_or_training_draw(program):
    def run(**kwargs):
        pyro.clear_param_store()
        module, model, guide = program()
        history = fit(model, guide, X, optim=Adam({"lr": 0.01}), epochs=3, batch_size=8,
                      progress=False, **kwargs)  # fmt: skip
        return _state(module), history

    plain, h_plain = run()
    validated, h_valid = run(validation=1 - X[:10])
    assert _equal(plain, validated)  # VAE draws (RNG), BatchNorm statistics: all untouched
    assert h_plain["loss"].equals(h_valid["loss"])
    assert h_valid["val_loss"].notna().all()


def test_plateau_scheduler_follows_the_validation_score():
    train, valid = torch.full((8, 1), 3.0), torch.full((8, 1), -3.0)

    def model(x):
        loc = pyro.param("loc", torch.zeros(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)

    optim = pyro.optim.ReduceLROnPlateau(
        {"optimizer": torch.optim.Adam, "optim_args": {"lr": 0.1}, "patience": 0, "factor": 0.5}
    )
    history = fit(model, lambda x: None, train, optim=optim, epochs=4, batch_size=8,
                  validation=valid, progress=False)  # fmt: skip
    assert history["loss"].is_monotonic_decreasing  # training improves ...
    assert history["val_loss"].is_monotonic_increasing  # ... validation worsens: lr halves
    assert history["lr"].tolist() == [0.1, 0.1, 0.05, 0.025]  # (the loss alone: 0.1 throughout)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"validation": torch.zeros(4, 5)}, ValueError, r"must have shape \(M, 6\)"),
        ({"validation": torch.zeros(4, 6, dtype=torch.long)}, TypeError, "must be floating"),
        ({"validation": torch.zeros(0, 6)}, ValueError, "M >= 1"),
        ({"validation": (X, X)}, TypeError, "1 tensor"),
        ({"validation": "valid"}, TypeError, "validation must be a Tensor"),
        (
            {"validation": X, "early_stopping": 0},
            ValueError,
            "early_stopping must be a positive int or None",
        ),
        ({"validation": X, "validation_every": 0}, ValueError, "validation_every"),
        ({"validation": X, "keep_best": 1}, TypeError, "keep_best"),
        ({"keep_best": True}, ValueError, "need validation= data"),
        ({"validation": X, "monitor": "nope"}, ValueError, "monitor must name a history column"),
    ],
)
def test_bad_validation_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        _run(2, **kwargs)


def test_validation_on_another_device_or_dtype_is_moved_to_the_training_data(device):
    """The documented rule: validation tensors follow the training tensors' device and
    floating dtype, so the scores equal those of validation data given there already."""
    cpu = torch.device("cpu")
    valid = torch.rand(10, 6, generator=torch.Generator().manual_seed(3)).round()
    reference = _run(3, validation=valid)[2]["val_loss"]
    for train_on, valid_on in ((cpu, device), (device, cpu)):
        moved = _run(3, validation=valid.to(valid_on, torch.float64), device=train_on)[2]
        assert moved["val_loss"].tolist() == pytest.approx(reference.tolist(), rel=1e-4)
    with pytest.raises(ValueError, match="validation tensor 0 must hold data.*meta device"):
        _run(1, validation=valid.to("meta"))


def test_validation_from_a_dataset_or_dataloader_scores_like_tensors():
    """Every validation item is scored once (the loader's drop_last is ignored), in any
    batching, so val_loss equals the tensors' (the BatchNorm model is in eval mode)."""
    from torch.utils.data import DataLoader, IterableDataset, TensorDataset

    valid = torch.rand(10, 6, generator=torch.Generator().manual_seed(3)).round()
    reference = _run(3, validation=valid)[2]["val_loss"].tolist()
    dataset = TensorDataset(valid.double())  # items are (x,) tuples, float64: converted
    loader = DataLoader(dataset, batch_size=3, shuffle=True, drop_last=True)
    for source in (dataset, loader, DataLoader(valid, batch_size=4, num_workers=1)):
        got = _run(3, validation=source)[2]["val_loss"].tolist()
        assert got == pytest.approx(reference, rel=1e-6)
    with pytest.raises(ValueError, match=r"validation tensor 0 must have shape \(M, 6\)"):
        _run(1, validation=TensorDataset(torch.zeros(4, 5)))
    with pytest.raises(TypeError, match="validation items must hold 1 tensor"):
        _run(1, validation=TensorDataset(valid, valid))

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(valid)

    with pytest.raises(TypeError, match="map-style"):
        _run(1, validation=Stream())


# ----------------------------------------------------------------------------- data, zoo, CLI


def test_split_validation_is_deterministic_and_leaves_test_alone():
    from pyro_genmodels.data import load

    data = load("digits", binarize=True)
    a, b = data.split_validation(0.1, seed=3), data.split_validation(0.1, seed=3)
    assert torch.equal(a.valid, b.valid) and torch.equal(a.test, data.test)
    assert a.train.shape[0] + a.valid.shape[0] == data.train.shape[0]
    assert a.valid.shape[0] == round(0.1 * data.train.shape[0])
    rows = {tuple(r.tolist()) for r in data.train}
    assert all(tuple(r.tolist()) in rows for r in a.valid)
    assert torch.equal(a.valid_labels, data.train_labels[~_kept_mask(data, a)])
    with pytest.raises(ValueError, match="fraction must be a float in"):
        data.split_validation(1.5)
    with pytest.raises(ValueError, match="already has a validation split"):
        a.split_validation(0.1)


def _kept_mask(data, split):
    import numpy as np

    perm = np.random.RandomState(3).permutation(data.train.shape[0])
    mask = torch.ones(data.train.shape[0], dtype=torch.bool)
    mask[torch.as_tensor(perm[-split.valid.shape[0] :])] = False
    return mask


def test_zoo_and_cli_train_with_validation_and_early_stopping(tmp_path):
    from pyro_genmodels import zoo
    from pyro_genmodels.cli import main
    from pyro_genmodels.data import Dataset, load

    full = load("digits", binarize=True)
    tiny = Dataset("digits", full.train[:60], full.test[:20], full.train_labels[:60],
                   full.test_labels[:20], full.image_shape, True)  # fmt: skip
    table, runs = zoo.run(tiny, ["vae", "ssvae", "gan"], epochs=40, batch_size=20, num_samples=30,
                          validation_fraction=0.25, early_stopping=2, progress=False,
                          hidden=8, z_dim=2)  # fmt: skip
    vae_history = runs["vae"][1]
    assert "val_loss" in vae_history and len(vae_history) < 40  # stopped early
    assert table.set_index("model").loc["vae", "best_epoch"] == len(vae_history) - 2
    for name in ("ssvae", "gan"):  # scored on (x,) not (x, y); two losses, no single score
        assert math.isnan(table.set_index("model").loc[name, "best_epoch"])
        assert "val_loss" not in runs[name][1]
    out = tmp_path / "run"
    result = main(["train", "vae", "--out", str(out), "--epochs", "2", "--z-dim", "2",
                   "--hidden", "8", "--validation-fraction", "0.1", "--early-stopping", "5",
                   "--quiet"])  # fmt: skip
    assert "val_loss" in result["history"] and (out / "checkpoints" / "best.pt").is_file()
    with pytest.raises(SystemExit):
        main(["train", "vae", "--out", str(out), "--early-stopping", "2", "--quiet"])


def test_tabular_example_quick(capsys):
    from example_loader import load_example

    table = load_example("tabular_density").main(quick=True)
    assert set(table["dataset"]) == {"wine", "breast_cancer"}
    numbers = table[
        ["gaussian", "kde", "maf", "spline", "maf_from_gaussian", "spline_from_gaussian"]
    ].to_numpy()
    assert np.isfinite(numbers).all()
    assert "test NLL per dimension" in capsys.readouterr().out


# ----------------------------------------------------------------------------- best.pt


def test_best_pt_carries_the_run_identity(tmp_path):
    _run(8, monitor="score", keep_best=True, checkpoint_dir=tmp_path)
    best = load_checkpoint(tmp_path / "best.pt")
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert best["run_id"] == ckpt["run_id"] and len(best["run_id"]) == 32
    assert best["epoch"] == 7 and not (tmp_path / "best.prev.pt").exists()


@pytest.mark.parametrize("damage", ["deleted", "another run", "another epoch"])
def test_resume_with_keep_best_refuses_a_best_pt_it_cannot_trust(tmp_path, damage):
    kwargs = {"monitor": "score", "keep_best": True}
    _run(8, checkpoint_dir=tmp_path / "a", **kwargs)  # best: epoch 7
    best = tmp_path / "a" / "best.pt"
    if damage == "deleted":
        best.unlink()
    elif damage == "another run":
        _run(8, checkpoint_dir=tmp_path / "b", **kwargs)
        shutil.copy(tmp_path / "b" / "best.pt", best)
    else:
        _run(6, checkpoint_dir=tmp_path / "c", **kwargs)  # best: epoch 6 ...
        saved = load_checkpoint(tmp_path / "c" / "best.pt")
        saved["run_id"] = load_checkpoint(best)["run_id"]  # ... of this run's identity
        save_checkpoint(best, saved)
    with pytest.raises(ValueError, match="keep_best=True needs the best epoch's best.pt"):
        _run(13, seed=1, checkpoint_dir=tmp_path / "a", resume=True, **kwargs)
    # without keep_best the run goes on (with a warning that keep_best changed)
    with pytest.warns(UserWarning, match="keep_best"):
        _, _, history = _run(9, seed=1, checkpoint_dir=tmp_path / "a", resume=True,
                             monitor="score")  # fmt: skip
    assert len(history) == 9


def test_a_best_written_after_the_last_checkpoint_does_not_replace_its_best(tmp_path):
    """Killed after best.pt of epoch 7 was written but before checkpoint.pt of epoch 7: the
    checkpoint (epoch 6) names epoch 6 as the best, which best.prev.pt still holds."""

    class Killed(Exception):
        pass

    def kill_at_epoch_8(state):
        if state.epoch == 7:  # the end of epoch 8, before anything of it is saved
            raise Killed

    kwargs = {"monitor": "score", "keep_best": True, "checkpoint_every": 2}
    pyro.clear_param_store()
    net, model = _bn_model()
    script = Scripted(net)
    with pytest.raises(Killed):
        fit(model, lambda x: None, X, optim=Adam({"lr": 0.05}), epochs=13, batch_size=8,
            progress=False, callbacks=[script, kill_at_epoch_8], checkpoint_dir=tmp_path,
            **kwargs)  # fmt: skip
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 6
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 7  # not yet checkpointed
    assert load_checkpoint(tmp_path / "best.prev.pt")["epoch"] == 6
    resumed, _, history = _run(6, seed=1, checkpoint_dir=tmp_path, resume=True, **kwargs)
    assert len(history) == 6 and _equal(_state(resumed), script.states[6])
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 6
    assert not (tmp_path / "best.prev.pt").exists()
    # resumed to the end, it finds epoch 7 again and equals the uninterrupted run
    net_full, _, full = _run(13, **kwargs)
    resumed, _, history = _run(13, seed=2, checkpoint_dir=tmp_path, resume=True, **kwargs)
    assert history.drop(columns="time").equals(full.drop(columns="time"))
    assert _equal(_state(resumed), _state(net_full))


# ----------------------------------------------------------------------------- NaN scores


def test_a_nan_score_is_a_failed_validation_that_patience_counts():
    curve = [5.0, math.nan, 4.0, math.nan, math.nan, math.nan, 3.0]

    def score(state):
        return {"score": curve[state.epoch]}

    pyro.clear_param_store()
    net, model = _bn_model()
    with pytest.warns(UserWarning, match="score is nan at epoch 2: a failed validation"):
        history = fit(model, lambda x: None, X, optim=Adam({"lr": 0.05}), epochs=7,
                      batch_size=8, progress=False, callbacks=[score], monitor="score",
                      early_stopping=3)  # fmt: skip
    assert list(history["epoch"]) == [1, 2, 3, 4, 5, 6]  # best at 3, then 3 NaN epochs


def test_only_nan_scores_stop_early_and_keep_best_says_it_kept_the_last_epoch():
    def score(state):
        return {"score": math.nan}

    pyro.clear_param_store()
    net, model = _bn_model()
    with pytest.warns(UserWarning, match="no epoch had a finite score"):
        history = fit(model, lambda x: None, X, optim=Adam({"lr": 0.05}), epochs=10,
                      batch_size=8, progress=False, callbacks=[score], monitor="score",
                      early_stopping=2, keep_best=True)  # fmt: skip
    assert list(history["epoch"]) == [1, 2]
