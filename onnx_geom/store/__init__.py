"""The study: one directory that is a Zarr v3 group, written in atomic units, readable with plain zarr and xarray.

>>> import numpy as np, tempfile
>>> from onnx_geom.store import Study, Unit
>>> path = tempfile.mkdtemp() + "/study"
>>> study = Study.create(path, images=np.zeros((4, 2, 2, 3), np.uint8), labels=np.array([0, 1, 0, 1]),
...                      dataset_name="toy", class_names=["a", "b"])
>>> from onnx_geom.probe_info import ProbeInfo
>>> study.add_model("m", ProbeInfo(W=np.ones((2, 3), np.float32), b=np.zeros(2, np.float32),
...                                input_shape=(2, 2, 3), layout="NCHW", mean=(0.0,) * 3, std=(1.0,) * 3))
>>> unit = Unit("m", "clean", 0)
>>> with study.writing(unit, {"features": ((4, 3), "float32")}) as writer:
...     writer.append(features=np.ones((4, 3), np.float32))
>>> Study.open(path).units()
[Unit(model='m', corruption='clean', severity=0)]

Layout (docs/store.md; every array carries its ``dimension_names``)::

    /                                   attrs: onnx_geom_version, format, dataset {...}, corruptions, severities, profile, seed
    /labels  /images                    int64 (sample,), uint8 (sample, height, width, channel)
    /models/<model>/W, b                float32 (class, feature), (class,); attrs: probe, probe_path, tags
    /models/<model>/<corruption>/<severity>/           a unit: features (sample, feature), logits (sample, class)
    /models/<model>/<corruption>/<severity>/geometry/  a group inside a unit; attrs complete
    /comparison/                        the stored comparison (``write_comparison`` / ``read_comparison``)

Atomicity: a unit (or a group inside it) is marked ``complete: false`` first, its arrays are written, and only
then is it marked ``complete: true`` (the group's ``zarr.json``, replaced whole and synced to the disk). Every
file is written and read by onnx-geom itself as plain Zarr v3 (:mod:`onnx_geom.store._zarrio`); zarr-python is
not needed. Readers see complete units only. Concurrency: a writer holds an exclusive ``flock`` on the folder of
the unit it writes (released by the kernel when the process dies, even on SIGKILL), and short metadata changes
take the same lock on the study's root folder; a second process that finds a unit locked gets
:class:`StudyLockedError` naming the process that holds it (:mod:`onnx_geom.store._locks`: where locks work).

Modules: ``_layout`` (keys, names, dimension names, chunk shapes), ``_locks``, ``_zarrio`` (Zarr v3 metadata,
chunks, array writer, lazy array reader), ``_units`` (the unit writer), ``_comparison`` (a dataclass as a group),
``_study`` (the :class:`Study`).
"""

from __future__ import annotations

from typing import Any

from onnx_geom.conditions import CLEAN
from onnx_geom.store._check import check
from onnx_geom.store._layout import NAME_MAX, NAME_RULE, STUDY_FORMAT, Unit, check_name, shown
from onnx_geom.store._locks import set_writer_node
from onnx_geom.store._study import Study, UnitAlreadyComplete
from onnx_geom.store._units import UnitWriter, fingerprint
from onnx_geom.store._zarrio import child_folders

__all__ = [
    "NAME_MAX",
    "NAME_RULE",
    "STUDY_FORMAT",
    "Study",
    "Unit",
    "UnitAlreadyComplete",
    "UnitWriter",
    "check",
    "check_name",
    "describe",
    "fingerprint",
    "left_out",
    "set_writer_node",
]


