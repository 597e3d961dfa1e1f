"""MCMC runs as ArviZ ``InferenceData``, with chains that a kernel runs as a batch on ArviZ's
chain dimension."""

from __future__ import annotations

from typing import Any

import arviz as az
import numpy as np


def from_mcmc(mcmc: Any) -> az.InferenceData:
    """``az.from_pyro(mcmc)``, except that a kernel's own batch of chains
    (``pgm.infer.BlockGibbs(machine, batch_size=B)``: draws of shape ``(B, n)``) goes to the
    ``chain`` dimension: ``C`` runs of ``MCMC(num_chains=C)`` give ``C·B`` chains of ``(n,)``
    draws, so ``az.rhat``/``az.ess`` compare chains instead of units. Kernels without a batch
    are converted by ``az.from_pyro``. ``sample_stats`` holds ``diverging`` (all False for a
    Gibbs kernel).

    >>> import pyro, pyro_genmodels as pgm
    >>> mcmc = pyro.infer.MCMC(pgm.infer.BlockGibbs(pgm.models.RBM(4, 3), batch_size=3),
    ...                        num_samples=5, disable_progbar=True)
    >>> mcmc.run()
    >>> sorted(from_mcmc(mcmc).posterior.sizes.items())
    [('chain', 3), ('draw', 5), ('h_dim_0', 3), ('v_dim_0', 4)]
    """
    batch = getattr(getattr(mcmc, "kernel", None), "batch_size", None)
    if not batch:
        return az.from_pyro(mcmc)
    posterior = {}
    for name, draws in mcmc.get_samples(group_by_chain=True).items():  # (C, S, B, ...)
        c, s, b = draws.shape[:3]
        flat = draws.movedim(2, 1).reshape(c * b, s, *draws.shape[3:])
        posterior[name] = flat.detach().cpu().numpy()
    c, s = next(iter(posterior.values())).shape[:2]
    return az.from_dict(
        posterior=posterior, sample_stats={"diverging": np.zeros((c, s), dtype=bool)}
    )
