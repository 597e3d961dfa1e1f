"""Latent-variable models as PyroModules with ``.model`` and ``.guide`` methods.

Every model indexes datapoints by ``pyro.plate("data", N)`` with the observed
site ``"x"`` and the main latent ``"z"`` (flat data ``(N, x_dim)``):

- :class:`VAE` (with ``beta``; MLP or conv networks; Bernoulli, continuous
  Bernoulli or Gaussian likelihoods; ``beta`` is scheduled by the ``fit`` callback
  :class:`pyro_genmodels.training.KLAnnealing`);
- :class:`CVAE`, conditioned on labels or context vectors;
- :class:`SSVAE`, the semi-supervised M2 model (enumerated labels);
- :class:`WAE` (= :data:`InfoVAE`), trained with ``pyro.infer.Trace_MMD``;
- :class:`FlowDensity`, normalizing-flow densities (site ``"x"``, exact likelihood),
  whose :class:`FlowDistribution` is the density at the site;
- :class:`RBM` and :class:`DBM`, Boltzmann machines (observed site ``"v"``);
- :class:`EnergyModel`, an energy-based model's program (observed site ``"x"``).
"""

from pyro_genmodels.models.boltzmann import RBM
from pyro_genmodels.models.cvae import CVAE
from pyro_genmodels.models.dbm import DBM
from pyro_genmodels.models.energy import EnergyModel
from pyro_genmodels.models.flow import FlowDensity, FlowDistribution
from pyro_genmodels.models.ssvae import SSVAE
from pyro_genmodels.models.vae import VAE
from pyro_genmodels.models.wae import WAE, InfoVAE, LatentKernel

__all__ = [
    "DBM",
    "RBM",
    "CVAE",
    "EnergyModel",
    "FlowDensity",
    "FlowDistribution",
    "SSVAE",
    "VAE",
    "WAE",
    "InfoVAE",
    "LatentKernel",
]
