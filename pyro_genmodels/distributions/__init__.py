"""Distributions for deep generative models (``TorchDistribution`` subclasses).

Today: :class:`BernoulliMixture`, the EM-fitted baseline for binary images.
"""

from pyro_genmodels.distributions.autoregressive import AutoregressiveDistribution
from pyro_genmodels.distributions.mixture import BernoulliMixture

__all__ = ["BernoulliMixture"]
__all__ += ["AutoregressiveDistribution"]
