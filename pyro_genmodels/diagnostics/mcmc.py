"""ArviZ ``InferenceData`` of a ``pyro.infer.MCMC`` run, without Pyro's per-element statistics.

``arviz.from_pyro(mcmc)`` reads the divergences from ``mcmc.diagnostics()``, and
Pyro computes that dict's effective sample size and split R-hat of every element of
every site first. The effective sample size's cumulative minimum (``pyro.ops.stats``)
holds ``(draws / 2)² × elements`` numbers at once: for 1000 draws of the 10 × 784
visible units of an RBM's Gibbs chains that is 7.8 GB, for a number ArviZ then
throws away. :func:`from_mcmc` gives ArviZ the kernels' own per-chain diagnostics
instead, so the conversion costs what the draws cost; the groups and values are those
of ``az.from_pyro`` (ArviZ's ``az.ess``, ``az.rhat`` and ``az.summary`` compute the
statistics afterwards, with memory linear in the draws).
"""

from __future__ import annotations

from typing import Any

import arviz as az
from pyro.infer import MCMC

from pyro_genmodels._compat import mcmc_chain_diagnostics


class _KernelDiagnostics:
    """``mcmc`` as ArviZ reads it, whose ``diagnostics()`` holds the kernels' per-chain
    entries (``"divergences"``, ...) and not Pyro's per-element ESS and R-hat."""

    def __init__(self, mcmc: MCMC, per_chain: list[dict]) -> None:
        self._mcmc, self._per_chain = mcmc, per_chain

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mcmc, name)

    def diagnostics(self) -> dict[str, dict[str, Any]]:
        return {
            key: {f"chain {i}": chain[key] for i, chain in enumerate(self._per_chain)}
            for key in self._per_chain[0]
        }


def from_mcmc(mcmc: MCMC, **kwargs: Any) -> az.InferenceData:
    """``az.from_pyro(mcmc, **kwargs)`` without Pyro's ``mcmc.diagnostics()`` statistics.

    Memory: the draws, ``chains × draws × elements`` numbers, where ``az.from_pyro`` also
    needs ``(draws / 2)² × elements`` for Pyro's effective sample sizes. Groups: the
    ``posterior`` (``mcmc.get_samples(group_by_chain=True)``: shape ``(chains, draws,
    *site_shape)`` per site), ``sample_stats`` (``diverging`` from the kernels'
    ``"divergences"``) and, when the kernel has a model with observed sites,
    ``log_likelihood`` and ``observed_data`` — the same values as ``az.from_pyro``.

    Args:
        mcmc: a ``pyro.infer.MCMC`` after ``run``, with any kernel that has
            ``diagnostics()`` with ``"divergences"`` (every kernel of
            :mod:`pyro_genmodels.infer`, HMC and NUTS).
        **kwargs: passed to ``az.from_pyro`` (``coords``, ``dims``, ``log_likelihood``,
            ``posterior_predictive``, ...).

    >>> import pyro, pyro_genmodels as pgm
    >>> mcmc = pyro.infer.MCMC(pgm.infer.BlockGibbs(pgm.models.RBM(4, 3), batch_size=2),
    ...                        num_samples=5, warmup_steps=2, disable_progbar=True)
    >>> mcmc.run()
    >>> idata = from_mcmc(mcmc)
    >>> dict(idata.posterior["v"].sizes)
    {'chain': 1, 'draw': 5, 'v_dim_0': 2, 'v_dim_1': 4}
    >>> int(idata.sample_stats["diverging"].sum())
    0
    """
    if not isinstance(mcmc, MCMC):
        raise TypeError(f"mcmc must be a pyro.infer.MCMC, got {type(mcmc).__name__}")
    per_chain = mcmc_chain_diagnostics(mcmc)
    if any(chain is None for chain in per_chain):
        raise ValueError("mcmc has not been run: call mcmc.run(...) before from_mcmc(mcmc)")
    if "divergences" not in per_chain[0]:  # type: ignore[operator]
        raise ValueError(
            f"the kernel {type(mcmc.kernel).__name__} gives no 'divergences' in its "
            f"diagnostics() (it gives {sorted(per_chain[0])}), which ArviZ reads for "  # type: ignore[arg-type]
            "sample_stats; add them to the kernel (an empty list per chain when it never "
            "diverges)"
        )
    view: Any = _KernelDiagnostics(mcmc, per_chain)  # type: ignore[arg-type]
    return az.from_pyro(view, **kwargs)
