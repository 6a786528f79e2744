"""Corruption errors after Hendrycks & Dietterich (ICLR 2019): the averages over corruptions, each naming the
corruptions it used and those it left out, with the reason.

>>> acc = {("ref", "clean", 0): 0.9, ("ref", "fog", 1): 0.6, ("m", "clean", 0): 0.95, ("m", "fog", 1): 0.8}
>>> table = [{"model": m, "corruption": c, "severity": s, "accuracy": a} for (m, c, s), a in acc.items()]
>>> res = corruption_averages(table, reference="ref")
>>> [round(r["mce"], 3) for r in res.summary], res.averages["mce"]["used"]
([0.5, 1.0], ['fog'])

- **Mean corruption accuracy**: the mean accuracy over every corruption x severity with an effect on the data.
- **mCE**: ``CE_c = sum_s E(f, c, s) / sum_s E(ref, c, s)``, averaged over the 15 benchmark corruptions
  (:data:`~onnx_geom.corruptions.BENCHMARK_CORRUPTIONS`); **extra mCE** the same over the corruptions outside
  them (the four held-out extras: speckle noise, gaussian blur, spatter, saturate).
- **Relative mCE**: ``sum_s (E(f, c, s) - E(f, clean)) / sum_s (E(ref, c, s) - E(ref, clean))`` over the 15; a
  corruption whose reference degradation ``(1/S) sum_s (E(ref, c, s) - E(ref, clean))`` is below a minimum
  (default 1 percentage point) is left out, and the average is undefined when fewer than 5 corruptions remain.

``E`` is the error (1 - accuracy); the reference is a model of the study or published errors per corruption x
severity (:func:`read_reference_errors`). A condition with no effect on the data (every model's output equals
its clean output) is left out of every sum.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom.conditions import CLEAN
from onnx_geom.corruptions._common import BENCHMARK_CORRUPTIONS, CORRUPTIONS
from onnx_geom.errors import DataError

__all__ = [
    "AVERAGES",
    "CORRUPTION_FAMILIES",
    "MIN_CORRUPTIONS",
    "MIN_REFERENCE_DROP",
    "Averages",
    "check_reference_errors",
    "corruption_averages",
    "exclusion_line",
    "read_reference_errors",
]

#: The averages over corruptions and what each is taken over.
AVERAGES = {
    "mean_corruption_accuracy": "every corruption of the study, each severity",
    "mce": "the 15 benchmark corruptions of Hendrycks & Dietterich",
    "mce_extra": "the corruptions outside the 15 (the held-out extras)",
    "relative_mce": "the 15 benchmark corruptions of Hendrycks & Dietterich",
}
#: A corruption whose reference loses less than this (error fraction, mean over severities) has no relative CE.
MIN_REFERENCE_DROP = 0.01
#: Relative mCE is undefined with fewer corruptions than this.
MIN_CORRUPTIONS = 5

#: The four families of Hendrycks & Dietterich (2019), used to name groups of corruptions.
CORRUPTION_FAMILIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "frost", "fog", "brightness", "spatter"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
}

USED = "used"
NOT_IN_STUDY = "not in the study"
NO_EFFECT = "no effect on this data"
NO_ERROR = "the reference makes no error"
BELOW_MINIMUM = "the reference loses less than the minimum"
NOT_IN_REFERENCE = "not in the reference errors"
NOT_IN_REFERENCE_MODEL = "the reference has no unit of it"
OUT_OF_SCOPE = "-"

Cell = tuple[str, int]


@dataclass
class Averages:
    """What :func:`corruption_averages` found.

    ``summary``: per model ``clean_accuracy``, ``mean_corruption_accuracy``, ``relative_drop`` and, with a
    reference, ``mce``, ``mce_extra``, ``relative_mce``. ``averages``: per average (:data:`AVERAGES`) the
    corruptions ``used``, those ``excluded`` (``{corruption, reason}``), the no-effect severities left out of
    a used corruption's sums (``left_out``), and ``undefined`` (why its value is NaN, else ""). ``corruptions``:
    one row per corruption with its status in each average (``used``, the reason, or ``-`` outside its scope).
    ``errors``: per model x corruption its mean error and, with a reference, ``ce`` and ``relative_ce``.
    """

    summary: list[dict[str, Any]]
    averages: dict[str, dict[str, Any]]
    corruptions: list[dict[str, Any]]
    errors: list[dict[str, Any]]


def _family(name: str) -> str:
    return next((f for f, names in CORRUPTION_FAMILIES.items() if name in names), "other")


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def corruption_averages(
    table: Sequence[Mapping[str, Any]],
    *,
    reference: str | None = None,
    reference_errors: Mapping[Cell, float] | None = None,
    no_effect: Collection[Cell] = (),
    min_reference_drop: float = MIN_REFERENCE_DROP,
    min_corruptions: int = MIN_CORRUPTIONS,
) -> Averages:
    """Every average over corruptions, with the corruptions it used and those it left out (see the module).

    ``table``: records ``{model, corruption, severity, accuracy}`` (:func:`onnx_geom.robustness.accuracy_table`).
    ``reference``: a model of the table; ``reference_errors``: ``{(corruption, severity): error}`` (fractions,
    ``("clean", 0)`` for the clean error) used instead of the model's for mCE and relative mCE.
    ``no_effect``: the ``(corruption, severity)`` conditions with no effect on the data. A model missing a
    unit is compared on the severities it has.
    """
    acc: dict[str, dict[Cell, float]] = {}
    for r in table:
        acc.setdefault(r["model"], {})[(r["corruption"], int(r["severity"]))] = float(r["accuracy"])
    if reference is not None and reference not in acc:
        raise DataError(f"reference model {reference!r} is not in the table; choose one of {', '.join(sorted(acc))}.")
    ref: dict[Cell, float] | None = None
    if reference_errors is not None:
        ref = {(c, int(s)): float(e) for (c, s), e in reference_errors.items()}
    elif reference is not None:
        ref = {cell: 1.0 - a for cell, a in acc[reference].items()}
    skip = {(c, int(s)) for c, s in no_effect}
    present: dict[str, set[int]] = {}
    for cells in acc.values():
        for c, s in cells:
            if c != CLEAN:
                present.setdefault(c, set()).add(s)
    names = list(CORRUPTIONS) + sorted(set(present) - set(CORRUPTIONS))
    missing = NOT_IN_REFERENCE if reference_errors is not None else NOT_IN_REFERENCE_MODEL
    plan = [_plan(c, sorted(present.get(c, ())), skip, ref, min_reference_drop, missing) for c in names]
    averages = _averages(plan, ref, min_corruptions)
    summary, errors = [], []
    for model in sorted(acc):
        row, per_corruption = _model_values(acc[model], plan, ref, averages)
        summary.append({"model": model, **row})
        errors += [{"model": model, **e} for e in per_corruption]
    if ref is None:
        for name in ("mce", "mce_extra", "relative_mce"):
            averages.pop(name)
    corruptions = [{k: v for k, v in p.items() if not k.startswith("_")} for p in plan]
    return Averages(summary, averages, corruptions, errors)


def _plan(
    c: str, severities: list[int], skip: set[Cell], ref: dict[Cell, float] | None, minimum: float, missing: str
) -> dict[str, Any]:
    """One corruption's row: its severities, those without effect, and its status in each average."""
    effect = [s for s in severities if (c, s) not in skip]
    benchmark = c in BENCHMARK_CORRUPTIONS
    row: dict[str, Any] = {
        "corruption": c,
        "family": _family(c),
        "benchmark": benchmark,
        "severities": severities,
        "no_effect_severities": [s for s in severities if (c, s) in skip],
        "reference_error": float("nan"),
        "reference_drop": float("nan"),
        "_effect": effect,
        "_ref_severities": [],
    }
    common = NOT_IN_STUDY if not severities else NO_EFFECT if not effect else USED
    row["mean_corruption_accuracy"] = common
    if ref is None:
        row.update(mce=OUT_OF_SCOPE, mce_extra=OUT_OF_SCOPE, relative_mce=OUT_OF_SCOPE)
        return row
    ref_sevs = [s for s in effect if (c, s) in ref]
    row["_ref_severities"] = ref_sevs
    if common == USED and not ref_sevs:
        common = missing
    mce, relative = common, common
    if common == USED:
        errors = [ref[(c, s)] for s in ref_sevs]
        row["reference_error"] = float(np.mean(errors))
        mce = USED if sum(errors) > 0 else NO_ERROR
        if (CLEAN, 0) in ref:
            drop = float(np.mean([e - ref[(CLEAN, 0)] for e in errors]))
            row["reference_drop"] = drop
            relative = USED if drop >= minimum and drop > 0 else BELOW_MINIMUM
    row["mce"], row["mce_extra"] = (mce, OUT_OF_SCOPE) if benchmark else (OUT_OF_SCOPE, mce)
    row["relative_mce"] = relative if benchmark else OUT_OF_SCOPE
    return row


