"""Accuracy tables, corruption redundancy and robust / fragile samples (pure functions over arrays).

Inputs are mappings keyed by ``(model, corruption, severity)`` (a store ``Unit`` works as the key; clean data
is ``("m", "clean", 0)``) whose values are per-sample arrays over the same N samples.

>>> correct = {("a", "clean", 0): np.array([1, 1, 1, 0], bool), ("a", "fog", 1): np.array([1, 0, 1, 0], bool)}
>>> accuracy_table(correct)
[{'model': 'a', 'corruption': 'clean', 'severity': 0, 'accuracy': 0.75}, {'model': 'a', 'corruption': 'fog', 'severity': 1, 'accuracy': 0.5}]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from onnx_geom.conditions import CLEAN
from onnx_geom.errors import DataError
from onnx_geom.mce import CORRUPTION_FAMILIES, MIN_REFERENCE_DROP, corruption_averages
from onnx_geom.similarity import standardise

__all__ = [
    "CORRUPTION_FAMILIES",
    "accuracy_table",
    "corruption_effects",
    "corruption_redundancy",
    "geometry_and_robustness",
    "no_effect_conditions",
    "robustness_summary",
    "sample_sets",
]

Key = tuple[str, str, int]
#: The clean-data geometry summaries that :func:`geometry_and_robustness` sets beside the drop.
CLEAN_GEOMETRY = (
    ("median_margin", "margin", np.median),
    ("median_margin_scaled", "margin_scaled", np.median),
    ("mean_length", "length", np.mean),
    ("mean_angle_true", "angle_true", np.mean),
)


def accuracy_table(correct: Mapping[Key, np.ndarray]) -> list[dict[str, Any]]:
    """One record ``{model, corruption, severity, accuracy}`` per key, sorted (clean first per model)."""
    rows = [
        {"model": m, "corruption": c, "severity": int(s), "accuracy": float(np.mean(np.asarray(v, bool)))}
        for (m, c, s), v in correct.items()
    ]
    return sorted(rows, key=lambda r: (r["model"], r["corruption"] != CLEAN, r["corruption"], r["severity"]))


def robustness_summary(
    table: Sequence[Mapping[str, Any]],
    *,
    reference: str | None = None,
    reference_errors: Mapping[tuple[str, int], float] | None = None,
    no_effect: Collection[tuple[str, int]] = (),
    min_reference_drop: float = MIN_REFERENCE_DROP,
) -> list[dict[str, Any]]:
    """Per model: clean accuracy, mean corruption accuracy, relative drop, and optionally mCE, extra mCE and
    relative mCE (Hendrycks & Dietterich).

    >>> t = [{"model": "m", "corruption": "clean", "severity": 0, "accuracy": 0.9},
    ...      {"model": "m", "corruption": "fog", "severity": 1, "accuracy": 0.6}]
    >>> round(robustness_summary(t)[0]["relative_drop"], 6)
    0.333333

    ``table``: records from :func:`accuracy_table`; ``relative_drop = (clean - mean) / clean``. The definitions,
    and which corruptions each average uses, are those of :func:`onnx_geom.mce.corruption_averages` (which
    also says what it left out and why).
    """
    return corruption_averages(
        table,
        reference=reference,
        reference_errors=reference_errors,
        no_effect=no_effect,
        min_reference_drop=min_reference_drop,
    ).summary


def no_effect_conditions(unchanged: Mapping[Key, bool]) -> set[tuple[str, int]]:
    """The ``(corruption, severity)`` conditions with no effect on the data: every model that has the condition
    gave its clean output there (``unchanged[(model, corruption, severity)]`` True).

    >>> sorted(no_effect_conditions({("a", "saturate", 1): True, ("b", "saturate", 1): True,
    ...                              ("a", "fog", 1): True, ("b", "fog", 1): False}))
    [('saturate', 1)]
    """
    seen: dict[tuple[str, int], bool] = {}
    for (_, c, s), same in unchanged.items():
        if c != CLEAN:
            seen[(c, int(s))] = seen.get((c, int(s)), True) and bool(same)
    return {cell for cell, same in seen.items() if same}


def mean_or_nan(values: Sequence[float]) -> float:
    """The mean of ``values`` as a float, NaN when there are none."""
    return float(np.mean(values)) if len(values) else float("nan")


def corruption_effects(
    correct: Mapping[Key, np.ndarray],
    shift: Mapping[Key, Mapping[str, np.ndarray]] | None = None,
    *,
    exclude: Collection[str] = (),
) -> dict[str, np.ndarray]:
    """Each corruption's per-sample effect relative to clean data, across models and severities, as one vector.

    For every model x severity of corruption c: the per-sample flip against the same model's clean data (+1
    right -> wrong, -1 wrong -> right, 0 unchanged) and, when ``shift`` is given (keyed like ``correct``,
    values from :func:`onnx_geom.geometry.shifts` against the same model's clean data), the change in margin
    and in angle to the true class; each block standardised (zero mean, unit variance; a constant block, such
    as no flip at all, becomes zeros; float32), laid end to end in a fixed (model, severity) order. So two
    corruptions are alike when they flip and move the same samples the same way in the same models; how hard
    a sample is (wrong on clean data already) does not make them alike. Only the (model, severity) pairs that
    every corruption has are used, so the vectors line up; corruptions in ``exclude`` (no effect on the data)
    are left out.
    """
    by_c: dict[str, set[tuple[str, int]]] = {}
    for m, c, s in correct:
        if c != CLEAN and c not in exclude:
            by_c.setdefault(c, set()).add((m, int(s)))
    if not by_c:
        return {}
    common = sorted(set.intersection(*by_c.values()))
    if not common:
        raise DataError("no model x severity is shared by every corruption; run the same sweep for all of them.")
    clean = {}
    for m in {m for m, _ in common}:
        if (m, CLEAN, 0) not in correct:
            raise DataError(f"model {m!r} has no clean unit; flips are measured against its clean data.")
        clean[m] = np.asarray(correct[(m, CLEAN, 0)], bool).astype(np.int8)
    out = {}
    for c in sorted(by_c):
        parts = []
        for m, s in common:
            flip = clean[m] - np.asarray(correct[(m, c, s)], bool).astype(np.int8)  # +1: right -> wrong
            parts.append(standardise(flip).astype(np.float32))
            if shift is not None:
                parts += [standardise(shift[(m, c, s)][q]).astype(np.float32) for q in ("delta_margin", "delta_angle")]
        out[c] = np.concatenate(parts)
    return out


def _group_name(members: Sequence[str]) -> str:
    families = {next((f for f, names in CORRUPTION_FAMILIES.items() if c in names), "other") for c in members}
    return families.pop() if len(families) == 1 else "mixed"


def corruption_redundancy(effects: Mapping[str, np.ndarray], *, threshold: float = 0.5) -> dict[str, Any]:
    """Corruption x corruption similarity, hierarchical clustering and the groups that behave alike.

    >>> e = {"a": np.array([1.0, 2, 3, 4]), "b": np.array([1.0, 2, 3, 5]), "c": np.array([4.0, 1, 3, 1])}
    >>> [g["members"] for g in corruption_redundancy(e)["groups"]]
    [['a', 'b'], ['c']]

    ``effects``: one vector per corruption (from :func:`corruption_effects`). Similarity is the Pearson
    correlation of the vectors; clustering is average linkage on ``1 - similarity`` (scipy), cut at distance
    ``threshold`` (so a group's members correlate by more than ``1 - threshold`` on average). Groups are
    named by their family (noise, blur, weather, digital) when all members share one, else ``mixed``.
    Returns ``corruptions`` (C names), ``similarity`` (C, C), ``linkage`` (C-1, 4) and ``groups`` (dicts
    with ``group``, ``name``, ``members``; largest first).
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    names = sorted(effects)
    if not names:
        return {"corruptions": [], "similarity": np.zeros((0, 0)), "linkage": np.zeros((0, 4)), "groups": []}
    V = np.stack([np.asarray(effects[c], np.float64) for c in names])
    V -= V.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(V, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        S = (V @ V.T) / np.outer(norms, norms)
    S = np.where(np.outer(norms, norms) > 0, S, 0.0)
    np.fill_diagonal(S, 1.0)
    S = np.clip(S, -1.0, 1.0)
    if len(names) == 1:
        return {
            "corruptions": names,
            "similarity": S,
            "linkage": np.zeros((0, 4)),
            "groups": [{"group": 1, "name": _group_name(names), "members": names}],
        }
    Z = linkage(squareform(1.0 - S, checks=False), method="average")
    labels = fcluster(Z, t=threshold, criterion="distance")
    clusters: dict[int, list[str]] = {}
    for name, label in zip(names, labels, strict=True):
        clusters.setdefault(int(label), []).append(name)
    ordered = sorted(clusters.values(), key=lambda ms: (-len(ms), ms[0]))
    groups = [{"group": i + 1, "name": _group_name(ms), "members": ms} for i, ms in enumerate(ordered)]
    return {"corruptions": names, "similarity": S, "linkage": Z, "groups": groups}


def sample_sets(correct: Mapping[Key, np.ndarray], *, reference: str) -> dict[str, Any]:
    """Robust samples, samples fragile to pruning and samples fragile to corruption, with counts and indices.

    >>> c = {("ref", "clean", 0): np.array([1, 1, 0], bool), ("p", "clean", 0): np.array([1, 0, 0], bool),
    ...      ("ref", "fog", 1): np.array([1, 1, 0], bool), ("p", "fog", 1): np.array([1, 0, 1], bool)}
    >>> s = sample_sets(c, reference="ref")
    >>> s["robust"], s["fragile_to_pruning"]["p"], s["fragile_to_corruption"]["ref"]["fog"][1]
    ([0], [1], [])

    - ``robust``: indices correct under every model and every unit (clean and corrupted);
    - ``robust_for[model]``: indices that model gets right in every one of its units;
    - ``fragile_to_pruning[model]`` (every model but the reference): the reference is right and the model is
      wrong on clean data;
    - ``fragile_to_corruption[model][corruption][severity]``: the model is right on clean data and wrong
      under that corruption at that severity;
    - ``counts``: records ``{model, kind, corruption, severity, count}`` of all the above.
    Index lists are sorted Python ints.
    """
    models = sorted({m for m, _, _ in correct})
    if reference not in models:
        raise DataError(f"reference model {reference!r} is not in the study; choose one of {', '.join(models)}.")
    clean = {}
    for m in models:
        if (m, CLEAN, 0) not in correct:
            raise DataError(f"model {m!r} has no clean unit; run the sweep on clean data first.")
        clean[m] = np.asarray(correct[(m, CLEAN, 0)], bool)
    right_in_all = {
        m: np.logical_and.reduce([np.asarray(v, bool) for (mm, _, _), v in correct.items() if mm == m]) for m in models
    }  # per model: right in every one of its units
    robust = np.logical_and.reduce(list(right_in_all.values()))
    robust_for = {m: np.flatnonzero(mask).tolist() for m, mask in right_in_all.items()}
    counts: list[dict[str, Any]] = [
        {"model": "*", "kind": "robust", "corruption": "*", "severity": -1, "count": int(robust.sum())}
    ]
    counts += [
        {"model": m, "kind": "robust", "corruption": "*", "severity": -1, "count": len(robust_for[m])} for m in models
    ]
    pruning = {}
    for m in models:
        if m != reference:
            idx = np.flatnonzero(clean[reference] & ~clean[m])
            pruning[m] = idx.tolist()
            counts.append(
                {"model": m, "kind": "fragile_to_pruning", "corruption": CLEAN, "severity": 0, "count": int(idx.size)}
            )
    corruption: dict[str, dict[str, dict[int, list[int]]]] = {m: {} for m in models}
    for (m, c, s), v in sorted(correct.items(), key=lambda kv: (kv[0][0], kv[0][1], int(kv[0][2]))):
        if c == CLEAN:
            continue
        idx = np.flatnonzero(clean[m] & ~np.asarray(v, bool))
        corruption[m].setdefault(c, {})[int(s)] = idx.tolist()
        counts.append(
            {"model": m, "kind": "fragile_to_corruption", "corruption": c, "severity": int(s), "count": int(idx.size)}
        )
    return {
        "reference": reference,
        "robust": np.flatnonzero(robust).tolist(),
        "robust_for": robust_for,
        "fragile_to_pruning": pruning,
        "fragile_to_corruption": corruption,
        "counts": counts,
    }


def geometry_and_robustness(
    clean: Mapping[str, Mapping[str, np.ndarray]], summary: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Does the clean geometry of a model tell how much it loses under corruption?

    ``clean``: per model its clean geometry (``margin``, ``length``, ``angle_true`` and, when every model has
    it, ``margin_scaled`` (:func:`onnx_geom.geometry.scale_free`), each (N,)); ``summary``: records from
    :func:`robustness_summary`. Returns ``(per_model, correlations)``: per model its clean median margin (and
    scale-free median margin), mean length and mean angle to the true class beside its ``relative_drop``; and
    for each of those, the Spearman rank correlation with the relative drop across the models that have both
    (``spearman`` and its two-sided ``p_value``; NaN with fewer than 3 models). Correlation, not cause: margins
    and lengths are in each model's own feature units; the scale-free margin is in units of the model's
    class-centroid scale.

    >>> clean = {m: {"margin": np.array([v]), "length": np.array([v]), "angle_true": np.array([90.0 - v])}
    ...          for m, v in [("a", 3.0), ("b", 2.0), ("c", 1.0)]}
    >>> summary = [{"model": m, "relative_drop": d} for m, d in [("a", 0.01), ("b", 0.02), ("c", 0.05)]]
    >>> [round(r["spearman"], 3) for r in geometry_and_robustness(clean, summary)[1]]
    [-1.0, -1.0, 1.0]
    """
    from scipy.stats import spearmanr

    drop = {r["model"]: float(r["relative_drop"]) for r in summary}
    summaries = [(n, k, f) for n, k, f in CLEAN_GEOMETRY if all(k in g for g in clean.values())]
    per_model = []
    for model in sorted(clean):
        row: dict[str, Any] = {"model": model}
        for name, key, stat in summaries:
            values = np.asarray(clean[model][key], np.float64)
            values = values[np.isfinite(values)]
            row[name] = float(stat(values)) if values.size else float("nan")
        row["relative_drop"] = drop.get(model, float("nan"))
        per_model.append(row)
    usable = [r for r in per_model if all(np.isfinite(v) for k, v in r.items() if k != "model")]
    correlations = []
    for name, _, _ in summaries:
        x, y = [r[name] for r in usable], [r["relative_drop"] for r in usable]
        rho, p = (float("nan"), float("nan"))
        if len(usable) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
            result = spearmanr(x, y)
            rho, p = float(result.statistic), float(result.pvalue)
        correlations.append({"clean_geometry": name, "spearman": rho, "p_value": p, "models": len(usable)})
    return per_model, correlations
