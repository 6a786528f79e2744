"""The study's root: the data it holds (labels, images), its attributes, a new study written whole.

Private to :mod:`onnx_geom.store` (:meth:`Study.create`).

>>> attrs = root_attrs((2, 1, 1, 3), np.array([0, 1]), "ab12", "toy", ["a", "b"], ["clean", "fog"], [0, 3], None, 0)
>>> attrs["dataset"]["image_shape"], attrs["severities"]
([1, 1, 3], [0, 3])
>>> grown_plan(attrs, ["snow"], [3, 5])["corruptions"], grown_plan(attrs, ["fog"], [3])
(['clean', 'fog', 'snow'], None)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom.errors import StudyError
from onnx_geom.store._layout import IMAGES, LABELS, MODELS, STUDY_FORMAT, dimension_names, row_chunks
from onnx_geom.store._zarrio import write_array, write_group


def check_data(images: Any, labels: Any) -> np.ndarray:
    """Refuse images that are not uint8 (N, H, W, C) and labels that are not N integers; the labels as numpy."""
    labels = np.asarray(labels)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise StudyError(f"images must be uint8 (N, H, W, C), got {images.dtype} {tuple(images.shape)}.")
    if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
        raise StudyError(
            f"labels must be integers (N,) with N = {len(images)} images, got {labels.dtype} {labels.shape}."
        )
    return labels


def root_attrs(
    image_shape: Sequence[int],
    labels: np.ndarray,
    digest: str,
    dataset_name: str,
    class_names: Sequence[str],
    corruptions: Sequence[str],
    severities: Sequence[int],
    profile: str | None,
    seed: int,
) -> dict[str, Any]:
    """The attributes of a new study's root group."""
    from onnx_geom import __version__

    return {
        "onnx_geom_version": __version__,
        "format": STUDY_FORMAT,
        "dataset": {
            "name": str(dataset_name),
            "n": len(labels),
            "image_shape": [int(s) for s in image_shape[1:]],
            "class_names": [str(c) for c in class_names],
            "sha256": digest,
        },
        "corruptions": list(dict.fromkeys(str(c) for c in corruptions)),
        "severities": sorted({int(s) for s in severities}),
        "profile": profile,
        "seed": int(seed),
    }


def write_new(path: Path, images: Any, labels: np.ndarray, attrs: dict[str, Any]) -> None:
    """Write a new study into the empty folder ``path``: labels, images (read one chunk of rows at a time), the
    ``models`` group, and last the root's metadata in one write: a folder is a study once it exists. All of it
    synced to the disk."""
    labels = labels.astype(np.int64)
    durable = {"sync": True, "durable": True}  # written once, and a study is nothing without them
    write_array(path / LABELS, labels, dimension_names(LABELS, 1), chunks=(max(1, len(labels)),), **durable)
    write_array(path / IMAGES, images, dimension_names(IMAGES, 4), chunks=row_chunks(images.shape, 1), **durable)
    write_group(path / MODELS, {}, durable=True)
    write_group(path, attrs, durable=True)


def check_same(attrs: dict[str, Any], path: Path, digest: str, n: int, profile: str | None, seed: int) -> None:
    """Refuse to add a run on other data, or with another profile or seed, to the study at ``path``."""
    data = attrs["dataset"]
    if data.get("sha256") != digest:
        raise StudyError(
            f"the study at {path} was made from other data ({data.get('name')!r}, {data.get('n')} images, "
            f"this run has {n}); use the same data and --limit, or a new study folder."
        )
    if attrs.get("profile") != profile or int(attrs.get("seed", 0)) != int(seed):
        raise StudyError(
            f"the study at {path} was made with profile {attrs.get('profile')!r} and seed {attrs.get('seed')}, "
            f"this run asks for {profile!r} and {seed}; use the same, or a new study folder."
        )


def grown_plan(attrs: dict[str, Any], corruptions: Sequence[str], severities: Sequence[int]) -> dict[str, Any] | None:
    """The root's attributes with the plan grown to include ``corruptions`` and ``severities``; None when they
    are in it already."""
    merged_c = list(dict.fromkeys([*attrs.get("corruptions", []), *map(str, corruptions)]))
    merged_s = sorted({*attrs.get("severities", []), *map(int, severities)})
    if merged_c == attrs.get("corruptions") and merged_s == attrs.get("severities"):
        return None
    return {**attrs, "corruptions": merged_c, "severities": merged_s}
