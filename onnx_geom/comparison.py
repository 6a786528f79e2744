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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom._files import check_output
from onnx_geom.errors import DataError, StudyError
from onnx_geom.geometry import feature_scale, scale_free, shifts
from onnx_geom.mce import MIN_REFERENCE_DROP, check_reference_errors, corruption_averages
from onnx_geom.records import jsonable, matrix_records, require_pyarrow, write_csv, write_json, write_parquet
from onnx_geom.robustness import (
    CLEAN,
    accuracy_table,
    corruption_effects,
    corruption_redundancy,
    geometry_and_robustness,
    no_effect_conditions,
    sample_sets,
)
from onnx_geom.similarity import (
    GEOMETRIC_QUANTITIES,
    MAP_KEEPS_ENOUGH,
    SCALE_FREE_QUANTITIES,
    agreement,
    cka_matrices,
    classical_mds,
    cohen_kappa,
    geometric_distance,
    mds_quality,
    minimum_spanning_tree,
)

__all__ = [
    "DISTANCES",
    "DISTANCE_COLUMNS",
    "Comparison",
    "compare_study",
    "comparison_parameters",
    "default_reference",
]

#: The distances a model map can be drawn from, and the column of the pairs table each one is (``1 - value``
#: for the similarities): the scale-free geometric distance over every condition with an effect (the
#: default), the raw one, CKA of the clean features, kappa and agreement over every condition.
DISTANCES = ("geometry", "geometry_raw", "cka", "kappa", "agreement")
DISTANCE_COLUMNS = {
    "geometry": "geometric_distance_all",
    "geometry_raw": "geometric_distance_raw_all",
    "cka": "cka_clean",
    "kappa": "kappa_all",
    "agreement": "agreement_all",
}
#: CKA from fewer samples than this many times the feature dimension is noted (biased CKA is inflated there).
CKA_SAMPLES_PER_DIMENSION = 5
_READ = ("correct", "pred", "angle_true", "length", "margin")


@dataclass
class Comparison:
    """Every comparison table of a study; records are lists of dicts (DataFrame-friendly).

    ``distance`` (M, M) is the matrix named ``distance_name`` between ``models``; ``embedding`` (M, 2) its
    classical MDS; ``mst`` the edges ``(i, j, weight)`` of its minimum spanning tree. ``redundancy`` (C, C) is
    the similarity of ``corruptions`` (those with an effect on the data) and ``linkage`` their average-linkage
    tree (scipy format). ``averages``: per average over corruptions (mean corruption accuracy, mCE, extra mCE,
    relative mCE) the corruptions it used and those it excluded, with the reason (:mod:`onnx_geom.mce`);
    ``corruption_status`` one row per corruption with its status in each average and its redundancy group;
    ``corruption_errors`` per model x corruption its error, CE and relative CE; ``mce_reference`` what mCE is
    relative to. ``embedding_quality``: how much of the distances the map keeps
    (:func:`onnx_geom.similarity.mds_quality`); ``cka_note``: a warning when CKA had few samples for the
    feature dimension ("" otherwise).
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
    # -- what each number means (issue 13): averages, no-effect corruptions, the map's fidelity ------------------
    averages: dict[str, Any] = field(default_factory=dict)
    corruption_status: list[dict[str, Any]] = field(default_factory=list)
    corruption_errors: list[dict[str, Any]] = field(default_factory=list)
    mce_reference: str = ""
    embedding_quality: dict[str, Any] = field(default_factory=dict)
    cka_note: str = ""

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
            "corruptions": [_flat(r) for r in self.corruption_status],
            "corruption_errors": self.corruption_errors,
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


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    """A record with its list values joined by ``;`` (a CSV cell)."""
    return {k: ";".join(map(str, v)) if isinstance(v, (list, tuple)) else v for k, v in record.items()}


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


def model_tags(study, models: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The tags each of ``models`` was registered with in a study, by model: what :func:`default_reference` reads."""
    return {m: dict(study.model_attrs(m).get("tags") or {}) for m in models}


def _load(study) -> tuple[dict[tuple, dict[str, np.ndarray]], dict[tuple, Any]]:
    """The geometry of every unit that has it, and the units, both by (model, corruption, severity)."""
    geoms: dict[tuple, dict[str, np.ndarray]] = {}
    units: dict[tuple, Any] = {}
    for unit in study.units(group="geometry"):
        key = (unit.model, unit.corruption, int(unit.severity))
        arrays = study.read_many(unit, [f"geometry/{name}" for name in _READ])
        geoms[key] = {name: np.asarray(arrays[f"geometry/{name}"]) for name in _READ}
        geoms[key]["pred"] = geoms[key]["pred"].astype(np.int32)
        units[key] = unit
    if not geoms:
        raise StudyError("no unit of this study has its geometry yet; run `onnx-geom metrics STUDY` first.")
    return geoms, units


