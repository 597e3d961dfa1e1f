"""Deep generative models as Pyro citizens.

``pyro_genmodels`` (imported as ``pgm``) supplies the distributions, networks,
losses, estimators, diagnostics and the training loop that turn ordinary Pyro
programs into deep generative models. Subpackages load on first use.

>>> import pyro_genmodels as pgm
>>> pgm.nn.MLP(2, [4], 1).out_dim
1
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "data",
    "diagnostics",
    "distributions",
    "flows",
    "infer",
    "models",
    "nn",
    "optim",
    "parallel",
    "params",
    "training",
    "zoo",
)
__all__ = [*_SUBMODULES, "fit", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"pyro_genmodels.{name}")
    if name == "fit":
        from pyro_genmodels.training import fit

        return fit
    raise AttributeError(f"module 'pyro_genmodels' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
