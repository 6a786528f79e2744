"""The report's page: header, findings, evaluation table and heatmap, model map, geometry, attribution, samples, and
every table of the comparison, assembled from a comparison, the rendered figures and the thumbnails."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from onnx_geom.mce import NO_EFFECT
from onnx_geom.report.figures import ATTRIBUTED, Choice, Rendered, Thumb
from onnx_geom.report.findings import Finding
from onnx_geom.report.html import DASH, data_uri, esc, heat_color, page, table

__all__ = ["TABLE_NOTES", "build_page"]

#: What each table of the comparison holds; the file ``onnx-geom compare -o DIR`` writes it to is ``<name>.csv``.
TABLE_NOTES = {
    "summary": "per model: clean and mean corruption accuracy, relative drop, mCE, extra mCE and relative mCE",
    "geometry": "per model, on clean data: median margin (raw and scale-free), mean length, mean angle to the true "
    "class, relative drop, scale, median length",
    "correlations": "Spearman correlation across models of each clean geometry with the relative drop, its p-value "
    "and the number of models",
    "corruptions": "per corruption: family, benchmark or not, no-effect severities, the reference's mean error and "
    "degradation, its status in each average, its redundancy group",
    "corruption_errors": "per model x corruption: mean error, CE and relative CE",
    "accuracy": "per model x corruption x severity",
    "pairs": "per pair of models: CKA, debiased CKA, kappa, agreement, geometric distances (_clean: clean data; "
    "_all: every condition with an effect)",
    "distance": "the map's distance between every two models",
    "embedding": "the model map: 2-D classical MDS coordinates of the distance",
    "mst": "the minimum spanning tree of the distance",
    "embedding_quality": "how much of the distances the 2-D map keeps (comparison.json, embedding_quality)",
    "redundancy": "similarity of every two corruptions (per-sample flips and shifts against clean data)",
    "groups": "corruptions clustered by redundancy (average linkage)",
    "sample_counts": "robust, fragile-to-pruning and fragile-to-corruption sample counts",
}
#: Tables longer than this are folded (click to open).
FOLD_ROWS = 40


def _num(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def _percent(value: Any) -> tuple[str, str]:
    v = _num(value)
    return (DASH, "") if not math.isfinite(v) else (f"{100 * v:.1f}", repr(v))


def _fixed(value: Any, digits: int = 2) -> tuple[str, str]:
    v = _num(value)
    return (DASH, "") if not math.isfinite(v) else (f"{v:.{digits}f}", repr(v))


def _pruning(tags: Mapping[str, Any]) -> str:
    method = tags.get("method")
    sparsity = _num(tags.get("sparsity"))
    if method is None and not math.isfinite(sparsity):
        return DASH
    return " ".join(p for p in (str(method or ""), f"{100 * sparsity:.0f}%" if math.isfinite(sparsity) else "") if p)


def _sources(finding: Finding) -> str:
    parts = []
    for name, columns in finding.sources:
        link = f'<a href="#t-{esc(name)}">{esc(name)}</a>'
        parts.append(link + (f": {esc(', '.join(columns))}" if columns else ""))
    return f' <span class="src">(→ {"; ".join(parts)})</span>' if parts else ""


def _figure(fig: Any) -> str:
    return (
        f'<figure><img src="{data_uri(fig.png)}" width="{fig.width}" height="{fig.height}" alt="{esc(fig.title)}">'
        f"<figcaption><b>{esc(fig.title)}.</b> {esc(fig.caption)}</figcaption></figure>"
    )


def _thumbs(thumbs: Sequence[Thumb]) -> str:
    items = [
        f'<div class="thumb" title="{esc(t.tip or t.note)}"><img src="{data_uri(t.png)}" alt="sample {t.index}">'
        f"#{t.index} ({esc(t.label)})<br>{esc(t.note)}</div>"
        for t in thumbs
    ]
    return f'<div class="thumbs">{"".join(items)}</div>'


def _evaluation(cmp: Any) -> str:
    geometry = {g["model"]: g for g in cmp.geometry}
    rows = []
    for r in cmp.summary:
        rows.append({**r, **{f"g_{k}": v for k, v in geometry.get(r["model"], {}).items()}})
    rows.sort(
        key=lambda r: (
            -_num(r.get("mean_corruption_accuracy"))
            if math.isfinite(_num(r.get("mean_corruption_accuracy")))
            else math.inf
        )
    )

    def col(key: str, fmt, source: str):
        def show(record):
            text, sort = fmt(record.get(key))
            return text, sort, f"{source} = {sort or text}"

        return show

    spec = {
        "model": (lambda r: (r["model"], "", f"summary: model {r['model']}"), "summary: model"),
        "pruning": (
            lambda r: (_pruning(cmp.tags.get(r["model"], {})), "", "the model's tags: method and sparsity"),
            "the model's tags (method, sparsity)",
        ),
        "clean %": (col("clean_accuracy", _percent, "summary: clean_accuracy"), "summary: clean_accuracy"),
        "mean corrupted %": (
            col("mean_corruption_accuracy", _percent, "summary: mean_corruption_accuracy"),
            "summary: mean_corruption_accuracy (every corruption with an effect)",
        ),
        "relative drop %": (col("relative_drop", _percent, "summary: relative_drop"), "summary: relative_drop"),
        "mCE": (col("mce", _fixed, "summary: mce"), "summary: mce (the 15 benchmark corruptions)"),
        "extra mCE": (col("mce_extra", _fixed, "summary: mce_extra"), "summary: mce_extra (the held-out extras)"),
        "relative mCE": (col("relative_mce", _fixed, "summary: relative_mce"), "summary: relative_mce"),
        "clean median margin": (
            col("g_median_margin", _fixed, "geometry: median_margin"),
            "geometry: median_margin (the model's own feature units)",
        ),
        "scale-free": (
            col("g_median_margin_scaled", _fixed, "geometry: median_margin_scaled"),
            "geometry: median_margin_scaled (margin / half the median distance between clean class centroids)",
        ),
        "clean mean length": (
            col("g_mean_length", lambda v: _fixed(v, 1), "geometry: mean_length"),
            "geometry: mean_length",
        ),
        "clean mean angle": (
            col("g_mean_angle_true", lambda v: _fixed(v, 1), "geometry: mean_angle_true (degrees)"),
            "geometry: mean_angle_true (degrees)",
        ),
    }
    return table(
        rows,
        table_id="evaluation-table",
        columns=list(spec),
        shown={k: v[0] for k, v in spec.items()},
        header_tips={k: v[1] for k, v in spec.items()},
        row_tip=lambda r: r["model"],
    )


def _heatmap(cmp: Any, order: list[str]) -> str:
    acc: dict[tuple[str, str], dict[int, float]] = {}
    for r in cmp.accuracy:
        acc.setdefault((r["model"], r["corruption"]), {})[int(r["severity"])] = float(r["accuracy"])
    status = {r["corruption"]: r for r in cmp.corruption_status}
    corruptions = [c for c in status if any((m, c) in acc for m in order)]
    corruptions += sorted({c for _, c in acc} - set(corruptions) - {"clean"})
    columns = ["clean", *corruptions]
    means = {
        key: float(np.mean(list(v.values()))) for key, v in acc.items() if v and np.isfinite(list(v.values())).all()
    }
    values = [v for v in means.values() if math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    head = "".join(
        f'<th title="{esc(c)}: mean accuracy over its severities">{esc(c.replace("_", " "))}</th>' for c in columns
    )
    body = []
    for m in order:
        cells = [f'<td title="{esc(m)}">{esc(m)}</td>']
        for c in columns:
            mean = means.get((m, c))
            if mean is None:
                cells.append(f'<td title="no unit">{DASH}</td>')
                continue
            bg, fg = heat_color(mean, lo, hi)
            per = acc[(m, c)]
            detail = (
                "clean"
                if c == "clean"
                else ", ".join(f"severity {s}: {100 * a:.1f}%" for s, a in sorted(per.items()))
                + f"; mean {100 * mean:.1f}%"
            )
            no_effect = f" · {NO_EFFECT}" if status.get(c, {}).get("mean_corruption_accuracy") == NO_EFFECT else ""
            tip = f"{m} · {c}: {detail if c != 'clean' else f'{100 * mean:.1f}%'}{no_effect} (accuracy)"
            cells.append(
                f'<td data-v="{mean!r}" style="background:{bg};color:{fg}" title="{esc(tip)}">{100 * mean:.0f}</td>'
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table id="heatmap" class="data heat sortable"><thead><tr><th>model</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
        f'<p class="note">Accuracy % per model and corruption, the mean over its severities (hover a cell for each '
        f'severity; <a href="#t-accuracy">accuracy</a>); viridis from {100 * lo:.0f}% (dark) to {100 * hi:.0f}% '
        "(yellow). Click a header to sort.</p>"
    )


def _section(ident: str, title: str, inner: str) -> str:
    return f'<section id="{ident}"><h2>{esc(title)}</h2>\n{inner}\n</section>'


def _tables(cmp: Any) -> str:
    tables = dict(cmp.tables())
    quality = dict(cmp.embedding_quality or {})
    tables["embedding_quality"] = [quality] if quality else []
    order = ["summary", "geometry", "correlations", "corruptions", "corruption_errors", "pairs", "distance",
             "embedding", "mst", "embedding_quality", "groups", "redundancy", "sample_counts", "accuracy"]  # fmt: skip
    order += [name for name in tables if name not in order]
    parts = []
    for name in order:
        records = tables.get(name) or []
        where = "comparison.json" if name == "embedding_quality" else f"{name}.csv"
        note = f'<p class="note">{esc(TABLE_NOTES.get(name, ""))}; <code>{esc(where)}</code> of <code>onnx-geom compare -o DIR</code>, stored in the study\'s comparison. {len(records):,} rows.</p>'
        body = table(records, table_id=f"table-{name}") if records else '<p class="note">(empty)</p>'
        if len(records) > FOLD_ROWS:
            body = f"<details><summary>show the {len(records):,} rows</summary>{body}</details>"
        parts.append(f'<h3 id="t-{esc(name)}">{esc(name)}</h3>{note}<div class="scroll">{body}</div>')
    return "\n".join(parts)


def build_page(
    *,
    cmp: Any,
    meta: Mapping[str, Any],
    found: Sequence[Finding],
    choice: Choice,
    rendered: Rendered,
    robust: Sequence[Thumb],
    fragile: Sequence[Thumb],
) -> str:
    """The whole HTML document of a report."""
    title = f"onnx-geom report: {meta['dataset']}"
    figs = rendered.figures
    header = (
        f'<header><h1>{esc(title)}</h1><p class="meta">{esc(meta["line"])}</p>'
        '<nav><a href="#findings">Findings</a><a href="#evaluation">Evaluation</a><a href="#map">Model map</a>'
        '<a href="#geometry">Geometry</a><a href="#attribution">Attribution</a><a href="#samples">Samples</a>'
        '<a href="#tables">Tables</a></nav></header>'
    )
    items = "".join(f"<li><b>{esc(f.lead)}</b>: {esc(f.text)}{_sources(f)}</li>" for f in found)
    findings = _section(
        "findings",
        "Findings",
        f'<ul class="findings">{items}</ul><p class="note">{esc(meta["scope"])} Every number above is in the '
        'table it names (<a href="#tables">Tables</a>, the CSV files of <code>onnx-geom compare -o DIR</code>).</p>',
    )
    order = [r["model"] for r in sorted(cmp.summary, key=lambda r: -_num(r.get("mean_corruption_accuracy"))
                                        if math.isfinite(_num(r.get("mean_corruption_accuracy"))) else math.inf)]  # fmt: skip
    evaluation = _section(
        "evaluation",
        "Evaluation",
        f'<p class="note">Rows by mean corrupted accuracy; mCE and relative mCE against {esc(cmp.mce_reference or cmp.reference)}. '
        "Hover a cell for its value and the table column it comes from; click a header to sort.</p>"
        f'<div class="scroll">{_evaluation(cmp)}</div>{_heatmap(cmp, order)}',
    )
    tree = [{"model_a": cmp.models[i], "model_b": cmp.models[j], cmp.distance_name: float(w)} for i, j, w in cmp.mst]
    map_parts = [f'<div class="figures">{_figure(figs["map"])}' if "map" in figs else '<div class="figures">']
    map_parts.append(
        '<div class="side"><h3>Spanning tree</h3>'
        + (table(tree, table_id="tree") if tree else '<p class="note">(one model: no tree)</p>')
        + f'<p class="note">Edges of the minimum spanning tree of the {esc(cmp.distance_name)} distance '
        '(<a href="#t-mst">mst</a>); how much of the distances the map keeps: '
        '<a href="#t-embedding_quality">embedding_quality</a>.</p></div></div>'
    )
    model_map = _section("map", "Model map and its tree", "".join(map_parts))
    rule = (
        '<p class="rule">Rule: the reference, the least robust other model (largest relative drop, '
        '<a href="#t-summary">summary</a>: relative_drop) and the most robust other model (lowest mCE), each under '
        'its worst condition with an effect (lowest accuracy, <a href="#t-accuracy">accuracy</a>), with up to 9 '
        "samples it gets right on clean data and wrong there selected (fragile_to_corruption).</p>"
    )
    blocks = []
    for m in choice.models:
        c, s = choice.condition[m]
        where = "clean data" if c == "clean" else f"{c.replace('_', ' ')} {s}"
        shown = [figs[k] for k in (f"local-{m}", f"global-{m}", f"samples-{m}") if k in figs]
        inner = "".join(_figure(f) for f in shown) or '<p class="note">(no figure)</p>'
        blocks.append(
            f'<h3>{esc(m)}: {esc(choice.reason[m])}, under {esc(where)}</h3><div class="figures">{inner}</div>'
        )
    geometry = _section("geometry", "Local and global geometry", rule + "".join(blocks))
    attr_rule = (
        f'<p class="rule">Rule: the {ATTRIBUTED} samples that flip (right on clean data, wrong under a corruption) in '
        f"the most (model, corruption, severity) units, counted over every model ({choice.units:,} units with an "
        "effect; fragile_to_corruption in comparison.json), attributed under the reference and the least robust "
        "model: each pixel's exact contribution to the margin (the linearization of the model at that image; "
        "purple raises the margin, orange lowers it; the contributions plus the bias add up to the margin), beside "
        "the reference's map and their difference.</p>"
    )
    attr_blocks = []
    for m in choice.attributed:
        shown = [f for k, f in figs.items() if k.startswith(f"attribution-{m}-")]
        if shown:
            attr_blocks.append(f'<h3>{esc(m)}</h3><div class="figures">{"".join(_figure(f) for f in shown)}</div>')
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in rendered.notes)
    attribution = _section(
        "attribution", "Attribution of the most fragile samples", attr_rule + "".join(attr_blocks) + notes
    )
    samples = _section(
        "samples",
        "Robust and fragile samples",
        '<p class="rule">Clean images. Robust: right in every condition under the most models (robust_for in '
        'comparison.json; <a href="#t-sample_counts">sample_counts</a>). Fragile: flip from right on clean data to '
        "wrong in the most units, over every model.</p>"
        + "<h3>Most robust</h3>"
        + (_thumbs(robust) if robust else '<p class="note">(the study holds no images)</p>')
        + "<h3>Most fragile</h3>"
        + (_thumbs(fragile) if fragile else '<p class="note">(no sample flips, or the study holds no images)</p>'),
    )
    tables = _section("tables", "Tables", _tables(cmp))
    footer = f'<footer><p class="meta">{esc(meta["footer"])}</p></footer>'
    body = "\n".join([header, findings, evaluation, model_map, geometry, attribution, samples, tables, footer])
    return page(title, body)