def _pair_table(models, geoms, conditions, cka) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Every pair of models on clean data (``_clean``) and on every shared condition with an effect (``_all``)."""
    joined = {
        m: {q: np.concatenate([geoms[(m, c, s)][q] for c, s in conditions]) for q in geoms[(m, CLEAN, 0)]}
        for m in models
    }
    clean = {m: geoms[(m, CLEAN, 0)] for m in models}
    dist = {
        "geometric_distance_clean": geometric_distance([clean[m] for m in models], quantities=SCALE_FREE_QUANTITIES),
        "geometric_distance_all": geometric_distance([joined[m] for m in models], quantities=SCALE_FREE_QUANTITIES),
        "geometric_distance_raw_all": geometric_distance([joined[m] for m in models], quantities=GEOMETRIC_QUANTITIES),
    }
    pairs = []
    for i, j in itertools.combinations(range(len(models)), 2):
        row: dict[str, Any] = {"model_a": models[i], "model_b": models[j]}
        row.update({name: float(matrix[i, j]) for name, matrix in cka.items()})
        for basis, data in (("clean", clean), ("all", joined)):
            row[f"kappa_{basis}"] = cohen_kappa(data[models[i]]["correct"], data[models[j]]["correct"])
        for basis, data in (("clean", clean), ("all", joined)):
            row[f"agreement_{basis}"] = agreement(data[models[i]]["pred"], data[models[j]]["pred"])
        row.update({name: float(matrix[i, j]) for name, matrix in dist.items()})
        pairs.append(row)
    return pairs, dist


def _distance(name: str, models: list[str], pairs: list[dict[str, Any]], dist: dict[str, np.ndarray]) -> np.ndarray:
    column = DISTANCE_COLUMNS[name]
    if column in dist:
        return dist[column]
    index = {m: i for i, m in enumerate(models)}
    D = np.zeros((len(models), len(models)))
    for p in pairs:
        value = 1.0 - p[column]
        if not np.isfinite(value):
            raise DataError(
                f"the {name} of {p['model_a']} and {p['model_b']} is undefined (constant features?); "
                "choose another distance."
            )
        D[index[p["model_a"]], index[p["model_b"]]] = D[index[p["model_b"]], index[p["model_a"]]] = max(value, 0.0)
    return D


def _output(study, unit) -> np.ndarray | None:
    """A unit's logits (its features when it has none; None when neither can be read)."""
    for name in ("logits", "features"):
        try:
            return np.asarray(study.read(unit, name))
        except (StudyError, KeyError):
            continue
    return None


def _no_effect(study, units: dict[tuple, Any], clean_units: dict[str, Any]) -> set[tuple[str, int]]:
    """The conditions where every model's output is bitwise its clean output (identical images, or identical
    features: the corruption does nothing to this data)."""
    clean = {m: _output(study, u) for m, u in clean_units.items()}
    unchanged = {}
    for key, unit in units.items():
        if key[1] != CLEAN:
            out, ref = _output(study, unit), clean.get(key[0])
            unchanged[key] = out is not None and ref is not None and np.array_equal(out, ref)
    return no_effect_conditions(unchanged)


