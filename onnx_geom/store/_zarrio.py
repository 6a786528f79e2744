"""Zarr v3 groups and arrays as plain files: the one way a study is written (and its metadata read).

Private to :mod:`onnx_geom.store`; arrays are read by :mod:`onnx_geom.store._zarrarray`. The files follow the Zarr v3 spec as zarr-python 3 writes it (``zarr.json``
metadata, a regular chunk grid, default chunk keys, the ``bytes`` codec then ``zstd``), so zarr-python and
xarray read them; zarr-python itself is not used (its event-loop and worker-thread hops cost milliseconds per
call, many per unit). Written here: chunk keys with the ``.`` separator (``c.0.0``: no folder per chunk row),
zstd at level -1 (zstd's fast mode: post-ReLU features to 0.60 of their raw size against 0.55 at zarr's default
level, encoded 4-10 times faster), every array's ``dimension_names``.

Metadata is replaced whole (a temporary file renamed into place), and synced to the disk first where it marks
something complete (``durable=True``). An array's chunks are written in place and its ``zarr.json`` last.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "a"
>>> write_array(folder, np.arange(6, dtype=np.float32).reshape(3, 2), ["row", "column"], chunks=(2, 2))
>>> sorted(p.name for p in folder.iterdir()), read_meta(folder)["dimension_names"]
(['c.0.0', 'c.1.0', 'zarr.json'], ['row', 'column'])
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom._files import write_bytes
from onnx_geom.errors import StudyError

META = "zarr.json"
#: The dtypes written and read here.
DTYPES = {
    *("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"),
    *("float16", "float32", "float64"),
}
ZSTD_LEVEL = -1


@contextlib.contextmanager
def io_errors(what: str) -> Iterator[None]:
    """Turn a full disk, a denied permission or another OS error into one sentence (a :class:`StudyError`)."""
    try:
        yield
    except StudyError:
        raise
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise StudyError(
                f"no space left on the device while {what}; free some space and run again (completed units are kept)."
            ) from None
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StudyError(f"permission denied while {what}; choose a study folder you can write to.") from None
        raise StudyError(
            f"could not finish {what} ({err.strerror or err}); completed units are kept, run again."
        ) from None


def put(
    path: Path, data: bytes | memoryview, *, atomic: bool = False, durable: bool = False, sync: bool = False
) -> None:
    """Write ``data`` to ``path``, creating folders. ``atomic``: replaced whole through
    :func:`onnx_geom._files.write_bytes`; ``durable``: that, and synced to the disk before the rename; ``sync``
    (not atomic): written in place and synced to the disk."""
    if atomic or durable:
        write_bytes(path, data, sync=durable)
        return
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


# ------------------------------------------------------------------------------------------------- metadata
def read_meta(folder: Path, *, strict: bool = False) -> dict[str, Any] | None:
    """The parsed ``zarr.json`` of a node; None when there is none (or, unless ``strict``, when it is not a JSON
    object; ``strict``: ``ValueError`` then)."""
    try:
        with open(folder / META, "rb") as f:
            raw = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        meta = json.loads(raw)
        if not isinstance(meta, dict):
            raise ValueError("zarr.json does not hold a JSON object")
    except ValueError:
        if strict:
            raise
        return None
    return meta


def group_attrs(folder: Path) -> dict[str, Any] | None:
    """The attributes of the group at ``folder``; None when it is not a (readable) group."""
    meta = read_meta(folder)
    if meta is None or meta.get("node_type") != "group":
        return None
    attrs = meta.get("attributes")
    return attrs if isinstance(attrs, dict) else {}


def child_groups(folder: Path, *, digits: bool = False) -> dict[str, dict[str, Any]]:
    """The Zarr groups directly inside ``folder`` (folders holding a group ``zarr.json``), sorted: ``{name: attrs}``."""
    try:
        entries = sorted(e.name for e in os.scandir(folder) if e.is_dir() and (not digits or e.name.isdigit()))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    found = {name: group_attrs(folder / name) for name in entries}
    return {name: attrs for name, attrs in found.items() if attrs is not None}


def _json(meta: dict[str, Any]) -> bytes:
    # compact (the C encoder, no indent); NaN and infinities as zarr-python writes them (NaN, Infinity)
    return json.dumps(meta, separators=(",", ":")).encode()


def write_group(folder: Path, attrs: dict[str, Any], *, durable: bool = False) -> None:
    """Write (or replace, whole) the metadata of the group at ``folder``: one file write."""
    put(
        folder / META,
        _json({"attributes": attrs, "zarr_format": 3, "node_type": "group"}),
        durable=durable,
        atomic=True,
    )


def require_groups(root: Path, key: str, attrs: dict[str, Any] | None = None) -> None:
    """Make every group on the path ``key`` below ``root`` that does not exist (or is unreadable): the last one
    with ``attrs`` (not synced: a claim), the others with none, synced to the disk. Looks from the end, so a
    group below existing ones costs two reads."""
    parts = key.split("/")
    depth = len(parts)
    while depth > 0 and group_attrs(root.joinpath(*parts[:depth])) is None:
        depth -= 1
    for i in range(depth, len(parts) - 1):  # groups others hang below: durable
        write_group(root.joinpath(*parts[: i + 1]), {}, durable=True)
    if depth < len(parts):
        write_group(root / key, attrs or {})


def remove(folder: Path) -> None:
    """Remove a node (array or group) and everything below it, if it exists."""
    if folder.is_dir():
        shutil.rmtree(folder)


# ------------------------------------------------------------------------------------------------- writing
def _fill(dtype: np.dtype) -> Any:
    return False if dtype == np.bool_ else (0.0 if dtype.kind == "f" else 0)


def array_meta(
    shape: Sequence[int], dtype: Any, chunks: Sequence[int], dimension_names: Sequence[str]
) -> dict[str, Any]:
    """The ``zarr.json`` of an array: zarr-python 3's defaults (bytes little-endian, then zstd), ``.`` chunk keys."""
    dtype = np.dtype(dtype)
    if dtype.name not in DTYPES:
        raise TypeError(f"arrays of {dtype} are not stored here")
    if len(dimension_names) != len(shape):
        raise ValueError(f"{len(shape)} axes need {len(shape)} dimension names, got {list(dimension_names)}")
    bytes_codec: dict[str, Any] = (
        {"name": "bytes"} if dtype.itemsize == 1 else {"name": "bytes", "configuration": {"endian": "little"}}
    )
    return {
        "shape": [int(s) for s in shape],
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [int(c) for c in chunks]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "."}},
        "fill_value": _fill(dtype),
        "codecs": [bytes_codec, {"name": "zstd", "configuration": {"level": ZSTD_LEVEL, "checksum": False}}],
        "attributes": {},
        "dimension_names": [str(d) for d in dimension_names],
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def zstd() -> Any:
    from numcodecs import Zstd

    return Zstd(level=ZSTD_LEVEL)


