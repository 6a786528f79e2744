"""Compare the models and corruptions of a study: accuracy, similarity, a map of models, redundancy, samples.

>>> from onnx_geom.store import Study                                   # doctest: +SKIP
>>> cmp = compare_study(Study.open("runs/cifar"), reference="dense")   # doctest: +SKIP
>>> cmp.write("runs/cifar-compare")                                    # doctest: +SKIP

Needs the geometry of the units (``onnx-geom metrics`` / :func:`onnx_geom.metrics.compute_metrics`).
"""

from __future__ import annotations

import inspect
import itertools
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom._files import check_output
from onnx_geom.errors import DataError, StudyError
from onnx_geom.geometry import shifts
from onnx_geom.records import jsonable, matrix_records, require_pyarrow, write_csv, write_json, write_parquet
from onnx_geom.robustness import (
    CLEAN,
    accuracy_table,
    corruption_effects,
    corruption_redundancy,
    geometry_and_robustness,
    robustness_summary,
    sample_sets,
)
from onnx_geom.similarity import (
    agreement,
    cka_matrix,
    classical_mds,
    cohen_kappa,
    geometric_distance,
    minimum_spanning_tree,
)

__all__ = ["DISTANCES", "Comparison", "compare_study", "comparison_parameters", "default_reference"]

#: The distances a model map can be drawn from.
DISTANCES = ("geometry", "cka", "kappa", "agreement")
_READ = ("correct", "pred", "angle_true", "length", "margin")


@dataclass
class Comparison:
    """Every comparison table of a study; records are lists of dicts (DataFrame-friendly).

    ``distance`` (M, M) is the matrix named ``distance_name`` between ``models``; ``embedding`` (M, 2) its
    classical MDS; ``mst`` the edges ``(i, j, weight)`` of its minimum spanning tree. ``redundancy`` (C, C) is
    the similarity of ``corruptions`` and ``linkage`` their average-linkage tree (scipy format).
    A study stores one (``Study.write_comparison``, ``onnx-geom compare``) and returns it while it is fresh
    (``Study.read_comparison``); every field is stored, so a new field needs no change in the store.
    """

    models: list[str]
    reference: str
    tags: dict[str, dict[str, Any]]
    accuracy: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    distance_name: str
    distance: np.ndarray
    embedding: np.ndarray
    mst: list[tuple[int, int, float]]
    corruptions: list[str]
    redundancy: np.ndarray
    linkage: np.ndarray
    groups: list[dict[str, Any]]
    geometry: list[dict[str, Any]]
    correlations: list[dict[str, Any]]
    samples: dict[str, Any] = field(repr=False)
    #: what it was computed with: :func:`compare_study`'s parameters (:func:`comparison_parameters`)
    parameters: dict[str, Any] = field(default_factory=dict)
    #: the study's :meth:`~onnx_geom.store.Study.geometry_fingerprint` when it was computed (None: unknown)
    geometry_fingerprint: str | None = None

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """The CSV tables by file stem."""
        tags = lambda m: {k: v for k, v in self.tags.get(m, {}).items() if isinstance(v, (str, int, float))}
        return {
            "accuracy": self.accuracy,
            "summary": self.summary,
            "pairs": self.pairs,
            "distance": matrix_records(self.models, self.distance, key="model"),
            "embedding": [
                {"model": m, "x": float(x), "y": float(y), **tags(m)}
                for m, (x, y) in zip(self.models, self.embedding, strict=True)
            ],
            "mst": [{"model_a": self.models[i], "model_b": self.models[j], "weight": w} for i, j, w in self.mst],
            "redundancy": matrix_records(self.corruptions, self.redundancy, key="corruption"),
            "groups": [{**g, "members": ";".join(g["members"])} for g in self.groups],
            "sample_counts": self.samples["counts"],
            "geometry": self.geometry,
            "correlations": self.correlations,
        }

    def to_json(self) -> dict[str, Any]:
        """Everything, JSON-safe (NaN -> null), including the sample index lists."""
        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})

    def write(self, directory: str | os.PathLike, *, parquet: bool = False) -> list[Path]:
        """Write ``<table>.csv`` (or ``<table>.parquet``, needs pyarrow) for each of :meth:`tables`, and
        ``comparison.json``; returns the paths."""
        out = check_output(directory, kind="folder")  # not inside a study, not a file, writable
        if parquet:
            require_pyarrow()
        write, suffix = (write_parquet, "parquet") if parquet else (write_csv, "csv")
        tables = {out / f"{name}.{suffix}": records for name, records in self.tables().items()}
        for path in (*tables, out / "comparison.json"):  # every file checked before the first is written
            check_output(path)
        paths = [write(path, records) for path, records in tables.items()]
        paths.append(write_json(out / "comparison.json", self.to_json()))
        return paths


