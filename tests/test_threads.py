"""The CPU thread policy: one thread for small work, the count told when told, restored after."""

import pyro
import pytest
import torch

from pyro_genmodels.training import threads
from pyro_genmodels.training.threads import (
    WORK_FOR_MORE_THREADS,
    choose_threads,
    one_thread_outside_large_steps,
    set_threads,
    thread_budget,
)

CPU = torch.device("cpu")
SMALL = (1000, 100)  # parameters, batch size: 1e5 multiply-adds a step
LARGE = (int(WORK_FOR_MORE_THREADS), 1)


@pytest.fixture(autouse=True)
def _untold(monkeypatch):
    """No count told: no environment variable, no set_threads; torch's count restored."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    set_threads(None)
    yield
    set_threads(None)
    torch.set_num_threads(before)


def test_small_work_gets_one_thread_large_work_keeps_torchs_count():
    assert choose_threads(*SMALL, CPU) == 1
    assert choose_threads(*LARGE, CPU) is None
    assert choose_threads(*SMALL, torch.device("meta")) is None  # not a CPU: not ours to set


def test_a_told_count_wins_over_the_work(monkeypatch):
    set_threads(3)
    assert choose_threads(*SMALL, CPU) == choose_threads(*LARGE, CPU) == 3
    set_threads(None)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_threads(*SMALL, CPU) is None  # the environment decided: leave torch's count


def test_thread_budget_restores_the_count():
    torch.set_num_threads(2)
    with thread_budget(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), thread_budget(1):
        raise RuntimeError("the count is restored on errors too")
    assert torch.get_num_threads() == 2


def test_one_thread_outside_large_steps():
    torch.set_num_threads(2)
    with one_thread_outside_large_steps():
        assert torch.get_num_threads() == 1
        assert choose_threads(*SMALL, CPU) == 1
        assert choose_threads(*LARGE, CPU) == 2  # the count torch had when the block began
    assert torch.get_num_threads() == 2
    assert threads._large is None
    assert choose_threads(*LARGE, CPU) is None


def test_one_thread_outside_large_steps_is_a_no_op_when_told(monkeypatch):
    torch.set_num_threads(2)
    set_threads(2)
    with one_thread_outside_large_steps():
        assert torch.get_num_threads() == 2
    set_threads(None)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with one_thread_outside_large_steps():
        assert torch.get_num_threads() == 2


def test_fit_trains_a_small_model_on_one_thread_and_restores_the_count():
    torch.set_num_threads(2)
    seen = []

    class Spy:
        def on_epoch_end(self, state):
            seen.append(torch.get_num_threads())

    import pyro_genmodels as pgm

    flow = pgm.models.FlowDensity(2, "maf", num_layers=1, hidden_dims=[8])
    pyro.clear_param_store()
    pgm.fit(flow.model, flow.guide, torch.randn(32, 2), epochs=2, batch_size=16,
            callbacks=[Spy()], progress=False)  # fmt: skip
    assert seen == [1, 1]
    assert torch.get_num_threads() == 2