class ArrayWriter:
    """Writes one array (at least one axis) in row order: :meth:`append` rows, whole chunks are written as they
    fill; :meth:`close` writes the last chunk and then the array's ``zarr.json``. Chunks hold whole rows
    (``chunks[1:]`` covers ``shape[1:]``). ``sync``: each chunk is synced to the disk as it is written.
    """

    def __init__(
        self,
        folder: Path,
        shape: Sequence[int],
        dtype: Any,
        chunks: Sequence[int],
        dimension_names: Sequence[str],
        *,
        sync: bool = False,
    ) -> None:
        self.folder, self.shape, self.dtype = folder, tuple(int(s) for s in shape), np.dtype(dtype)
        self.chunks = tuple(int(c) for c in chunks)
        if not self.shape or len(self.chunks) != len(self.shape):
            raise ValueError(f"an array of shape {self.shape} cannot be written in chunks {self.chunks}")
        self._meta = _json(array_meta(self.shape, self.dtype, self.chunks, dimension_names))
        self._sync, self._codec = sync, zstd()
        self._pending: list[np.ndarray] = []
        self.done = 0
        remove(folder)
        os.makedirs(folder, exist_ok=True)

    def append(self, rows: np.ndarray) -> None:
        """Add the next rows (``(B, *shape[1:])``)."""
        rows = np.asarray(rows)
        if rows.shape[1:] != self.shape[1:]:
            raise StudyError(
                f"rows of '{self.folder.name}' must be {self.shape[1:]}, got {rows.shape[1:]}; this is a bug in the caller."
            )
        self._pending.append(rows)
        self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        buffered, step = sum(len(p) for p in self._pending), self.chunks[0]
        if self.done + buffered > self.shape[0]:
            raise StudyError(
                f"more rows were given for '{self.folder.name}' than its {self.shape[0]} rows; this is a bug in the caller."
            )
        ready = buffered if final else (buffered // step) * step
        if ready == 0:
            return
        block = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        block = block.astype(self.dtype, copy=False)
        for offset in range(0, ready, step):
            index = ((self.done + offset) // step,) + (0,) * (len(self.shape) - 1)
            self._write_chunk(index, block[offset : min(offset + step, ready)])
        self.done += ready
        self._pending = [block[ready:]] if ready < len(block) else []

    def _write_chunk(self, index: tuple[int, ...], block: np.ndarray) -> None:
        if block.shape != self.chunks:  # the clipped last chunk, padded: Zarr v3 stores every chunk whole
            padded = np.full(self.chunks, _fill(self.dtype), dtype=self.dtype)
            padded[tuple(slice(0, n) for n in block.shape)] = block
            block = padded
        data = np.ascontiguousarray(block, dtype=self.dtype.newbyteorder("<") if self.dtype.itemsize > 1 else None)
        put(self.folder / ".".join(("c", *map(str, index))), self._codec.encode(data), sync=self._sync)

    def close(self, *, atomic: bool = True, durable: bool = False) -> None:
        """Write what is buffered, check that every row was written, then write the array's ``zarr.json``:
        ``atomic``, replaced whole (an array in a unit marked incomplete need not be); ``durable``, synced."""
        self._flush(final=True)
        if self.done != self.shape[0]:
            raise StudyError(
                f"only {self.done} of {self.shape[0]} rows of '{self.folder.name}' were written; the unit stays incomplete."
            )
        put(self.folder / META, self._meta, atomic=atomic, durable=durable)


def write_array(
    folder: Path,
    array: Any,
    dimension_names: Sequence[str],
    *,
    chunks: Sequence[int],
    sync: bool = False,
    durable: bool = False,
) -> None:
    """Write a whole array (a numpy array with at least one axis, or anything sliceable by rows with a ``shape``
    and ``dtype``: it is read one chunk of rows at a time) at ``folder``, chunked by rows (``chunks[1:]`` covers
    ``shape[1:]``)."""
    writer = ArrayWriter(folder, array.shape, array.dtype, chunks, dimension_names, sync=sync)
    for start in range(0, array.shape[0], writer.chunks[0]):
        writer.append(np.asarray(array[start : start + writer.chunks[0]]))
    writer.close(durable=durable)
