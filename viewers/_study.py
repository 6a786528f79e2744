"""Read a study into :class:`ViewerData` (the store API of docs/architecture.md): the comparison stored by
`onnx-geom compare` when it is fresh, else computed here."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom.conditions import CLEAN
from onnx_geom.errors import OnnxGeomError, StudyError
from onnx_geom.viewers.data import GEOMETRY_KEYS


def _probe(study_dir: Path | None, attrs: dict[str, Any]) -> tuple[Path | None, str]:
    """The model's probe file, or None and the reason there is none."""
    raw = attrs.get("probe_path")
    if not raw:
        return None, "the study does not name this model's probe file"
    path = Path(raw)
    if not path.is_absolute() and study_dir is not None and not path.exists():
        path = study_dir / path
    if not path.is_file():
        return None, f"probe file {raw} is not available on this machine"
    return path, ""


def read_study(cls, study, *, reference: str | None = None, comparison=None):
    """See :meth:`ViewerData.from_study`."""
    from onnx_geom.comparison import default_reference
    from onnx_geom.frames import study_comparison
    from onnx_geom.store import Study

    if isinstance(study, (str, os.PathLike)):
        study = Study.open(study)
    study_dir = Path(study.path) if getattr(study, "path", None) is not None else None
    attrs = dict(study.attrs)
    by_key = {(u.model, u.corruption, int(u.severity)): u for u in study.units(group="geometry")}
    units = set(by_key)
    if not units:
        raise StudyError("no unit of this study has its geometry yet; run `onnx-geom metrics STUDY` first.")
    models = sorted({u[0] for u in units})
    # the study's plan lists "clean" among its corruptions; the viewer keeps clean as its own column
    corruptions = [c for c in attrs.get("corruptions", []) if c != CLEAN and any(u[1] == c for u in units)]
    corruptions += sorted({u[1] for u in units} - set(corruptions) - {CLEAN})
    severities = sorted({u[2] for u in units if u[1] != CLEAN})
    if corruptions and not severities:  # the plan's (clean's severity 0 is no column of its own)
        severities = [int(s) for s in attrs.get("severities", []) if int(s) != 0]
    labels = np.asarray(study.labels, np.int64)
    dataset = attrs.get("dataset") or {}

    def loader(model: str, corruption: str, severity: int) -> LazyGeometry:
        unit = by_key[(model, corruption, severity)]
        return LazyGeometry(
            lambda key: np.asarray(study.read(unit, f"geometry/{key}")),
            lazy=lambda key: study.array(unit, f"geometry/{key}") if hasattr(study, "array") else None,
        )

    tags, probes, notes = {}, {}, {}
    for m in models:
        model_attrs = dict(study.model_attrs(m))
        tags[m] = dict(model_attrs.get("tags") or {})
        path, note = _probe(study_dir, model_attrs)
        if path is not None:
            probes[m] = path
        else:
            notes[m] = note
    heads = LazyHeads(study, models)  # a 1,000 x 2,048 head is 8 MB: read the ones a view asks for
    k = int(heads[models[0]][0].shape[0])
    class_names = [str(c) for c in dataset.get("class_names") or []]
    if len(class_names) != k:
        class_names = [str(c) for c in range(k)]
    data = cls(
        models=models,
        tags=tags,
        corruptions=corruptions,
        severities=severities,
        labels=labels,
        class_names=class_names,
        loader=loader,
        units=units,
        images=_images(study),
        heads=heads,
        probe_paths=probes,
        probe_notes=notes,
        title=str(dataset.get("name") or (study_dir.name if study_dir else "study")),
        corruption_profile=None if attrs.get("profile") in (None, "folder") else str(attrs["profile"]),
        corruption_seed=int(attrs.get("seed") or 0),
        reference=reference if reference in models else default_reference(models, tags),
    )
    try:
        if comparison is None:  # the one `compare` stored while it is fresh (also for the default reference)
            comparison, _ = study_comparison(study, reference=reference)
    except OnnxGeomError as error:
        data.embedding_note = f"no model map: {error}"
        return data
    if getattr(comparison, "reference", None) in models:
        data.reference = comparison.reference
    data.embedding = np.asarray(comparison.embedding, float)
    data.mst = [(int(i), int(j), float(w)) for i, j, w in comparison.mst]
    data.embedding_quality = dict(getattr(comparison, "embedding_quality", None) or {})
    clean = np.full(len(models), np.nan)
    table = np.full((len(models), len(corruptions), len(severities)), np.nan)
    for rec in comparison.accuracy:
        if rec["model"] not in models:
            continue
        i = models.index(rec["model"])
        if rec["corruption"] == CLEAN:
            clean[i] = rec["accuracy"]
        elif rec["corruption"] in corruptions and rec["severity"] in severities:
            table[i, corruptions.index(rec["corruption"]), severities.index(rec["severity"])] = rec["accuracy"]
    data.set_accuracy(clean, table)
    return data


#: A unit's (N, K) cosines up to this many bytes are read whole the first time a view asks for some of their
#: columns (and kept with the unit); larger ones are streamed for each band of columns asked for.
WHOLE_COS_BYTES = 128 << 20


class LazyGeometry(Mapping):
    """A unit's geometry arrays, each read from the study on first access (the (N, K) cosines of a
    1000-class study are 4 GB at 1M samples; views that never ask for them never read them, and
    :meth:`columns` reads a band of them without the rest)."""

    def __init__(self, read, lazy=None) -> None:
        self._read, self._lazy = read, lazy
        self._arrays: dict[str, np.ndarray] = {}

    def columns(self, key: str, cols: np.ndarray) -> np.ndarray:
        """``self[key][:, cols]`` (float32), reading the stored array a chunk of rows at a time when it is larger
        than :data:`WHOLE_COS_BYTES` (memory: the N x len(cols) result and one chunk)."""
        cols = np.asarray(cols, np.int64)
        if key in self._arrays:
            return np.ascontiguousarray(self._arrays[key][:, cols])
        array = self._lazy(key) if self._lazy is not None else None
        if array is None or int(np.prod(array.shape)) * array.dtype.itemsize <= WHOLE_COS_BYTES:
            return np.ascontiguousarray(self[key][:, cols])
        out = np.empty((array.shape[0], cols.size), array.dtype)
        step = int(array.chunks[0])
        for start in range(0, array.shape[0], step):
            out[start : start + step] = array[start : start + step][:, cols]
        return out

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in GEOMETRY_KEYS:
            raise KeyError(key)
        if key not in self._arrays:
            self._arrays[key] = self._read(key)
        return self._arrays[key]

    def __iter__(self):
        return iter(GEOMETRY_KEYS)

    def __len__(self) -> int:
        return len(GEOMETRY_KEYS)


def _images(study):
    try:
        images = study.images
    except (OnnxGeomError, KeyError, FileNotFoundError):
        return None
    return images if images is not None and len(getattr(images, "shape", ())) == 4 else None


class LazyHeads(Mapping):
    """``{model: (W, b)}`` of a study, each head read on first access and kept."""

    def __init__(self, study, models: list[str]) -> None:
        self._study, self._models = study, list(models)
        self._heads: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __getitem__(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        if model not in self._models:
            raise KeyError(model)
        if model not in self._heads:
            W, b = self._study.head(model)
            self._heads[model] = (np.asarray(W), np.asarray(b))
        return self._heads[model]

    def __iter__(self):
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)
