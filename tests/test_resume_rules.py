"""What ``fit(resume=True)`` does with what changed, and models that share a process.

Resume continues exactly or refuses: another optimizer kind, other data, batch
size or shuffling raise a ``ValueError``; a new learning rate applies (with a
warning) for Pyro's and this package's Adam alike. A failure mid-epoch leaves
``last_good.pt`` for inspection; resume continues from ``checkpoint.pt``, the
last finished epoch. Two models built in one process train independently.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pyro
import pytest
import torch

from pyro_genmodels.data import from_tensors
from pyro_genmodels.models import VAE
from pyro_genmodels.optim import Adam
from pyro_genmodels.training import fit
from pyro_genmodels.training.files import load_checkpoint

X = torch.rand(24, 6, generator=torch.Generator().manual_seed(0)).round()


def _vae(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(6, 2, hidden_dims=(8,))


def _fit(vae, epochs, optim=None, data=X, **kwargs):
    kwargs.setdefault("batch_size", 8)
    return fit(
        vae.model,
        vae.guide,
        data,
        optim=optim or Adam({"lr": 0.01}),
        epochs=epochs,
        progress=False,
        **kwargs,
    )


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _equal(a, b):
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- changes


@pytest.mark.parametrize(
    "first,second",
    [
        (lambda: Adam({"lr": 0.01}), lambda: pyro.optim.Adam({"lr": 0.01})),
        (lambda: Adam({"lr": 0.01}), lambda: pyro.optim.SGD({"lr": 0.01})),
    ],
)
def test_resume_with_another_optimizer_kind_is_refused(tmp_path, first, second):
    _fit(_vae(), 1, first(), checkpoint_dir=tmp_path)
    pyro.clear_param_store()
    with pytest.raises(ValueError, match="optimizer.s kind"):
        _fit(_vae(), 2, second(), checkpoint_dir=tmp_path, resume=True)


def test_a_new_learning_rate_applies_for_both_adams(tmp_path):
    results = {}
    for name, make in (("pgm", Adam), ("pyro", pyro.optim.Adam)):
        pyro.clear_param_store()
        _fit(_vae(), 2, make({"lr": 0.01}), checkpoint_dir=tmp_path / name)
        for lr in (0.01, 0.1):
            folder = tmp_path / f"{name}-{lr}"
            shutil.copytree(tmp_path / name, folder)
            pyro.clear_param_store()
            vae = _vae(seed=5)
            with pytest.warns(UserWarning, match="new rate applies") if lr != 0.01 else _quiet():
                _fit(vae, 3, make({"lr": lr}), checkpoint_dir=folder, resume=True)
            results[name, lr] = _state(vae)
    for key in results[("pgm", 0.1)]:
        torch.testing.assert_close(results["pgm", 0.1][key], results["pyro", 0.1][key])
        torch.testing.assert_close(results["pgm", 0.01][key], results["pyro", 0.01][key])
    assert not _equal(results["pgm", 0.1], results["pgm", 0.01])  # the new rate was used


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize(
    "change,match",
    [
        ({"data": 1 - X}, "the data's values"),
        ({"data": X[:16]}, "the number of datapoints"),
        ({"batch_size": 4}, "batch_size"),
        ({"shuffle": False}, "shuffle"),
    ],
)
def test_resume_on_other_data_or_batching_is_refused(tmp_path, change, match):
    _fit(_vae(), 1, checkpoint_dir=tmp_path)
    pyro.clear_param_store()
    with pytest.raises(ValueError, match=match):
        _fit(_vae(), 2, checkpoint_dir=tmp_path, resume=True, **change)


# ----------------------------------------------------------------------------- mid-epoch


class _NaNAt(pyro.infer.Trace_ELBO):
    """Trace_ELBO whose ``fail_at``-th call (1-based) reports a NaN loss: a bug in the
    loss's code, which a resumed run has fixed (``fail_at`` is no setting of the run)."""

    fail_at = 8

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def loss_and_grads(self, model, guide, *args, **kwargs):
        value = super().loss_and_grads(model, guide, *args, **kwargs)
        self.calls += 1
        return math.nan if self.calls == self.fail_at else value


def test_resume_after_a_mid_epoch_failure_continues_from_the_last_epoch(tmp_path, monkeypatch):
    reference = _vae()
    full = _fit(reference, 5, jit=False)  # as the _NaNAt runs (a subclass: not compiled)
    pyro.clear_param_store()
    with pytest.raises(FloatingPointError, match="epoch 3 of 5 .*step 2 of 3"):
        _fit(_vae(), 5, loss=_NaNAt(), checkpoint_dir=tmp_path)
    last_good = load_checkpoint(tmp_path / "last_good.pt")
    assert (last_good["epoch"], last_good["epoch_step"], last_good["step"]) == (2, 1, 7)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2
    pyro.clear_param_store()
    resumed = _vae(seed=1)
    monkeypatch.setattr(_NaNAt, "fail_at", 0)  # fixed
    history = _fit(resumed, 5, loss=_NaNAt(), checkpoint_dir=tmp_path, resume=True)
    assert _equal(_state(reference), _state(resumed))
    assert history["loss"].equals(full["loss"])


# ----------------------------------------------------------------------------- first call


