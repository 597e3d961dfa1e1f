"""Distributions for deep generative models (``TorchDistribution`` subclasses).

Today: :class:`BernoulliMixture`, the EM-fitted baseline for binary images;
:class:`AutoregressiveDistribution`; :class:`EnergyDistribution` (``q(x) exp(-E(x)) / Z``)
with its samplers (:mod:`~pyro_genmodels.distributions.samplers`: the ``EnergySampler``
protocol and the one Langevin/MALA move; :class:`AdaptiveLangevinSampler`, the default).
"""

from pyro_genmodels.distributions.adaptive import AdaptiveLangevinSampler
from pyro_genmodels.distributions.autoregressive import AutoregressiveDistribution
from pyro_genmodels.distributions.energy import EnergyDistribution
from pyro_genmodels.distributions.mixture import BernoulliMixture

__all__ = ["BernoulliMixture"]
__all__ += ["AutoregressiveDistribution"]
__all__ += ["EnergyDistribution", "AdaptiveLangevinSampler"]
