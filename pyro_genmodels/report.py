"""Writes the zoo's report: a CSV, PNG plots and a short markdown summary."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch

from pyro_genmodels.data import Dataset


def write_report(out: Path, table: pd.DataFrame, runs: dict, data: Dataset) -> Path:
    """Writes ``out/zoo.csv``, ``out/<model>_history.png``, ``out/<model>_samples.png``
    and ``out/summary.md``; returns the summary's path.

    ``runs`` maps a model name to ``(setup, history)`` as returned by
    :func:`pyro_genmodels.zoo.run`.
    """
    from pyro_genmodels.diagnostics import plot_history, plot_samples

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "zoo.csv", index=False)
    lines = [
        f"# Model zoo on `{data.name}`",
        "",
        f"Test negative log-likelihood on {data.test.shape[0]} held-out points "
        f"({data.num_dims} dims, {'binarized' if data.binarized else 'dequantized'}); "
        "lower is better.",
        "",
        "| model | family | test NLL (nats) | bits/dim | k-hat > 0.7 | estimator | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        lines.append(
            f"| {row.model} | {row.family} | {row.test_nll_nats:.3f} | {row.bits_per_dim:.4f} "
            f"| {row.khat_bad_fraction:.0%} | {row.estimator} | {row.train_seconds:.1f} |"
        )
    lines += [
        "",
        "k-hat > 0.7: share of test points whose importance weights have a Pareto-k above 0.7",
        "(Yao et al. 2018); there the guide is a poor proposal and the NLL is an upper bound",
        "that may be loose.",
        "",
    ]
    for name, (setup, history) in runs.items():
        fig = plot_history(history)
        fig.savefig(out / f"{name}_history.png", dpi=100)
        plt.close(fig)
        if data.image_shape is not None:
            with torch.no_grad():
                fig = plot_samples(setup.sample(64), data.image_shape, nrow=8, title=name)
            fig.savefig(out / f"{name}_samples.png", dpi=100)
            plt.close(fig)
            lines.append(f"![{name} samples]({name}_samples.png)")
    best = table.loc[table["test_nll_nats"].idxmin()]
    lines += ["", f"Best: **{best['model']}** at {best['test_nll_nats']:.3f} nats.", ""]
    path = out / "summary.md"
    path.write_text("\n".join(lines))
    return path
