"""A study's tables as pandas DataFrames in one call (``onnx_geom.tables(study)``), and the study's comparison.

>>> frames = tables("onnx-geom-demo/study")                    # doctest: +SKIP
>>> frames["summary"].sort_values("mce").head()                # doctest: +SKIP

The tables are the ones ``onnx-geom compare -o DIR`` writes as CSV (same names, same columns), from the
comparison stored in the study while it is fresh (else computed, and not stored: reading a study never writes
it), plus ``metrics``, the per-unit summary ``onnx-geom metrics`` prints, and, when asked for, ``samples``,
the per-sample table of ``onnx-geom metrics --csv`` (one row per sample and unit). pandas is optional: without
it, :func:`tables` is one sentence saying how to install it.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from onnx_geom.errors import DataError

__all__ = ["study_comparison", "tables"]


def _open(study) -> Any:
    from onnx_geom.store import Study

    return Study.open(study) if isinstance(study, (str, os.PathLike)) else study


def study_comparison(study, *, reference: str | None = None) -> tuple[Any, bool]:
    """The comparison of a study and whether it was the stored one: the comparison ``onnx-geom compare`` (or
    ``onnx-geom demo``) stored in the study, when it is fresh and was made against ``reference`` (default: the
    model :func:`~onnx_geom.comparison.compare_study` would choose), else computed with the default parameters
    (not stored). ``study``: a path or an open :class:`~onnx_geom.store.Study`."""
    from onnx_geom.comparison import compare_study, default_reference, model_tags
    from onnx_geom.errors import OnnxGeomError

    study = _open(study)
    wanted = [reference]
    if reference is None:  # the stored one may name the default reference explicitly (the demo's does)
        models = study.models
        if models:
            wanted.append(default_reference(models, model_tags(study, models)))
    for ref in wanted:
        try:
            stored = study.read_comparison(reference=ref)
        except OnnxGeomError:  # a damaged comparison group: compute instead (`onnx-geom check` reports it)
            stored = None
        if stored is not None:
            return stored, True
    return compare_study(study, reference=reference), False


def _pandas():
    try:
        return importlib.import_module("pandas")
    except ImportError:
        raise DataError(
            "the tables as DataFrames need pandas, which is not installed; `pip install pandas` "
            "(or `pip install 'onnx-geom[notebook]'`)."
        ) from None


def tables(study, *, reference: str | None = None, samples: bool = False, comparison=None) -> dict[str, Any]:
    """Every table of a study as a pandas DataFrame, by name: the comparison's tables (``summary``,
    ``accuracy``, ``pairs``, ``geometry``, ``correlations``, ``corruptions``, ``corruption_errors``,
    ``groups``, ``redundancy``, ``distance``, ``embedding``, ``mst``, ``sample_counts``: the columns of the CSV
    files of ``onnx-geom compare -o``, docs/geometry.md), ``metrics`` (per unit: accuracy and mean/median
    length, angle and margin) and, with ``samples=True``, ``samples`` (one row per sample and unit: the
    columns of :data:`onnx_geom.metrics.SAMPLE_COLUMNS`; large for large studies).

    ``study``: a study folder or an open :class:`~onnx_geom.store.Study`; ``comparison``: one already at hand
    (else :func:`study_comparison`). Needs pandas (one sentence when it is missing) and the study's geometry
    (``onnx-geom metrics``).
    """
    pd = _pandas()
    from onnx_geom.metrics import metric_summaries, sample_records

    study = _open(study)
    if comparison is None:
        comparison, _ = study_comparison(study, reference=reference)
    out = {name: pd.DataFrame.from_records(records) for name, records in comparison.tables().items()}
    out["metrics"] = pd.DataFrame.from_records(metric_summaries(study))
    if samples:
        parts = [pd.DataFrame(columns) for columns in sample_records(study)]
        out["samples"] = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return out
