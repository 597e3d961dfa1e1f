"""Priming changes nothing: ``fit`` after one loss evaluation on its first batch equals ``fit``.

Data-parallel ``fit`` creates Pyro's lazily made params before training by
:func:`pyro_genmodels.training.priming.prime` (inside ``prime_and_broadcast``): one
loss evaluation on the global first batch, random generators and loss state
restored. Two processes equal one only if a run whose params exist when
training starts takes the same steps as one that creates them at its first
step. The test iterates :data:`pyro_genmodels.zoo.ZOO`, so a family registered
later is covered without an edit here: for every entry, built small on a few
dozen digits, the history and every parameter and buffer after ``fit`` with a
prime (made where ``prime_and_broadcast`` makes it: after ``fit`` seeded the
generators, before the first step) equal, bit for bit, those of ``fit`` alone.
A loss that guesses its plate nesting on first use (``IWAELoss``) is primed by
``fit`` itself, with the generators restored, so its trial pass draws nothing
from the training streams whether or not it was primed before.
"""

from __future__ import annotations

import pyro
import pytest
import torch
from zoo_helpers import BATCH, DATA, N_TRAIN, assert_same_training, build_small, train

from pyro_genmodels import zoo
from pyro_genmodels._compat import store_params
from pyro_genmodels.flows.glow import channel_mix, glow
from pyro_genmodels.models import FlowDensity
from pyro_genmodels.optim import Adam
from pyro_genmodels.params import own_params
from pyro_genmodels.training import fit
from pyro_genmodels.training.batches import make_batches
from pyro_genmodels.training.priming import prime
from pyro_genmodels.training.protocols import guesses_plate_nesting as needs_priming

EPOCHS = 2


class _Prime:
    """A callback that primes at the start of the first epoch, as ``prime_and_broadcast``
    does (after ``fit`` seeded the generators, before any step), on ``fit``'s first batch."""

    def __init__(self, train: torch.Tensor, loss) -> None:
        batches = make_batches(train, BATCH, None, 0)  # fit's batches: seed=0, shuffled
        self.first = batches.take(batches.global_batches(0)[0])
        self.guesses = needs_priming(loss)  # before fit: it has not guessed yet
        self.store_size = -1

    def on_epoch_start(self, state) -> None:
        if state.epoch == 0:
            # fit itself made only the first-call trial pass of a loss that guesses its plate
            # nesting (IWAELoss), drawing nothing from the training streams
            assert not store_params() or self.guesses, "params made before priming"
            prime(state.model, state.guide, state.loss, self.first)
            self.store_size = len(store_params())


def _run(name: str, primed: bool):
    setup = build_small(name)
    callback = _Prime(setup.train, setup.loss)
    # uncompiled: a compiled loss is primed by fit itself before it is traced
    history = train(setup, EPOCHS, callbacks=[callback] if primed else [], jit=False)
    return setup, history, callback


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_fit_after_a_prime_equals_fit_for_every_zoo_entry(name):
    reference, plain, _ = _run(name, primed=False)
    trained, history, callback = _run(name, primed=True)
    assert callback.store_size > 0, f"{name}: priming created no param"
    assert callback.store_size == len(store_params()), f"{name}: a param was created late"
    assert_same_training(f"{name} after priming", reference.module, trained.module, plain, history)


def test_glow_after_a_no_grad_forward_equals_fit():
    """The user's prime: one ``torch.no_grad()`` forward of the model outside ``fit``
    (outside ``own_params`` too) on the first training batch, before ``fit``."""
    runs = []
    for primed in (False, True):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        setup = zoo.build("flow-glow", DATA[False], num_layers=1, hidden=8)
        if primed:
            with torch.no_grad():
                setup.model(setup.train[:BATCH])
        history = fit(
            setup.model,
            setup.guide,
            setup.train,
            loss=setup.loss,
            optim=Adam({"lr": 1e-2}),
            epochs=EPOCHS,
            batch_size=BATCH,
            shuffle=False,
            seed=0,
            progress=False,
        )
        runs.append((setup.module, history))
    assert_same_training("primed flow-glow", runs[0][0], runs[1][0], runs[0][1], runs[1][1])


def test_glow_lu_factors_are_the_param_store_entries():
    """Pyro's param store keeps a contiguous copy of a non-contiguous parameter; Glow's 1x1
    convolutions store their LU factor contiguously, so a plain Pyro loss (no
    ``own_params``) registers and trains the tensors the layers compute with."""
    pyro.clear_param_store()
    flow = glow(16, num_layers=1, hidden_dims=[4], image_shape=(1, 4, 4), num_scales=1)
    lus = [m.LU for m in flow.modules() if hasattr(m, "LU")]
    assert lus and all(lu.is_contiguous() for lu in lus)
    pyro.module("glow", flow)
    stored = set(store_params().values())
    assert all(lu in stored for lu in lus)
    pyro.clear_param_store()


