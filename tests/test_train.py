"""Tests of the training loop ``pgm.fit`` and its atomic checkpoints."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam
from pyro.nn.module import to_pyro_module_

from pyro_genmodels.nn import MLP
from pyro_genmodels.training import FitState, fit, load_checkpoint
from pyro_genmodels.training.files import FORMAT_VERSION, save_checkpoint

X_DIM, Z_DIM, HIDDEN = 4, 2, 8


def _normal_model(x: torch.Tensor) -> None:
    """One Gaussian site per datapoint with a learnable location."""
    loc = pyro.param("loc", torch.zeros(x.shape[-1], dtype=x.dtype, device=x.device))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)


def _no_guide(*args) -> None:
    pass


def _gauss_nll(x: torch.Tensor) -> float:
    """Mean over datapoints of -log N(x_n; 0, I)."""
    return float((0.5 * x.pow(2).sum(-1) + 0.5 * x.shape[-1] * math.log(2 * math.pi)).mean())


class PyroVAE(PyroModule):
    """A PyroModule VAE; its decoder scale is a constrained PyroParam."""

    def __init__(self) -> None:
        super().__init__()
        encoder, decoder = MLP(X_DIM, [HIDDEN], 2 * Z_DIM), MLP(Z_DIM, [HIDDEN], X_DIM)
        to_pyro_module_(encoder)
        to_pyro_module_(decoder)
        self.encoder, self.decoder = encoder, decoder
        self.scale = PyroParam(torch.ones(X_DIM), constraint=constraints.positive)

    def model(self, x: torch.Tensor) -> None:
        zeros = x.new_zeros(x.shape[0], Z_DIM)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(zeros, 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), self.scale).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        loc, log_scale = self.encoder(x).split(Z_DIM, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


class ModuleVAE(torch.nn.Module):
    """The same VAE with plain nn.Modules registered by ``pyro.module`` and a global param."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder, self.decoder = MLP(X_DIM, [HIDDEN], 2 * Z_DIM), MLP(Z_DIM, [HIDDEN], X_DIM)

    def model(self, x: torch.Tensor) -> None:
        pyro.module("decoder", self.decoder)
        scale = pyro.param("scale", x.new_ones(X_DIM), constraint=constraints.positive)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], Z_DIM), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), scale).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        pyro.module("encoder", self.encoder)
        loc, log_scale = self.encoder(x).split(Z_DIM, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def _make_vae(style: str, init_seed: int, dtype: torch.dtype):
    torch.manual_seed(init_seed)
    return (PyroVAE if style == "pyromodule" else ModuleVAE)().to(dtype)


def _make_optim(kind: str):
    if kind == "adam_per_param":
        return pyro.optim.Adam(lambda name: {"lr": 0.01 if "decoder" in name else 0.03})
    return pyro.optim.ExponentialLR(
        {"optimizer": torch.optim.Adam, "optim_args": {"lr": 0.02}, "gamma": 0.8}
    )


def _params() -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in pyro.get_param_store()._params.items()}


def _data(dtype: torch.dtype, n: int = 20) -> torch.Tensor:
    return torch.randn(n, X_DIM, generator=torch.Generator().manual_seed(7), dtype=dtype)


# ----------------------------------------------------------------------------- resume


@pytest.mark.parametrize("optim_kind", ["adam_per_param", "exponential_lr"])
@pytest.mark.parametrize("style", ["pyromodule", "module"])
def test_resume_equals_uninterrupted(tmp_path, style, optim_kind, dtype):
    x = _data(dtype)
    kwargs = dict(epochs=5, batch_size=8, seed=3, progress=False)

    ref_vae = _make_vae(style, 1, dtype)
    ref = fit(ref_vae.model, ref_vae.guide, x, optim=_make_optim(optim_kind), **kwargs)
    ref_params, ref_state = _params(), {k: v.clone() for k, v in ref_vae.state_dict().items()}

    pyro.clear_param_store()
    vae = _make_vae(style, 1, dtype)
    first = fit(vae.model, vae.guide, x, optim=_make_optim(optim_kind), checkpoint_dir=tmp_path,
                **{**kwargs, "epochs": 2})  # fmt: skip
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2
    np.testing.assert_allclose(first["loss"], ref["loss"][:2], rtol=0, atol=1e-12)

    pyro.clear_param_store()
    vae = _make_vae(style, 99, dtype)  # different init: everything must come from the checkpoint
    resumed = fit(vae.model, vae.guide, x, optim=_make_optim(optim_kind),
                  checkpoint_dir=tmp_path, resume=True, **kwargs)  # fmt: skip

    assert list(resumed["epoch"]) == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(resumed["loss"], ref["loss"], rtol=0, atol=1e-6)
    if "lr" in ref:
        np.testing.assert_allclose(resumed["lr"], ref["lr"], rtol=1e-12)
        np.testing.assert_allclose(ref["lr"], 0.02 * 0.8 ** np.arange(5), rtol=1e-12)
    params = _params()
    assert params.keys() == ref_params.keys()
    for name in ref_params:
        torch.testing.assert_close(params[name], ref_params[name], rtol=0, atol=1e-6)
    for name, value in vae.state_dict().items():  # module and param store stay in sync
        torch.testing.assert_close(value, ref_state[name], rtol=0, atol=1e-6)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 5


