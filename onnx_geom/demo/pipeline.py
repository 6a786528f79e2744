"""The whole pipeline on the bundled zoo: probe -> sweep -> metrics -> compare, resumable in one folder.

>>> from onnx_geom.demo.pipeline import run_demo
>>> result = run_demo("onnx-geom-demo")                                  # doctest: +SKIP
>>> result.study, result.comparison.models[:2]                           # doctest: +SKIP
(PosixPath('onnx-geom-demo/study'), ['dense', 'gmp_80'])

Layout of the output folder::

    DIR/probes/<model>.probe.onnx    one probe per zoo model (re-made only when the zoo model changed)
    DIR/study/                       the study (Zarr): features, logits and geometry per unit, the comparison
    DIR/compare/                     the comparison tables (CSV + comparison.json)
    DIR/report.html                  the report (written by ``onnx-geom demo``: ``onnx_geom.report`` sits above the
                                     viewer, which the core never imports)

Running it again reuses every complete piece; the report and the viewer (``onnx-geom demo``) are the CLI's part. The folder is
checked before anything is made (:func:`onnx_geom._files.check_output`): not inside a study or another Zarr store,
not a study itself, and a ``study`` already inside it must be the demo's own.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnx_geom.demo import load_manifest, load_test_split, zoo_models
from onnx_geom.errors import DataError

__all__ = ["DemoResult", "check_folder", "nearest_models", "run_demo"]

#: progress(stage, done, total): stage is "probe", "sweep" (images), "metrics" (units).
Progress = Callable[[str, int, int], None]

#: The name of the demo's data set, as its study records it.
DATASET_NAME = "scikit-learn digits, 32x32"


@dataclass
class DemoResult:
    """What :func:`run_demo` made: paths, the sweep summary, metric rows, the comparison, seconds per stage."""

    folder: Path
    study: Path
    probes: dict[str, Path]
    sweep: dict[str, Any]
    metrics: list[dict[str, Any]]
    comparison: Any
    seconds: dict[str, float] = field(default_factory=dict)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _probe_zoo(entries: Sequence[dict[str, Any]], folder: Path, progress: Progress) -> dict[str, Path]:
    """Probe each zoo model into ``folder`` unless a probe of the same source file is already there."""
    from onnx_geom.probe import probe, save_probe
    from onnx_geom.probe_info import read_probe_info

    models = zoo_models()
    folder.mkdir(parents=True, exist_ok=True)
    probes = {}
    for done, entry in enumerate(entries, 1):
        name, source = entry["name"], models[entry["name"]]
        target = folder / f"{name}.probe.onnx"
        try:
            fresh = target.is_file() and read_probe_info(target).source_sha256 == _sha256(source)
        except Exception:  # a damaged probe from an earlier run is simply made again
            fresh = False
        if not fresh:
            size = tuple(entry["input_shape"][:2]) if entry.get("layout") == "flat" else None
            save_probe(probe(source, image_size=size), target)
        probes[name] = target
        progress("probe", done, len(entries))
    return probes


def _choose(names: Sequence[str] | None) -> list[dict[str, Any]]:
    entries = load_manifest()
    if names is None:
        return entries
    known = {e["name"]: e for e in entries}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise DataError(f"the zoo has no model {', '.join(map(repr, unknown))}; it has {', '.join(known)}.")
    return [known[n] for n in dict.fromkeys(names)]


def run_demo(
    folder: str | Path,
    *,
    models: Sequence[str] | None = None,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    limit: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> DemoResult:
    """Probe the zoo, sweep it over clean + corruptions x severities, compute geometry, compare; all in ``folder``.

    ``models`` picks zoo models by name (default: all), ``corruptions`` defaults to all 19, ``limit`` keeps the
    first N test images. Complete work from an earlier run in the same folder is reused.
    """
    from onnx_geom.comparison import compare_study
    from onnx_geom.datasets import Dataset
    from onnx_geom.metrics import compute_metrics
    from onnx_geom.store import Study
    from onnx_geom.sweep import sweep

    report = progress or (lambda stage, done, total: None)
    folder = check_folder(folder)
    entries = _choose(models)
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    probes = _probe_zoo(entries, folder / "probes", report)
    seconds["probe"] = time.perf_counter() - start

    images, labels = load_test_split()
    data = Dataset(images, labels, name=DATASET_NAME, class_names=tuple(str(d) for d in range(10)))
    planned = {"images": 0}

    def on_sweep(event: str, unit: Any, count: int) -> None:
        if event == "plan_images":
            planned["images"], planned["done"] = count, 0
        elif event == "images":
            planned["done"] += count
            report("sweep", planned["done"], planned["images"])

    start = time.perf_counter()
    study_path = folder / "study"
    summary = sweep(probes, data, study_path, corruptions=corruptions, severities=severities, limit=limit,
                    seed=seed, progress=on_sweep)  # fmt: skip
    seconds["sweep"] = time.perf_counter() - start

    start = time.perf_counter()
    study = Study.open(study_path, mode="a")
    rows = compute_metrics(study, progress=lambda unit, done, total: report("metrics", done, total))
    seconds["metrics"] = time.perf_counter() - start

    start = time.perf_counter()
    reference = "dense" if "dense" in probes else None
    comparison = compare_study(study, reference=reference)
    study.write_comparison(comparison)  # for `onnx-geom view DIR/study`
    comparison.write(folder / "compare")
    seconds["compare"] = time.perf_counter() - start
    return DemoResult(folder, study_path, probes, summary, rows, comparison, seconds)


def check_folder(folder: str | Path) -> Path:
    """Refuse, before anything is made, a demo folder whose outputs would land in a study, a Zarr store or a file,
    or whose ``study`` is another study or Zarr store than the demo's own (one sentence,
    :class:`~onnx_geom.errors.OutputError`); returns it as a Path. A ``study`` the demo began is left to the store,
    which resumes it."""
    import json

    from onnx_geom._files import ZARR_JSON, check_output
    from onnx_geom.errors import OutputError

    folder = check_output(folder, kind="folder")
    for part in ("probes", "compare"):
        check_output(folder / part, kind="folder")
    check_output(folder / "report.html")  # the CLI writes it there
    if (folder / "study").exists() and not (folder / "study").is_dir():
        raise OutputError(f"{folder / 'study'} is a file, where the demo writes its study; give -o a new folder.")
    meta_path = folder / "study" / ZARR_JSON
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_bytes())
            attrs = meta.get("attributes") or {}
            name = (attrs.get("dataset") or {}).get("name")
            ours = meta.get("node_type") == "group" and name in (None, DATASET_NAME)
            ours = ours and (not attrs or "onnx_geom_version" in attrs or "dataset" in attrs)
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise OutputError(
                f"{meta_path.parent} is another study or Zarr store than the demo's own, which the demo writes "
                "there; give -o a new folder."
            )
    return folder


def nearest_models(comparison: Any) -> list[tuple[str, str, float]]:
    """For each model, the other model nearest to it in the comparison's distance: ``(model, nearest, distance)``.

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> c = SimpleNamespace(models=["a", "b", "c"], distance=np.array([[0, 1, 3], [1, 0, 2], [3, 2, 0.]]))
    >>> nearest_models(c)
    [('a', 'b', 1.0), ('b', 'a', 1.0), ('c', 'b', 2.0)]
    """
    import numpy as np

    D = np.array(comparison.distance, dtype=float)
    np.fill_diagonal(D, np.inf)
    nearest = D.argmin(axis=1)
    return [
        (m, comparison.models[j], float(D[i, j]))
        for i, (m, j) in enumerate(zip(comparison.models, nearest, strict=True))
    ]