def test_own_params_stores_a_new_non_contiguous_parameter_itself():
    """Outside ``own_params`` Pyro stores ``p.contiguous()`` (a copy, not trained by the
    layer's gradients); inside it the store's new entry is ``p``."""
    mix = pyro.distributions.transforms.GeneralizedChannelPermute(3)  # column-major LU
    assert not mix.LU.is_contiguous()
    pyro.clear_param_store()
    pyro.module("mix", mix)
    copy = store_params()["mix$$$LU"]
    assert copy is not mix.LU and torch.equal(copy, mix.LU)
    pyro.clear_param_store()
    with own_params():
        pyro.module("mix", mix)
    assert store_params()["mix$$$LU"] is mix.LU
    assert pyro.param("mix$$$LU") is mix.LU and mix.LU.requires_grad
    # a constrained param keeps Pyro's rule: the store holds the unconstrained value
    pyro.clear_param_store()
    own = torch.nn.Parameter(torch.ones(2))
    with own_params():
        pyro.param("scale", own, constraint=pyro.distributions.constraints.positive)
    assert store_params()["scale"] is not own
    torch.testing.assert_close(pyro.param("scale"), own.detach())
    assert channel_mix(3).LU.is_contiguous()
    pyro.clear_param_store()


def _random_init_model(lazy: bool):
    """``w ~ N(0, 1)`` drawn as the initial value of a param, ``z_i ~ N(w, 1)``, ``x_i ~ N(z_i,
    1)``; the guide draws ``z`` (Monte Carlo noise at every step)."""

    def model(x):
        w = pyro.param("w", (lambda: torch.randn(())) if lazy else torch.randn(()))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", pyro.distributions.Normal(w, 1.0))
            pyro.sample("x", pyro.distributions.Normal(z, 1.0), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.zeros(len(x)))
        with pyro.plate("data", len(x)):
            pyro.sample("z", pyro.distributions.Normal(loc, 1.0))

    return model, guide


class _PrimeOn(_Prime):
    def __init__(self, batch: tuple) -> None:
        self.first, self.guesses, self.store_size = batch, False, -1


def test_a_lazily_drawn_param_init_is_the_documented_difference():
    """A param whose initial value is drawn inside a callable (``pyro.param("w", lambda:
    torch.randn(()))``) is drawn only where it is created: the primed run's first step does
    not draw it again, so its guide noise is drawn from another point of the stream than
    the unprimed run's.
    Given as a tensor (drawn at every call) both runs agree bit for bit."""
    x = torch.linspace(-2.0, 2.0, 8)
    results = {}
    for lazy in (False, True):
        for primed in (False, True):
            pyro.clear_param_store()
            model, guide = _random_init_model(lazy)
            callbacks = [_PrimeOn((x,))] if primed else []
            history = fit(model, guide, x, optim=Adam({"lr": 0.1}), epochs=2, batch_size=8,
                          seed=0, progress=False, callbacks=callbacks)  # fmt: skip
            results[lazy, primed] = (history["loss"].tolist(), pyro.param("w").item())
    assert results[False, True] == results[False, False]
    assert results[True, True] != results[True, False]  # the shifted noise: another trajectory


@pytest.mark.parametrize("norm", ["actnorm", "batchnorm"])
def test_prime_keeps_actnorm_init_and_puts_batchnorm_statistics_back(norm):
    """Outside the zoo's choices: a RealNVP with ActNorm (the prime's initialization is kept:
    it is the first step's) or with batch norm (the prime's update of the moving averages
    is undone: the first step makes it)."""
    x = torch.rand(N_TRAIN, 4, generator=torch.Generator().manual_seed(0))
    runs = []
    for primed in (False, True):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        flow = FlowDensity(4, "realnvp", num_layers=2, hidden_dims=[8], norm=norm)
        callbacks = [_PrimeOn((x[:BATCH],))] if primed else []
        history = fit(flow.model, flow.guide, x, optim=Adam({"lr": 1e-2}), epochs=EPOCHS,
                      batch_size=BATCH, shuffle=False, seed=0, progress=False,
                      callbacks=callbacks, jit=False)  # fmt: skip
        runs.append((flow, history))
    assert_same_training(f"primed {norm}", runs[0][0], runs[1][0], runs[0][1], runs[1][1])
    buffers = dict(runs[1][0].named_buffers())
    assert any(
        key.endswith("moving_mean" if norm == "batchnorm" else "initialized") for key in buffers
    )
