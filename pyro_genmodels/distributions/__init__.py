"""Distributions for deep generative models (``TorchDistribution`` subclasses).

Today: :class:`BernoulliMixture`, the EM-fitted baseline for binary images;
:class:`AutoregressiveDistribution`; :class:`EnergyDistribution` (``exp(-E(x)) / Z``).
"""

from pyro_genmodels.distributions.autoregressive import AutoregressiveDistribution
from pyro_genmodels.distributions.energy import EnergyDistribution
from pyro_genmodels.distributions.mixture import BernoulliMixture

__all__ = ["BernoulliMixture"]
__all__ += ["AutoregressiveDistribution"]
__all__ += ["EnergyDistribution"]
