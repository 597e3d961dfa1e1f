"""The zoo as a scoreboard: --quick over every entry, sections that never mix data
variants, sample scores for every entry, a static HTML report, budgets, new families."""

import math
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from pyro_genmodels import zoo
from pyro_genmodels.cli import main
from pyro_genmodels.report import SECTIONS, write_report

SAMPLE_COLUMNS = ["energy_distance", "class_coverage", "frechet_distance"]


class _Report(HTMLParser):
    """Tables (as lists of rows of cell texts), image sources and links of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.headings: list[str] = []
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag in ("h2", "h3"):
            self._heading = []
        for key in ("href", "src"):
            if key in attrs:
                self.links.append(attrs[key])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        elif tag in ("h2", "h3"):
            self.headings.append("".join(self._heading))
            self._heading = None

    def handle_data(self, data):
        for part in (self._cell, self._heading):
            if part is not None:
                part.append(data)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    """``python -m pyro_genmodels zoo --quick`` over every entry (output captured, not a TTY)."""
    import matplotlib

    out = tmp_path_factory.mktemp("report")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLCONFIGDIR": matplotlib.get_cachedir()}
    env["XDG_CACHE_HOME"] = str(out / "cache")  # ArviZ's once-a-day notice is due here
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pyro_genmodels", "zoo", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc, time.perf_counter() - start


def test_quick_zoo_runs_every_entry_and_scores_every_sampler(quick_report):
    out, proc, seconds = quick_report
    table = pd.read_csv(out / "zoo.csv")
    assert sorted(table["model"]) == sorted(zoo.ZOO)
    assert (table["epochs"] == zoo.QUICK["epochs"]).all()
    # every entry can sample: each has every sample score
    assert table[SAMPLE_COLUMNS].notna().all().all(), table[["model", *SAMPLE_COLUMNS]]
    assert table["class_coverage"].between(0, 10).all() and (table["frechet_distance"] >= 0).all()
    # one progress line per model (stdout is not a terminal), then the table
    lines = proc.stdout.splitlines()
    for name in zoo.ZOO:
        assert sum(line.startswith(name + " ") for line in lines) >= 1, name
    # no third-party warning on a normal run (ArviZ's daily notice: fresh cache dir here)
    assert "Warning" not in proc.stderr, proc.stderr[-2000:]
    assert seconds < 600  # a smoke run: under a minute of CPU; the bound allows a loaded machine


def test_sections_never_mix_data_variants(quick_report):
    out, _, _ = quick_report
    table = pd.read_csv(out / "zoo.csv")
    free = table["test_nll_nats"].isna()
    assert (table.loc[free, "section"] == "likelihood-free").all()
    assert (table.loc[~free, "section"] == table.loc[~free, "variant"]).all()
    for _, rows in table.groupby("section"):
        assert rows["variant"].nunique() == 1
    for name in table["model"]:
        variant = table.set_index("model").loc[name, "variant"]
        assert variant == ("binarized" if zoo.ZOO[name].binarize else "dequantized")


def test_static_html_report_holds_one_table_per_section(quick_report):
    out, _, _ = quick_report
    table = pd.read_csv(out / "zoo.csv")
    page = _Report()
    page.feed((out / "index.html").read_text(encoding="utf-8"))
    order = [s for s in SECTIONS if s in set(table["section"])]
    assert len(page.tables) == len(order) == 3
    for section, html_table in zip(order, page.tables):
        header, *rows = html_table
        assert header[0] == "model"
        assert [r[0] for r in rows] == list(table.loc[table["section"] == section, "model"])
        assert SECTIONS[section] in page.headings
    nll = header.index("test NLL (nats)") if "test NLL (nats)" in header else None
    assert nll is None  # the last table is the likelihood-free one: no NLL column
    assert "scores.png" in page.images
    for name in zoo.ZOO:  # one epoch each: every metric is one value, stated and not drawn
        assert f"{name}_samples.png" in page.images and f"{name}_history.png" not in page.images
    for src in page.links:  # static: every reference is a file next to the page or an anchor
        assert "://" not in src and (src.startswith("#") or (out / src).is_file()), src
    text = (out / "index.html").read_text(encoding="utf-8")
    assert re.search(r"test accuracy \d+\.\d%", text) and "not the Inception FID" in text
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith("# Model zoo") and "![scores per family](scores.png)" in summary
    assert summary.count("Best NLL in this section") == 2
    assert summary.count("Best Fréchet distance in this section") == 1


@pytest.mark.parametrize("binarize, base", [(True, "fvsbn"), (False, "flow-nice")])
def test_new_family_with_ais_score_lands_in_its_section(tmp_path, binarize, base):
    """An entry whose score is an AIS estimate with a standard error (as energy-based and
    Boltzmann entries report) is placed by its data variant, with its error bar."""

    def build(data, **kwargs):
        setup = zoo.ZOO[base].build(data, **{**zoo.ZOO[base].defaults, **kwargs})
        exact = setup.score

        def score(num_samples):
            nll = exact(num_samples)["test_nll_nats"]
            return {"test_nll_nats": nll, "test_nll_stderr": 0.25, "estimator": "AIS, 100 chains"}

        setup.score = score
        return setup

    entry = zoo.ZooEntry("test-ais", "energy", "AIS-scored entry", build, {}, binarize)
    zoo.register(entry)
    try:
        table, runs = zoo.run("digits", ["test-ais", base], quick=True, progress=False)
        write_report(tmp_path, table, runs)
    finally:
        del zoo.ZOO["test-ais"]
    variant = "binarized" if binarize else "dequantized"
    assert list(table["section"]) == [variant, variant]
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    section = summary.split("## " + SECTIONS[variant])[1].split("\n## ")[0]
    row = next(line for line in section.splitlines() if line.startswith("| test-ais |"))
    assert re.search(r"\| \d+\.\d{3} ± 0\.250 \|", row) and "AIS, 100 chains" in row
    assert "AIS: annealed importance sampling" in section
    page = _Report()
    page.feed((tmp_path / "index.html").read_text(encoding="utf-8"))
    assert any("± 0.250" in cell for t in page.tables for r in t for cell in r)


def test_budgets_per_family_and_overrides():
    assert zoo.budget("rbm-cd1") == {**zoo.DEFAULT_BUDGET, **zoo.ZOO["rbm-cd1"].budget}
    assert zoo.budget("gan")["batch_size"] != zoo.DEFAULT_BUDGET["batch_size"]
    assert zoo.budget("gan", quick=True)["epochs"] == zoo.QUICK["epochs"]
    assert zoo.budget("gan", quick=True, epochs=3, lr=0.5) == {
        **zoo.budget("gan"),
        "epochs": 3,
        "lr": 0.5,
    }
    stated = {name: zoo.budget(name, num_data=1000) for name in zoo.ZOO}
    assert len({tuple(sorted(b.items())) for b in stated.values()}) > 2  # tuned, not one budget
    # every family states its own budget rather than falling back on the default
    unstated = sorted(name for name, entry in zoo.ZOO.items() if not entry.budget)
    assert unstated == [], f"entries without a budget of their own: {unstated}"
    keys = r"budget takes keys \['batch_size', 'epochs', 'lr', 'min_steps'\], got \['steps'\]"
    for budget, why in [
        ({"steps": 3}, keys),
        ({"min_steps": 0}, r"zoo entry 'test-bad'.s budget min_steps must be a positive int.*0"),
    ]:
        bad = zoo.ZooEntry("test-bad", "vae", "", zoo.ZOO["vae"].build, budget=budget)
        with pytest.raises(ValueError, match=why):
            zoo.register(bad)
        assert "test-bad" not in zoo.ZOO
    table, _ = zoo.run("digits", ["fvsbn"], epochs=2, lr=0.01, batch_size=500, progress=False)
    assert table.loc[0, ["epochs", "lr", "batch_size"]].tolist() == [2, 0.01, 500]


def test_min_steps_give_a_small_dataset_more_epochs(monkeypatch):
    """``max(epochs, ⌈min_steps / ⌈N / B⌉⌉)`` epochs of the N rows the entry trains on."""
    spent = zoo.budget("vae", num_data=1437)
    assert spent == {"epochs": 164, "lr": 1e-3, "batch_size": 64}  # 23 batches: 3,772 steps
    assert 163 * 23 < zoo.ZOO["vae"].budget["min_steps"] <= 164 * 23
    assert zoo.budget("vae", num_data=4000)["epochs"] == 60  # 63 batches: 3,780 steps
    assert zoo.budget("vae", num_data=60000)["epochs"] == 60  # a large dataset keeps its epochs
    assert zoo.budget("vae", num_data=4000, batch_size=4000)["epochs"] == 3750  # one a step
    assert zoo.budget("vae", epochs=2)["epochs"] == 2
    assert zoo.budget("vae", quick=True)["epochs"] == zoo.QUICK["epochs"]
    with pytest.raises(ValueError, match=r"'vae' trains at least 3750 optimizer steps: pass num"):
        zoo.budget("vae")
    with pytest.raises(ValueError, match="num_data must be a positive int, got 0"):
        zoo.budget("vae", num_data=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        zoo.budget("vae", num_data=100, batch_size=0)
    # train_entry counts the rows it trains on: a validation split leaves fewer
    monkeypatch.setitem(zoo.ZOO["vae"].budget, "epochs", 1)
    monkeypatch.setitem(zoo.ZOO["vae"].budget, "min_steps", 7)
    seen = []
    monkeypatch.setattr(
        "pyro_genmodels.training.fit", lambda *a, **kw: seen.append(kw) or pd.DataFrame()
    )
    for fraction in [0.0, 0.5]:
        trained = zoo.train_entry("vae", "digits", batch_size=500, validation_fraction=fraction)
        per_epoch = math.ceil(trained.data.train.shape[0] / 500)
        assert trained.budget["epochs"] == seen[-1]["epochs"] == math.ceil(7 / per_epoch)
    assert [kw["epochs"] for kw in seen] == [3, 4]


def test_progress_lines_when_not_a_terminal(capsys):
    table, _ = zoo.run("digits", ["fvsbn", "made"], quick=True)  # progress=None, not a TTY
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["fvsbn", "made"]
    assert all("NLL" in line and "classes" in line and line.endswith(" s") for line in lines)
    zoo.run("digits", ["fvsbn"], quick=True, progress=False)
    assert capsys.readouterr().out == ""
    assert not math.isnan(table.loc[0, "test_nll_nats"])


def test_arviz_notice_is_silenced_only_around_our_import(tmp_path):
    code = "import warnings; warnings.simplefilter('error', FutureWarning); "
    env = {**os.environ}
    env["XDG_CACHE_HOME"] = str(tmp_path / "a")
    ours = subprocess.run(
        [sys.executable, "-c", code + "from pyro_genmodels import zoo; zoo.quiet_diagnostics()"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ours.returncode == 0, ours.stderr[-1000:]
    env["XDG_CACHE_HOME"] = str(tmp_path / "b")  # control: a plain import does warn today
    plain = subprocess.run(
        [sys.executable, "-c", code + "import arviz"], capture_output=True, text=True, env=env
    )
    assert plain.returncode != 0 and "ArviZ is undergoing" in plain.stderr


def test_cli_flags_reach_the_zoo(tmp_path):
    out = main(["zoo", "--models", "fvsbn", "--quick", "--out", str(tmp_path), "--quiet"])
    assert out["table"].loc[0, "epochs"] == zoo.QUICK["epochs"]
    out = main(["zoo", "--models", "fvsbn", "--epochs", "2", "--out", str(tmp_path), "--quiet"])
    assert out["table"].loc[0, "epochs"] == 2
    assert (tmp_path / "index.html").is_file() and (tmp_path / "scores.png").is_file()
