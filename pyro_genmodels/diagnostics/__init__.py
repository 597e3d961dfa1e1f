"""Diagnostics: ArviZ conversion, guide quality (PSIS k̂, active units, KL per dim), plots.

- :func:`to_inference_data`: guide draws and pointwise log-likelihoods as an
  ``arviz.InferenceData`` (``az.summary``, ``az.loo``, ``az.plot_posterior`` work on it).
- :func:`from_mcmc`: ``az.from_pyro(mcmc)`` without Pyro's per-element ESS (whose memory
  grows with draws² × elements: use it for large sites such as an RBM's visible units).
- :func:`psis_khat`, :func:`active_units`, :func:`kl_per_dim`: is the guide any good?
- :func:`plot_history`, :func:`plot_samples`, :func:`plot_reconstructions`,
  :func:`plot_latents`, :func:`plot_density_2d`: seaborn/matplotlib figures;
  :func:`curve_title` and :func:`informative_columns` decide a history's curves and titles.
- :func:`mmd`, :func:`energy_distance`, :func:`frechet_distance`, :func:`mode_coverage`,
  :func:`class_coverage`, :func:`sample_scores`: sample-based scores (every model that samples).
"""

from pyro_genmodels.diagnostics.inference_data import to_inference_data
from pyro_genmodels.diagnostics.mcmc import from_mcmc
from pyro_genmodels.diagnostics.plots import (
    curve_title,
    informative_columns,
    plot_density_2d,
    plot_history,
    plot_latents,
    plot_reconstructions,
    plot_samples,
)
from pyro_genmodels.diagnostics.posterior import active_units, kl_per_dim, psis_khat
from pyro_genmodels.diagnostics.sample_metrics import (
    TOY2D_MODES,
    SampleClassifier,
    class_coverage,
    classifier_for,
    energy_distance,
    frechet_distance,
    gaussian_frechet_distance,
    mmd,
    mode_coverage,
    sample_scores,
)

__all__ = [
    "TOY2D_MODES",
    "SampleClassifier",
    "class_coverage",
    "classifier_for",
    "curve_title",
    "energy_distance",
    "frechet_distance",
    "from_mcmc",
    "informative_columns",
    "gaussian_frechet_distance",
    "mmd",
    "mode_coverage",
    "sample_scores",
    "active_units",
    "kl_per_dim",
    "plot_density_2d",
    "plot_history",
    "plot_latents",
    "plot_reconstructions",
    "plot_samples",
    "psis_khat",
    "to_inference_data",
]
