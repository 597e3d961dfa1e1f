"""``fit``'s direct contrastive step on an RBM's own program: the full step's numbers, exactly.

The direct step (:mod:`pyro_genmodels.infer.contrastive_direct`) takes the step of
``ContrastiveDivergenceLoss.loss_and_grads(rbm.model, rbm.guide, v)`` without running the
programs. A lambda around ``rbm.model`` hides the program, so ``fit`` takes the full step:
both runs must end with bit-identical parameters, histories and persistent chains. No test
here is statistical.
"""

import pyro
import pytest
import torch
from optim_helpers import PoisonRate, optimizer_tensors

import pyro_genmodels as pgm
from pyro_genmodels.infer import ContrastiveDivergenceLoss
from pyro_genmodels.infer.contrastive_direct import DirectRBMStep

CASES = {
    "pcd (Tieleman: a chain per row)": lambda: ContrastiveDivergenceLoss(persistent=True),
    "pcd, a buffer of 24 with restarts": lambda: ContrastiveDivergenceLoss(
        persistent=True, buffer_size=24, reinit_prob=0.2
    ),
    "cd-1": lambda: ContrastiveDivergenceLoss(k=1),
    "cd-3": lambda: ContrastiveDivergenceLoss(k=3),
    "cd from fresh chains": lambda: ContrastiveDivergenceLoss(k=2, start="init"),
}


@pytest.fixture
def count_direct(count_calls):
    """How many steps took the direct path."""
    return count_calls(DirectRBMStep)


def binary_data(n, d, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, d), 0.4), generator=g).to(device)


def train(device, make_loss, hidden=False, epochs=3, optim=None, batch_size=16, **kwargs):
    """A fresh RBM(6, 3) trained on 50 rows in batches of 16 (the last has 2 rows)."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    rbm = pgm.models.RBM(6, 3).to(device)
    loss = make_loss()
    model, guide = rbm.model, rbm.guide
    if hidden:
        model, guide = (lambda v: rbm.model(v)), (lambda v: rbm.guide(v))
    history = pgm.fit(model, guide, binary_data(50, 6, device), loss=loss,
                      optim=optim or rbm.sgd(lr=0.1, momentum=0.5), epochs=epochs,
                      batch_size=batch_size, progress=False, **kwargs)  # fmt: skip
    return rbm, loss, history


@pytest.mark.parametrize("case", list(CASES))
def test_direct_steps_give_the_full_steps_numbers(device, case, count_direct):
    rbm, loss, history = train(device, CASES[case])
    direct = count_direct["n"]
    assert direct == 3 * 4  # every step, the first one reading the parameters through Pyro
    other, other_loss, other_history = train(device, CASES[case], hidden=True)
    assert count_direct["n"] == direct  # the hidden program took no direct step
    for p, q in zip(rbm.parameters(), other.parameters(), strict=True):
        assert torch.equal(p, q)
    assert history["loss"].tolist() == other_history["loss"].tolist()
    assert loss.buffers.keys() == other_loss.buffers.keys()
    for name, buffer in loss.buffers.items():
        assert torch.equal(buffer, other_loss.buffers[name])


def test_a_resumed_run_with_direct_steps_continues_exactly(tmp_path, count_direct):
    whole, whole_loss, _ = train("cpu", CASES["pcd (Tieleman: a chain per row)"], epochs=4)
    train("cpu", CASES["pcd (Tieleman: a chain per row)"], epochs=2, checkpoint_dir=tmp_path)
    resumed, resumed_loss, history = train(
        "cpu",
        CASES["pcd (Tieleman: a chain per row)"],
        epochs=4,
        checkpoint_dir=tmp_path,
        resume=True,
    )
    assert len(history) == 4 and count_direct["n"] > 0
    for p, q in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
    assert torch.equal(whole_loss.buffers["v"], resumed_loss.buffers["v"])


def test_a_failed_direct_step_changes_nothing(count_direct):
    """An infinite rate set before epoch 2 makes its first (direct) step's update non-finite:
    fit raises, and the parameters, the optimizer state and the chains are as epoch 1 left
    them."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    rbm = pgm.models.RBM(6, 3)
    loss = ContrastiveDivergenceLoss(persistent=True)
    optim = rbm.sgd(lr=0.1, momentum=0.5)
    saved = {}

    def save():
        saved["params"] = [p.detach().clone() for p in rbm.parameters()]
        saved["chains"] = loss.buffers["v"].clone()
        saved["momenta"] = [t.clone() for t in optimizer_tensors(optim)]
        saved["direct"] = count_direct["n"]

    with pytest.raises(FloatingPointError, match="epoch 2 of 3"):
        pgm.fit(rbm.model, rbm.guide, binary_data(50, 6, "cpu"), loss=loss, optim=optim,
                epochs=3, batch_size=16, progress=False,
                callbacks=[PoisonRate(optim, 1, save)])  # fmt: skip
    assert count_direct["n"] == saved["direct"] + 1  # the failed step was a direct one
    for p, q in zip(rbm.parameters(), saved["params"], strict=True):
        assert torch.equal(p, q)
    assert torch.equal(loss.buffers["v"], saved["chains"])
    momenta = optimizer_tensors(optim)
    for m, q in zip(momenta, saved["momenta"], strict=True):
        assert torch.equal(m, q)