@pytest.mark.parametrize("clear_store", [True, False])
def test_resume_with_a_reused_optimizer(tmp_path, clear_store):
    x = torch.randn(6, 2) + 1.0
    kwargs = dict(batch_size=4, progress=False)
    fit(_normal_model, _no_guide, x, optim=pyro.optim.Adam({"lr": 0.1}), epochs=4, **kwargs)
    ref = pyro.param("loc").detach().clone()
    pyro.clear_param_store()
    optim = pyro.optim.Adam({"lr": 0.1})
    fit(_normal_model, _no_guide, x, optim=optim, epochs=2, checkpoint_dir=tmp_path, **kwargs)
    fit(_normal_model, _no_guide, x, optim=optim, epochs=3, **kwargs)  # moves on past the save
    if clear_store:  # then the optimizer holds stale params
        pyro.clear_param_store()
    fit(_normal_model, _no_guide, x, optim=optim, epochs=4, checkpoint_dir=tmp_path, resume=True,
        **kwargs)  # fmt: skip
    torch.testing.assert_close(pyro.param("loc"), ref, rtol=0, atol=1e-6)
    assert len(optim.optim_objs) == 1


def test_resume_restores_callback_state_and_checks_seed(tmp_path):
    class Counter:
        def __init__(self):
            self.count = 0

        def on_epoch_end(self, state):
            self.count += 1

        def state_dict(self):
            return {"count": self.count}

        def load_state_dict(self, state):
            self.count = state["count"]

    x = torch.randn(6, 2)
    fit(_normal_model, _no_guide, x, epochs=2, checkpoint_dir=tmp_path, callbacks=[Counter()],
        progress=False)  # fmt: skip
    pyro.clear_param_store()
    counter = Counter()
    fit(_normal_model, _no_guide, x, epochs=4, checkpoint_dir=tmp_path, resume=True,
        callbacks=[counter], progress=False)  # fmt: skip
    assert counter.count == 4
    with pytest.raises(ValueError, match="seed=0, now seed=5"):
        fit(_normal_model, _no_guide, x, epochs=5, seed=5, checkpoint_dir=tmp_path, resume=True,
            callbacks=[Counter()], progress=False)  # fmt: skip


def test_resume_without_checkpoint_warns_and_starts_fresh(tmp_path):
    x = torch.randn(6, 2)
    with pytest.warns(UserWarning, match="no checkpoint"):
        history = fit(_normal_model, _no_guide, x, epochs=2, checkpoint_dir=tmp_path,
                      resume=True, progress=False)  # fmt: skip
    assert list(history["epoch"]) == [1, 2]
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        fit(_normal_model, _no_guide, x, resume=True)


# ----------------------------------------------------------------------------- non-finite guard


class FlakyModel:
    """Gaussian model whose loss is NaN on call number ``bad_call`` (one call per step)."""

    def __init__(self, bad_call: int):
        self.calls, self.bad_call, self.before = 0, bad_call, None

    def __call__(self, x: torch.Tensor) -> None:
        self.calls += 1
        loc = pyro.param("loc", x.new_zeros(x.shape[-1]))
        if self.calls == self.bad_call:
            self.before = _params()
            with pyro.validation_enabled(False):  # let the NaN reach the loss
                pyro.factor("bad", loc.sum() * float("nan"))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_nan_loss_raises_before_update(tmp_path):
    model = FlakyModel(bad_call=6)  # 16 points / batch 4 = 4 steps: epoch 2, step 2
    with pytest.raises(FloatingPointError) as info:
        fit(model, _no_guide, torch.randn(16, 2), optim=pyro.optim.Adam({"lr": 0.1}), epochs=3,
            batch_size=4, checkpoint_dir=tmp_path, progress=False)  # fmt: skip
    msg = str(info.value)
    assert "non-finite loss nan" in msg
    assert "epoch 2 of 3 (1-based), step 2 of 4 within the epoch" in msg
    assert str(tmp_path / "last_good.pt") in msg
    after = _params()
    torch.testing.assert_close(after, model.before, rtol=0, atol=0)
    saved = torch.load(tmp_path / "last_good.pt", weights_only=True)
    assert saved["format_version"] == FORMAT_VERSION
    assert (saved["epoch"], saved["epoch_step"], saved["step"]) == (1, 1, 5)
    torch.testing.assert_close(saved["params"], model.before, rtol=0, atol=0)
    assert len(saved["history"]) == 1 and saved["optim"]["loc"]["state"][0]["step"] == 5


