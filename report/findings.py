"""The findings of a study, written from its comparison the way the README's demo story reads: which corruptions
have no effect, which models stay robust, how the clean geometry ranks the drop (and with what confidence), which
models are alike, which corruptions are redundant. Pure functions of a :class:`~onnx_geom.comparison.Comparison`
(no VisPy, no I/O); every number comes with the table and columns it is read from.

>>> fmt_p(3.1e-05), fmt_p(0.0012), fmt_p(0.2881), fmt_p(float("nan"))
('3e-5', '0.001', '0.29', 'undefined')
>>> names(["a"]), names(["a", "b"]), names(["a", "b", "c"])
('a', 'a and b', 'a, b and c')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnx_geom.mce import BELOW_MINIMUM as LOW_REFERENCE_DROP
from onnx_geom.mce import NO_EFFECT, NOT_IN_STUDY
from onnx_geom.report.html import DASH

__all__ = ["GEOMETRY_NAMES", "Finding", "findings", "fmt_p", "names"]

#: How the report names each clean-geometry row of the correlations table.
GEOMETRY_NAMES = {
    "median_margin": "clean median margin",
    "median_margin_scaled": "scale-free clean median margin",
    "mean_length": "clean mean feature length",
    "mean_angle_true": "clean mean angle to the true class",
}
#: What each map distance is (``Comparison.distance_name``) and the pairs column it comes from.
DISTANCE_WORDS = {
    "geometry": "scale-free geometric distance over every condition",
    "geometry_raw": "raw geometric distance over every condition",
    "cka": "1 \u2212 linear CKA of the clean features",
    "kappa": "1 \u2212 Cohen's kappa over every condition",
    "agreement": "1 \u2212 agreement over every condition",
}
MINUS, RHO = "\u2212", "\u03c1"  # minus sign, rho


#: (table, columns) a finding reads its numbers from.
Source = tuple[str, tuple[str, ...]]


@dataclass
class Finding:
    """One finding: a bold ``lead``, the ``text`` that gives its numbers, and the ``sources``: (table, columns)
    pairs naming where each number is read (the report links each table's section)."""

    key: str
    lead: str
    text: str
    sources: list[Source] = field(default_factory=list)

    def plain(self) -> str:
        """The finding as one line of text, its sources in brackets."""
        where = "; ".join(f"{t}: {', '.join(c)}" if c else t for t, c in self.sources)
        return f"{self.lead}: {self.text}" + (f" [{where}]" if where else "")


def names(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def fmt_p(p: float) -> str:
    """A p-value as the README writes it: ``3e-5`` below 0.001, one significant digit below 0.01, else two
    decimals."""
    if p is None or not math.isfinite(p):
        return "undefined"
    if p < 1e-3:
        mantissa, exponent = f"{p:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{p:.1g}" if p < 0.01 else f"{p:.2f}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value))


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _points(fraction: float) -> str:
    """An error fraction in percentage points, ``0`` for none: ``+0.95``, ``-0.22``, ``0``."""
    return "0" if round(100 * fraction, 2) == 0 else f"{100 * fraction:+.2f}"


def _pretty(corruption: str) -> str:
    return corruption.replace("_", " ")


def _sparsity(tags: Mapping[str, Any]) -> float | None:
    try:
        value = float(tags.get("sparsity"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def findings(cmp: Any, *, n_samples: int | None = None) -> list[Finding]:
    """The findings of a comparison, in the README's order; each a :class:`Finding` whose numbers are read from
    the tables its ``sources`` name (``summary``, ``corruptions``, ``correlations``, ``geometry``, ``pairs``,
    ``groups``, ``redundancy``, ``sample_counts``, ``embedding_quality``)."""
    out: list[Finding | None] = [
        _no_effect(cmp),
        _robust(cmp),
        _relative_coverage(cmp),
        _geometry_ranks(cmp),
        _alike_models(cmp),
        _redundant_corruptions(cmp),
        _samples(cmp, n_samples),
    ]
    return [f for f in out if f is not None]


# -- corruptions without effect and what each average is over ---------------------------------------------------
def _no_effect(cmp: Any) -> Finding | None:
    rows = [r for r in cmp.corruption_status if r.get("mean_corruption_accuracy") != NOT_IN_STUDY]
    if not rows:
        return Finding(
            "no_effect",
            "The study holds clean data only",
            "there is no corruption to average, rank or group; the findings below are about the clean data.",
        )
    whole = [r["corruption"] for r in rows if r.get("mean_corruption_accuracy") == NO_EFFECT]
    partial = [
        f"{_pretty(r['corruption'])} at severity {names([str(s) for s in r['no_effect_severities']])}"
        for r in rows
        if r.get("no_effect_severities") and r["corruption"] not in whole
    ]
    av = cmp.averages
    over = []
    other = "the other " if whole else ""
    if "mean_corruption_accuracy" in av:
        used = len(av["mean_corruption_accuracy"]["used"])
        over.append(f"the mean corrupted accuracy is over {other}{used} corruption{'s' if used != 1 else ''}")
    if "mce" in av and av["mce"]["used"]:
        used = len(av["mce"]["used"])
        over.append(
            ("mCE over the 15 benchmark ones" if used == 15 else f"mCE over {used} of the 15 benchmark corruptions")
            + " (comparable with published mCE)"
        )
    if "mce_extra" in av and av["mce_extra"]["used"]:
        over.append(f"the extra mCE over {names([_pretty(c) for c in av['mce_extra']['used']])}")
    averages = "; ".join(over)
    sources: list[Source] = [("corruptions", ("mean_corruption_accuracy", "mce", "mce_extra", "no_effect_severities"))]
    if whole:
        does = "does" if len(whole) == 1 else "do"
        lead = f"{names([_pretty(c).capitalize() if i == 0 else _pretty(c) for i, c in enumerate(whole)])} {does} nothing to this data"
        text = (
            "every model's outputs under "
            + ("it" if len(whole) == 1 else "them")
            + " are bitwise its clean outputs, so "
            + ("it is" if len(whole) == 1 else "they are")
            + f' "{NO_EFFECT}" and left out of every average and of the clustering'
        )
    else:
        lead = "Every corruption changes the data"
        text = "no corruption leaves every model's outputs bitwise equal to its clean outputs"
    if partial:
        text += f"; so do {names(partial)}, left out of that corruption's sums"
    return Finding("no_effect", lead, text + (f". {averages[0].upper()}{averages[1:]}." if averages else "."), sources)


# -- which models stay robust --------------------------------------------------------------------------------------
def _robust(cmp: Any) -> Finding | None:
    rows = {r["model"]: r for r in cmp.summary}
    if not rows or "mce" not in cmp.averages:
        return None
    ref, against = cmp.reference, cmp.mce_reference or cmp.reference
    others = [m for m in rows if m != ref and _finite(rows[m].get("mce"))]
    if not others:
        return None
    refrow = rows.get(ref, {})
    sentences: list[str] = []
    better = sorted((m for m in others if rows[m]["mce"] < 1), key=lambda m: rows[m]["mce"])
    if better:
        one = len(better) == 1
        lead = f"{names(better)} {'is' if one else 'are'} more robust than {against} under corruption"
        mces = [f"{rows[m]['mce']:.2f}" for m in better]
        first = f"mCE {names(mces)} (the reference's is 1)"
        if _finite(refrow.get("clean_accuracy")) and all(
            rows[m]["clean_accuracy"] > refrow["clean_accuracy"] for m in better
        ):
            first += f", and {'it beats' if one else 'they beat'} it on clean data too"
        if _finite(refrow.get("relative_drop")):
            lose_more = [m for m in better if rows[m]["relative_drop"] > refrow["relative_drop"]]
            if lose_more:
                drops = names([_pct(rows[m]["relative_drop"]) for m in lose_more])
                rel = [f"{rows[m]['relative_mce']:.2f}" for m in lose_more if _finite(rows[m].get("relative_mce"))]
                who = ("it" if one else "they") if len(lose_more) == len(better) else names(lose_more)
                first += (
                    f", but {who} lose{'s' if len(lose_more) == 1 else ''} more relative to "
                    f"{'its' if len(lose_more) == 1 else 'their'} own clean accuracy (relative drop {drops} against "
                    f"{ref}'s {_pct(refrow['relative_drop'])}" + (f"; relative mCE {names(rel)})" if rel else ")")
                )
        sentences.append(first)
    else:
        best = min(others, key=lambda m: rows[m]["mce"])
        lead = f"No model beats {against} under corruption"
        sentences.append(f"every other model's mCE is above 1 (the lowest: {best}, {rows[best]['mce']:.2f})")
    levels: dict[float, list[str]] = {}
    for m in others:
        s = _sparsity(cmp.tags.get(m, {}))
        if s is not None and s > 0:
            levels.setdefault(round(s, 2), []).append(m)
    if len(levels) >= 2:
        ranges = []
        for level, members in sorted(levels.items()):
            values = sorted(rows[m]["mce"] for m in members)
            span = f"{values[0]:.2f}" if len(values) == 1 else f"{values[0]:.2f}{DASH}{values[-1]:.2f}"
            ranges.append(f"{span} at {100 * level:.0f}%")
        sentences.append("By pruning level, mCE spans " + names(ranges) + " sparsity")
    worst = max(others, key=lambda m: rows[m]["mce"])
    w = rows[worst]
    sentences.append(
        f"The least robust is {worst}: mCE {w['mce']:.2f}, {_pct(w['mean_corruption_accuracy'])} under corruption "
        f"against {_pct(w['clean_accuracy'])} clean (relative drop {_pct(w['relative_drop'])})"
    )
    if "relative_mce" in cmp.averages and not cmp.averages["relative_mce"].get("undefined"):
        below = sorted((m for m in others if _finite(rows[m].get("relative_mce")) and rows[m]["relative_mce"] < 1),
                       key=lambda m: rows[m]["relative_mce"])  # fmt: skip
        if below:
            one = len(below) == 1
            listed = names([f"{rows[m]['relative_mce']:.2f}" for m in below])
            sentences.append(
                f"Only {names(below)} {'has' if one else 'have'} a relative mCE below 1 ({listed}): "
                f"{'it loses' if one else 'they lose'} less than {ref} relative to {'its' if one else 'their'} own "
                "clean accuracy"
            )
        else:
            sentences.append(
                f"No model has a relative mCE below 1: each loses more than {ref} relative to its clean accuracy"
            )
    text = ". ".join(sentences) + "."
    return Finding(
        "robust",
        lead,
        text,
        [("summary", ("clean_accuracy", "mean_corruption_accuracy", "relative_drop", "mce", "relative_mce"))],
    )


def _relative_coverage(cmp: Any) -> Finding | None:
    entry = cmp.averages.get("relative_mce")
    if not entry:
        return None
    used = list(entry.get("used", []))
    low = [e["corruption"] for e in entry.get("excluded", []) if e.get("reason") == LOW_REFERENCE_DROP]
    if not low and not entry.get("undefined"):
        return None
    drops = {r["corruption"]: r.get("reference_drop") for r in cmp.corruption_status}
    minimum = 100 * float(cmp.parameters.get("min_reference_drop", 0.01))
    present = len(used) + sum(e.get("reason") != NOT_IN_STUDY for e in entry.get("excluded", []))
    if not present:  # no benchmark corruption in the study: nothing to say about relative mCE
        return None
    where = "" if present == 15 else " in the study"
    lead = f"Relative mCE uses {len(used)} of the {present} benchmark corruptions{where}"
    parts = []
    if low:
        shown = [f"{_pretty(c)} {_points(drops[c])}" for c in low if _finite(drops.get(c))]
        parts.append(
            f"on {names([_pretty(c) for c in low])} the reference loses less than {minimum:g} percentage point"
            f"{'' if minimum == 1 else 's'} on average over the severities (in points: {', '.join(shown)}), and a "
            "ratio over so small a loss measures nothing: they are left out, and named"
        )
    if entry.get("undefined"):
        parts.append(f"relative mCE is undefined here: {entry['undefined']}")
    return Finding(
        "relative_coverage", lead, "; ".join(parts) + ".", [("corruptions", ("reference_drop", "relative_mce"))]
    )


# -- how the clean geometry ranks the drop --------------------------------------------------------------------------
def _confidence(p: float) -> str:
    if not math.isfinite(p):
        return "undefined"
    return "clearly" if p < 0.01 else "probably" if p < 0.05 else "no more than chance would"


def _geometry_ranks(cmp: Any) -> Finding | None:
    rows = {r["clean_geometry"]: r for r in cmp.correlations}
    if not rows:
        return None
    n = max(int(r.get("models", 0)) for r in rows.values())
    sources: list[Source] = [("correlations", ("spearman", "p_value", "models"))]
    if n < 3:
        return Finding(
            "geometry",
            "Too few models to rank robustness by geometry",
            "the Spearman correlation of clean geometry with the relative drop needs 3 models or more with a "
            f"relative drop under corruption; this comparison has {n}.",
            sources,
        )
    ranked = sorted((r for r in rows.values() if _finite(r.get("spearman"))), key=lambda r: -abs(float(r["spearman"])))
    if not ranked:
        return None
    top = ranked[0]
    top_name = GEOMETRY_NAMES.get(top["clean_geometry"], top["clean_geometry"])
    strong = _finite(top.get("p_value")) and top["p_value"] < 0.05
    lead = f"The {top_name} ranks the robustness" if strong else "No clean geometry clearly ranks the robustness"

    def rho(r: Mapping[str, Any]) -> str:
        return f"{RHO} = {float(r['spearman']):+.2f} (p = {fmt_p(float(r['p_value']))}, n = {int(r['models'])})"

    text = f"across the {n} models, the {top_name} orders the relative drop with Spearman {rho(top)}"
    rest = [r for r in ranked[1:] if r["clean_geometry"] != "median_margin_scaled"]
    if rest:
        text += "; " + ", ".join(f"the {GEOMETRY_NAMES.get(r['clean_geometry'], r['clean_geometry'])} {rho(r)}"
                                 for r in rest)  # fmt: skip
    scaled, raw = rows.get("median_margin_scaled"), rows.get("median_margin")
    if scaled is not None and _finite(scaled.get("spearman")) and top is not scaled:
        margins = [
            (g["median_margin_scaled"], g["model"]) for g in cmp.geometry if _finite(g.get("median_margin_scaled"))
        ]
        span = ""
        if margins:
            lo, hi = min(margins), max(margins)
            span = f"lie between {lo[0]:.2f} ({lo[1]}) and {hi[0]:.2f} ({hi[1]}) and "
        if raw is not None and _finite(raw.get("p_value")) and raw["p_value"] < 0.05 and scaled["p_value"] >= 0.05:
            text += (
                ". But margins are in each model's own feature units: measured in units of the model's class-centroid "
                f"spacing (scale-free), the median margins {span}rank the drop with only {rho(scaled)}, "
                f"{_confidence(float(scaled['p_value']))}; the ranking goes with the size of the features"
            )
        else:
            text += (
                f". Scale-free (in units of each model's class-centroid spacing) the median margins {span}rank the "
                f"drop with {rho(scaled)}"
            )
        sources.append(("geometry", ("median_margin", "median_margin_scaled", "mean_length", "relative_drop")))
    text += f". A correlation across {n} models, not a cause."
    return Finding("geometry", lead, text, sources)


# -- which models are alike -----------------------------------------------------------------------------------------
def _alike_models(cmp: Any) -> Finding | None:
    models = list(cmp.models)
    D = np.asarray(cmp.distance, np.float64)
    if len(models) < 2 or D.shape != (len(models), len(models)):
        return None
    from onnx_geom.comparison import DISTANCE_COLUMNS

    column = DISTANCE_COLUMNS.get(cmp.distance_name, cmp.distance_name)
    words = DISTANCE_WORDS.get(cmp.distance_name, cmp.distance_name)
    iu = np.triu_indices(len(models), 1)
    order = np.argsort(D[iu], kind="stable")
    pairs = [(models[iu[0][k]], models[iu[1][k]], float(D[iu][k])) for k in order[:3]]
    lead = "Similar geometry, similar models" if cmp.distance_name == "geometry" else "Which models are alike"
    text = f"by the {words}, the nearest pair{'s are' if len(pairs) > 1 else ' is'} " + names(
        [f"{a} and {b} ({d:.2f})" for a, b, d in pairs]
    )
    sources: list[Source] = [("pairs", (column,)), ("distance", ())]
    if len(models) >= 3:
        E = D.copy()
        np.fill_diagonal(E, np.inf)
        nearest = E.argmin(axis=1)
        to_ref = [m for i, m in enumerate(models) if m != cmp.reference and models[nearest[i]] == cmp.reference]
        if to_ref:
            text += f"; {names(to_ref)} {'is' if len(to_ref) == 1 else 'are'} nearest to the reference {cmp.reference}"
        alone = np.argsort(-E[np.arange(len(models)), nearest], kind="stable")[:2]
        text += "; the most isolated: " + names(
            [f"{models[i]} (nearest: {models[nearest[i]]}, {E[i, nearest[i]]:.2f})" for i in alone]
        )
        q = cmp.embedding_quality or {}
        if _finite(q.get("kept")):
            text += (
                f". The 2-D map keeps {100 * q['kept']:.0f}% of the distances (median pairwise error "
                f"{100 * q['median_relative_error']:.0f}%, largest {100 * q['max_relative_error']:.0f}%), "
                + (
                    "too little to read neighbours from it: read them from the spanning tree, which uses the full "
                    "distances"
                    if q.get("read_tree")
                    else "so its neighbours are approximate; the spanning tree uses the full distances"
                )
            )
            sources.append(("embedding_quality", ("kept", "median_relative_error", "max_relative_error")))
    return Finding("models", lead, text + ".", sources)


# -- which corruptions are redundant ------------------------------------------------------------------------------
def _redundant_corruptions(cmp: Any) -> Finding | None:
    corruptions = list(cmp.corruptions)
    R = np.asarray(cmp.redundancy, np.float64)
    if len(corruptions) < 2 or R.shape != (len(corruptions), len(corruptions)):
        return None
    index = {c: i for i, c in enumerate(corruptions)}
    groups = [list(g["members"]) for g in cmp.groups]
    multi, single = [g for g in groups if len(g) > 1], [g for g in groups if len(g) == 1]
    iu = np.triu_indices(len(corruptions), 1)
    median = float(np.median(R[iu]))
    sources: list[Source] = [("groups", ("members",)), ("redundancy", ())]
    if multi:
        described = []
        for g in multi:
            idx = [index[c] for c in g if c in index]
            values = [R[a, b] for k, a in enumerate(idx) for b in idx[k + 1 :]]
            span = f"{values[0]:.2f}" if len(values) == 1 else f"{min(values):.2f}{DASH}{max(values):.2f}"
            span = f"similarity {span}"
            described.append(f"{names([_pretty(c) for c in g])} ({span})")
        lead = f"{len(multi)} set{'s' if len(multi) > 1 else ''} of corruptions behave alike"
        text = f"{names(described)} group together: they flip and move the same samples the same way in the same models"
        if single:
            text += (
                f"; the other {len(single)} corruption{'s' if len(single) > 1 else ''} each flip their own samples "
                f"(median similarity between two corruptions {median:.2f})"
            )
    else:
        lead = "No two corruptions behave alike"
        text = f"each flips and moves its own samples (median similarity between two corruptions {median:.2f})"
    threshold = cmp.parameters.get("threshold", 0.5)
    text += (
        f": {len(groups)} group{'s' if len(groups) != 1 else ''} of the {len(corruptions)} corruptions that change "
        f"the data (average linkage cut at 1 {MINUS} similarity = {float(threshold):g})."
    )
    return Finding("corruptions", lead, text, sources)


# -- robust and fragile samples -----------------------------------------------------------------------------------
def _samples(cmp: Any, n_samples: int | None) -> Finding | None:
    samples = cmp.samples or {}
    robust_for = {m: len(v) for m, v in (samples.get("robust_for") or {}).items()}
    if not robust_for:
        return None
    robust = len(samples.get("robust") or [])
    of = f" of {n_samples:,}" if n_samples else ""
    hi = max(robust_for, key=lambda m: robust_for[m])
    lo = min(robust_for, key=lambda m: robust_for[m])
    if robust:
        lead = f"{robust:,}{of} samples are right under every model and condition"
    else:
        lead = "No sample is right under every model and condition"
    text = (
        f"per model, from {robust_for[lo]:,} ({lo}) to {robust_for[hi]:,} ({hi}) samples are right in every one of "
        "its conditions"
    )
    ref = samples.get("reference") or cmp.reference
    if ref in robust_for and ref not in (hi, lo):
        text += f"; the reference {ref}: {robust_for[ref]:,}"
    fragile = samples.get("fragile_to_corruption") or {}
    flips = [len(ix) for per in fragile.values() for sev in per.values() for ix in sev.values()]
    if flips:
        text += (
            f"; a corruption at one severity flips from 0 to {max(flips):,} samples a model had right on clean data "
            f"(median {float(np.median(flips)):g})"
        )
    return Finding("samples", lead, text + ".", [("sample_counts", ("kind", "count"))])
