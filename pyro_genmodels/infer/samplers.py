"""The batched samplers of energy-based distributions, named under :mod:`pyro_genmodels.infer`.

They are defined beside the distribution that runs them
(:mod:`pyro_genmodels.distributions.samplers`: the :class:`EnergySampler` protocol, the
one Langevin/MALA move :func:`langevin_move`, :class:`LangevinSampler`;
:mod:`pyro_genmodels.distributions.adaptive`: :class:`AdaptiveLangevinSampler`, the
default), so that ``distributions/`` never imports ``infer/``; the losses, kernels and
AIS paths of this package import them from here or from there alike.

>>> from pyro_genmodels.distributions.samplers import LangevinSampler as Defined
>>> LangevinSampler is Defined
True
"""

from pyro_genmodels.distributions.adaptive import (
    AdaptiveLangevinSampler,
    ChainSpace,
    chain_diagnostics,
)
from pyro_genmodels.distributions.samplers import (
    EnergySampler,
    LangevinMove,
    LangevinSampler,
    check_finite_draws,
    energy_grad,
    langevin_move,
)

__all__ = [
    "AdaptiveLangevinSampler",
    "ChainSpace",
    "EnergySampler",
    "LangevinMove",
    "LangevinSampler",
    "chain_diagnostics",
    "check_finite_draws",
    "energy_grad",
    "langevin_move",
]