def test_nan_gradient_with_finite_loss_raises():
    def model(x):
        p = pyro.param("p", torch.ones(()))
        pyro.factor("f", torch.sqrt(p - p))  # value 0, d/dp = inf * 0 = nan
        _normal_model(x)

    with pytest.raises(FloatingPointError) as info:
        fit(model, _no_guide, torch.randn(4, 2), epochs=1, progress=False)
    assert "non-finite gradients for parameter(s) ['p']" in str(info.value)
    assert "no checkpoint_dir was given, so nothing was saved" in str(info.value)
    assert pyro.param("p").item() == 1.0 and torch.all(pyro.param("loc") == 0)


# ----------------------------------------------------------------------------- checkpoints


def _crash_save(obj, f, *args, **kwargs):
    f.write(b"partial checkpoint bytes")
    raise OSError("disk full")


def _crash_replace(src, dst):
    raise OSError("power cut")


@pytest.mark.parametrize("crash", ["torch.save", "os.replace"])
def test_atomic_checkpoint_survives_crash(tmp_path, monkeypatch, crash):
    x = torch.randn(6, 2)
    fit(_normal_model, _no_guide, x, epochs=1, checkpoint_dir=tmp_path, progress=False)
    good = load_checkpoint(tmp_path / "checkpoint.pt")
    if crash == "torch.save":
        monkeypatch.setattr(torch, "save", _crash_save)
    else:
        monkeypatch.setattr(os, "replace", _crash_replace)
    with pytest.raises(OSError, match="disk full|power cut"):
        fit(_normal_model, _no_guide, x, epochs=3, checkpoint_dir=tmp_path, progress=False)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]
    reloaded = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert reloaded["epoch"] == 1
    torch.testing.assert_close(reloaded["params"], good["params"], rtol=0, atol=0)


def test_load_checkpoint_rejects_other_formats(tmp_path):
    torch.save({"format_version": FORMAT_VERSION + 1}, tmp_path / "new.pt")
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}"):
        load_checkpoint(tmp_path / "new.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a pyro_genmodels checkpoint"):
        load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="payload must be a mapping"):
        save_checkpoint(tmp_path / "x.pt", [1])