def _rows(study, unit, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (sorted) of a unit's features, reading only their chunks when the study reads lazily."""
    lazy = getattr(study, "array", None)
    if lazy is not None:
        return np.asarray(lazy(unit, "features")[rows])
    return np.asarray(study.read(unit, "features"))[rows]


def _cka(study, units, models, conditions, n, *, cka_samples, seed) -> tuple[dict, str]:
    """CKA and debiased CKA on clean data (``cka_samples`` samples at most) and on ``cka_samples`` rows drawn
    at random from every shared condition (the same rows for every model); and a note when N < 5 D. Only those
    rows of each unit's features are read (memory: models x rows x D, whatever N)."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, cka_samples, replace=False)) if n > cka_samples else np.arange(n)
    pool = len(conditions) * n
    picks = np.sort(np.random.default_rng([seed, 1]).choice(pool, min(cka_samples, pool), replace=False))
    where, sample = picks // n, picks % n
    bases: dict[str, list[np.ndarray]] = {
        "clean": [_rows(study, units[(m, CLEAN, 0)], rows) for m in models],
        "all": [],
    }
    for m in models:
        parts = []
        for k in np.unique(where):
            c, s = conditions[k]
            parts.append(_rows(study, units[(m, c, s)], sample[where == k]))
        bases["all"].append(np.concatenate(parts))
    out, notes = {}, []
    width = max(f.shape[1] for f in bases["clean"])
    for basis, features in bases.items():
        N = features[0].shape[0]
        both = cka_matrices(features)
        out[f"cka_{basis}"], out[f"cka_debiased_{basis}"] = both["biased"], both["debiased"]
        if CKA_SAMPLES_PER_DIMENSION * width > N:
            notes.append(f"cka_{basis} uses N={N:,} samples for features of up to D={width:,} dimensions")
    note = (
        "; ".join(notes) + f" (N < {CKA_SAMPLES_PER_DIMENSION}·D): biased CKA is inflated there; "
        "read the debiased column (cka_debiased_*)."
        if notes
        else ""
    )
    return out, note


def _norms(scales: dict[str, float]) -> dict[str, float]:
    return {"scale": scales["scale"], "length": scales["median_length"]}


def _scale_free(study, clean_units, geoms, labels, models) -> dict[str, dict[str, float]]:
    """Add ``margin_scaled`` and ``length_scaled`` to every unit's geometry; per model its scale (half the
    median distance between its clean class centroids, from its clean features, read one model at a time) and
    median clean length."""
    out = {}
    for m in models:
        length = np.asarray(geoms[(m, CLEAN, 0)]["length"], np.float64)
        length = length[np.isfinite(length)]
        out[m] = {
            "scale": feature_scale(np.asarray(study.read(clean_units[m], "features")), labels),
            "median_length": float(np.median(length)) if length.size else float("nan"),
        }
    for (m, _, _), g in geoms.items():  # float32, as the stored geometry (memory: two more arrays per unit)
        g.update({k: v.astype(np.float32) for k, v in scale_free(g, **_norms(out[m])).items()})
    return out


def compare_study(
    study,
    *,
    reference: str | None = None,
    distance: str = "geometry",
    cka_samples: int = 10_000,
    threshold: float = 0.5,
    seed: int = 0,
    reference_errors: Any = None,
    min_reference_drop: float = MIN_REFERENCE_DROP,
) -> Comparison:
    """Compare every model and corruption of a study whose units have their geometry.

    - conditions with no effect on the data (every model's logits bitwise equal to its clean logits): left out
      of every average, of the ``_all`` similarities and of the redundancy clustering, and listed;
    - accuracy per model x corruption x severity; per model the clean and mean corruption accuracy, the
      relative drop, the mCE over the 15 benchmark corruptions, the extra mCE over the others and the relative
      mCE, against ``reference`` or against ``reference_errors`` (``{(corruption, severity): error}``, e.g.
      from :func:`onnx_geom.mce.read_reference_errors`); a corruption whose reference loses less than
      ``min_reference_drop`` (mean over severities) is left out of relative mCE (:mod:`onnx_geom.mce`);
    - per model pair, on clean data (``_clean``) and on every shared condition (``_all``): linear CKA and
      debiased CKA (on at most ``cka_samples`` samples drawn with ``seed``; for ``_all`` the same rows drawn
      from every condition for every model), Cohen's kappa of correctness, prediction agreement, and the
      scale-free geometric distance (angle, length over the median clean length, margin over the model's
      :func:`~onnx_geom.geometry.feature_scale`); the raw one on every condition
      (``geometric_distance_raw_all``);
    - a model map: classical MDS and minimum spanning tree of ``distance`` (:data:`DISTANCE_COLUMNS`), with how
      much of the distances the map keeps;
    - corruption redundancy from per-sample flips and margin/angle shifts against each model's clean data,
      clustered and cut at ``threshold`` (:func:`onnx_geom.robustness.corruption_redundancy`);
    - robust / fragile-to-pruning / fragile-to-corruption samples against ``reference``;
    - per model its clean median margin (raw and scale-free), mean length and mean angle beside its relative
      drop, and the Spearman correlation of each with the drop across models.
    ``reference`` defaults to the model tagged dense (:func:`default_reference`).
    """
    if distance not in DISTANCES:
        raise DataError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}.")
    parameters = comparison_parameters(
        reference=reference,
        distance=distance,
        cka_samples=cka_samples,
        threshold=threshold,
        seed=seed,
        reference_errors=reference_errors,
        min_reference_drop=min_reference_drop,
    )
    errors = {(c, s): e for c, s, e in parameters["reference_errors"]} if parameters["reference_errors"] else None
    source = getattr(study, "geometry_fingerprint", None)
    fingerprint = source() if source is not None else None  # before reading: a change meanwhile makes it stale
    geoms, units = _load(study)
    models = sorted({m for m, _, _ in geoms})
    clean_units = {m: u for (m, c, _), u in units.items() if c == CLEAN}
    tags = model_tags(study, models)
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
    present: dict[str, set[int]] = {}
    for _, c, s in geoms:
        if c != CLEAN:
            present.setdefault(c, set()).add(s)
    if errors is not None:
        check_reference_errors(errors, present)
    no_effect = _no_effect(study, units, clean_units)

    labels = np.asarray(study.labels)
    scales = _scale_free(study, clean_units, geoms, labels, models)
    correct = {k: g["correct"] for k, g in geoms.items()}
    table = accuracy_table(correct)
    av = corruption_averages(
        table,
        reference=reference,
        reference_errors=errors,
        no_effect=no_effect,
        min_reference_drop=parameters["min_reference_drop"],
    )
    common = sorted(
        set.intersection(*({(c, s) for mm, c, s in geoms if mm == m} for m in models)),
        key=lambda cs: (cs[0] != CLEAN, cs),
    )
    conditions = [cs for cs in common if cs not in no_effect]
    n = len(labels)
    cka, cka_note = _cka(study, units, models, conditions, n, cka_samples=cka_samples, seed=seed)
    pairs, dist = _pair_table(models, geoms, conditions, cka)
    D = _distance(distance, models, pairs, dist)
    embedding = classical_mds(D, k=2)
    quality = {"distance": distance, **mds_quality(D, embedding), "threshold": MAP_KEEPS_ENOUGH}

    silent = {c for c, sevs in present.items() if all((c, s) in no_effect for s in sevs)}
    shift = {}
    for k, g in geoms.items():
        if k[1] != CLEAN and k[1] not in silent:
            d = shifts(geoms[(k[0], CLEAN, 0)], g)
            scale = scales[k[0]]["scale"]
            if np.isfinite(scale):  # in scale-free units (each block is standardised, so this is only cosmetic)
                d["delta_margin"] = (d["delta_margin"] / scale).astype(np.float32)
            shift[k] = d
    red = corruption_redundancy(corruption_effects(correct, shift, exclude=silent), threshold=threshold)
    group_of = {c: g["group"] for g in red["groups"] for c in g["members"]}
    status = [{**r, "group": group_of.get(r["corruption"])} for r in av.corruptions]  # None: not clustered
    geometry, correlations = geometry_and_robustness({m: geoms[(m, CLEAN, 0)] for m in models}, av.summary)
    for row in geometry:
        row.update(scales[row["model"]])
    return Comparison(
        models=models,
        reference=reference,
        tags=tags,
        accuracy=table,
        summary=av.summary,
        pairs=pairs,
        distance_name=distance,
        distance=D,
        embedding=embedding,
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
        averages=av.averages,
        corruption_status=status,
        corruption_errors=av.errors,
        mce_reference="the given reference errors" if errors is not None else reference,
        embedding_quality=quality,
        cka_note=cka_note,
    )


_DEFAULTS = {  # read once from compare_study's signature: one place for the defaults
    name: p.default
    for name, p in inspect.signature(compare_study).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
}


def comparison_parameters(**parameters: Any) -> dict[str, Any]:
    """The parameters of :func:`compare_study`, its defaults filled in: what a stored comparison is matched on.

    >>> comparison_parameters(threshold=1)
    {'reference': None, 'distance': 'geometry', 'cka_samples': 10000, 'threshold': 1.0, 'seed': 0, 'reference_errors': None, 'min_reference_drop': 0.01}

    ``reference_errors`` (a mapping ``{(corruption, severity): error}``) becomes a sorted list of
    ``[corruption, severity, error]`` (JSON-able, so a stored comparison is matched on the errors themselves).
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
    out["min_reference_drop"] = float(out["min_reference_drop"])
    if not 0.0 <= out["min_reference_drop"] <= 1.0:
        raise DataError(f"the minimum reference drop is an error fraction in [0, 1], got {out['min_reference_drop']}.")
    errors = out["reference_errors"]
    if errors is not None:
        items = errors.items() if isinstance(errors, Mapping) else ((tuple(r[:2]), r[2]) for r in errors)
        out["reference_errors"] = sorted([str(c), int(s), float(e)] for (c, s), e in items)
    return out