def _averages(plan: list[dict[str, Any]], ref: dict[Cell, float] | None, min_corruptions: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, over in AVERAGES.items():
        used = [p["corruption"] for p in plan if p[name] == USED]
        entry: dict[str, Any] = {
            "over": over,
            "used": used,
            "excluded": [
                {"corruption": p["corruption"], "reason": p[name]} for p in plan if p[name] not in (USED, OUT_OF_SCOPE)
            ],
            "left_out": [
                {"corruption": p["corruption"], "severity": s, "reason": NO_EFFECT}
                for p in plan
                if p[name] == USED
                for s in p["no_effect_severities"]
            ],
            "undefined": "",
        }
        if not used:
            entry["undefined"] = "no corruption remains"
        out[name] = entry
    rel = out["relative_mce"]
    if ref is not None and (CLEAN, 0) not in ref:
        rel["undefined"] = "the reference errors have no clean row (clean,0)"
    elif 0 < len(rel["used"]) < min_corruptions:
        rel["undefined"] = f"only {len(rel['used'])} corruptions remain; relative mCE needs at least {min_corruptions}"
    return out


def _model_values(
    cells: Mapping[Cell, float], plan: list[dict[str, Any]], ref: dict[Cell, float] | None, averages: dict[str, Any]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    clean = cells.get((CLEAN, 0), float("nan"))
    err_clean = 1.0 - clean
    corrupted = [cells[(p["corruption"], s)] for p in plan if p["mean_corruption_accuracy"] == USED
                 for s in p["_effect"] if (p["corruption"], s) in cells]  # fmt: skip
    mean = _mean(corrupted)
    row: dict[str, float] = {
        "clean_accuracy": clean,
        "mean_corruption_accuracy": mean,
        "relative_drop": (clean - mean) / clean if clean > 0 else float("nan"),
    }
    ce: dict[str, list[float]] = {"mce": [], "mce_extra": [], "relative_mce": []}
    per_corruption = []
    for p in plan:
        c = p["corruption"]
        if p["mean_corruption_accuracy"] != USED:
            continue
        have = [s for s in p["_effect"] if (c, s) in cells]
        record: dict[str, Any] = {"corruption": c, "error": _mean([1.0 - cells[(c, s)] for s in have])}
        if ref is not None:
            sevs = [s for s in p["_ref_severities"] if (c, s) in cells]
            err = np.array([1.0 - cells[(c, s)] for s in sevs])
            err_ref = np.array([ref[(c, s)] for s in sevs])
            record["ce"] = float(err.sum() / err_ref.sum()) if sevs and err_ref.sum() > 0 else float("nan")
            drop_ref = float((err_ref - ref.get((CLEAN, 0), np.nan)).sum())
            record["relative_ce"] = float((err - err_clean).sum() / drop_ref) if sevs and drop_ref > 0 else float("nan")
            for name, key in (("mce", "ce"), ("mce_extra", "ce"), ("relative_mce", "relative_ce")):
                if p[name] == USED and math.isfinite(record[key]):
                    ce[name].append(record[key])
        per_corruption.append(record)
    if ref is not None:
        for name, values in ce.items():
            row[name] = float("nan") if averages[name]["undefined"] else _mean(values)
    return row, per_corruption


def exclusion_line(averages: Mapping[str, Mapping[str, Any]]) -> str:
    """One line naming every corruption left out of an average, grouped by reason, with the averages it is
    left out of; "" when none is.

    >>> exclusion_line({"mce": {"excluded": [{"corruption": "fog", "reason": "no effect on this data"}]}})
    'excluded: fog: no effect on this data (mCE)'
    """
    labels = {"mean_corruption_accuracy": "mean accuracy", "mce": "mCE", "mce_extra": "extra mCE",
              "relative_mce": "relative mCE"}  # fmt: skip
    by_reason: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    where: dict[tuple[str, str], list[str]] = {}
    for name, entry in averages.items():
        for e in entry.get("excluded", []):
            where.setdefault((e["reason"], e["corruption"]), []).append(labels.get(name, name))
    for (reason, corruption), names in where.items():
        by_reason.setdefault((reason, tuple(names)), []).append(corruption)
    parts = []
    for (reason, averages_of), corruptions in by_reason.items():
        parts.append(f"{', '.join(corruptions)}: {reason} ({', '.join(averages_of)})")
    return "excluded: " + "; ".join(parts) if parts else ""


def read_reference_errors(path: str | os.PathLike) -> dict[Cell, float]:
    """Published errors of a reference model, per corruption x severity, from a CSV file.

    Columns ``corruption,severity,error`` with ``error`` a fraction in [0, 1], or ``error_percent`` in
    [0, 100] instead of ``error``; other columns are ignored. A row ``clean,0`` gives the clean error (needed
    for relative mCE). Names are those of :data:`~onnx_geom.corruptions.CORRUPTIONS`. Raises
    :class:`DataError` with one sentence on anything else.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(
            f"cannot read the reference errors {path} ({getattr(error, 'strerror', None) or error})."
        ) from None
    rows = list(csv.DictReader(text.splitlines()))
    columns = set(rows[0]) if rows else set(next(csv.reader(text.splitlines()), []))
    column = "error" if "error" in columns else "error_percent" if "error_percent" in columns else None
    missing = [c for c in ("corruption", "severity") if c not in columns] + (["error"] if column is None else [])
    if missing:
        raise DataError(
            f"the reference errors {path} lack the column(s) {', '.join(missing)}; "
            "give corruption,severity,error (error a fraction, or error_percent in percent)."
        )
    scale = 100.0 if column == "error_percent" else 1.0
    out: dict[Cell, float] = {}
    for line, r in enumerate(rows, start=2):
        name = (r.get("corruption") or "").strip()
        if name != CLEAN and name not in CORRUPTIONS:
            raise DataError(
                f"line {line} of {path}: unknown corruption {name!r}; use clean or one of {', '.join(CORRUPTIONS)}."
            )
        try:
            severity, value = int(str(r.get("severity")).strip()), float(str(r.get(column)).strip()) / scale
        except ValueError:
            raise DataError(f"line {line} of {path}: the severity and the {column} must be numbers.") from None
        if (name == CLEAN) != (severity == 0) or not 0 <= severity <= 5:
            raise DataError(f"line {line} of {path}: severity {severity} of {name}; clean is 0, corruptions 1 to 5.")
        if not 0.0 <= value <= 1.0:
            hint = "[0, 100] percent" if scale == 100 else "[0, 1]; give fractions, or name the column error_percent"
            raise DataError(f"line {line} of {path}: the error of {name} {severity} is outside {hint}.")
        if (name, severity) in out:
            raise DataError(f"line {line} of {path}: {name} severity {severity} is given twice.")
        out[(name, severity)] = value
    if not any(c != CLEAN for c, _ in out):
        raise DataError(f"the reference errors {path} give no corruption.")
    return out


def check_reference_errors(errors: Mapping[Cell, float], present: Mapping[str, Collection[int]]) -> None:
    """Refuse reference errors that give a corruption of the study without all the study's severities of it.

    ``present``: per corruption of the study, its severities.
    """
    for c, severities in present.items():
        given = {s for cc, s in errors if cc == c}
        lacking = sorted(set(severities) - given)
        if given and lacking:
            raise DataError(
                f"the reference errors give {c} without severity {', '.join(map(str, lacking))}, which the study "
                "has; give every severity of it (or none, to leave it out)."
            )