def test_resume_is_exact_with_a_loss_that_guesses_its_plate_nesting(tmp_path):
    def run(epochs, vae, **kwargs):
        loss = pyro.infer.Trace_ELBO(num_particles=3, vectorize_particles=True)
        return _fit(vae, epochs, loss=loss, **kwargs)

    reference = _vae()
    full = run(5, reference)
    pyro.clear_param_store()
    run(2, _vae(), checkpoint_dir=tmp_path)
    pyro.clear_param_store()
    resumed = _vae(seed=3)
    history = run(5, resumed, checkpoint_dir=tmp_path, resume=True)
    assert _equal(_state(reference), _state(resumed))
    assert history["loss"].equals(full["loss"])


# ----------------------------------------------------------------------------- shared store


def test_two_models_in_one_process_train_independently():
    alone = {}
    for seed in (0, 1):
        pyro.clear_param_store()
        vae = _vae(seed)
        _fit(vae, 2)
        alone[seed] = _state(vae)
    pyro.clear_param_store()
    first, second = _vae(0), _vae(1)  # same param-store names
    before = _state(second)
    _fit(first, 2)
    _fit(second, 2)  # used to stay flat: the store answered with the first one's tensors
    assert not _equal(before, _state(second))
    assert _equal(_state(first), alone[0]) and _equal(_state(second), alone[1])


def test_checkpoints_hold_every_module_parameter_and_buffer(tmp_path):
    vae = _vae()
    _fit(vae, 1, checkpoint_dir=tmp_path)
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["module_types"] == ["VAE"]
    assert _equal(saved["modules"][0], _state(vae))


# ----------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_floating_data_follow_the_parameters_dtype(dtype):
    vae = _vae()
    history = _fit(vae, 1, data=X.to(dtype))
    assert np.isfinite(history["loss"]).all()
    assert next(vae.parameters()).dtype == torch.float32


def test_scikit_learn_style_float64_arrays_train():
    data = from_tensors(X.double().numpy())
    assert data.train.dtype == torch.float64
    history = _fit(_vae(), 1, data=data)
    assert np.isfinite(history["loss"]).all()


def test_parameters_in_float64_keep_float64_data():
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden_dims=(8,)).double()
    _fit(vae, 1, data=X)
    assert next(vae.parameters()).dtype == torch.float64


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_device_without_cuda_is_a_clear_error(device):
    with pytest.raises(ValueError, match=r"device=.*needs a CUDA device"):
        _fit(_vae(), 1, device=device)


def test_model_guide_zero_rows_are_a_clear_error():
    vae = _vae()
    assert vae.encode(torch.zeros(0, 6))[0].shape == (0, 2)
    with pytest.raises(ValueError, match="at least one datapoint"):
        pyro.infer.Trace_ELBO().loss(vae.model, vae.guide, torch.zeros(0, 6))


def test_batchnorm_statistics_of_a_closure_model_resume_exactly(tmp_path):
    def build(seed):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(
            torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 6)
        )

        def model(x):
            pyro.module("net", net)
            with pyro.plate("data", x.shape[0]):
                pyro.sample("x", pyro.distributions.Bernoulli(logits=net(x)).to_event(1), obs=x)

        return net, model

    def run(epochs, seed, **kwargs):
        pyro.clear_param_store()
        net, model = build(seed)
        fit(
            model,
            lambda x: None,
            X,
            optim=Adam({"lr": 0.01}),
            epochs=epochs,
            batch_size=8,
            progress=False,
            **kwargs,
        )
        return _state(net)

    full = run(5, 0)
    run(2, 0, checkpoint_dir=tmp_path)
    resumed = run(5, 1, checkpoint_dir=tmp_path, resume=True)
    assert "1.running_mean" in full and _equal(full, resumed)


def test_resume_and_an_undone_update_on_device(tmp_path, device):
    x = X.to(device)

    def run(epochs, seed, optim=None, **kwargs):
        pyro.clear_param_store()
        vae = _vae(seed).to(device)
        _fit(vae, epochs, optim, data=x, device=device, **kwargs)
        return vae

    full = _state(run(5, 0))
    run(2, 0, checkpoint_dir=tmp_path)
    assert _equal(full, _state(run(5, 1, checkpoint_dir=tmp_path, resume=True)))
    vae = run(1, 0)
    before = _state(vae)
    with pytest.raises(FloatingPointError, match="update was undone"):
        _fit(vae, 1, Adam(lambda name: {"lr": float("inf")}), data=x, device=device)
    assert _equal(before, _state(vae))
    assert all(p.device.type == device.type for p in vae.parameters())


def test_resume_ignores_unrelated_leftovers_of_the_param_store(tmp_path):
    pyro.param("leftover", torch.ones(3))  # from an earlier experiment in the same notebook
    reference = _vae()
    _fit(reference, 3)
    pyro.clear_param_store()
    pyro.param("leftover", torch.ones(3))
    _fit(_vae(), 1, checkpoint_dir=tmp_path)
    pyro.clear_param_store()  # a fresh process: nothing creates "leftover" any more
    resumed = _vae(seed=2)
    _fit(resumed, 3, checkpoint_dir=tmp_path, resume=True)
    assert _equal(_state(reference), _state(resumed))
