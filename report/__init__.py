"""One self-contained HTML report of a study (installed as ``onnx_geom.report``): findings, evaluation, the model
map with its tree, geometry and attribution figures, robust and fragile samples, every table; the figures are the
viewer's headless screenshots, embedded as data URIs.

>>> from onnx_geom.report import write_report
>>> write_report("onnx-geom-demo/study", "report.html")        # doctest: +SKIP
ReportResult(path=PosixPath('report.html'), bytes=..., figures=..., ...)

The import graph is one way: ``onnx_geom.cli`` -> ``onnx_geom.report`` -> ``onnx_geom.viewers`` -> the core. The
report reads the study and never writes it; the output goes through :func:`onnx_geom._files.check_output` (never
inside a study, never over the study) and is written whole (:func:`onnx_geom._files.replacing`).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ReportResult", "build_report", "write_report"]


@dataclass
class ReportResult:
    """What :func:`write_report` wrote: the path, its size in bytes, how many figures, the findings (one line of
    text each), the notes (figures left out, and why) and whether the study's stored comparison was used."""

    path: Path
    bytes: int
    figures: int
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stored_comparison: bool = True


def _meta(study: Any, cmp: Any, stored: bool) -> dict[str, str]:
    from onnx_geom import __version__

    attrs = dict(study.attrs)
    dataset = attrs.get("dataset") or {}
    n = int(dataset.get("n") or len(study.labels))
    corruptions = sorted({r["corruption"] for r in cmp.accuracy if r["corruption"] != "clean"})
    severities = sorted({int(r["severity"]) for r in cmp.accuracy if r["corruption"] != "clean"})
    conditions = f"{len(corruptions)} corruptions x {len(severities)} severities" if corruptions else "clean data only"
    name = str(dataset.get("name") or Path(str(study.path)).name)
    line = (
        f"study {study.path} · {n:,} samples · {len(cmp.models)} models · {conditions} · "
        f"reference {cmp.reference} · map distance: {cmp.distance_name}"
    )
    scope = (
        f"Scope: one data set ({name}), {n:,} test samples, {len(cmp.models)} models; correlations across models "
        "describe, they do not explain."
    )
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    source = "the comparison stored in the study" if stored else "a comparison computed for this report"
    footer = (
        f"Made by onnx-geom {__version__} report on {now} from {source} (parameters: "
        + ", ".join(f"{k}={v}" for k, v in cmp.parameters.items() if k != "reference_errors")
        + "). Self-contained: no network, no external file."
    )
    return {"dataset": name, "line": line, "scope": scope, "footer": footer, "n": str(n)}


def build_report(
    study: Any,
    *,
    reference: str | None = None,
    comparison: Any = None,
    data: Any = None,
    services: Any = None,
    figures: bool = True,
) -> tuple[str, ReportResult]:
    """The report's HTML text and what it holds (``path`` is unset: see :func:`write_report`).

    ``study``: a study folder or an open :class:`~onnx_geom.store.Study` (only read); ``comparison``: one at hand
    (else the stored one while fresh, else computed: :func:`onnx_geom.frames.study_comparison`); ``data``: the
    :class:`~onnx_geom.viewers.ViewerData` of the study when the caller has it; ``services``: what the attribution
    panel runs the models with (default: the probe files the study names); ``figures=False`` leaves the viewer's
    figures out (thumbnails stay).
    """
    from onnx_geom.frames import study_comparison
    from onnx_geom.report.document import build_page
    from onnx_geom.report.figures import Rendered, choose, render_figures, thumbnails
    from onnx_geom.report.findings import findings
    from onnx_geom.store import Study

    if isinstance(study, (str, os.PathLike)):
        study = Study.open(study)
    stored = True
    if comparison is None:
        comparison, stored = study_comparison(study, reference=reference)
    cmp = comparison
    meta = _meta(study, cmp, stored)
    found = findings(cmp, n_samples=int(meta["n"]))
    choice = choose(cmp)
    rendered = Rendered()
    if figures:
        from onnx_geom.errors import OnnxGeomError
        from onnx_geom.viewers import ViewerData

        try:
            data = data if data is not None else ViewerData.from_study(study, comparison=cmp)
            rendered = render_figures(data, cmp, choice, services=services)
        except OnnxGeomError as error:
            rendered.notes.append(f"the viewer's figures are left out: {error}")
    labels = study.labels
    class_names = [str(c) for c in ((study.attrs.get("dataset") or {}).get("class_names") or [])]
    try:
        images = study.images
    except Exception:  # a study without images: no thumbnails
        images = None
    total = len(cmp.models)
    robust = thumbnails(images, labels, class_names, choice.robust, lambda k: f"right under {k} of {total}",
                        lambda i, k: f"sample #{i}: right in every condition under {k} of {total} models")  # fmt: skip
    fragile = thumbnails(images, labels, class_names, choice.fragile, lambda k: f"flips in {k} of {choice.units:,}",
                         lambda i, k: f"sample #{i}: right on clean data and wrong under {k} of the {choice.units:,} "
                         "(model, corruption, severity) units")  # fmt: skip
    text = build_page(cmp=cmp, meta=meta, found=found, choice=choice, rendered=rendered, robust=robust,
                      fragile=fragile)  # fmt: skip
    result = ReportResult(
        path=Path(),
        bytes=len(text.encode("utf-8")),
        figures=len(rendered.figures),
        findings=[f.plain() for f in found],
        notes=list(rendered.notes),
        stored_comparison=stored,
    )
    return text, result


def write_report(
    study: Any,
    out: str | os.PathLike,
    *,
    reference: str | None = None,
    comparison: Any = None,
    data: Any = None,
    services: Any = None,
    figures: bool = True,
) -> ReportResult:
    """Write the report of ``study`` to ``out`` (one self-contained HTML file) and return what it holds.

    ``out`` is checked before anything is computed (:func:`onnx_geom._files.check_output`: not inside a study or
    any Zarr store, not the study itself, a file name, a writable folder; missing folders are created) and
    written whole: a reader sees the old file or the new one. The other arguments: see :func:`build_report`.
    """
    from onnx_geom._files import check_output, output_errors, replacing

    inputs = (study,) if isinstance(study, (str, os.PathLike)) else (study.path,)
    path = check_output(out, inputs=inputs)
    text, result = build_report(study, reference=reference, comparison=comparison, data=data, services=services,
                                figures=figures)  # fmt: skip
    with output_errors(path), replacing(path) as tmp:
        tmp.write_bytes(text.encode("utf-8"))
    result.path = path
    return result