def test_a_scale_around_fit_takes_the_full_step(count_direct):
    """A Pyro handler around the run changes the program: the full step honours it."""
    with pyro.poutine.scale(scale=0.5):
        rbm, _, history = train("cpu", CASES["cd-1"])
        other, _, other_history = train("cpu", CASES["cd-1"], hidden=True)
    assert count_direct["n"] == 0
    assert history["loss"].tolist() == other_history["loss"].tolist()
    for p, q in zip(rbm.parameters(), other.parameters(), strict=True):
        assert torch.equal(p, q)
    with pyro.poutine.scale(scale=0.5):  # one step: the loss before any update
        _, _, scaled = train("cpu", CASES["cd-1"], epochs=1, batch_size=50)
    _, _, plain = train("cpu", CASES["cd-1"], epochs=1, batch_size=50)
    assert scaled["loss"][0] == pytest.approx(0.5 * plain["loss"][0], rel=1e-6)


class _OtherModel(pgm.models.RBM):
    def model(self, v):  # a program the direct step does not know
        return super().model(v)


def _offer(loss=None, rbm=None, data=None):
    rbm = rbm or pgm.models.RBM(6, 3)
    loss = loss or ContrastiveDivergenceLoss()
    data = binary_data(10, 6, "cpu") if data is None else data
    return loss.direct_step(rbm.model, rbm.guide, (data,))


def test_the_direct_step_is_offered_only_where_it_is_the_same_step():
    assert isinstance(_offer(), DirectRBMStep)
    assert isinstance(_offer(ContrastiveDivergenceLoss(persistent=True)), DirectRBMStep)
    sampler = pgm.models.RBM(6, 3).distribution().sampler  # another machine's chains
    refused = {
        "sampled hiddens": _offer(ContrastiveDivergenceLoss(free_energy=False)),
        "an energy penalty": _offer(ContrastiveDivergenceLoss(energy_reg=0.1)),
        "a sampler of its own": _offer(ContrastiveDivergenceLoss(sampler=sampler)),
        "gaussian visibles": _offer(
            rbm=pgm.models.RBM(6, 3, visible="gaussian"), data=torch.randn(10, 6)
        ),
        "another model": _offer(rbm=_OtherModel(6, 3)),
        "non-binary data": _offer(data=torch.full((10, 6), 0.5)),
        "float64 data for float32 parameters": _offer(data=binary_data(10, 6, "cpu").double()),
        "two data tensors": ContrastiveDivergenceLoss().direct_step(
            pgm.models.RBM(6, 3).model, pgm.models.RBM(6, 3).guide, (torch.ones(2, 6),) * 2
        ),
    }
    assert all(offer is None for offer in refused.values()), refused
    rbm = pgm.models.RBM(6, 3)
    other = pgm.models.RBM(6, 3)
    assert (
        ContrastiveDivergenceLoss().direct_step(rbm.model, other.guide, (torch.ones(2, 6),)) is None
    )


def test_bf16_and_the_data_check_take_the_full_step(count_direct):
    train("cpu", CASES["cd-1"], epochs=1, precision="bf16")
    assert count_direct["n"] == 0
    rbm = pgm.models.RBM(6, 3)
    with pytest.raises(ValueError, match="binary"):
        pgm.fit(rbm.model, rbm.guide, torch.full((8, 6), 0.5), loss=ContrastiveDivergenceLoss(),
                optim=rbm.sgd(), epochs=1, batch_size=4, progress=False)  # fmt: skip


def test_the_first_direct_step_traces_the_parameters_a_full_step_traces():
    """What ``fit`` records of a run (the param-store names in checkpoints) and updates."""
    from pyro_genmodels.training.step import LossUndo, Step

    found = []
    for data in ((binary_data(16, 6, "cpu"),), None):  # the direct step, then the full step
        pyro.clear_param_store()
        rbm = pgm.models.RBM(6, 3)
        loss = ContrastiveDivergenceLoss(persistent=True)
        step = Step(rbm.model, rbm.guide, loss, rbm.sgd(), LossUndo(loss), data=data)
        step((binary_data(16, 6, "cpu"),))
        found.append((step.names, step.direct_steps, step._direct_params))
    (names, direct, params), (full_names, full_direct, _) = found
    assert names == full_names == {"W", "visible_bias", "hidden_bias"}
    assert (direct, full_direct) == (1, 0)
    assert params is not None and len(params) == 3


def test_bad_input_to_the_new_entry_points_is_named():
    from pyro_genmodels.data.validation import is_binary

    rbm = pgm.models.RBM(6, 3)
    with pytest.raises(TypeError, match="data must be a tuple"):
        ContrastiveDivergenceLoss().direct_step(rbm.model, rbm.guide, torch.ones(2, 6))
    sampler = rbm.distribution().sampler
    params = rbm.gibbs_params()
    for steps in (0, -1, 1.5):
        with pytest.raises((ValueError, TypeError), match="steps"):
            sampler.sweeps(torch.ones(2, 6), steps, params)
    with pytest.raises(TypeError, match="torch.Tensor"):
        is_binary([0, 1])
