"""Optimizer helpers shared by the tests of failed steps: an infinite rate, the state kept."""

import math

import torch


def optimizer_tensors(optim):
    """Every tensor of the state of the torch optimizers behind the Pyro ``optim``."""
    return [
        t
        for opt in set(optim.optim_objs.values())
        for s in opt.state.values()
        for t in s.values()
        if isinstance(t, torch.Tensor)
    ]


class PoisonRate:
    """A ``fit`` callback: at the start of epoch ``epoch`` (``state.epoch``, from 0) it calls
    ``before()``, then sets every learning rate of ``optim`` to ``inf`` (the next update is
    non-finite)."""

    def __init__(self, optim, epoch, before):
        self.optim, self.epoch, self.before = optim, epoch, before

    def on_epoch_start(self, state):
        if state.epoch == self.epoch:
            self.before()
            for opt in set(self.optim.optim_objs.values()):
                for group in opt.param_groups:
                    group["lr"] = math.inf
