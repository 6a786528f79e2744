"""`onnx-geom report`: one self-contained HTML file (nothing fetched, figures embedded), findings whose numbers are
the tables' numbers, written whole and never into a study; rendered in headless Chromium (no console error, no
request, every figure decodes, the tables sort)."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import math
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from geometry_study import make_study
from typer.testing import CliRunner

import onnx_geom
from onnx_geom.cli.app import app
from onnx_geom.errors import DeviceError, OutputError
from onnx_geom.report import build_report, write_report
from onnx_geom.report.figures import choose, worst_condition
from onnx_geom.report.findings import findings, fmt_p

pytestmark = pytest.mark.gui  # the figures render through EGL


class Page(HTMLParser):
    """Every tag with its attributes, the ids, the inline scripts and the text of an HTML document."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for t, attrs in self.tags if t == tag]

    @property
    def ids(self) -> set[str]:
        return {attrs["id"] for _, attrs in self.tags if "id" in attrs}


@pytest.fixture(scope="module")
def report(demo_study, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    result = write_report(demo_study.study, path, comparison=demo_study.comparison)
    return path, result, path.read_text(encoding="utf-8")


@pytest.mark.slow  # the shared demo study (about 10 s) and the report's figures (about 10 s)
def test_the_report_is_one_self_contained_file(report):
    path, result, text = report
    page = Page(text)
    assert result.bytes == path.stat().st_size and 100_000 < result.bytes < 5_000_000
    assert result.notes == [] and result.figures >= 7  # the map, local/global/samples of 2+ models, attribution
    images = page.all("img")
    assert len(images) >= result.figures and all(i["src"].startswith("data:image/png;base64,") for i in images)
    for image in images:  # each one a PNG that decodes
        png = base64.b64decode(image["src"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not page.all("link") and not page.all("iframe") and not page.all("object") and not page.all("embed")
    assert all("src" not in s for s in page.all("script"))  # inline only
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I)  # no address anywhere
    assert "url(" not in text and "@import" not in text and "@font-face" not in text
    csp = next(m["content"] for m in page.all("meta") if m.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp and "img-src data:" in csp and "unsafe-eval" not in csp
    for script in page.scripts:  # the one inline script is allowed by its hash, nothing else is
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp


@pytest.mark.slow
def test_every_link_points_at_a_section_of_the_report(report):
    _, _, text = report
    page = Page(text)
    links = [a["href"] for a in page.all("a")]
    assert links and all(href.startswith("#") for href in links)
    assert {href[1:] for href in links} <= page.ids
    for name in ("summary", "geometry", "correlations", "corruptions", "pairs", "groups", "redundancy", "accuracy"):
        assert f"t-{name}" in page.ids  # every table of the comparison has its section


@pytest.mark.slow
def test_the_findings_numbers_are_the_tables_numbers(demo_study, report):
    _, result, text = report
    tables = onnx_geom.tables(demo_study.study)  # the same numbers, read back through pandas
    summary = tables["summary"].set_index("model")
    worst = summary["mce"].idxmax()
    robust = next(line for line in result.findings if "The least robust is" in line)
    assert f"The least robust is {worst}: mCE {summary.loc[worst, 'mce']:.2f}" in robust
    drop = summary.loc[worst, "relative_drop"]
    assert f"relative drop {100 * drop:.1f}%" in robust
    corr = tables["correlations"].set_index("clean_geometry").loc["median_margin"]
    ranks = next(line for line in result.findings if "Spearman" in line)
    assert f"{corr['spearman']:+.2f} (p = {fmt_p(corr['p_value'])}, n = {int(corr['models'])})" in ranks
    assert result.findings[0].startswith("Saturate does nothing to this data")
    coverage = next(line for line in result.findings if line.startswith("Relative mCE uses"))
    low = tables["corruptions"].query("relative_mce == 'the reference loses less than the minimum'")["corruption"]
    assert "gaussian noise" in coverage and len(low) >= 1
    pairs = tables["pairs"].sort_values("geometric_distance_all").iloc[0]
    alike = next(line for line in result.findings if "nearest pair" in line)
    assert f"{pairs['model_a']} and {pairs['model_b']} ({pairs['geometric_distance_all']:.2f})" in alike
    quality = demo_study.comparison.embedding_quality
    assert f"keeps {100 * quality['kept']:.0f}% of the distances" in alike
    groups = tables["groups"]
    corruptions = next(line for line in result.findings if "of the" in line and "corruptions that change" in line)
    assert f"{len(groups)} groups of the {len(demo_study.comparison.corruptions)} corruptions" in corruptions
    # every finding names its tables, and each named table is a section of the report
    page_ids = Page(text).ids
    for finding in findings(demo_study.comparison):
        assert finding.sources and all(f"t-{name}" in page_ids for name, _ in finding.sources)
    # the evaluation table's hover text names the column, and its sort key is the table's value
    cell = re.search(r'<td data-v="([^"]+)" title="' + re.escape(worst) + r' · summary: mce = [^"]+">', text)
    assert cell and math.isclose(float(cell.group(1)), summary.loc[worst, "mce"])


@pytest.mark.slow
def test_the_figures_follow_the_stated_rule(demo_study, report):
    _, _, text = report
    cmp = demo_study.comparison
    choice = choose(cmp)
    summary = {r["model"]: r for r in cmp.summary}
    others = [m for m in cmp.models if m != cmp.reference]
    assert choice.models[0] == cmp.reference
    assert choice.models[1] == max(others, key=lambda m: summary[m]["relative_drop"])
    assert choice.models[2] == min((m for m in others if m != choice.models[1]), key=lambda m: summary[m]["mce"])
    for m in choice.models:
        c, s = worst_condition(cmp, m)
        accuracy = [
            r["accuracy"] for r in cmp.accuracy if r["model"] == m and r["corruption"] not in ("clean", "saturate")
        ]
        assert next(
            r["accuracy"] for r in cmp.accuracy if (r["model"], r["corruption"], r["severity"]) == (m, c, s)
        ) == min(accuracy)
        assert c != "saturate"  # no effect: never the "worst" condition
        flipped = cmp.samples["fragile_to_corruption"][m][c][s]
        assert set(choice.selected[m]) <= set(flipped) and len(choice.selected[m]) == min(9, len(flipped))
        assert f"Local geometry: {m}, {c.replace('_', ' ')} {s}" in text
    counts = [k for _, k in choice.fragile]
    assert counts == sorted(counts, reverse=True) and f"flips in {counts[0]} of" in text
    for m in choice.attributed:
        for i, _ in choice.fragile[:3]:
            assert f"Attribution: {m}, sample #{i}" in text


@pytest.mark.slow
def test_the_cli_writes_the_report_and_says_where(demo_study, tmp_path):
    out = tmp_path / "sub" / "r.html"  # a missing folder is created
    result = CliRunner().invoke(app, ["report", str(demo_study.study), "-o", str(out), "--no-figures", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["report"] == str(out) and summary["bytes"] == out.stat().st_size and summary["figures"] == 0
    assert summary["stored_comparison"] is True and len(summary["findings"]) >= 5
    result = CliRunner().invoke(app, ["report", str(demo_study.study), "-o", str(out), "--no-figures"])
    assert result.exit_code == 0 and f"wrote {out}" in result.output and "open it in any browser" in result.output


def test_a_report_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    study = make_study(tmp_path / "study", geometry=True)
    out = tmp_path / "report.html"
    out.write_text("the old report")

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OutputError, match="No space left on device"):
        write_report(study, out, figures=False)
    assert out.read_text() == "the old report" and sorted(p.name for p in tmp_path.iterdir()) == [
        "report.html",
        "study",
    ]
    monkeypatch.undo()
    with pytest.raises(OutputError, match="lies inside the onnx-geom study"):
        write_report(study, study.path / "models" / "r.html", figures=False)  # refused before any work
    assert write_report(study, out, figures=False).path == out and out.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.slow  # renders the figures of a small study: about 8 s
def test_a_study_without_probe_files_or_images_still_reports(tmp_path, monkeypatch):
    """A small synthetic study: no probe files (no attribution), blank 2x2 images, three models."""
    study = make_study(tmp_path / "study", geometry=True)
    text, result = build_report(study)
    assert result.figures >= 4 and not result.stored_comparison  # computed for the report, nothing stored
    assert any("attribution maps of" in n and "probe file" in n for n in result.notes)
    assert "Attribution: " not in text and 'class="thumb"' in text
    assert not (study.path / "comparison").exists()  # the study is only read

    def no_egl(*args, **kwargs):
        raise DeviceError("VisPy cannot use the egl backend (test); install Mesa's EGL.")

    monkeypatch.setattr("onnx_geom.viewers.render", no_egl)
    text, result = build_report(study)
    assert result.figures == 0 and len(result.notes) == 1 and "install Mesa's EGL" in result.notes[0]
    assert "install Mesa&#x27;s EGL" in text and "<h2>Findings</h2>" in text


def test_the_report_sits_between_the_cli_and_the_viewer():
    """cli -> report -> viewers -> core: importing the report loads neither the CLI nor VisPy (the figures import
    the viewer when they render)."""
    code = (
        "import sys, onnx_geom.report, onnx_geom.report.document, onnx_geom.report.figures, onnx_geom.report.findings;"
        "bad=[m for m in sys.modules if m.startswith(('onnx_geom.cli', 'vispy', 'PySide6'))]; print(bad); sys.exit(bool(bad))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_clean_only_study_says_what_cannot_be_said(tmp_path):
    """No corruption: no average, no ranking, no redundancy; the report still says what the data holds."""
    study = make_study(tmp_path / "study", geometry=True, corruptions=())
    text, result = build_report(study, figures=False)
    assert result.findings[0].startswith("The study holds clean data only")
    assert any(line.startswith("Too few models to rank robustness by geometry") for line in result.findings)
    assert not any("Relative mCE" in line or "corruptions behave alike" in line for line in result.findings)
    assert "clean data only" in text and "<h2>Tables</h2>" in text


# -- the report in a browser ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_report_renders_in_headless_chromium_offline(report):
    """Debian's chromium (installed by .ci/run) opens the file with every host name unresolvable: no console
    error or warning, no request but the file itself (figures are data URIs), every image decodes, the tables sort
    on a click, a fetch is refused by the page's policy. ONNX_GEOM_REPORT_PNG=path saves a screenshot (docs/report.png)."""
    from _chromium import Browser, chromium_path

    if chromium_path() is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    path, result, _ = report
    with Browser() as browser:
        page = browser.open(path.resolve().as_uri(), width=1200, height=900)
        sizes = page.evaluate(
            "Promise.all([...document.images].map(i => i.decode().then(() => [i.naturalWidth, i.naturalHeight],"
            " () => [0, 0])))"
        )
        assert len(sizes) >= result.figures and all(w > 0 and h > 0 for w, h in sizes)
        assert page.errors() == []
        requests = page.requests
        assert requests[0] == path.resolve().as_uri()
        assert all(url.startswith("data:image/png;base64,") for url in requests[1:]), requests[:3]
        order = """(() => { const t = document.getElementById("evaluation-table");
            const col = [...t.tHead.rows[0].cells].findIndex(th => th.textContent === "mCE");
            t.tHead.rows[0].cells[col].click();
            const up = [...t.tBodies[0].rows].map(r => r.cells[col].getAttribute("data-v")).map(Number);
            t.tHead.rows[0].cells[col].click();
            const down = [...t.tBodies[0].rows].map(r => r.cells[col].getAttribute("data-v")).map(Number);
            return [up, down]; })()"""
        up, down = page.evaluate(order)
        assert up == sorted(up) and down == sorted(down, reverse=True) and len(up) == 5
        tip = page.evaluate('document.querySelector("#heatmap tbody td[title*=severity]").title')
        assert "severity 1:" in tip and "%" in tip
        shot = page.screenshot()
        if os.environ.get("ONNX_GEOM_REPORT_PNG"):
            page.evaluate("window.scrollTo(0, 0)")
            Path(os.environ["ONNX_GEOM_REPORT_PNG"]).write_bytes(page.screenshot())
        assert shot[:8] == b"\x89PNG\r\n\x1a\n"
        blocked = page.evaluate('fetch("https://example.com/x.js").then(() => "fetched", () => "refused")')
        assert blocked == "refused" and not any("example.com" in url for url in page.requests)
