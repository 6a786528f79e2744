"""Study-level geometry: compute every unit's geometry group, summarise it, list it per sample.

>>> from onnx_geom.store import Study                                   # doctest: +SKIP
>>> rows = compute_metrics(Study.open("runs/cifar", mode="a"))         # doctest: +SKIP
>>> rows[0]["accuracy"], rows[0]["mean_margin"]                        # doctest: +SKIP

The comparison of models and corruptions is :mod:`onnx_geom.comparison`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from onnx_geom.conditions import CLEAN
from onnx_geom.errors import DataError, StudyError, StudyLockedError
from onnx_geom.geometry import GEOMETRY_ARRAYS, iter_geometry
from onnx_geom.store import UnitAlreadyComplete

__all__ = [
    "SAMPLE_COLUMNS",
    "compute_metrics",
    "metric_summaries",
    "sample_records",
    "summarise_unit",
]

#: Columns of the per-sample table (``onnx-geom metrics --csv``); the per-class cosines stay in the study.
#: ``length`` is ``||f||``, the angles are in degrees, and margin: signed distance from f to the nearest pairwise
#: decision boundary between the true class and another class (negative when misclassified); for a misclassified
#: sample it is the distance to the nearest such boundary, a lower bound on the distance to the true class's region.
SAMPLE_COLUMNS = (
    "model",
    "corruption",
    "severity",
    "sample",
    "label",
    "pred",
    "correct",
    "length",
    "angle_true",
    "angle_pred",
    "margin",
)

Progress = Callable[[Any, int, int], None]


def _unit_name(unit) -> str:
    return f"{unit.model}/{unit.corruption}/{unit.severity}"


def compute_metrics(study, *, progress: Progress | None = None, chunk: int = 4096) -> list[dict[str, Any]]:
    """Write the geometry group of every complete unit that lacks one; return the summaries of all units.

    ``study``: an :class:`onnx_geom.store.Study` opened for writing. Each unit's group is streamed, a chunk of
    rows at a time (memory flat in N: the features are read and the geometry written chunk by chunk), through
    ``study.writing(unit, ..., group="geometry")``, marked complete only at the end, so an interrupted run resumes where it stopped and a
    unit whose geometry is complete is never recomputed. ``progress(unit, done, total)`` is called after each
    unit computed. Two processes may run it on the same study: a unit another process is writing (or has just
    completed) is left to that process. Returns :func:`metric_summaries` of the study afterwards.
    """
    labels = np.asarray(study.labels)
    todo = [u for u in study.units() if not study.is_complete(u, group="geometry")]
    heads: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for done, unit in enumerate(todo, start=1):
        if unit.model not in heads:
            heads[unit.model] = study.head(unit.model)
        W, b = heads[unit.model]
        features = _features(study, unit)
        try:
            parts = iter_geometry(features, W, b, labels, chunk=chunk)
        except DataError as error:
            raise StudyError(f"unit {_unit_name(unit)}: {error}") from None
        n, k = int(features.shape[0]), int(np.shape(W)[0])
        spec = {name: ((n, k) if name == "cos" else (n,), np.dtype(t).str) for name, t in GEOMETRY_ARRAYS.items()}
        # another process writing (or having written) this unit's geometry keeps it
        with (
            contextlib.suppress(StudyLockedError, UnitAlreadyComplete),
            study.writing(unit, spec, group="geometry") as w,
        ):
            for _rows, part in parts:  # streamed: memory is one chunk of rows, whatever N
                w.append(**part)
        if progress is not None:
            progress(unit, done, len(todo))
    return metric_summaries(study)


def _features(study, unit):
    """A unit's features, lazy when the study can (read a chunk of rows at a time), else whole."""
    lazy = getattr(study, "array", None)
    return lazy(unit, "features") if lazy is not None else np.asarray(study.read(unit, "features"))


def summarise_unit(unit, geom: dict[str, np.ndarray]) -> dict[str, Any]:
    """One summary record of a unit's geometry: accuracy and mean/median length, angle and margin.

    ``nonfinite`` counts the samples the model gave NaN or infinite features for: they count as wrong in the
    accuracy and are left out of the means and medians.

    >>> from collections import namedtuple
    >>> U = namedtuple("U", "model corruption severity")
    >>> g = {"correct": np.array([1, 0, 1], bool), "length": np.array([1.0, 2, 6]),
    ...      "angle_true": np.array([10.0, 80, 30]), "margin": np.array([0.5, -1, 2])}
    >>> r = summarise_unit(U("m", "fog", 2), g); r["accuracy"], r["median_length"], r["mean_margin"]
    (0.6666666666666666, 2.0, 0.5)
    """
    broken = ~np.isfinite(np.asarray(geom["length"], np.float64))  # samples the model gave NaN or inf for
    row: dict[str, Any] = {
        "model": unit.model,
        "corruption": unit.corruption,
        "severity": int(unit.severity),
        "n": int(np.size(geom["correct"])),
        "accuracy": float(np.mean(np.asarray(geom["correct"], bool))),
        "nonfinite": int(broken.sum()),
    }
    for key, name in (("length", "length"), ("angle_true", "angle"), ("margin", "margin")):
        values = np.asarray(geom[key], np.float64)[~broken]
        row[f"mean_{name}"] = float(np.mean(values)) if values.size else float("nan")
        row[f"median_{name}"] = float(np.median(values)) if values.size else float("nan")
    return row


def _sort_key(unit) -> tuple:
    return (unit.model, unit.corruption != CLEAN, unit.corruption, int(unit.severity))


def metric_summaries(study) -> list[dict[str, Any]]:
    """Summary records (:func:`summarise_unit`) of every unit whose geometry is complete, sorted."""
    rows = []
    for unit in sorted(study.units(group="geometry"), key=_sort_key):
        keys = ("correct", "length", "angle_true", "margin")
        arrays = study.read_many(unit, [f"geometry/{key}" for key in keys])
        rows.append(summarise_unit(unit, {key: arrays[f"geometry/{key}"] for key in keys}))
    return rows


def sample_records(study) -> Iterator[dict[str, np.ndarray]]:
    """The per-sample table, one unit at a time: dicts of equal-length columns named :data:`SAMPLE_COLUMNS`.

    Streaming keeps memory at one unit whatever the size of the study.
    """
    labels = np.asarray(study.labels)
    for unit in sorted(study.units(group="geometry"), key=_sort_key):
        n = labels.shape[0]
        columns: dict[str, np.ndarray] = {
            "model": np.full(n, unit.model, dtype=object),
            "corruption": np.full(n, unit.corruption, dtype=object),
            "severity": np.full(n, int(unit.severity), dtype=np.int64),
            "sample": np.arange(n, dtype=np.int64),
            "label": labels.astype(np.int64),
        }
        arrays = study.read_many(unit, [f"geometry/{key}" for key in SAMPLE_COLUMNS[5:]])
        for key in SAMPLE_COLUMNS[5:]:
            columns[key] = np.asarray(arrays[f"geometry/{key}"])
        yield columns
