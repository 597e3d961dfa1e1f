"""``fit``'s non-finite guard: every way a step can go non-finite stops training the same way.

The promise: a step never leaves non-finite parameters behind, the error names
the epoch and step, and ``last_good.pt`` (when written) holds only finite
values — whether the failure is a NaN loss, a NaN gradient, Pyro's own
validation error about NaN/inf, an update that overflows, with validation on
or off, or a full disk while saving.
"""

from __future__ import annotations

import errno
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyro_genmodels as pgm
from pyro_genmodels.flows.actnorm import ActNorm
from pyro_genmodels.optim import Adam
from pyro_genmodels.training import fit
from pyro_genmodels.training.files import load_checkpoint


def _normal_model(x: torch.Tensor) -> None:
    loc = pyro.param("loc", torch.zeros(x.shape[-1], dtype=x.dtype, device=x.device))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)


def _no_guide(x: torch.Tensor) -> None:
    pass


def _all_finite(payload: dict) -> bool:
    tensors = [t for sd in payload["modules"] for t in sd.values()]
    tensors += list(payload["params"].values())
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def test_pyro_validation_error_about_nan_data_is_the_non_finite_failure(tmp_path):
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    x[5, 1] = float("nan")  # in the second batch of the first epoch (no shuffling)
    with pytest.raises(FloatingPointError, match=r"epoch 1 of 2 .*step 2 of 2") as error:
        fit(
            _normal_model,
            _no_guide,
            x,
            epochs=2,
            batch_size=4,
            shuffle=False,
            checkpoint_dir=tmp_path,
            progress=False,
        )
    assert isinstance(error.value.__cause__, ValueError)  # Pyro's validation error, chained
    assert "last_good.pt" in str(error.value)
    saved = load_checkpoint(tmp_path / "last_good.pt")
    assert saved["epoch"] == 0 and saved["epoch_step"] == 1 and _all_finite(saved)


def test_pyro_validation_error_about_a_nan_scale_is_the_non_finite_failure():
    def model(x):
        w = pyro.param("w", torch.tensor(1.0))
        with pyro.plate("data", x.shape[0]):
            big = (w * x).exp()
            pyro.sample("x", dist.Normal(0.0, big / big), obs=x)

    x = torch.tensor([1.0, 2.0, 1000.0])  # inf / inf = NaN: an invalid scale
    with pytest.raises(FloatingPointError, match="validation found non-finite values"):
        fit(model, _no_guide, x, epochs=1, batch_size=3, progress=False)


def test_validation_error_about_other_values_is_not_swallowed():
    def model(x):
        p = pyro.param("p", torch.tensor(0.5), constraint=dist.constraints.unit_interval)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Bernoulli(p), obs=x)

    with pytest.raises(ValueError, match="support"):
        fit(model, _no_guide, torch.tensor([0.0, 2.0]), epochs=1, progress=False)


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("kind", ["pgm", "pyro"])
def test_update_that_makes_params_non_finite_is_undone(tmp_path, validate, kind):
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    lr = float("inf")
    # pgm.optim refuses a dict with lr=inf at construction; a callable's values reach the step
    optim = Adam(lambda name: {"lr": lr}) if kind == "pgm" else pyro.optim.Adam({"lr": lr})
    with pyro.validation_enabled(validate):
        with pytest.raises(FloatingPointError, match=r"made parameter\(s\) \['loc'\] non-finite"):
            fit(
                _normal_model,
                _no_guide,
                x,
                optim=optim,
                epochs=1,
                batch_size=8,
                checkpoint_dir=tmp_path,
                progress=False,
            )
    assert torch.equal(pyro.param("loc").detach(), torch.zeros(2))  # rolled back
    saved = load_checkpoint(tmp_path / "last_good.pt")
    assert _all_finite(saved) and torch.equal(saved["params"]["loc"], torch.zeros(2))
    assert saved["optim"] == {} or all(  # no Adam moment survives the undone update
        not bool(torch.isinf(v).any())
        for state in saved["optim"].values()
        for v in state.values()
        if isinstance(v, torch.Tensor)
    )


