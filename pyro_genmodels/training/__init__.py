"""The training runtime: :func:`fit` and the pieces it is made of.

- :mod:`.fit` — ``fit(...)``, a facade: :class:`FitConfig` → :class:`Trainer`;
- :mod:`.config` — every argument check, and the keywords mapped to callbacks and layers;
- :mod:`.trainer` — the loop in named phases (setup, start, epochs, end);
- :mod:`.state` — the run's one mutable :class:`RunState` and the :class:`FitState` view
  callbacks get;
- :mod:`.epoch`, :mod:`.step`, :mod:`.guard` — an epoch, a step, the non-finite guard;
- :mod:`.batches` — the seeded batch order of tensors, Datasets and DataLoaders;
- :mod:`.snapshot`, :mod:`.files`, :mod:`.rng`, :mod:`.resume_rules` — what a
  checkpoint holds, atomic checksummed files, random states, what a resume may change;
- :mod:`.priming`, :mod:`.loss_stack`, :mod:`.protocols`, :mod:`.placement` — the work
  before the first step, the layers around a loss (compiled, bf16), what the runtime
  asks of a loss, devices and dtypes;
- :mod:`.callbacks` — every training feature as a callback.

One process or data-parallel ranks differ only through :mod:`pyro_genmodels.parallel`.

>>> import pyro_genmodels as pgm
>>> pgm.training.fit is pgm.fit
True
"""

from pyro_genmodels.training.callbacks import Callback, KLAnnealing
from pyro_genmodels.training.config import FitConfig
from pyro_genmodels.training.files import CheckpointError, load_checkpoint, save_checkpoint
from pyro_genmodels.training.fit import fit
from pyro_genmodels.training.state import FitState, RunState
from pyro_genmodels.training.trainer import Trainer

__all__ = [
    "Callback",
    "CheckpointError",
    "FitConfig",
    "FitState",
    "KLAnnealing",
    "RunState",
    "Trainer",
    "fit",
    "load_checkpoint",
    "save_checkpoint",
]
