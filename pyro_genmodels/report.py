"""Writes the zoo's report: a CSV, PNG plots and a short markdown summary."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch

# Columns shown in the markdown table when present: (column, header, format).
_COLUMNS = [
    ("model", "model", "{}"),
    ("family", "family", "{}"),
    ("dataset", "data", "{}"),
    ("test_nll_nats", "test NLL (nats)", "{:.3f}"),
    ("bits_per_dim", "bits/dim", "{:.4f}"),
    ("khat_bad_fraction", "k-hat > 0.7", "{:.0%}"),
    ("estimator", "estimator", "{}"),
    ("train_seconds", "train s", "{:.1f}"),
]


def _cell(value: object, fmt: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "–"
    return fmt.format(value)


def markdown_table(table: pd.DataFrame) -> list[str]:
    """The zoo table as markdown lines (missing values shown as ``–``).

    >>> t = pd.DataFrame([{"model": "vae", "test_nll_nats": 17.0, "khat_bad_fraction": math.nan}])
    >>> markdown_table(t)[2]
    '| vae | 17.000 | – |'
    """
    cols = [(c, h, f) for c, h, f in _COLUMNS if c in table.columns]
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
    for row in table.to_dict("records"):
        lines.append("| " + " | ".join(_cell(row[c], f) for c, _, f in cols) + " |")
    return lines


def write_report(out: Path, table: pd.DataFrame, runs: dict) -> Path:
    """Writes ``out/zoo.csv``, ``out/<model>_history.png``, ``out/<model>_samples.png``
    and ``out/summary.md``; returns the summary's path.

    ``runs`` maps a model name to ``(setup, history, dataset)`` as returned by
    :func:`pyro_genmodels.zoo.run`.
    """
    from pyro_genmodels.diagnostics import plot_history, plot_samples

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "zoo.csv", index=False)
    lines = [
        "# Model zoo",
        "",
        "Test negative log-likelihood on the held-out split; lower is better.",
        "",
        *markdown_table(table),
        "",
        "k-hat > 0.7: share of test points whose importance weights have a Pareto-k above 0.7",
        "(Yao et al. 2018); there the guide is a poor proposal and the NLL is an upper bound",
        "that may be loose.",
        "",
    ]
    for name, (setup, history, data) in runs.items():
        fig = plot_history(history)
        fig.savefig(out / f"{name}_history.png", dpi=100)
        plt.close(fig)
        if data.image_shape is not None:
            with torch.no_grad():
                fig = plot_samples(setup.sample(64), data.image_shape, nrow=8, title=name)
            fig.savefig(out / f"{name}_samples.png", dpi=100)
            plt.close(fig)
            lines.append(f"![{name} samples]({name}_samples.png)")
    scored = table.dropna(subset=["test_nll_nats"])
    if len(scored):
        best = scored.loc[scored["test_nll_nats"].idxmin()]
        lines += ["", f"Best NLL: **{best['model']}** at {best['test_nll_nats']:.3f} nats.", ""]
    path = out / "summary.md"
    path.write_text("\n".join(lines))
    return path
