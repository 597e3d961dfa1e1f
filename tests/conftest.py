import pyro
import pytest
import torch

DEVICES = ["cpu", "cuda"]


def pytest_addoption(parser):
    parser.addoption("--dtype", default="float64", help="dtype for exactness tests")


@pytest.fixture(params=DEVICES)
def device(request):
    """Every device test runs on CPU and, when one is present, on CUDA."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return torch.device(request.param)


@pytest.fixture
def dtype(request):
    return getattr(torch, request.config.getoption("--dtype"))


@pytest.fixture
def count_calls(monkeypatch):
    """``count_calls(cls)`` patches ``cls.__call__`` to count its calls; returns the counter
    ``{"n": calls}`` (the direct steps' tests count the steps that took the direct path)."""

    def count(cls):
        calls = {"n": 0}
        original = cls.__call__

        def counted(self, *args, **kwargs):
            calls["n"] += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__call__", counted)
        return calls

    return count


@pytest.fixture(autouse=True)
def _clean_pyro_state():
    """Each test starts from an empty param store and a fixed seed."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()
