"""Writes the zoo's report: ``zoo.csv``, PNG plots, ``summary.md`` and a static ``index.html``.

The report has one table per section of the zoo table (its ``section``
column, set by :func:`pyro_genmodels.zoo.run`): likelihoods on binarized data,
likelihoods of dequantized data in pixel space, and likelihood-free models;
rows of different sections measure different things and are never ranked
together. Each table has its own "best" line and the notes on the estimators
it holds. Everything comes from the table's columns, so a new family appears
in the right section with its estimator and error bar without an edit here.
The markdown and the HTML render one list of blocks (headings, paragraphs,
tables, charts, runs); the HTML needs no server and no network. The page opens with a
contents list whose links reach every section and every model; each chart is shown at
the page's width and links to its full-size image; a model's training curves show only
the metrics that change over the epochs (a constant learning rate is stated, not
drawn), titled by what they measure (:func:`~pyro_genmodels.diagnostics.curve_title`:
a GAN's curves are its discriminator and generator losses, named by its loss).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

#: The report's files (per model: ``<model>`` + :data:`SAMPLES` / :data:`CURVES`).
TABLE, SCORES, SUMMARY, PAGE = "zoo.csv", "scores.png", "summary.md", "index.html"
SAMPLES, CURVES = "_samples.png", "_history.png"

#: Section order and titles (sections not named here follow, titled by their key).
SECTIONS = {
    "binarized": "Binarized data: log-likelihood (exact, importance-sampled or AIS)",
    "dequantized": "Dequantized data: log-likelihood in pixel space",
    "real-valued": "Real-valued data: log-likelihood",
    "likelihood-free": "Likelihood-free models: sample scores only",
}

# Columns shown when a section has a value for them: (column, header, format).
_COLUMNS = [
    ("model", "model", "{}"),
    ("family", "family", "{}"),
    ("test_nll_nats", "test NLL (nats)", "{:.3f}"),
    ("bits_per_dim", "bits/dim", "{:.4f}"),
    ("estimator", "estimator", "{}"),
    ("khat_bad_fraction", "k-hat > 0.7", "{:.0%}"),
    ("energy_distance", "energy dist.", "{:.4f}"),
    ("class_coverage", "classes", "{:.0f}/10"),
    ("frechet_distance", "Fréchet (clf)", "{:.2f}"),
    ("epochs", "epochs", "{:.0f}"),
    ("lr", "lr", "{:g}"),
    ("batch_size", "batch", "{:.0f}"),
    ("train_seconds", "train s", "{:.1f}"),
]

_ESTIMATOR_NOTES = [
    ("exact", "exact: the model's normalized log-likelihood, computed in closed form."),
    (
        "IW-",
        "IW-K: importance-sampled log p(x) with K samples from the guide (an upper bound "
        "on the NLL in expectation, tight as K grows; see the k-hat column).",
    ),
    (
        "AIS",
        "AIS: annealed importance sampling estimate of log Z (Neal 2001; Salakhutdinov & "
        "Murray 2008); the NLL is shown ± its standard error.",
    ),
    ("samples", "samples: no likelihood; only the sample scores apply."),
]


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cell(row: dict, column: str, fmt: str) -> str:
    value = row.get(column)
    if _missing(value):
        return "–"
    text = fmt.format(value)
    err = row.get("test_nll_stderr")
    if column == "test_nll_nats" and not _missing(err):
        text += f" ± {err:.3f}"
    return text


def markdown_table(table: pd.DataFrame) -> list[str]:
    """The rows of ``table`` as markdown lines, with the columns that hold a value
    (missing values shown as ``–``; an NLL with ``test_nll_stderr`` as ``a ± b``).

    >>> t = pd.DataFrame([{"model": "rbm", "test_nll_nats": 17.0, "test_nll_stderr": 0.25,
    ...                    "khat_bad_fraction": math.nan}])
    >>> markdown_table(t)[2]
    '| rbm | 17.000 ± 0.250 |'
    """
    cols, rows = _columns(table), table.to_dict("records")
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
    lines += [
        "| " + " | ".join(_cell(r, c, f).replace("|", "\\|") for c, _, f in cols) + " |"
        for r in rows
    ]
    return lines


def _columns(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    return [
        (c, h, f) for c, h, f in _COLUMNS if c in table.columns and not table[c].map(_missing).all()
    ]


def sections(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(section key, rows)`` in report order (:data:`SECTIONS` first, then others)."""
    keys = list(dict.fromkeys(table["section"]))
    order = [k for k in SECTIONS if k in keys] + [k for k in keys if k not in SECTIONS]
    return [(k, table[table["section"] == k]) for k in order]


