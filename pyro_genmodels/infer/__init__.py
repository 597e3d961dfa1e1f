"""SVI-compatible losses and estimators for deep generative models.

Losses follow ``pyro.infer.ELBO`` (``loss``, ``differentiable_loss``,
``loss_and_grads``) and plug into ``pyro.infer.SVI``; estimators score a trained
model datapoint by datapoint. Every loss class is listed in :data:`LOSSES`, which
the conformance tests in ``tests/test_loss_registry.py`` iterate over.

>>> import pyro_genmodels as pgm
>>> pgm.infer.IWAELoss in pgm.infer.LOSSES
True
"""

from pyro_genmodels.infer.adversarial import ConcatSites, GANLoss, LSGANLoss
from pyro_genmodels.infer.ais import AISResult, AnnealingPath, EnergyAnnealingPath, ais, run_ais
from pyro_genmodels.infer.bigan import BiGANLoss
from pyro_genmodels.infer.boltzmann_ais import (
    BoltzmannAnnealingPath,
    base_rate_logits,
    salakhutdinov_murray_betas,
)
from pyro_genmodels.infer.boltzmann_recipes import DBMRecipe, GreedyLayer, RBMRecipe, SGDSchedule
from pyro_genmodels.infer.contrastive import ContrastiveDivergenceLoss
from pyro_genmodels.infer.dbm_loss import DBMLoss
from pyro_genmodels.infer.divergence import DivergenceMonitor, EnergyDivergenceError
from pyro_genmodels.infer.estimators import (
    bits_per_dim,
    elbo_per_datapoint,
    log_likelihood,
    rescale_log_likelihood,
)
from pyro_genmodels.infer.fgan import F_DIVERGENCES, FDivergence, fgan_bound
from pyro_genmodels.infer.gibbs import BlockGibbs, DiscreteGibbs
from pyro_genmodels.infer.iwae import IWAELoss
from pyro_genmodels.infer.langevin import Langevin, annealed_langevin
from pyro_genmodels.infer.nce import NCELoss
from pyro_genmodels.infer.samplers import AdaptiveLangevinSampler, EnergySampler, LangevinSampler
from pyro_genmodels.infer.score_matching import ScoreMatchingLoss
from pyro_genmodels.infer.weights import WeightedTraces, importance_log_weights
from pyro_genmodels.infer.wgan import WGANGPLoss, WGANLoss

#: Every loss class of the package (append new ones here; the registry test checks it).
LOSSES = (
    IWAELoss,
    GANLoss,
    LSGANLoss,
    WGANLoss,
    WGANGPLoss,
    BiGANLoss,
    ContrastiveDivergenceLoss,
    ScoreMatchingLoss,
    NCELoss,
    DBMLoss,
)

#: Every MCMC kernel of the package (append new ones here; tests/test_kernel_registry.py checks it).
KERNELS = (Langevin, BlockGibbs, DiscreteGibbs)

__all__ = [
    "KERNELS",
    "AISResult",
    "AdaptiveLangevinSampler",
    "DivergenceMonitor",
    "EnergyDivergenceError",
    "AnnealingPath",
    "ContrastiveDivergenceLoss",
    "EnergyAnnealingPath",
    "EnergySampler",
    "Langevin",
    "LangevinSampler",
    "NCELoss",
    "ScoreMatchingLoss",
    "annealed_langevin",
    "ais",
    "run_ais",
    "BlockGibbs",
    "BoltzmannAnnealingPath",
    "DBMLoss",
    "DBMRecipe",
    "GreedyLayer",
    "RBMRecipe",
    "SGDSchedule",
    "DiscreteGibbs",
    "base_rate_logits",
    "salakhutdinov_murray_betas",
    "BiGANLoss",
    "ConcatSites",
    "FDivergence",
    "F_DIVERGENCES",
    "GANLoss",
    "LSGANLoss",
    "WGANGPLoss",
    "WGANLoss",
    "fgan_bound",
    "IWAELoss",
    "LOSSES",
    "WeightedTraces",
    "bits_per_dim",
    "elbo_per_datapoint",
    "importance_log_weights",
    "log_likelihood",
    "rescale_log_likelihood",
]
