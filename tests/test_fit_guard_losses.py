"""The guard's promise for every stateful loss: a failed step changes nothing at all.

For every entry of the loss registry (``tests/test_loss_registry.py``, which every loss of
``pgm.infer.LOSSES`` must be in) whose loss has state (``state_dict``: replay buffers of
persistent chains, a DBM's chains, a critic updated by inner steps and its optimizer), a
non-finite value is injected at each place it can enter one step, *after* the loss has
changed its state within that step:

- ``loss``: the step's loss value is NaN;
- ``grad``: a gradient is NaN;
- ``update``: the learning rate is inf, so the update makes the parameters non-finite;
- ``moments``: gradients so large that their squares overflow, so the update leaves the
  parameters finite but Adam's second moment infinite;
- ``inner`` (where the loss has an inner state change): the sampler's chains are NaN (PCD),
  or the critic's own update makes it non-finite (a critic optimizer with lr inf).

Each time ``fit`` must raise ``FloatingPointError`` and leave the parameters (the critic's
included), every optimizer state and the loss's state exactly as they were before the step.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pyro
import pytest
import torch
from test_loss_registry import REGISTRY

import pyro_genmodels as pgm
from pyro_genmodels.optim import Adam
from pyro_genmodels.training import fit
from pyro_genmodels.training.protocols import is_stateful

STATEFUL = [entry for entry in REGISTRY if is_stateful(entry[0]())]
IDS = [f"{type(entry[0]()).__name__}-{i}" for i, entry in enumerate(STATEFUL)]
WHERE = ["loss", "grad", "update", "moments", "inner"]
AT = 3  # the failing step (steps 1 and 2 fill buffers and optimizer states)


def test_every_stateful_loss_class_is_covered():
    classes = {type(entry[0]()) for entry in STATEFUL}
    for cls in pgm.infer.LOSSES:
        entries = [e for e in REGISTRY if type(e[0]()) is cls]
        if any(is_stateful(e[0]()) for e in entries):
            assert cls in classes, cls.__name__


def _nested_equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and bool(torch.equal(a, b))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_nested_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_nested_equal(x, y) for x, y in zip(a, b))
    return a == b


def _without_groups(state: Any) -> Any:
    """A state with the optimizers' ``param_groups`` (which hold the rates this test sets to
    inf) left out: what remains is what an update changes."""
    if isinstance(state, dict):
        return {k: _without_groups(v) for k, v in state.items() if k != "param_groups"}
    return state


def _everything(loss: Any, optims: list[Any]) -> dict[str, Any]:
    """What a step may change: params (critic's included), optimizer states, loss state."""
    store = pyro.get_param_store()
    return copy.deepcopy(
        {
            "params": {k: v.detach() for k, v in store.items()},
            "optims": [_without_groups(o.get_state()) for o in optims],
            "loss": _without_groups(loss.state_dict()),
        }
    )


class Poison:
    """The loss, with a non-finite value injected at ``where`` in its ``AT``-th step."""

    def __init__(self, loss: Any, where: str, optim: Any) -> None:
        self.loss, self.where, self.optim, self.calls = loss, where, optim, 0
        self.before: dict[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:  # begin_step, undo_step, state_dict, ...
        if name == "loss":
            raise AttributeError(name)
        return getattr(self.loss, name)

    def _optims(self) -> list[Any]:
        critic = getattr(self.loss, "critic_optim", None)
        return [self.optim] + ([critic] if critic is not None else [])

    def loss_and_grads(self, model, guide, *args, **kwargs):
        self.calls += 1
        if self.calls != AT:
            return self.loss.loss_and_grads(model, guide, *args, **kwargs)
        self.before = _everything(self.loss, self._optims())
        if self.where == "inner":
            self._poison_inside()
        value = self.loss.loss_and_grads(model, guide, *args, **kwargs)
        grads = [p.grad for p in pyro.get_param_store()._params.values() if p.grad is not None]
        if self.where == "loss":
            return (math.nan,) * len(value) if isinstance(value, tuple) else math.nan
        if self.where == "grad":
            grads[0].view(-1)[0] = math.nan
        if self.where == "update":
            for group in self.optim._optimizer.param_groups:
                group["lr"] = math.inf
        if self.where == "moments":  # float64: (1e200)² overflows, 1e200 does not
            for g in grads:
                g.fill_(1e200)
        return value

    def _poison_inside(self) -> None:
        critic = getattr(self.loss, "critic_optim", None)
        if critic is not None:
            # the next inner critic update has an infinite rate
            critic.pt_optim_args = {**critic.pt_optim_args, "lr": math.inf}
            for opt in {id(o): o for o in critic.optim_objs.values()}.values():
                for group in getattr(opt, "optimizer", opt).param_groups:
                    group["lr"] = math.inf
            return
        if getattr(self.loss, "persistent", False):
            sampler = self.loss.sampler
            run = sampler.run
            sampler.run = lambda dist, x0, k: run(dist, x0, k) * math.nan
            return
        pytest.skip("this loss changes no inner state by itself")


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("factory, model, guide, make_args", STATEFUL, ids=IDS)
def test_a_failed_step_changes_no_state(factory, model, guide, make_args, where, tmp_path):
    x, *nets = make_args(torch.device("cpu"))
    loss = factory()
    if where == "inner" and getattr(loss, "persistent", False) and loss.sampler is None:
        loss.sampler = pgm.infer.LangevinSampler(0.01, 5)
    optim = Adam({"lr": 0.01})
    poisoned = Poison(loss, where, optim)

    def run_model(x):
        return model(x, *nets)

    def run_guide(x):
        return guide(x, *nets)

    with pytest.raises(FloatingPointError, match="not updated by this step"):
        fit(run_model, run_guide, x, loss=poisoned, optim=optim, epochs=2,
            batch_size=len(x) // 2, checkpoint_dir=tmp_path, progress=False)  # fmt: skip
    assert poisoned.before is not None, "the failing step did not run"
    after = _everything(loss, poisoned._optims())
    for part in ("params", "optims", "loss"):
        assert _nested_equal(poisoned.before[part], after[part]), f"{part} changed"
    if tmp_path.joinpath("last_good.pt").exists():  # written with the state before the step
        saved = pgm.training.load_checkpoint(tmp_path / "last_good.pt")
        assert saved["epoch_step"] == AT - 1 - saved["epoch"] * 2