def _best(key: str, rows: pd.DataFrame) -> str:
    nll = rows["test_nll_nats"].dropna() if "test_nll_nats" in rows else pd.Series(dtype=float)
    conditional = rows["estimator"].astype(str).str.contains("|", regex=False)
    ranked = nll[~conditional.loc[nll.index]]
    if len(ranked):
        best = rows.loc[ranked.idxmin()]
        skipped = ", ".join(rows.loc[nll.index[conditional.loc[nll.index]], "model"])
        unranked = f" Not ranked: {skipped} (a conditional likelihood)." if skipped else ""
        return (
            f"Best NLL in this section: **{best['model']}** at {best['test_nll_nats']:.3f} "
            f"nats ({best['estimator']}).{unranked}"
        )
    fd = rows["frechet_distance"].dropna() if "frechet_distance" in rows else pd.Series()
    if len(fd):
        best = rows.loc[fd.idxmin()]
        return (
            f"Best Fréchet distance in this section: **{best['model']}** at "
            f"{best['frechet_distance']:.2f} ({best['class_coverage']:.0f}/10 classes)."
        )
    return "No score in this section."


def _estimator_notes(rows: pd.DataFrame) -> str:
    present = [str(e) for e in dict.fromkeys(rows.get("estimator", pd.Series()).dropna())]
    notes = [text for prefix, text in _ESTIMATOR_NOTES if any(prefix in e for e in present)]
    listed = "; ".join(f"`{e}`" for e in present)
    return f"Estimators here: {listed}. " + " ".join(notes)


def _classifier_lines(runs: dict) -> list[str]:
    from pyro_genmodels.diagnostics import classifier_for

    lines, seen = [], set()
    for _, _, data in runs.values():
        key = (data.name, data.binarized)
        if key in seen or getattr(data, "train_labels", None) is None:
            continue
        seen.add(key)
        clf = classifier_for(data)
        variant = "binarized" if data.binarized else "dequantized"
        lines.append(f"{data.name} ({variant}): test accuracy {clf.test_accuracy:.1%}")
    return lines


def blocks(table: pd.DataFrame, runs: dict) -> list[tuple[str, Any]]:
    """The report as ``(kind, content)`` blocks: ``"h1"``/``"h2"``/``"h3"``/``"p"`` (text),
    ``"table"`` (rows), ``"chart"`` (``(file, alt)``), ``"run"`` (a model's ``samples`` and
    ``curves`` as ``(file, alt)``, ``curves`` None when no metric changed, and a ``caption``
    stating the metrics that did not)."""
    clf = _classifier_lines(runs)
    out: list[tuple[str, Any]] = [
        ("h1", "Model zoo"),
        (
            "p",
            "Every model trained on the training split with its family's budget and scored "
            "on the test split. Likelihoods are lower-is-better NLLs in nats; rows are ranked "
            "only within a section, because the sections measure different things "
            "(binarized pixels, dequantized pixel-space densities, no likelihood at all).",
        ),
        (
            "p",
            "Sample scores, for every model that can sample, compare its samples with the "
            "test split of its own data variant (so they too compare within a section): "
            "energy distance (Székely & Rizzo; 0 for equal laws), classes (how many of the "
            "10 digit classes a fixed classifier finds among the samples, each with at "
            "least a fifth of its expected share) and a Fréchet distance in that "
            "classifier's 32 features (a digits 'FID', not the Inception FID).",
        ),
    ]
    if clf:
        out.append(("p", "Fixed classifier (MLP, trained once per dataset): " + "; ".join(clf)))
    out += [("h2", "Scores per family"), ("chart", (SCORES, "scores per family"))]
    for key, rows in sections(table):
        out += [
            ("h2", SECTIONS.get(key, key)),
            ("table", rows),
            ("p", _best(key, rows)),
            ("p", _estimator_notes(rows)),
        ]
        if "khat_bad_fraction" in rows and not rows["khat_bad_fraction"].map(_missing).all():
            out.append(
                (
                    "p",
                    "k-hat > 0.7: share of test points whose importance weights have a "
                    "Pareto-k above 0.7 (Yao et al. 2018); there the guide is a poor proposal "
                    "and the NLL is an upper bound that may be loose.",
                )
            )
    out.append(("h2", "Samples and training curves"))
    for name in table["model"]:
        setup, history, _ = runs.get(name, (None, None, None))
        out += [("h3", name), ("run", _run_block(name, history, getattr(setup, "loss", None)))]
    return out


