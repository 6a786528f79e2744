"""The study's root: the data it holds (labels, images), its attributes, a new study written whole.

Private to :mod:`onnx_geom.store` (:meth:`Study.create`). A new study is built in a temporary folder beside its
place (``.NAME.creating-PID-XXXXXXXX``, locked while it is built) and renamed into place once whole: a folder
at the study's path is a whole study or nothing. A creator that loses the rename to another one opens the
winner's study; a temporary folder left by a killed creation is removed by the next creation of that study.

>>> attrs = root_attrs((2, 1, 1, 3), np.array([0, 1]), "ab12", "toy", ["a", "b"], ["clean", "fog"], [0, 3], None, 0)
>>> attrs["dataset"]["image_shape"], attrs["severities"], attrs["corrupted"]
([1, 1, 3], [0, 3], None)
>>> grown_plan(attrs, ["snow"], [3, 5])["corruptions"], grown_plan(attrs, ["fog"], [3])
(['clean', 'fog', 'snow'], None)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom._files import fsync
from onnx_geom.errors import StudyError, StudyLockedError
from onnx_geom.store._layout import IMAGES, LABELS, MODELS, STUDY_FORMAT, dimension_names, row_chunks
from onnx_geom.store._locks import lock
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
    corrupted: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The attributes of a new study's root group (``corrupted``: :func:`corrupted_source`)."""
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
        "corrupted": corrupted,
    }


def corrupted_source(corrupted: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Where a study's corrupted images come from, as stored: None (made on the fly) or a JSON object (e.g.
    ``{"folder": ..., "sha256": ...}`` for ``--corrupted DIR``), normalised through JSON.

    >>> corrupted_source({"folder": "C", "n": (1, 2)}), corrupted_source(None)
    ({'folder': 'C', 'n': [1, 2]}, None)
    """
    if corrupted is None:
        return None
    try:
        return dict(json.loads(json.dumps(dict(corrupted), allow_nan=False)))
    except (TypeError, ValueError):
        raise TypeError(f"corrupted must be None or a JSON-able mapping, not {corrupted!r}") from None


def describe_source(source: Any) -> str:
    """Where corrupted images came from, in words.

    >>> describe_source(None), describe_source({"folder": "CIFAR-10-C", "sha256": "ab" * 32})
    ('made on the fly', 'read from CIFAR-10-C (sha256 abababababab...)')
    """
    if source is None:
        return "made on the fly"
    if isinstance(source, dict) and isinstance(source.get("folder"), str):
        digest = source.get("sha256")
        return f"read from {source['folder']}" + (f" (sha256 {digest[:12]}...)" if isinstance(digest, str) else "")
    return f"from {json.dumps(source, sort_keys=True)[:120]}"


def write_data(
    path: Path, images: Any, labels: np.ndarray, *, root: Path, only: Sequence[str] = (LABELS, IMAGES)
) -> None:
    """Write the labels and images (``only``: those of them) into the study folder ``path`` (images read one
    chunk of rows at a time), synced to the disk: written once, and a study is nothing without them."""
    if LABELS in only:
        labels = np.asarray(labels).astype(np.int64)
        write_array(
            path / LABELS, labels, dimension_names(LABELS, 1), chunks=(max(1, len(labels)),), root=root, durable=True
        )
    if IMAGES in only:
        chunks = row_chunks(images.shape, 1)
        write_array(path / IMAGES, images, dimension_names(IMAGES, 4), chunks=chunks, root=root, durable=True)


def write_new(path: Path, images: Any, labels: np.ndarray, attrs: dict[str, Any]) -> None:
    """Write a new study into the empty folder ``path``: labels, images, the ``models`` group, and last the root's
    metadata in one write. All of it synced to the disk."""
    write_data(path, images, labels, root=path)
    write_group(path / MODELS, {}, root=path, durable=True)
    write_group(path, attrs, root=path, durable=True)


_LEFTOVER = re.compile(r"\.(?P<name>.+)\.creating-(?P<pid>\d+)-[0-9a-f]{8}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_leftovers(path: Path) -> list[Path]:
    """Remove the temporary folders that killed creations of the study at ``path`` left beside it (real folders
    named ``.NAME.creating-PID-XXXXXXXX`` whose creator is gone: not locked, and its process not alive or the
    folder older than a minute); returns them."""
    import time

    removed = []
    with contextlib.suppress(OSError):
        entries = list(os.scandir(path.parent))
        for entry in entries:
            match = _LEFTOVER.fullmatch(entry.name)
            if match is None or match["name"] != path.name or not entry.is_dir(follow_symlinks=False):
                continue
            folder = Path(entry.path)
            try:
                old = time.time() - os.lstat(folder).st_mtime > 60
                with lock(folder, wait_s=0.0, holder="busy"):
                    if _alive(int(match["pid"])) and not old and int(match["pid"]) != os.getpid():
                        continue
                    shutil.rmtree(folder)
                removed.append(folder)
            except (StudyLockedError, OSError):
                continue  # a creation in progress (it holds the lock), or gone meanwhile
    return removed


def create_new(path: Path, images: Any, labels: np.ndarray, attrs: dict[str, Any]) -> bool:
    """Build a new study in a temporary folder beside ``path`` and rename it into place (over nothing, or over an
    empty folder); False when another study took the place first (a concurrent creator won the rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    tmp = path.parent / f".{path.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.mkdir(tmp)
    try:
        with lock(tmp, wait_s=0.0, holder=f"{tmp} is being built by another process"):
            write_new(tmp, images, labels, attrs)
            try:
                os.rename(tmp, path)
            except OSError as err:
                if err.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    return False
                raise
            with contextlib.suppress(OSError):  # where folders can be synced
                fsync(path.parent, folder=True)  # the rename, durable
            return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.lstat(tmp).st_mode):
                shutil.rmtree(tmp)


def check_same(
    attrs: dict[str, Any],
    path: Path,
    digest: str,
    n: int,
    profile: str | None,
    seed: int,
    corrupted: dict[str, Any] | None = None,
) -> None:
    """Refuse to add a run on other data, with another profile or seed, or with corrupted images from another
    source, to the study at ``path``."""
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
    stored = attrs.get("corrupted")
    if stored != corrupted:
        raise StudyError(
            f"the study at {path} has corrupted images {describe_source(stored)}, this run's are "
            f"{describe_source(corrupted)}; use the same source of corrupted images, or a new study folder."
        )


def grown_plan(attrs: dict[str, Any], corruptions: Sequence[str], severities: Sequence[int]) -> dict[str, Any] | None:
    """The root's attributes with the plan grown to include ``corruptions`` and ``severities``; None when they
    are in it already."""
    merged_c = list(dict.fromkeys([*attrs.get("corruptions", []), *map(str, corruptions)]))
    merged_s = sorted({*attrs.get("severities", []), *map(int, severities)})
    if merged_c == attrs.get("corruptions") and merged_s == attrs.get("severities"):
        return None
    return {**attrs, "corruptions": merged_c, "severities": merged_s}
