"""The worked examples of CONTRIBUTING.md: a model family, a loss and a training feature,
each added in one place, without an edit to the training runtime (``pyro_genmodels/training``).

- A training feature is a callback: :class:`LossAverage` keeps an exponential moving
  average of the loss as a history column; its ``state_dict`` makes it checkpointed, so
  2 + 3 epochs equal 5 with it, and a change of its option is refused on resume.
- A loss follows ``pyro.infer.ELBO``'s interface; :class:`CountingELBO` has a state (the
  number of steps it took) and declares ``begin_step``/``undo_step``, so a failed step
  leaves its count as it was, and resume restores it.
- A model family registers a zoo entry: :func:`gaussian_entry` (a diagonal Gaussian
  density) is trained, scored and resumed exactly by the registry-wide machinery.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam
from zoo_helpers import DATA, assert_same_training, train

from pyro_genmodels import zoo
from pyro_genmodels.optim import Adam
from pyro_genmodels.training import fit

X = torch.randn(24, 3, generator=torch.Generator().manual_seed(0)) + 2.0


def _model(x: torch.Tensor) -> None:
    loc = pyro.param("loc", torch.zeros(3))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)


def _guide(x: torch.Tensor) -> None:
    pass


# ----------------------------------------------------------------------------- a feature


class LossAverage:
    """A training feature: ``loss_avg``, an exponential moving average of the epoch loss."""

    def __init__(self, decay: float = 0.5) -> None:
        self.decay, self.average = decay, None

    def on_epoch_end(self, state: Any) -> dict[str, float]:
        loss = state.row["loss"]
        self.average = (
            loss if self.average is None else self.decay * self.average + (1 - self.decay) * loss
        )
        return {"loss_avg": self.average}

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average = state["average"]


def _fit(epochs: int, folder=None, resume=False, callbacks=(), **kwargs) -> pd.DataFrame:
    pyro.clear_param_store()
    return fit(_model, _guide, X, optim=Adam({"lr": 0.1}), epochs=epochs, batch_size=8,
               checkpoint_dir=folder, resume=resume, callbacks=callbacks, progress=False,
               **kwargs)  # fmt: skip


def test_a_feature_is_a_callback_checkpointed_and_resumed_exactly(tmp_path):
    full = _fit(5, callbacks=[LossAverage()])
    _fit(2, tmp_path, callbacks=[LossAverage()])
    resumed = _fit(5, tmp_path, resume=True, callbacks=[LossAverage()])
    assert resumed.drop(columns="time").equals(full.drop(columns="time"))
    assert "loss_avg" in resumed
    with pytest.raises(ValueError, match="callbacks that have a state"):
        _fit(6, tmp_path, resume=True, callbacks=[LossAverage(decay=0.9)])


# ----------------------------------------------------------------------------- a loss


class CountingELBO(pyro.infer.Trace_ELBO):
    """A loss with a state of its own: the number of steps it took (undone on failure)."""

    def __init__(self, fail_at: int = 0) -> None:
        super().__init__()
        self.fail_at, self.steps, self._before = fail_at, 0, 0

    def loss_and_grads(self, model, guide, *args, **kwargs):
        value = super().loss_and_grads(model, guide, *args, **kwargs)
        self.steps += 1
        return math.nan if self.steps == self.fail_at else value

    def begin_step(self) -> None:
        self._before = self.steps

    def undo_step(self) -> None:
        self.steps = self._before

    def state_dict(self) -> dict[str, int]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.steps = int(state["steps"])


def test_a_stateful_loss_is_undone_on_failure_and_resumed(tmp_path):
    loss = CountingELBO(fail_at=7)
    with pytest.raises(FloatingPointError, match="epoch 3 of 5 .*step 1 of 3"):
        _fit(5, tmp_path / "a", loss=loss)
    assert loss.steps == 6  # the failed 7th step was undone
    _fit(2, tmp_path / "b", loss=CountingELBO())
    resumed = CountingELBO()
    _fit(5, tmp_path / "b", resume=True, loss=resumed)
    assert resumed.steps == 15


# ----------------------------------------------------------------------------- a family


class DiagonalGaussian(PyroModule):
    """A diagonal Gaussian density over flat data ``(N, D)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.loc = PyroParam(torch.zeros(dim))
        self.scale = PyroParam(torch.ones(dim), constraint=dist.constraints.positive)

    def model(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(self.loc, self.scale).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        pass


def gaussian_entry(data, **options) -> zoo.Setup:
    """The family's zoo builder: the model, its data, loss, sampler and exact score."""
    model = DiagonalGaussian(data.num_dims)

    def score(num_samples: int) -> dict:
        nll = -dist.Normal(model.loc, model.scale).to_event(1).log_prob(data.test).mean()
        return {"test_nll_nats": float(nll), "estimator": "exact"}

    def sample(n: int) -> torch.Tensor:
        return dist.Normal(model.loc, model.scale).sample((n,)).detach()

    return zoo.Setup(model, model.model, model.guide, data.train, (data.test,),
                     pyro.infer.Trace_ELBO(), sample, score=score)  # fmt: skip


@pytest.fixture
def registered(monkeypatch):
    entry = zoo.ZooEntry("gaussian", "gaussian", "a diagonal Gaussian", gaussian_entry,
                         binarize=False, budget={"epochs": 2})  # fmt: skip
    monkeypatch.setitem(zoo.ZOO, entry.name, entry)
    return entry


def test_a_family_registers_once_and_the_zoo_trains_scores_and_resumes_it(registered, tmp_path):
    table, _ = zoo.run(DATA[False], ["gaussian"], progress=False, quick=True)
    assert table.loc[0, "model"] == "gaussian" and math.isfinite(table.loc[0, "test_nll_nats"])

    def build(seed: int) -> zoo.Setup:
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        return zoo.build("gaussian", DATA[False])

    reference = build(0)
    full = train(reference, 5)
    train(build(0), 2, checkpoint_dir=tmp_path)
    resumed = build(1)
    history = train(resumed, 5, checkpoint_dir=tmp_path, resume=True)
    assert_same_training("gaussian", reference.module, resumed.module, full, history)