def _run_block(name: str, history: pd.DataFrame | None, loss: object) -> dict[str, Any]:
    """A model's samples and curves: the files, their alt texts, and a caption naming the
    metrics that did not change (stated, not drawn)."""
    from pyro_genmodels.diagnostics import curve_title, informative_columns

    block: dict[str, Any] = {"name": name, "samples": (f"{name}{SAMPLES}", f"{name} samples")}
    if history is None or len(history) == 0:
        return {**block, "curves": None, "caption": ""}
    varying, constant = informative_columns(history)
    titles = ", ".join(curve_title(c, loss) for c in varying)
    block["curves"] = (f"{name}{CURVES}", f"{name} training curves: {titles}") if varying else None
    stated = "; ".join(f"{curve_title(c, loss)} {v:.4g}" for c, v in constant.items())
    epochs = f"{len(history)} epoch{'s' * (len(history) != 1)}"
    if not varying:
        block["caption"] = f"{epochs}, no curve to draw: {stated}." if stated else ""
    else:
        block["caption"] = f"Constant over the {epochs}: {stated}." if stated else ""
    return block


def report_files(names: Iterable[str]) -> list[str]:
    """Every file :func:`write_report` may write for the models ``names`` (so that a caller
    can check them before training)."""
    per_model = [f"{n}{kind}" for n in names for kind in (SAMPLES, CURVES)]
    return [TABLE, SCORES, SUMMARY, PAGE, *per_model]