def default_reference(models: list[str], tags: dict[str, dict[str, Any]]) -> str:
    """The first model tagged dense (``method`` dense/none/baseline, or ``sparsity`` 0), else the first model.

    >>> default_reference(["a", "b"], {"b": {"sparsity": 0.0}})
    'b'
    """
    for m in models:
        t = tags.get(m, {})
        if str(t.get("method", "")).lower() in ("dense", "none", "baseline") or t.get("sparsity") in (0, 0.0, "0"):
            return m
    return models[0]


def _load(study) -> tuple[dict[tuple, dict[str, np.ndarray]], dict[str, Any]]:
    geoms: dict[tuple, dict[str, np.ndarray]] = {}
    clean_units: dict[str, Any] = {}
    for unit in study.units(group="geometry"):
        key = (unit.model, unit.corruption, int(unit.severity))
        arrays = study.read_many(unit, [f"geometry/{name}" for name in _READ])
        geoms[key] = {name: np.asarray(arrays[f"geometry/{name}"]) for name in _READ}
        geoms[key]["pred"] = geoms[key]["pred"].astype(np.int32)
        if unit.corruption == CLEAN:
            clean_units[unit.model] = unit
    if not geoms:
        raise StudyError("no unit of this study has its geometry yet; run `onnx-geom metrics STUDY` first.")
    return geoms, clean_units


def _pair_table(models, geoms, common, cka) -> tuple[list[dict[str, Any]], np.ndarray]:
    joined = {m: {q: np.concatenate([geoms[(m, c, s)][q] for c, s in common]) for q in _READ} for m in models}
    gdist = geometric_distance([joined[m] for m in models])
    pairs = []
    for i, j in itertools.combinations(range(len(models)), 2):
        a, b = joined[models[i]], joined[models[j]]
        pairs.append(
            {
                "model_a": models[i],
                "model_b": models[j],
                "cka": float(cka[i, j]),
                "kappa": cohen_kappa(a["correct"], b["correct"]),
                "agreement": agreement(a["pred"], b["pred"]),
                "geometric_distance": float(gdist[i, j]),
            }
        )
    return pairs, gdist


def _distance(name: str, models: list[str], pairs: list[dict[str, Any]], gdist: np.ndarray) -> np.ndarray:
    if name == "geometry":
        return gdist
    index = {m: i for i, m in enumerate(models)}
    D = np.zeros((len(models), len(models)))
    for p in pairs:
        value = 1.0 - p[name]
        if not np.isfinite(value):
            raise DataError(
                f"the {name} of {p['model_a']} and {p['model_b']} is undefined (constant features?); "
                "choose another distance."
            )
        D[index[p["model_a"]], index[p["model_b"]]] = D[index[p["model_b"]], index[p["model_a"]]] = max(value, 0.0)
    return D


