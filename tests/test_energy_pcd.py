"""Persistent CD's replay buffer: chains are drawn without replacement and all advance."""

import pyro
import pytest
import torch

from pyro_genmodels.distributions import EnergyDistribution
from pyro_genmodels.infer import ContrastiveDivergenceLoss
from pyro_genmodels.infer.samplers import EnergySampler


class Tagging(EnergySampler):
    """Fresh chains are ``(id, 0)`` with distinct ids; a transition adds 1 to the second entry,
    so a chain's state records which chain it is and how many transitions it has made."""

    def __init__(self, device):
        self.next_id, self.device = 0, device

    def init(self, dist, sample_shape=()):
        n = torch.Size(sample_shape + dist.batch_shape).numel()
        ids = torch.arange(self.next_id, self.next_id + n, dtype=torch.float64, device=self.device)
        self.next_id += n
        return torch.stack([ids, torch.zeros_like(ids)], -1)

    def run(self, dist, x, num_steps=None):
        return x + torch.tensor([0.0, float(num_steps)], dtype=x.dtype, device=x.device)


def _model(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", EnergyDistribution(lambda y: (y**2).sum(-1), (2,)), obs=x)


@pytest.mark.parametrize("buffer_size, batch", [(16, 16), (48, 16)])
def test_every_drawn_chain_is_distinct_and_advances(buffer_size, batch, device):
    """Buffer == batch: every chain advances at every step (standard PCD); buffer > batch: the
    drawn chains are distinct, so no chain is duplicated and none is lost. Drawing with
    replacement fails this with probability 1 - 16!/16^16 > 0.999 per step."""
    torch.manual_seed(0)
    loss = ContrastiveDivergenceLoss(
        k=1, persistent=True, buffer_size=buffer_size, reinit_prob=0.0, sampler=Tagging(device)
    )
    x = torch.zeros(batch, 2, dtype=torch.float64, device=device)
    fills = buffer_size // batch
    for _ in range(fills):  # fresh chains fill the buffer
        loss.loss(_model, lambda x: None, x)
    for _ in range(6):
        loss.loss(_model, lambda x: None, x)
    buf = loss.state_dict()["buffer.x"]
    assert buf.shape == (buffer_size, 2)
    ids = buf[:, 0]
    assert sorted(ids.tolist()) == list(range(buffer_size))  # no chain lost or duplicated
    steps = buf[:, 1]
    assert steps.sum().item() == (fills + 6) * batch  # each draw advanced one distinct chain
    if buffer_size == batch:
        assert (steps == 7).all()


def test_restarts_keep_their_rate(device):
    """A restarted chain has made one transition; with reinit_prob = 0.25 the restarts over
    40 steps of 16 chains are Binomial(640, 0.25): 160 ± 50 is > 4.5 sd (failure rate < 1e-5)."""
    torch.manual_seed(1)
    loss = ContrastiveDivergenceLoss(
        k=1,
        persistent=True,
        buffer_size=16,
        reinit_prob=0.25,
        sampler=Tagging(device),
        watch=False,  # the tags are not chains of the energy: they leave the data's range
    )
    x = torch.zeros(16, 2, dtype=torch.float64, device=device)
    loss.loss(_model, lambda x: None, x)
    restarts = 0
    for _ in range(40):
        loss.loss(_model, lambda x: None, x)
        restarts += int((loss.state_dict()["buffer.x"][:, 1] == 1).sum())
    assert abs(restarts - 160) <= 50
