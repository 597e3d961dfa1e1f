"""One test per private Pyro/torch internal that ``pyro_genmodels._compat`` wraps.

Each fails, naming the internal, when a Pyro or torch upgrade moves or changes it.
"""

import pyro
import pyro.distributions as dist
import pyro.optim
import pytest
import torch
from pyro.infer import Trace_ELBO
from torch.distributions import constraints
from torch.distributions.transforms import ExpTransform

from pyro_genmodels import _compat


@pytest.fixture(autouse=True)
def _clean_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def test_store_params_is_the_live_dict_of_unconstrained_leaves():
    value = pyro.param("scale", torch.tensor([2.0, 3.0]), constraint=constraints.positive)
    params = _compat.store_params()
    assert set(params) == {"scale"}, "ParamStoreDict._params moved"
    leaf = params["scale"]
    assert leaf.is_leaf and leaf.requires_grad
    torch.testing.assert_close(leaf.exp(), value)  # unconstrained: log of the value
    assert _compat.store_params(pyro.get_param_store()) is params


def test_rebind_param_updates_both_directions():
    store = pyro.get_param_store()
    pyro.param("w", torch.zeros(2))
    old = _compat.store_params()["w"]
    new = torch.nn.Parameter(torch.ones(2))
    _compat.rebind_param(store, "w", new)
    assert pyro.param("w") is new, "ParamStoreDict._params no longer backs pyro.param"
    assert store.param_name(new) == "w", "ParamStoreDict._param_to_name moved"
    assert store.param_name(old) is None
    fresh = torch.nn.Parameter(torch.ones(3))  # a name new to the store: constraint real
    _compat.rebind_param(store, "v", fresh)
    assert pyro.param("v") is fresh, "ParamStoreDict._constraints no longer keys the params"
    assert store.get_state()["constraints"]["v"] is pyro.distributions.constraints.real


def test_grad_clip_of_returns_pyros_clipper():
    p = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    p.grad = torch.tensor([3.0, 4.0])
    clipped = pyro.optim.Adam({"lr": 0.1}, clip_args={"clip_norm": 1.0})
    clip = _compat.grad_clip_of(clipped, p)
    assert callable(clip), "PyroOptim._get_grad_clip moved"
    clip(p)
    torch.testing.assert_close(p.grad.norm(), torch.tensor(1.0))
    assert _compat.grad_clip_of(pyro.optim.Adam({"lr": 0.1}), p) is None


def test_optim_args_of_returns_the_per_param_arguments():
    p = torch.nn.Parameter(torch.zeros(1))
    assert _compat.optim_args_of(pyro.optim.Adam({"lr": 0.25}), p) == {"lr": 0.25}
    per_param = pyro.optim.Adam(lambda name, param: {"lr": 0.5})
    pyro.param("q", torch.zeros(1))
    q = _compat.store_params()["q"]
    assert _compat.optim_args_of(per_param, q) == {"lr": 0.5}