def _markdown(blocks_: list[tuple[str, Any]], out: Path) -> str:
    lines: list[str] = []
    prefix = {"h1": "# ", "h2": "## ", "h3": "### "}
    for kind, content in blocks_:
        if kind in prefix:
            lines += [prefix[kind] + content, ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "table":
            lines += [*markdown_table(content), ""]
        else:
            images = [content] if kind == "chart" else [content["samples"], content["curves"]]
            shown = [f"![{alt}]({f})" for f, alt in filter(None, images) if (out / f).exists()]
            lines += [" ".join(shown), ""] if shown else []
            if kind == "run" and content["caption"]:
                lines += [content["caption"], ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Markdown bold and code spans to HTML (after escaping)."""
    parts = html.escape(text).split("**")
    text = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _anchors(blocks_: list[tuple[str, Any]]) -> list[str | None]:
    """A unique id per h2/h3 heading (None for other blocks), from its text."""
    ids: list[str | None] = []
    used = {"contents"}
    for kind, content in blocks_:
        if kind not in ("h2", "h3"):
            ids.append(None)
            continue
        base = re.sub(r"[^a-z0-9]+", "-", content.lower()).strip("-") or "section"
        anchor, n = base, 1
        while anchor in used:
            n += 1
            anchor = f"{base}-{n}"
        used.add(anchor)
        ids.append(anchor)
    return ids


def _contents(blocks_: list[tuple[str, Any]], ids: list[str | None]) -> str:
    """A list of links to the h2 headings, each followed by links to its h3 headings."""
    items: list[tuple[str, list[str]]] = []
    for (kind, content), anchor in zip(blocks_, ids):
        link = f'<a href="#{anchor}">{html.escape(content)}</a>' if anchor else ""
        if kind == "h2":
            items.append((link, []))
        elif kind == "h3" and items:
            items[-1][1].append(link)
    body = "".join(f"<li>{h2}{': ' if h3 else ''}{' · '.join(h3)}</li>" for h2, h3 in items)
    return f'<nav><h2 id="contents">Contents</h2><ul class="contents">{body}</ul></nav>'


def _image(image: tuple[str, str], css: str, out: Path) -> str:
    """A clickable image ``(file, alt)`` (linking to its full-size file), or nothing when it
    was not written."""
    file, alt = image
    if not (out / file).exists():
        return ""
    f = html.escape(file)
    return (
        f'<a class="{css}" href="{f}"><img src="{f}" alt="{html.escape(alt)}" '
        f'title="{html.escape(alt)} (click for the full-size image)"></a>'
    )


def _html(blocks_: list[tuple[str, Any]], out: Path) -> str:
    ids = _anchors(blocks_)
    body: list[str] = []
    for (kind, content), anchor in zip(blocks_, ids):
        if kind == "h1":
            body += [f"<h1>{html.escape(content)}</h1>", _contents(blocks_, ids)]
        elif kind in ("h2", "h3"):
            top = '<a class="top" href="#contents">↑ contents</a>' if kind == "h2" else ""
            body.append(f'{top}<{kind} id="{anchor}">{html.escape(content)}</{kind}>')
        elif kind == "p":
            body.append(f"<p>{_inline(content)}</p>")
        elif kind == "table":
            cols, rows = _columns(content), content.to_dict("records")
            head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in cols)
            cells = [
                "<tr>" + "".join(f"<td>{html.escape(_cell(r, c, f))}</td>" for c, _, f in cols)
                for r in rows
            ]
            table = f"<table><tr>{head}</tr>" + "</tr>".join(cells) + "</tr></table>"
            body.append(f'<div class="table">{table}</div>')
        elif kind == "chart":
            body.append(_image(content, "chart", out))
        else:
            images = [_image(content["samples"], "samples", out)]
            images += [_image(content["curves"], "curves", out)] if content["curves"] else []
            caption = f'<p class="caption">{_inline(content["caption"])}</p>'
            body.append('<div class="run">' + "".join(images) + "</div>" + caption)
    style = (
        "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        "td{text-align:right}.table{overflow-x:auto}img{max-width:100%;height:auto}"
        ".chart,.chart img{display:block;width:100%}"
        ".run{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}"
        ".run .samples img{width:14em}.run .curves{flex:1 1 24em}"
        ".contents li{margin:0.2em 0}.top{float:right;font-size:85%;margin-top:1.6em}"
        ".caption{color:#555;font-size:90%}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Model zoo</title><style>{style}</style></head><body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )


def plot_scores(table: pd.DataFrame):
    """A seaborn chart of the zoo's scores: per likelihood section the test NLL of each
    model (labelled with its estimator, AIS error bars as ±1 s.e.), and the Fréchet
    distance of every model that samples; bars coloured by family. Returns the figure."""
    import seaborn as sns
    from matplotlib.figure import Figure

    panels = [(k, r.dropna(subset=["test_nll_nats"])) for k, r in sections(table)]
    panels = [(k, r) for k, r in panels if len(r)]
    if "frechet_distance" in table and table["frechet_distance"].notna().any():
        panels.append(("sample quality", table.dropna(subset=["frechet_distance"])))
    sizes = [len(r) + 2 for _, r in panels] or [1]
    fig = Figure(figsize=(9, 0.28 * sum(sizes) + 1))
    axes = fig.subplots(len(sizes), 1, squeeze=False, height_ratios=sizes)[:, 0]
    palette = dict(zip(sorted(set(table["family"])), sns.color_palette("tab10")))
    for ax, (key, rows) in zip(axes, panels):
        if key == "sample quality":
            x, label = rows["frechet_distance"], rows["model"] + " (" + rows["section"] + ")"
            xlabel = "Fréchet distance in the classifier's features vs. own test split (log scale)"
            title = "Sample quality of every model that samples (lower is better)"
        else:
            short = rows["estimator"].astype(str).str.split(",").str[0]
            x, label = rows["test_nll_nats"], rows["model"] + " [" + short + "]"
            xlabel, title = "test NLL (nats, lower is better)", SECTIONS.get(key, key)
        frame = pd.DataFrame({"x": x.to_numpy(), "label": label.to_numpy()})
        frame["family"] = rows["family"].to_numpy()
        sns.barplot(frame, x="x", y="label", hue="family", palette=palette, dodge=False, ax=ax)
        err = rows.get("test_nll_stderr")
        if key != "sample quality" and err is not None and err.notna().any():
            ax.errorbar(x, range(len(rows)), xerr=err.fillna(0), fmt="none", color="k")
        if key == "sample quality":
            ax.set_xscale("log")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel("")
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def write_report(out: Path, table: pd.DataFrame, runs: dict) -> Path:
    """Writes ``out/zoo.csv``, ``out/scores.png``, ``out/<model>_history.png``,
    ``out/<model>_samples.png``, ``out/summary.md`` and ``out/index.html``; returns
    the summary's path.

    ``runs`` maps a model name to ``(setup, history, dataset)`` as returned by
    :func:`pyro_genmodels.zoo.run`.
    """
    from pyro_genmodels.zoo import quiet_diagnostics

    quiet_diagnostics()
    from pyro_genmodels.diagnostics import plot_history, plot_samples

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / TABLE, index=False)
    plot_scores(table).savefig(out / SCORES, dpi=150)  # shown at page width: sharp text
    content = blocks(table, runs)
    for run in (block for kind, block in content if kind == "run" and block["name"] in runs):
        name, (setup, history, data) = run["name"], runs[run["name"]]
        stale = out / f"{name}{CURVES}"
        stale.unlink(missing_ok=True)  # a curve of an earlier report must not be shown
        if run["curves"] is not None:
            plot_history(history, loss=setup.loss).savefig(out / run["curves"][0], dpi=100)
        if data.image_shape is not None:
            setup.module.eval()
            with torch.no_grad():
                fig = plot_samples(setup.sample(64), data.image_shape, nrow=8, title=name)
            fig.savefig(out / run["samples"][0], dpi=100)
    (out / PAGE).write_text(_html(content, out), encoding="utf-8")
    path = out / SUMMARY
    path.write_text(_markdown(content, out), encoding="utf-8")
    return path
