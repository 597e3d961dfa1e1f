"""The zoo's HTML report as a reader meets it: a contents list whose links resolve, charts at
the page's width that link to their full-size images, only informative training curves,
each titled by what it measures. Rendered in headless Chromium where one is installed."""

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pandas as pd
import pytest

from pyro_genmodels import zoo
from pyro_genmodels.diagnostics import plot_history
from pyro_genmodels.report import CURVES, PAGE, SCORES, write_report


class _Page(HTMLParser):
    """Ids, in-page links, images (with the link around each) and captions of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.in_page: list[str] = []
        self.images: list[dict] = []
        self.captions: list[str] = []
        self._link: str | None = None
        self._caption: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a":
            self._link = attrs.get("href")
            if self._link and self._link.startswith("#"):
                self.in_page.append(self._link[1:])
        elif tag == "img":
            self.images.append({**attrs, "link": self._link})
        elif tag == "p" and attrs.get("class") == "caption":
            self._caption = []

    def handle_endtag(self, tag):
        if tag == "a":
            self._link = None
        elif tag == "p" and self._caption is not None:
            self.captions.append("".join(self._caption))
            self._caption = None

    def handle_data(self, data):
        if self._caption is not None:
            self._caption.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """fvsbn and a GAN trained 3 epochs (curves), MADE 1 epoch (no curve to draw)."""
    out = tmp_path_factory.mktemp("report")
    several, runs = zoo.run("digits", ["fvsbn", "gan"], quick=True, epochs=3, progress=False)
    one, more = zoo.run("digits", ["made"], quick=True, progress=False)
    table = pd.concat([several, one], ignore_index=True)
    write_report(out, table, {**runs, **more})
    page = _Page()
    page.feed((out / PAGE).read_text(encoding="utf-8"))
    return out, page, {**runs, **more}


def test_contents_links_reach_every_section_and_model(report):
    out, page, runs = report
    text = (out / PAGE).read_text(encoding="utf-8")
    headings = re.findall(r'<h[23] id="([^"]+)"', text)
    assert "contents" in page.ids and len(headings) == len(set(headings))
    assert all(target in page.ids for target in page.in_page), set(page.in_page) - page.ids
    listed = set(page.in_page)
    assert set(headings) - {"contents"} <= listed  # every section and every model is listed
    for name in runs:
        assert name in listed


def test_every_image_links_to_its_full_size_file(report):
    out, page, _ = report
    assert page.images and all(img["link"] == img["src"] for img in page.images), page.images
    assert all((out / img["src"]).is_file() for img in page.images)
    chart = next(img for img in page.images if img["src"] == SCORES)
    assert "scores per family" in chart["alt"]


def test_curves_are_named_by_the_loss_and_constant_metrics_are_stated(report):
    out, page, runs = report
    alts = {img["src"]: img["alt"] for img in page.images}
    gan = alts[f"gan{CURVES}"]
    assert gan == "gan training curves: discriminator loss, generator loss", gan
    assert alts[f"fvsbn{CURVES}"] == "fvsbn training curves: training loss"
    assert not any("loss_0" in a or "learning rate" in a for a in alts.values()), alts
    lr = runs["gan"][1]["lr"].iloc[0]
    assert f"Constant over the 3 epochs: learning rate {lr:.4g}." in page.captions
    # one epoch: every metric is a single value, stated; no image of single points
    assert not (out / f"made{CURVES}").exists() and f"made{CURVES}" not in alts
    made = next(c for c in page.captions if c.startswith("1 epoch"))
    assert made.startswith("1 epoch, no curve to draw: training loss ")
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "discriminator loss, generator loss" in summary and made in summary


def test_plot_history_draws_only_what_changes_titled_by_the_loss(report):
    _, _, runs = report
    setup, history, _ = runs["gan"]
    assert {"loss_0", "loss_1", "lr"} <= set(history.columns)
    fig = plot_history(history, loss=setup.loss)
    assert [ax.get_title() for ax in fig.axes] == ["discriminator loss", "generator loss"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss_0", "loss_1"]  # the column names
    for ax in fig.axes:  # every drawn curve changes
        assert len(set(ax.lines[0].get_ydata())) > 1


# --------------------------------------------------------------------------- in a browser

_MEASURE = """<script>window.addEventListener("load", () => {
  const root = document.documentElement, body = document.body, style = getComputedStyle(body);
  const chart = document.querySelector('img[src="%s"]');
  const result = {
    content: body.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight),
    clientWidth: root.clientWidth, scrollWidth: root.scrollWidth,
    chart: chart.getBoundingClientRect().width, chartNatural: chart.naturalWidth,
    anchors: [...document.querySelectorAll('a[href^="#"]')].map(a => [
      a.getAttribute("href"), document.getElementById(a.getAttribute("href").slice(1)) !== null]),
    images: [...document.images].map(
      i => [i.getAttribute("src"), i.naturalWidth, i.getBoundingClientRect().width]),
  };
  const pre = document.createElement("pre");
  pre.id = "measured"; pre.textContent = JSON.stringify(result); body.appendChild(pre);
});</script>"""


def _chromium():
    return next(
        (p for p in ("chromium", "chromium-browser", "google-chrome") if shutil.which(p)), None
    )


def _render(page_file, tmp_path, width):
    """The page's layout measured by headless Chromium at a window ``width`` px wide."""
    browser = _chromium()
    measured = page_file.with_name("_measured.html")
    text = page_file.read_text(encoding="utf-8")
    measured.write_text(text.replace("</body>", _MEASURE % SCORES + "</body>"), encoding="utf-8")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},1000",
        "--virtual-time-budget=10000", "--dump-dom",
    ]  # fmt: skip
    proc = subprocess.run(
        [browser, *flags, measured.as_uri()], capture_output=True, text=True, timeout=120
    )
    measured.unlink()
    found = re.search(r'<pre id="measured">(.*?)</pre>', proc.stdout, re.S)
    assert found, proc.stderr[-2000:]
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium installed")
@pytest.mark.parametrize("width", [1280, 800])
def test_rendered_page_shows_the_chart_at_page_width(report, tmp_path, width):
    out, _, _ = report
    page = _render(out / PAGE, tmp_path, width)
    # the main chart fills the text column and is not enlarged beyond its pixels
    assert page["chart"] >= 0.98 * page["content"] and page["content"] >= 0.7 * (width - 40)
    assert page["chartNatural"] >= page["chart"], page
    assert page["scrollWidth"] <= page["clientWidth"], page  # no sideways scrolling
    assert page["anchors"] and all(ok for _, ok in page["anchors"]), page["anchors"]
    for src, natural, shown in page["images"]:
        assert natural > 0, src  # loaded
        assert shown >= min(natural, 200), (src, shown)  # no thumbnail