def test_pending_optim_state_holds_states_of_params_not_yet_seen():
    optim = pyro.optim.Adam({"lr": 0.1})
    state = {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    optim.set_state({"later": state})
    pending = _compat.pending_optim_state(optim)
    assert pending == {"later": state}, "PyroOptim._state_waiting_to_be_consumed moved"
    pending.pop("later")
    assert _compat.pending_optim_state(optim) == {}


def test_guess_max_plate_nesting_sets_elbos_nesting():
    def model():
        with pyro.plate("outer", 2, dim=-2), pyro.plate("inner", 3, dim=-1):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        pass

    loss = Trace_ELBO()
    assert loss.max_plate_nesting == float("inf")
    _compat.guess_max_plate_nesting(loss, model, guide, ())
    assert loss.max_plate_nesting == 2, "ELBO._guess_max_plate_nesting moved"


def test_transform_cache_internals():
    t = ExpTransform(cache_size=1)
    assert _compat.transform_cache_size(t) == 1, "Transform._cache_size moved"
    assert _compat.transform_cached_x_y(t) == (None, None)
    x = torch.zeros(3)
    y = t(x)
    cx, cy = _compat.transform_cached_x_y(t)
    assert cx is x and cy is y, "Transform._cached_x_y moved"
    assert t.inv(y) is x  # the cache answers the inverse
    _compat.clear_transform_cache(t)
    assert _compat.transform_cached_x_y(t) == (None, None)
    assert _compat.transform_cache_size(ExpTransform()) == 0


def test_set_transform_cache_size_and_inverses():
    t = ExpTransform()
    assert _compat.transform_inverse(t) is None
    inv = t.inv
    assert _compat.transform_inverse(t) is inv, "Transform._inv moved"
    assert _compat.transform_inverse(inv) is t  # torch's inverse holds its base
    _compat.set_transform_cache_size(t, 1)
    assert _compat.transform_cache_size(t) == 1
    x = torch.ones(2)
    y = t(x)
    assert _compat.transform_cached_x_y(t) == (x, y)
    _compat.set_transform_cache_size(t, 0)
    assert _compat.transform_cache_size(t) == 0
    assert t(x) is not y  # recomputed, not the remembered output
    plain = ExpTransform()  # built with cache_size=0: torch makes no cache slot
    _compat.set_transform_cache_size(plain, 1)
    assert _compat.transform_cached_x_y(plain) == (None, None)


def test_masked_distribution_mask():
    mask = torch.tensor([True, False])
    d = dist.Normal(torch.zeros(2), 1.0).mask(mask)
    assert _compat.masked_distribution_mask(d) is mask, "MaskedDistribution._mask moved"


def test_mvn_scale_tril_is_unbroadcasted():
    tril = torch.tensor([[1.0, 0.0], [0.5, 2.0]])
    d = dist.MultivariateNormal(torch.zeros(4, 2), scale_tril=tril)
    got = _compat.mvn_scale_tril(d)
    assert got.shape == (2, 2), "MultivariateNormal._unbroadcasted_scale_tril changed"
    torch.testing.assert_close(got, tril)


def test_foreach_kernels():
    a = [torch.tensor([3.0, 4.0]), torch.tensor([[1.0, 2.0], [2.0, 4.0]])]
    norms = _compat.foreach_norm(a)
    torch.testing.assert_close(torch.stack(norms), torch.tensor([5.0, 5.0]))
    targets = [torch.zeros(2), torch.zeros(2, 2)]
    _compat.foreach_copy_(targets, a)
    for t, s in zip(targets, a):
        assert torch.equal(t, s), "torch._foreach_copy_ changed"


def test_checked_instance_and_validate_sample():
    from pyro_genmodels.distributions import BernoulliMixture

    d = BernoulliMixture(torch.zeros(2), torch.full((2, 3), 0.5))
    new = _compat.checked_instance(d, BernoulliMixture, None)
    assert type(new) is BernoulliMixture, "Distribution._get_checked_instance moved"
    with pytest.raises(ValueError, match="support"):
        _compat.validate_sample(d, torch.full((3,), 0.5))  # not binary
    _compat.validate_sample(d, torch.ones(3))
    with pytest.raises(ValueError):
        _compat.validate_sample(d, torch.ones(4))  # event shape (3,)


def test_mcmc_chain_diagnostics_are_the_kernels_per_chain_dicts():
    from pyro_genmodels.infer import BlockGibbs
    from pyro_genmodels.models import RBM

    kernel = BlockGibbs(RBM(3, 2))
    mcmc = pyro.infer.MCMC(kernel, num_samples=4, disable_progbar=True)
    assert _compat.mcmc_chain_diagnostics(mcmc) == [None], "MCMC._diagnostics moved"
    mcmc.run()
    per_chain = _compat.mcmc_chain_diagnostics(mcmc)
    assert per_chain == [kernel.diagnostics()], "MCMC._diagnostics no longer holds them"
    merged = mcmc.diagnostics()  # Pyro's merge of the same dicts, after its own statistics
    assert merged["divergences"] == {"chain 0": per_chain[0]["divergences"]}