def compare_study(
    study,
    *,
    reference: str | None = None,
    distance: str = "geometry",
    cka_samples: int = 10_000,
    threshold: float = 0.5,
    seed: int = 0,
) -> Comparison:
    """Compare every model and corruption of a study whose units have their geometry.

    - accuracy per model x corruption x severity; per model the clean and mean corruption accuracy, the
      relative drop and the mCE / relative mCE against ``reference``;
    - per model pair: linear CKA of the clean features (on at most ``cka_samples`` samples drawn with
      ``seed``), Cohen's kappa of correctness and prediction agreement (over every unit the two share with
      all models), and the geometric distance (:func:`onnx_geom.similarity.geometric_distance`);
    - a model map: classical MDS and minimum spanning tree of ``distance`` (``geometry``, or ``cka`` /
      ``kappa`` / ``agreement`` as ``1 - value``);
    - corruption redundancy from per-sample correctness and margin/angle shifts against each model's clean
      data, clustered and cut at ``threshold`` (:func:`onnx_geom.robustness.corruption_redundancy`);
    - robust / fragile-to-pruning / fragile-to-corruption samples against ``reference``;
    - per model its clean median margin, mean length and mean angle beside its relative drop, and the Spearman
      correlation of each with the drop across models.
    ``reference`` defaults to the model tagged dense (:func:`default_reference`).
    """
    if distance not in DISTANCES:
        raise DataError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}.")
    parameters = comparison_parameters(
        reference=reference, distance=distance, cka_samples=cka_samples, threshold=threshold, seed=seed
    )
    source = getattr(study, "geometry_fingerprint", None)
    fingerprint = source() if source is not None else None  # before reading: a change meanwhile makes it stale
    geoms, clean_units = _load(study)
    models = sorted({m for m, _, _ in geoms})
    tags = {m: dict(study.model_attrs(m).get("tags") or {}) for m in models}
    if reference is None:
        reference = default_reference(models, tags)
    elif reference not in models:
        raise DataError(
            f"reference model {reference!r} has no geometry in this study; choose one of {', '.join(models)}."
        )
    missing = [m for m in models if m not in clean_units]
    if missing:
        raise StudyError(
            f"model(s) {', '.join(missing)} have no clean unit with geometry; "
            "sweep the clean data and run `onnx-geom metrics` first."
        )

    correct = {k: g["correct"] for k, g in geoms.items()}
    table = accuracy_table(correct)
    summary = robustness_summary(table, reference=reference)
    common = sorted(
        set.intersection(*({(c, s) for mm, c, s in geoms if mm == m} for m in models)),
        key=lambda cs: (cs[0] != CLEAN, cs),
    )
    n = len(next(iter(correct.values())))
    rows = (
        np.sort(np.random.default_rng(seed).choice(n, cka_samples, replace=False)) if n > cka_samples else slice(None)
    )
    cka = cka_matrix([np.asarray(study.read(clean_units[m], "features"))[rows] for m in models])
    pairs, gdist = _pair_table(models, geoms, common, cka)
    D = _distance(distance, models, pairs, gdist)

    shift = {k: shifts(geoms[(k[0], CLEAN, 0)], g) for k, g in geoms.items() if k[1] != CLEAN}
    red = corruption_redundancy(corruption_effects(correct, shift), threshold=threshold)
    geometry, correlations = geometry_and_robustness({m: geoms[(m, CLEAN, 0)] for m in models}, summary)
    return Comparison(
        models=models,
        reference=reference,
        tags=tags,
        accuracy=table,
        summary=summary,
        pairs=pairs,
        distance_name=distance,
        distance=D,
        embedding=classical_mds(D, k=2),
        mst=minimum_spanning_tree(D),
        corruptions=red["corruptions"],
        redundancy=red["similarity"],
        linkage=red["linkage"],
        groups=red["groups"],
        geometry=geometry,
        correlations=correlations,
        samples=sample_sets(correct, reference=reference),
        parameters=parameters,
        geometry_fingerprint=fingerprint,
    )


_DEFAULTS = {  # read once from compare_study's signature: one place for the defaults
    name: p.default
    for name, p in inspect.signature(compare_study).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
}


def comparison_parameters(**parameters: Any) -> dict[str, Any]:
    """The parameters of :func:`compare_study`, its defaults filled in: what a stored comparison is matched on.

    >>> comparison_parameters(threshold=1)
    {'reference': None, 'distance': 'geometry', 'cka_samples': 10000, 'threshold': 1.0, 'seed': 0}
    """
    unknown = sorted(set(parameters) - set(_DEFAULTS))
    if unknown:
        raise TypeError(f"compare_study has no parameter {', '.join(unknown)}; it has {', '.join(_DEFAULTS)}")
    out = {**_DEFAULTS, **parameters}
    out["cka_samples"], out["threshold"], out["seed"] = (
        int(out["cka_samples"]),
        float(out["threshold"]),
        int(out["seed"]),
    )
    return out