def test_undone_update_restores_the_optimizer_state_exactly():
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(2))
    optim = Adam(lambda name: {"lr": 0.1})
    fit(_normal_model, _no_guide, x, optim=optim, epochs=2, batch_size=8, progress=False)
    state = {k: v.clone() for k, v in optim.get_state()["loc"].items()}
    loc = pyro.param("loc").detach().clone()
    for group in optim._optimizer.param_groups:
        group["lr"] = float("inf")
    with pytest.raises(FloatingPointError, match="update was undone"):
        fit(_normal_model, _no_guide, x, optim=optim, epochs=1, batch_size=8, progress=False)
    assert torch.equal(pyro.param("loc").detach(), loc)
    after = optim.get_state()["loc"]
    assert all(torch.equal(torch.as_tensor(after[k]), torch.as_tensor(v)) for k, v in state.items())


def test_last_good_is_never_written_with_non_finite_values(tmp_path):
    def model(x):
        loc = pyro.param("loc", torch.full((2,), float("nan")))  # broken from the start
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)

    with pyro.validation_enabled(False):
        with pytest.raises(FloatingPointError, match="not saved .* non-finite values"):
            fit(
                model,
                _no_guide,
                torch.zeros(4, 2),
                epochs=1,
                checkpoint_dir=tmp_path,
                progress=False,
            )
    assert not (tmp_path / "last_good.pt").exists()


def test_a_failed_last_good_write_reports_both_errors(tmp_path, monkeypatch):
    import pyro_genmodels.training.callbacks.checkpointing as train

    def full_disk(path, payload):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(train, "save_checkpoint", full_disk)

    class NaNLoss(pyro.infer.Trace_ELBO):
        def loss_and_grads(self, model, guide, *args, **kwargs):
            super().loss_and_grads(model, guide, *args, **kwargs)
            return math.nan

    with pytest.raises(FloatingPointError) as error:
        fit(
            _normal_model,
            _no_guide,
            torch.zeros(4, 2),
            loss=NaNLoss(),
            epochs=1,
            checkpoint_dir=tmp_path,
            progress=False,
        )
    message = str(error.value)
    assert "non-finite loss nan at epoch 1 of 1" in message
    assert "No space left on device" in message and "last_good.pt" in message


