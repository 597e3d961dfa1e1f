"""The callbacks of :func:`pyro_genmodels.fit`: the protocol and every training feature.

Every feature of ``fit`` is a callback here, each in a file of its own, with its own
``state_dict`` where it has a state (so it is checkpointed with no edit elsewhere):
:class:`Validation` (``val_loss``), :class:`EarlyStopping`, :class:`BestEpoch`
(``keep_best``, ``best.pt``), :class:`LRSchedule`, :class:`Progress`,
:class:`Checkpointing` (``checkpoint.pt``, ``last_good.pt``), and
:class:`KLAnnealing` (a model weight's warm-up). The hooks are listed in
:mod:`~pyro_genmodels.training.callbacks.base`.
"""

from pyro_genmodels.training.callbacks.base import HOOKS, Callback, check_callbacks, fire
from pyro_genmodels.training.callbacks.best_epoch import BestEpoch
from pyro_genmodels.training.callbacks.checkpointing import Checkpointing
from pyro_genmodels.training.callbacks.early_stopping import EarlyStopping, Monitored
from pyro_genmodels.training.callbacks.kl_annealing import KLAnnealing
from pyro_genmodels.training.callbacks.lr_schedule import LRSchedule
from pyro_genmodels.training.callbacks.progress import Progress
from pyro_genmodels.training.callbacks.validation import Validation

__all__ = [
    "HOOKS",
    "BestEpoch",
    "Callback",
    "Checkpointing",
    "EarlyStopping",
    "KLAnnealing",
    "LRSchedule",
    "Monitored",
    "Progress",
    "Validation",
    "check_callbacks",
    "fire",
]