def test_checkpoint_every_and_contents(tmp_path):
    saved_epochs = []

    def spy(state):
        path = tmp_path / "checkpoint.pt"
        saved_epochs.append(load_checkpoint(path)["epoch"] if path.exists() else 0)

    fit(_normal_model, _no_guide, torch.randn(6, 2), epochs=5, checkpoint_dir=tmp_path,
        checkpoint_every=2, callbacks=[spy], progress=False)  # fmt: skip
    assert saved_epochs == [0, 0, 2, 2, 4]  # seen at each epoch end, before that epoch's save
    payload = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (payload["epoch"], payload["step"], payload["seed"]) == (5, 5, 0)
    assert set(payload["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert [row["epoch"] for row in payload["history"]] == [1, 2, 3, 4, 5]


# ----------------------------------------------------------------------------- history


def test_history_loss_is_mean_per_datapoint():
    x = torch.randn(10, 3, dtype=torch.float64)
    optim = pyro.optim.SGD({"lr": 0.0})  # loc stays 0, so the loss is known in closed form
    history = fit(_normal_model, _no_guide, x, optim=optim, epochs=3, batch_size=4,
                  progress=False)  # fmt: skip
    assert list(history.columns) == ["epoch", "loss", "time", "lr"]
    assert list(history["epoch"]) == [1, 2, 3]
    np.testing.assert_allclose(history["loss"], _gauss_nll(x), rtol=1e-12)
    assert (history["time"] > 0).all() and (history["lr"] == 0.0).all()


def test_shuffle_is_a_reproducible_permutation_per_epoch():
    seen: list[torch.Tensor] = []

    def model(x):
        seen.append(x.clone())
        _normal_model(x)

    x = torch.arange(10.0).unsqueeze(-1)
    for _ in range(2):
        fit(model, _no_guide, x, epochs=3, batch_size=3, seed=4, progress=False)
    runs = [torch.cat(seen[:12]).squeeze(-1), torch.cat(seen[12:]).squeeze(-1)]
    assert torch.equal(runs[0], runs[1])
    epochs = runs[0].view(3, 10)
    for order in epochs:
        assert torch.equal(order.sort().values, x.squeeze(-1))
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[0], x.squeeze(-1))
    seen.clear()
    fit(model, _no_guide, x, epochs=1, batch_size=3, seed=5, progress=False)
    assert not torch.equal(torch.cat(seen).squeeze(-1), epochs[0])  # the seed sets the order
    seen.clear()
    fit(model, _no_guide, x, epochs=1, batch_size=3, shuffle=False, progress=False)
    assert torch.equal(torch.cat(seen).squeeze(-1), x.squeeze(-1))


def test_callbacks_metrics_annealing_and_stop():
    class Anneal:
        beta = None

        def on_epoch_start(self, state: FitState):
            self.beta = (state.epoch + 1) / state.epochs

        def on_epoch_end(self, state: FitState):
            return {"beta": self.beta, "tensor_metric": torch.tensor(2.0 * state.epoch)}

    anneal, betas = Anneal(), []

    def model(x):
        betas.append(anneal.beta)
        _normal_model(x)

    def double(state: FitState):
        if state.epoch == 2:
            state.stop = True
        return {"double": 2 * state.row["loss"], "step": state.step}

    history = fit(model, _no_guide, torch.randn(4, 2), epochs=4, batch_size=2,
                  callbacks=[anneal, double], progress=False)  # fmt: skip
    assert len(history) == 3  # stopped after epoch 3 (0-based 2)
    assert betas == [0.25, 0.25, 0.5, 0.5, 0.75, 0.75]
    np.testing.assert_allclose(history["beta"], [0.25, 0.5, 0.75])
    np.testing.assert_allclose(history["tensor_metric"], [0.0, 2.0, 4.0])
    np.testing.assert_allclose(history["double"], 2 * history["loss"])
    assert list(history["step"]) == [2, 4, 6]


def test_lr_schedulers_step_once_per_epoch():
    x = torch.randn(8, 2) + 3.0
    sched = pyro.optim.ExponentialLR(
        {"optimizer": torch.optim.SGD, "optim_args": {"lr": 0.1}, "gamma": 0.5}
    )
    history = fit(_normal_model, _no_guide, x, optim=sched, epochs=3, progress=False)
    np.testing.assert_allclose(history["lr"], [0.1, 0.05, 0.025], rtol=1e-12)
    pyro.clear_param_store()
    plateau = pyro.optim.ReduceLROnPlateau(  # "max" mode: a decreasing loss never improves
        {"optimizer": torch.optim.SGD, "optim_args": {"lr": 0.01}, "mode": "max",
         "patience": 0, "factor": 0.5}
    )  # fmt: skip
    history = fit(_normal_model, _no_guide, x, optim=plateau, epochs=4, progress=False)
    assert (history["loss"].diff().dropna() < 0).all()
    np.testing.assert_allclose(history["lr"], [0.01, 0.01, 0.005, 0.0025], rtol=1e-12)


class PairLoss:
    """A loss returning two values: the negative log joint (with grads) and 2 per datapoint."""

    def loss_and_grads(self, model, guide, *args):
        log_joint = poutine.trace(model).get_trace(*args).log_prob_sum()
        (-log_joint).backward()
        return -log_joint.item(), 2.0 * args[0].shape[0]


def test_tuple_loss_recorded_as_columns():
    x = torch.randn(10, 2, dtype=torch.float64)
    history = fit(_normal_model, _no_guide, x, loss=PairLoss(), optim=pyro.optim.SGD({"lr": 0.0}),
                  epochs=2, batch_size=3, progress=False)  # fmt: skip
    assert list(history.columns) == ["epoch", "loss_0", "loss_1", "time", "lr"]
    np.testing.assert_allclose(history["loss_0"], _gauss_nll(x), rtol=1e-12)
    np.testing.assert_allclose(history["loss_1"], 2.0, rtol=1e-12)


def test_data_forms_and_per_param_lr():
    x, y = torch.randn(6, 2), torch.randn(6, 1)

    def model(a, b):
        _normal_model(torch.cat([a, b], -1))

    h1 = fit(model, _no_guide, (x, y), epochs=1, progress=False)
    pyro.clear_param_store()
    h2 = fit(model, _no_guide, SimpleNamespace(train=[x, y]), epochs=1, progress=False)
    assert h1["loss"][0] == h2["loss"][0]
    pyro.clear_param_store()
    vae = ModuleVAE()
    optim = pyro.optim.Adam(lambda name: {"lr": 0.01 if "decoder" in name else 0.02})
    h3 = fit(vae.model, vae.guide, torch.randn(6, X_DIM), optim=optim, epochs=1, progress=False)
    assert "lr" not in h3  # two learning rates: no single lr column
    lrs = {n: o.param_groups[0]["lr"] for n, o in _named_optims(optim).items()}
    assert lrs["decoder$$$0.weight"] == 0.01 and lrs["encoder$$$0.weight"] == 0.02


def _named_optims(optim):
    store = pyro.get_param_store()
    return {store.param_name(p): o for p, o in optim.optim_objs.items()}


def test_epochs_zero_returns_empty_history():
    history = fit(_normal_model, _no_guide, torch.randn(3, 2), epochs=0, progress=False)
    assert len(history) == 0 and "loss" in history and len(pyro.get_param_store()) == 0


# ----------------------------------------------------------------------------- devices


def test_fit_on_device(device, dtype):
    x = _data(dtype, n=32)  # on CPU: fit moves it
    vae = PyroVAE().to(dtype)
    history = fit(vae.model, vae.guide, x, optim=pyro.optim.Adam({"lr": 0.02}), epochs=8,
                  batch_size=8, device=device, progress=False)  # fmt: skip
    assert all(p.device.type == device.type for p in pyro.get_param_store().values())
    assert all(p.device.type == device.type for p in vae.parameters())
    assert np.isfinite(history["loss"]).all()
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    pyro.clear_param_store()  # default device: that of the bound module's parameters
    history = fit(vae.model, vae.guide, x, epochs=1, progress=False)
    assert all(p.device.type == device.type for p in pyro.get_param_store().values())


# ----------------------------------------------------------------------------- bad input

_X = torch.zeros(4, 2)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((_normal_model, _no_guide, "data"), {}, TypeError, "data must be a Tensor"),
        ((_normal_model, _no_guide, ()), {}, ValueError, "at least one tensor"),
        ((_normal_model, _no_guide, torch.zeros(0, 2)), {}, ValueError, "N = 0"),
        ((_normal_model, _no_guide, torch.tensor(1.0)), {}, ValueError, "0-dim"),
        ((_normal_model, _no_guide, (_X, torch.zeros(3))), {}, ValueError, r"lengths \[4, 3\]"),
        ((_normal_model, _no_guide, _X), {"epochs": -1}, ValueError, "epochs must be an int >= 0"),
        ((_normal_model, _no_guide, _X), {"epochs": 2.0}, TypeError, "epochs must be an int"),
        ((_normal_model, _no_guide, _X), {"batch_size": 0}, ValueError, "batch_size must be"),
        ((_normal_model, _no_guide, _X), {"batch_size": True}, TypeError, "batch_size must be"),
        ((_normal_model, _no_guide, _X), {"checkpoint_every": 0}, ValueError, "checkpoint_every"),
        ((_normal_model, _no_guide, _X), {"seed": -1}, ValueError, "seed must be"),
        ((_normal_model, None, _X), {}, TypeError, "guide must be callable"),
        ((_normal_model, _no_guide, _X), {"loss": object()}, TypeError, "loss must have"),
        ((_normal_model, _no_guide, _X), {"optim": torch.optim.SGD}, TypeError, "optim must be"),
        ((_normal_model, _no_guide, _X), {"progress": "yes"}, TypeError, "progress must be"),
        ((_normal_model, _no_guide, _X), {"callbacks": [3]}, TypeError, r"callbacks\[0\]"),
        ((_normal_model, _no_guide, _X), {"callbacks": print}, TypeError, "sequence of callbacks"),
        ((_normal_model, _no_guide, _X), {"device": "gpu0"}, ValueError, "device must be"),
        ((_normal_model, _no_guide, _X), {"callbacks": [lambda s: 1.0]}, TypeError, "a dict"),
        ((_normal_model, _no_guide, _X), {"callbacks": [lambda s: {"loss": 1.0}]}, ValueError,
         "already a column"),
        ((_normal_model, _no_guide, _X), {"callbacks": [lambda s: {"m": [1]}]}, TypeError,
         "int, float or str"),
    ],
)  # fmt: skip
def test_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        fit(*args, **{"progress": False, **kwargs})