def test_actnorm_rejects_a_non_finite_first_batch():
    layer = ActNorm(2)
    bad = torch.tensor([[0.0, float("nan")], [1.0, 2.0]])
    with pyro.validation_enabled(False), pytest.raises(ValueError, match="must be finite"):
        layer.inv(bad)
    assert not bool(layer.initialized)
    layer.inv(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    assert bool(layer.initialized) and bool(torch.isfinite(layer.loc).all())


def test_the_finite_check_is_exact_for_huge_finite_values():
    from pyro_genmodels.training.guard import non_finite_indices as _non_finite_indices

    huge = torch.full((4,), 3e38)  # finite, but its sum overflows to inf
    assert _non_finite_indices([huge, torch.zeros(2)]) == []
    assert _non_finite_indices([huge, torch.tensor([0.0, math.inf])]) == [1]
    assert _non_finite_indices([torch.tensor([math.nan]), torch.zeros(2, dtype=torch.float64)]) == [
        0
    ]


# ----------------------------------------------------------------------------- the two paths


def _guarded_update(optim, grad: float, steps: int = 2):
    """``steps`` updates of one parameter through an ``UpdateGuard``; returns the guard."""
    from pyro_genmodels.training.guard import UpdateGuard

    pyro.clear_param_store()
    w = pyro.param("w", torch.zeros(3))
    guard = UpdateGuard(optim)
    p = w.unconstrained()
    for _ in range(steps):
        p.grad = torch.full_like(p, grad)
        guard.update([p])
        p.grad = None
    return guard, p


def test_adam_updates_after_the_first_are_proven_finite_without_copies():
    guard, _ = _guarded_update(Adam({"lr": 0.1}), 1.0, steps=5)
    # the first update has no optimizer state yet: guarded; the others are proven finite
    assert (guard.guarded_updates, guard.proven_updates) == (1, 4)
    assert guard.buffers  # the first update's undo copies


@pytest.mark.parametrize(
    "optim, grad",
    [
        (lambda: pyro.optim.RMSprop({"lr": 0.1}), 1.0),  # no bound known for RMSprop
        (lambda: pyro.optim.SGD({"lr": 1e30, "momentum": 0.9}), 1.0),  # K above L
        (lambda: Adam({"lr": 0.1, "betas": (0.99, 0.9)}), 1.0),  # beta1^2 > beta2: no bound
        (lambda: Adam({"lr": 0.1}), 1e19),  # g^2 could overflow float32's second moment
    ],
)
def test_updates_outside_the_proof_are_guarded(optim, grad):
    guard, _ = _guarded_update(optim(), grad, steps=3)
    assert guard.proven_updates == 0 and guard.guarded_updates == 3


@pytest.mark.parametrize(
    "optim",
    [
        lambda: pyro.optim.SGD({"lr": 0.1}),
        lambda: pyro.optim.SGD({"lr": 0.1, "momentum": 0.9, "nesterov": True}),
        lambda: pgm.models.RBM(3, 1).sgd(lr=0.1, momentum=0.5, batch_size=1),
        lambda: pgm.models.RBM(3, 1).sgd(lr=0.1, weight_decay=0.1, batch_size=1),  # no momentum
    ],
)
def test_momentum_sgd_updates_after_the_first_are_proven_finite(optim):
    guard, _ = _guarded_update(optim(), 1.0, steps=4)
    assert (guard.guarded_updates, guard.proven_updates) == (1, 3)


def test_sgds_growth_bounds_its_update():
    """``‖θ'‖, ‖buf'‖ ≤ K max(‖g‖, ‖θ‖, ‖buf‖)`` for torch's SGD (momentum, dampening,
    Nesterov, weight decay) and BoltzmannSGD, over 200 random settings and states (seed 0)."""
    from pyro_genmodels.models.boltzmann_sgd import BoltzmannSGD
    from pyro_genmodels.training.guard import _linear_growth

    gen = torch.Generator().manual_seed(0)

    def draw(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    for trial in range(200):
        lr, mu, wd, damp = (float(x) for x in torch.rand(4, generator=gen, dtype=torch.float64))
        w = torch.nn.Parameter(draw(5) * 10 ** float(draw(1)))
        if trial % 2:
            opt: torch.optim.Optimizer = torch.optim.SGD(
                [w],
                lr=3 * lr,
                momentum=mu,
                weight_decay=wd,
                dampening=damp * (trial % 3 == 0),
                nesterov=trial % 3 == 1 and mu > 0,
            )
        else:
            mu *= trial % 4 != 0  # half without momentum: the two-pass update
            opt = BoltzmannSGD([w], lr=3 * lr, momentum=mu, weight_decay=wd, batch_rows=lambda: 2)
        for _ in range(3):
            w.grad = draw(5) * 10 ** float(draw(1))
            buf = opt.state[w].get("momentum_buffer") if opt.state[w] else None
            bound = max(float(w.grad.norm()), float(w.detach().norm()))
            if isinstance(buf, torch.Tensor):
                bound = max(bound, float(buf.norm()))
            opt.step()
            new_buf = opt.state[w].get("momentum_buffer")
            growth = _linear_growth(opt)
            assert float(w.detach().norm()) <= growth * bound * (1 + 1e-12)
            if isinstance(new_buf, torch.Tensor):
                assert float(new_buf.norm()) <= growth * bound * (1 + 1e-12)


def test_a_guarded_update_that_overflows_adams_moments_is_undone():
    from pyro_genmodels.training.guard import NonFiniteStep

    guard, p = _guarded_update(Adam({"lr": 0.1}), 1.0, steps=2)
    optim = guard.optim
    state = {k: v.clone() for k, v in optim.get_state()["w"].items()}
    value = p.detach().clone()
    p.grad = torch.full_like(p, 1e30)  # finite; its square is not (float32)
    with pytest.raises(NonFiniteStep, match="optimizer state of \\['w'\\] non-finite"):
        guard.update([p])
    assert torch.equal(p.detach(), value)
    after = optim.get_state()["w"]
    assert all(torch.equal(after[k], v) for k, v in state.items())


def test_adams_bound_holds_for_adversarial_gradients():
    """|m̂/√v̂| never exceeds the bound C of the proof, for gradients that alternate wildly
    in size and sign (checked on 2000 steps from a fixed seed)."""
    from pyro_genmodels.training.guard import adam_bound

    beta1, beta2 = 0.9, 0.999
    g = torch.randn(2000, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = g * torch.logspace(-6, 6, 2000, dtype=torch.float64)[torch.randperm(2000)].unsqueeze(1)
    m = v = torch.zeros(50, dtype=torch.float64)
    worst = 0.0
    for t, gt in enumerate(g, start=1):
        m, v = beta1 * m + (1 - beta1) * gt, beta2 * v + (1 - beta2) * gt**2
        ratio = (m / (1 - beta1**t)) / (v / (1 - beta2**t)).sqrt()
        worst = max(worst, float(ratio.abs().max()))
    assert worst <= adam_bound(beta1, beta2)
