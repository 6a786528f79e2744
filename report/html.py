"""HTML pieces of the report: one self-contained page (no network, no external script, style or font), tables
that sort when a header is clicked (a few lines of inline JavaScript, allowed by the page's Content Security
Policy through its hash), cells whose values show on hover, figures as data URIs.

>>> cell(0.25)
('0.25', '0.25')
>>> cell(float("nan")) == cell(None) == (DASH, ""), cell(True), cell(1234567.0)
(True, ('true', ''), ('1.235e+06', '1234567.0'))
>>> "<th" in table([{"a": 1, "b": "x<y"}], table_id="t-demo")
True
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: What a missing or undefined value shows as (an en dash).
DASH = "\u2013"

__all__ = ["DASH", "SORT_SCRIPT", "cell", "data_uri", "esc", "heat_color", "page", "table"]


def esc(text: Any) -> str:
    """``text`` escaped for HTML text and attribute values."""
    return html.escape(str(text), quote=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def cell(value: Any) -> tuple[str, str]:
    """(text shown, sort key) of a table value: numbers with 4 significant digits (the key keeps every digit),
    NaN and missing as a dash (no key), booleans as true/false, lists joined by ``;``."""
    if value is None:
        return DASH, ""
    if isinstance(value, (bool, np.bool_)):
        return ("true" if value else "false"), ""
    if isinstance(value, (int, np.integer)):
        return str(int(value)), str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return DASH, ""
        return f"{v:.4g}", repr(v)
    if isinstance(value, (list, tuple)):
        return ";".join(map(str, value)), ""
    return str(value), ""


def table(
    records: Sequence[Mapping[str, Any]],
    *,
    table_id: str = "",
    columns: Sequence[str] | None = None,
    shown: Mapping[str, Any] | None = None,
    header_tips: Mapping[str, str] | None = None,
    row_tip: Any = None,
    cls: str = "data sortable",
) -> str:
    """An HTML table of ``records`` (columns: ``columns`` or every key in first-seen order), sortable by a click
    on a header. ``shown[column](record) -> (text, sort key, tip)`` overrides a column's cell (default
    :func:`cell`, the tip naming the column and the full value); ``header_tips[column]`` is a header's hover
    text; ``row_tip(record)`` prefixes every cell's tip (e.g. the model)."""
    columns = list(columns or dict.fromkeys(k for r in records for k in r))
    shown = shown or {}
    header_tips = header_tips or {}
    head = "".join(f'<th title="{esc(header_tips.get(c, c))}" scope="col">{esc(c)}</th>' for c in columns)
    body = []
    for record in records:
        prefix = f"{row_tip(record)} · " if row_tip is not None else ""
        cells = []
        for c in columns:
            if c in shown:
                text, key, tip = shown[c](record)
            else:
                text, key = cell(record.get(c))
                tip = f"{c} = {key or text}"
            key_attr = f' data-v="{esc(key)}"' if key != "" else ""
            cells.append(f'<td{key_attr} title="{esc(prefix + tip)}">{esc(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f'<table{ident} class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def heat_color(value: float, lo: float, hi: float) -> tuple[str, str]:
    """(background, text colour) of ``value`` on viridis between ``lo`` and ``hi`` (the viewer's accuracy
    colours); light grey for NaN."""
    from onnx_geom.viewers.colors import colormap

    span = hi - lo if hi > lo else 1.0
    rgba = colormap(np.array([(value - lo) / span]), "viridis")[0]
    r, g, b = (round(255 * float(c)) for c in rgba[:3])
    light = 0.2126 * r + 0.7152 * g + 0.0722 * b > 140
    return f"#{r:02x}{g:02x}{b:02x}", ("#111" if light else "#fff")


#: Sorts a table.sortable by the clicked header: numbers by their data-v key, text alphabetically; a second
#: click reverses. Inline, allowed by the page's Content Security Policy through its sha256.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var down = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", down ? "ascending" : "descending");
      function key(row) {
        var c = row.cells[col], v = c.getAttribute("data-v");
        return v !== null ? [0, parseFloat(v), ""] : [c.textContent === "\\u2013" ? 2 : 1, 0, c.textContent];
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x[0] !== y[0]) return x[0] - y[0];
        var d = x[0] === 0 ? x[1] - y[1] : x[2].localeCompare(y[2]);
        return down ? d : -d;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
""".strip()

CSS = """
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #222; margin: 0 auto; max-width: 1280px; padding: 0 24px 48px; }
h1 { font-size: 24px; margin: 24px 0 4px; } h2 { font-size: 19px; margin-top: 36px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 20px 0 6px; }
.meta, .note, figcaption, .src, .rule { color: #555; font-size: 13px; }
nav a { margin-right: 14px; }
ul.findings li { margin-bottom: 10px; }
.src a, nav a, .src { white-space: nowrap; }
table.data { border-collapse: collapse; font-size: 12.5px; margin: 6px 0 14px; }
table.data th, table.data td { border: 1px solid #ddd; padding: 2px 7px; text-align: right; }
table.data td { white-space: nowrap; }
table.data td:first-child, table.data th:first-child { text-align: left; }
table.data thead th { background: #f3f3f3; position: sticky; top: 0; }
table.sortable thead th { cursor: pointer; user-select: none; }
table.sortable thead th[aria-sort="ascending"]::after { content: " ▲"; font-size: 9px; }
table.sortable thead th[aria-sort="descending"]::after { content: " ▼"; font-size: 9px; }
table.data tbody tr:hover td { background: #fff7d6; }
table.heat td { text-align: center; min-width: 38px; border: 1px solid #fff; }
table.heat tbody tr:hover td { outline: 1px solid #000; }
.scroll { overflow-x: auto; max-width: 100%; }
.figures { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
figure { margin: 0; display: table; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { display: table-caption; caption-side: bottom; }
.side { max-width: 360px; }
.thumbs { display: flex; flex-wrap: wrap; gap: 10px; }
.thumb { text-align: center; font-size: 11.5px; color: #444; width: 84px; }
.thumb img { width: 72px; height: 72px; image-rendering: pixelated; border: 1px solid #ccc; display: block;
             margin: 0 auto 2px; }
details summary { cursor: pointer; color: #0b57a4; }
""".strip()


def csp(script: str) -> str:
    """The page's Content Security Policy: nothing from anywhere (no fetch, no external script, style, font or
    frame), images only from data URIs, inline style, and the one inline script by its sha256."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def page(title: str, body: str, *, script: str = SORT_SCRIPT) -> str:
    """A whole HTML document: ``body`` inside, the CSS and ``script`` inline, the CSP that blocks every fetch."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp(script))}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n"
        f"<body>\n{body}\n<script>{script}</script>\n</body></html>\n"
    )