def describe(study: Study) -> dict[str, Any]:
    """A JSON-able summary of a study: dataset, plan, per model its complete and missing units, incomplete ones,
    damaged models (``damaged_models``: name -> what is wrong and what to do) and other damaged metadata
    (``damaged``: ``{"path", "problem"}``; ``onnx-geom check`` reads the arrays too), and the complete units each
    Ray node wrote (``nodes``: node id -> ``{"units", "hosts"}``; empty when no unit was written on Ray)."""
    attrs = study.attrs
    corruptions = [c for c in attrs.get("corruptions", []) if c != CLEAN]
    severities = [s for s in attrs.get("severities", []) if s != 0]
    plan = [(CLEAN, 0)] + [(c, s) for c in corruptions for s in severities]
    complete: dict[str, set[tuple[str, int]]] = {m: set() for m in study.models}
    incomplete = []
    nodes: dict[str, dict[str, Any]] = {}
    problems: list[tuple[str, str, str]] = []
    for unit, unit_attrs in study._all_units(problems=problems):  # one pass over the study's metadata
        if unit_attrs.get("complete") is True:
            complete[unit.model].add((unit.corruption, unit.severity))
            writer = unit_attrs.get("writer") or {}
            if "node" in writer:  # written by a Ray worker: who did what
                node = nodes.setdefault(writer["node"], {"units": 0, "hosts": []})
                node["units"] += 1
                if writer.get("host") not in node["hosts"]:
                    node["hosts"].append(writer.get("host"))
        else:
            incomplete.append((unit, dict(unit_attrs.get("writer") or {})))
    odd = child_folders(study.path / "models", root=study.path)[1]
    problems += [
        (str(study.path / "models" / n), f"{shown(n)} is a folder whose name breaks the rule of names", "remove it")
        for n in odd
    ]
    models = {
        m: {
            "complete": len(done),
            "missing": [str(Unit(m, c, s)) for c, s in plan if (c, s) not in done],
            "tags": study.model_attrs(m).get("tags", {}),
        }
        for m, done in complete.items()
    }
    return {
        "path": str(study.path),
        "dataset": {k: v for k, v in attrs["dataset"].items() if k != "class_names"},
        "corruptions": corruptions,
        "severities": severities,
        "profile": attrs.get("profile"),
        "seed": attrs.get("seed"),
        "corrupted": attrs.get("corrupted"),
        "planned_per_model": len(plan),
        "models": models,
        "damaged_models": study.damaged_models(),
        "damaged": [{"path": path, "problem": f"{problem}; {fix}"} for path, problem, fix in problems],
        "incomplete": [{"unit": str(u), **w} for u, w in sorted(incomplete)],
        "nodes": dict(sorted(nodes.items())),
    }


def left_out(study: Study, *, shown_units: int = 5) -> dict[str, Any]:
    """What a reader of the geometry (``compare``, ``view``) leaves out, JSON-able: complete units whose geometry
    is missing (``units_without_geometry``: ``count``, the first ``units``, the ``command`` that fills them) and
    damaged models (``damaged_models``: name -> what is wrong and what to do). Empty lists when nothing is."""
    without = [unit for unit in study.units() if not study.is_complete(unit, "geometry")]
    return {
        "units_without_geometry": {
            "count": len(without),
            "units": [str(u) for u in without[:shown_units]],
            "command": f"onnx-geom metrics {study.path}",
        },
        "damaged_models": study.damaged_models(),
    }


def left_out_sentences(report: dict[str, Any]) -> list[str]:
    """:func:`left_out`'s report as sentences to print (none when nothing is left out).

    >>> left_out_sentences({"units_without_geometry": {"count": 7, "units": ["m/fog/1", "m/fog/2"],
    ...                     "command": "onnx-geom metrics s"}, "damaged_models": {}})
    ['7 units have no geometry yet and are left out (m/fog/1, m/fog/2, ...); run `onnx-geom metrics s` to compute it.']
    """
    sentences = []
    gaps = report["units_without_geometry"]
    if gaps["count"]:
        names = ", ".join(gaps["units"]) + (", ..." if gaps["count"] > len(gaps["units"]) else "")
        unit = "unit has" if gaps["count"] == 1 else "units have"
        sentences.append(
            f"{gaps['count']} {unit} no geometry yet and {'is' if gaps['count'] == 1 else 'are'} left out ({names}); "
            f"run `{gaps['command']}` to compute it."
        )
    for reason in report["damaged_models"].values():
        sentences.append(f"left out: {reason}")
    return sentences
