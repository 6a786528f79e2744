"""CIFAR-10-C style folders: ``<corruption>.npy`` uint8 ``(S*N, H, W, C)`` + ``labels.npy`` ``(S*N,)``.

Severity blocks are stacked in order (S = 5 for the published sets); each block holds the N clean images in
order. Files are memory-mapped, so reading one block (or part of it) never loads the whole file. Folders written
by onnx-geom add ``corruptions.json`` (severities, profile, seed, source and its fingerprint: the sha256 of the
clean labels and images, :func:`onnx_geom.store.fingerprint`); without it severities 1..5 are assumed and the
source is unknown (the published CIFAR-10-C folders).

>>> is_corrupted_folder("/nonexistent")
False
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from onnx_geom._files import check_output, output_errors, replacing, write_bytes
from onnx_geom.conditions import SEVERITIES
from onnx_geom.datasets._dataset import Dataset
from onnx_geom.errors import DataError, DataNotFoundError

META = "corruptions.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_corrupted_folder(path: str | os.PathLike) -> bool:
    """True if ``path`` holds ``labels.npy`` and at least one other ``.npy``."""
    p = Path(path)
    return (p / "labels.npy").is_file() and any(f.suffix == ".npy" and f.name != "labels.npy" for f in p.iterdir())


def _open(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataNotFoundError(f"{path} does not exist.") from None
    except (ValueError, OSError) as error:
        raise DataError(f"{path} is not a readable .npy array of plain numbers ({error}).") from None


class CorruptedFolder:
    """Read a CIFAR-10-C style folder block by block.

    >>> import numpy as np, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(d / "labels.npy", np.tile(np.arange(4), 5)); np.save(d / "fog.npy", np.zeros((20, 16, 16, 3), np.uint8))
    >>> f = CorruptedFolder(d)
    >>> f.corruptions, f.n, f.read("fog", 2, start=1, stop=3).shape
    (('fog',), 4, (2, 16, 16, 3))
    """

    def __init__(self, path: str | os.PathLike):
        from onnx_geom.corruptions import CORRUPTIONS

        self.path = Path(path)
        if not self.path.is_dir():
            raise DataNotFoundError(
                f"{self.path} is not a folder; a CIFAR-10-C style set is a folder of <corruption>.npy files."
            )
        if not (self.path / "labels.npy").is_file():
            raise DataNotFoundError(f"{self.path} has no labels.npy, so it is not a CIFAR-10-C style folder.")
        self.meta = self._meta()
        self.severities: tuple[int, ...] = tuple(self.meta.get("severities", SEVERITIES))
        stored = _open(self.path / "labels.npy")
        if stored.ndim != 1 or stored.dtype.kind not in "iu" or len(stored) % len(self.severities):
            raise DataError(
                f"{self.path / 'labels.npy'} must hold {len(self.severities)} blocks of integer labels, "
                f"found {stored.dtype} {stored.shape}."
            )
        self.labels: np.ndarray = np.asarray(stored, dtype=np.int64)
        self.n: int = len(self.labels) // len(self.severities)
        names = {f.stem for f in self.path.glob("*.npy") if f.stem != "labels"}
        self.corruptions: tuple[str, ...] = tuple(
            [c for c in CORRUPTIONS if c in names] + sorted(names - set(CORRUPTIONS))
        )
        self._arrays: dict[str, np.ndarray] = {}

    @property
    def source_fingerprint(self) -> str | None:
        """The sha256 of the clean labels and images this folder was made from (:func:`onnx_geom.store.fingerprint`,
        recorded by :func:`write_corrupted`); None when the folder does not say (no ``corruptions.json``, as in the
        published CIFAR-10-C folders, or one written before onnx-geom recorded it)."""
        return self.meta.get("source_fingerprint")

    def _meta(self) -> dict:
        meta_path = self.path / META
        if not meta_path.is_file():
            return {}
        try:
            meta = json.loads(meta_path.read_text())
            severities = [int(s) for s in meta.get("severities", SEVERITIES)]
            source = meta.get("source_fingerprint")
            if source is not None and not (isinstance(source, str) and _SHA256.fullmatch(source)):
                raise ValueError(f"source_fingerprint {source!r} is not a sha256")
        except (ValueError, TypeError, AttributeError) as error:
            raise DataError(
                f"{meta_path} is not valid ({error}); delete it if the folder holds all 5 severities."
            ) from None
        return {**meta, "severities": severities}

    def array(self, corruption: str) -> np.ndarray:
        """The memory-mapped ``(S*N, H, W, C)`` array of ``corruption`` (checked, not loaded)."""
        if corruption in self._arrays:
            return self._arrays[corruption]
        if corruption not in self.corruptions:
            raise DataNotFoundError(
                f"{self.path} has no {corruption}.npy; it has {', '.join(self.corruptions) or 'no corruption files'}."
            )
        arr = _open(self.path / f"{corruption}.npy")
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] not in (1, 3) or len(arr) != len(self.labels):
            raise DataError(
                f"{self.path / (corruption + '.npy')} must be uint8 ({len(self.labels)}, H, W, C) to match labels.npy, "
                f"found {arr.dtype} {arr.shape}."
            )
        self._arrays[corruption] = arr  # opened and checked once; the sweep reads it batch by batch
        return arr

    def _block(self, severity: int, start: int, stop: int | None) -> slice:
        if severity not in self.severities:
            raise DataError(f"severity {severity!r} is not in {self.path} (it has {list(self.severities)}).")
        stop = self.n if stop is None else min(int(stop), self.n)
        if not 0 <= start <= stop:
            raise DataError(f"start {start} and stop {stop} do not select images 0..{self.n} of a severity block.")
        base = self.severities.index(severity) * self.n
        return slice(base + start, base + stop)

    def read(self, corruption: str, severity: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Images ``start:stop`` of one severity block, uint8 ``(stop - start, H, W, C)`` in memory."""
        return np.array(self.array(corruption)[self._block(severity, start, stop)])

    def read_labels(self, severity: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Labels of images ``start:stop`` of one severity block, int64."""
        return self.labels[self._block(severity, start, stop)]

    def dataset(self, corruption: str, severity: int) -> Dataset:
        """One whole severity block as a :class:`Dataset` named ``<folder>/<corruption>/<severity>``."""
        return Dataset(
            self.read(corruption, severity), self.read_labels(severity), f"{self.path.name}/{corruption}/{severity}"
        )


def write_corrupted(
    dataset: Dataset,
    out: str | os.PathLike,
    *,
    corruptions: Sequence[str],
    severities: Sequence[int] = SEVERITIES,
    profile: str | None = None,
    seed: int = 0,
    batch_size: int = 500,
    progress: Callable[[str, int], None] | None = None,
    inputs: Sequence[str | os.PathLike] = (),
) -> list[str]:
    """Write ``dataset`` corrupted in the CIFAR-10-C layout under ``out``; returns the corruptions it wrote.

    Resumable: a ``<corruption>.npy`` is written under a temporary name, fsynced and renamed, so one that exists is
    complete and is skipped (if it has the expected shape and the folder's settings match). ``progress(name,
    images)`` is called after each batch. Sample ``i`` always gets the stream keyed by (seed, corruption, severity,
    i), so the bytes do not depend on ``batch_size``.

    ``out`` is checked first (:func:`onnx_geom._files.check_output`): not inside a study, not a file, not one of
    ``inputs`` (the data's own path) nor inside it. The folder's ``corruptions.json`` records the fingerprint of
    ``dataset`` (:func:`onnx_geom.store.fingerprint`); a folder made from other data, or holding ``.npy`` files
    that onnx-geom did not write, is refused (:class:`DataError`): its files would mix two sources.
    """
    from onnx_geom.corruptions import CORRUPTIONS, corrupt
    from onnx_geom.corruptions._common import STREAMS, check_images, resolve_profile
    from onnx_geom.store import fingerprint

    out = check_output(out, kind="folder", inputs=inputs)
    profile = resolve_profile(profile, check_images(dataset.images[:1]))
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown:
        raise DataError(f"unknown corruption(s) {', '.join(unknown)}; choose from {', '.join(CORRUPTIONS)}.")
    severities = [int(s) for s in severities]
    meta = {"severities": severities, "profile": profile, "seed": seed, "n": dataset.n, "source": dataset.name,
            "source_fingerprint": fingerprint(dataset.images, dataset.labels),
            "image_shape": list(dataset.image_shape), "streams": STREAMS}  # fmt: skip
    meta_path = out / META
    with output_errors(out):
        if meta_path.is_file():
            _check_same_folder(out, _read_meta(meta_path), meta)
        else:
            _refuse_unknown_files(out)
            out.mkdir(parents=True, exist_ok=True)
            write_bytes(meta_path, json.dumps(meta, indent=1).encode())
        labels = np.tile(dataset.labels, len(severities))
        if not (out / "labels.npy").is_file():
            with replacing(out / "labels.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, labels)
        shape = (len(severities) * dataset.n, *dataset.image_shape)
        written = []
        for name in corruptions:
            target = out / f"{name}.npy"
            if target.is_file():
                existing = _open(target)
                if existing.shape == shape and existing.dtype == np.uint8:
                    continue
                raise DataError(
                    f"{target} exists with shape {existing.shape}, expected {shape}; delete it to rewrite it."
                )
            with replacing(target) as tmp:
                arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
                for block, severity in enumerate(severities):
                    for start in range(0, dataset.n, batch_size):
                        stop = min(start + batch_size, dataset.n)
                        batch = corrupt(dataset.images[start:stop], name, severity, profile=profile, rng=seed,
                                        indices=range(start, stop))  # fmt: skip
                        arr[block * dataset.n + start : block * dataset.n + stop] = batch
                        if progress:
                            progress(name, stop - start)
                arr.flush()
                del arr
            written.append(name)
    return written


def _read_meta(path: Path) -> dict:
    """The ``corruptions.json`` of a folder being resumed (a :class:`DataError` when it is damaged)."""
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        meta = None
    if not isinstance(meta, dict):
        raise DataError(f"{path} is not a valid JSON object, so the folder cannot be resumed; use a new folder.")
    return meta


def _check_same_folder(out: Path, old: dict, meta: dict) -> None:
    """Refuse to add to ``out`` (written with ``old``) files made from other data or with other settings."""
    source = old.get("source_fingerprint")
    if source is None:
        raise DataError(
            f"{out} does not record which data it was made from (written before onnx-geom recorded it), so adding "
            "to it could mix two sources; use a new folder."
        )
    if source != meta["source_fingerprint"]:
        raise DataError(
            f"{out} was made from other data ({old.get('source')!r}, {old.get('n')} images, sha256 "
            f"{str(source)[:12]}...) than {meta['source']!r} (sha256 {meta['source_fingerprint'][:12]}...); use a "
            "new folder for these data."
        )
    if old != meta:
        changed = ", ".join(sorted(k for k in meta if old.get(k) != meta.get(k)))
        raise DataError(f"{out} was written with other settings ({changed}); use a new folder or the same settings.")


def _refuse_unknown_files(out: Path) -> None:
    """Refuse a folder that already holds ``.npy`` files but no ``corruptions.json``: made by something else (a
    published CIFAR-10-C folder, say), from data that cannot be checked."""
    if out.is_dir() and any(f.suffix == ".npy" for f in out.iterdir()):
        raise DataError(
            f"{out} already holds .npy files but no {META}, so which data made them is unknown; use a new folder."
        )
