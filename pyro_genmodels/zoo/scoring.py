"""How the zoo scores a trained entry: its likelihood (:func:`evaluate`), its samples
(:func:`generated_scores`), and a table row's report section and progress line.

By default a latent-variable model is scored by the importance-sampled ``log p(x)`` (the
guide as proposal) and by the share of test points whose PSIS k-hat exceeds 0.7; a
family with an exact likelihood, an AIS estimate or none (GANs) supplies its own
:attr:`~pyro_genmodels.zoo.Setup.score`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from pyro_genmodels.data import Dataset
from pyro_genmodels.parallel import on_main_process
from pyro_genmodels.zoo import KHAT_POINTS, NUM_GENERATED, Setup, quiet_diagnostics

__all__ = ["VARIANTS", "evaluate", "generated_scores", "progress_line", "section", "variant"]

#: The table's ``variant`` of a dataset, by its :attr:`~pyro_genmodels.data.Dataset.support`.
VARIANTS = {"binary": "binarized", "unit_interval": "dequantized", "real": "real-valued"}


def variant(data: Dataset) -> str:
    """``"binarized"``, ``"dequantized"`` (values in [0, 1]) or ``"real-valued"``.

    >>> import torch
    >>> variant(Dataset("t", torch.randn(4, 2) + 5, torch.zeros(1, 2)))
    'real-valued'
    """
    return VARIANTS[data.support]


def evaluate(setup: Setup, num_samples: int = 1000, khat_points: int = KHAT_POINTS) -> dict:
    """Test scores of ``setup``: its own :attr:`Setup.score`, or by default the
    importance-sampled NLL (nats, mean over the test split) and PSIS k-hat.

    The module is put in eval mode while scoring (an SSVAE drops its
    classifier term). The default returns ``test_nll_nats``,
    ``khat_bad_fraction`` (share of the first ``khat_points`` test points with
    k-hat > 0.7; NaN when ``num_samples <= 20``, too few for k-hat) and ``estimator``.
    """
    quiet_diagnostics()
    from pyro_genmodels.diagnostics import psis_khat
    from pyro_genmodels.infer import log_likelihood

    was_training = setup.module.training
    setup.module.eval()
    try:
        with torch.no_grad():
            if setup.score is not None:
                return setup.score(num_samples)
            nll = -log_likelihood(setup.model, setup.guide, *setup.test, num_samples=num_samples)
            head = tuple(t[:khat_points] for t in setup.test)
            bad = float("nan")  # k-hat needs K > 20 draws for its tail fit
            if num_samples > 20:
                khat = on_main_process(  # random draws: rank 0's, as in one process
                    lambda: psis_khat(setup.model, setup.guide, *head, num_samples=num_samples)
                )
                bad = float((khat > 0.7).float().mean())
    finally:
        setup.module.train(was_training)
    estimator = f"IW-{num_samples}" + (f", {setup.note}" if setup.note else "")
    return {
        "test_nll_nats": float(nll.mean()),
        "khat_bad_fraction": bad,
        "estimator": estimator,
    }


def generated_scores(setup: Setup, data: Dataset, n: int = NUM_GENERATED) -> dict[str, Any]:
    """Sample scores of ``n`` draws of ``setup.sample`` against ``data``'s test split
    (:func:`pyro_genmodels.diagnostics.sample_scores`), in eval mode; non-finite samples
    give NaN scores and a ``sample_note``. Under ``torch.distributed`` rank 0 draws and
    scores and broadcasts the scores (:func:`~pyro_genmodels.parallel.on_main_process`),
    so every rank reports what one process would."""
    return on_main_process(lambda: _generated_scores(setup, data, n))


def _generated_scores(setup: Setup, data: Dataset, n: int) -> dict[str, Any]:
    quiet_diagnostics()
    from pyro_genmodels.diagnostics import sample_scores

    was_training = setup.module.training
    setup.module.eval()
    try:
        with torch.no_grad():
            x = setup.sample(n)
    finally:
        setup.module.train(was_training)
    if not bool(torch.isfinite(x).all()):
        keys = ["energy_distance", "mmd", "class_coverage", "frechet_distance"]
        return {**dict.fromkeys(keys, math.nan), "sample_note": "non-finite samples"}
    return sample_scores(x.reshape(n, -1), data)


def section(row: dict) -> str:
    """The report section of a table row: ``"likelihood-free"`` without a test NLL,
    else its data variant (``"binarized"`` or ``"dequantized"``)."""
    nll = row.get("test_nll_nats", math.nan)
    return "likelihood-free" if nll is None or math.isnan(nll) else row["variant"]


def progress_line(row: dict) -> str:
    """One line about a finished entry: name, scores, seconds.

    >>> progress_line({"model": "vae", "test_nll_nats": 20.5, "estimator": "IW-8",
    ...                "class_coverage": 10.0, "train_seconds": 3.0, "eval_seconds": 1.0})
    'vae               NLL 20.500 nats (IW-8)  classes 10/10  4.0 s'
    """
    parts = [f"{row['model']:16s}"]
    nll = row.get("test_nll_nats", math.nan)
    if not math.isnan(nll):
        err = row.get("test_nll_stderr", math.nan)
        pm = "" if err is None or math.isnan(err) else f" ± {err:.3f}"
        parts.append(f"NLL {nll:.3f}{pm} nats ({row.get('estimator', '')})")
    for key, fmt in (
        ("energy_distance", "ED {:.4f}"),
        ("class_coverage", "classes {:.0f}/10"),
        ("frechet_distance", "FD {:.2f}"),
    ):
        value = row.get(key, math.nan)
        if value is not None and not math.isnan(value):
            parts.append(fmt.format(value))
    parts.append(f"{row.get('train_seconds', 0.0) + row.get('eval_seconds', 0.0):.1f} s")
    return "  ".join(parts)
