"""Zarr v3 groups and arrays as plain files: the one way a study is written (and its metadata read).

Private to :mod:`onnx_geom.store`; arrays are read by :mod:`onnx_geom.store._zarrarray`. The files follow the Zarr v3 spec as zarr-python 3 writes it (``zarr.json``
metadata, a regular chunk grid, default chunk keys, the ``bytes`` codec then ``zstd``), so zarr-python and
xarray read them; zarr-python itself is not used (its event-loop and worker-thread hops cost milliseconds per
call, many per unit). Written here: chunk keys with the ``.`` separator (``c.0.0``: no folder per chunk row),
zstd at level -1 (zstd's fast mode: post-ReLU features to 0.60 of their raw size against 0.55 at zarr's default
level, encoded 4-10 times faster), every array's ``dimension_names``.

Metadata is replaced whole (a temporary file renamed into place), and synced to the disk first where it marks
something complete (``durable=True``). An array's chunks are written in place and its ``zarr.json`` last.
Every function takes the study's ``root``: each path is checked to lie inside it, with no link on the way
(:mod:`onnx_geom.store._guard`, the one module that touches the disk).

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> write_array(root / "a", np.arange(6, dtype=np.float32).reshape(3, 2), ["row", "column"], chunks=(2, 2), root=root)
>>> sorted(p.name for p in (root / "a").iterdir()), read_meta(root / "a", root=root)["dimension_names"]
(['c.0.0', 'c.1.0', 'zarr.json'], ['row', 'column'])
"""

from __future__ import annotations

import contextlib
import errno
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom._files import ZARR_JSON
from onnx_geom.errors import StudyError
from onnx_geom.store import _guard
from onnx_geom.store._layout import valid_name

META = ZARR_JSON
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
    path: Path,
    data: bytes | memoryview,
    *,
    root: Path,
    atomic: bool = False,
    durable: bool = False,
    sync: bool = False,
    chunk: bool = False,
) -> None:
    """Write ``data`` to ``path`` in the study at ``root``, creating folders, never through a link. ``atomic``:
    replaced whole through :func:`onnx_geom._files.write_bytes`; ``durable``: that, and synced to the disk before
    the rename; ``sync`` (not atomic): written in place and synced to the disk. ``chunk``: a chunk of an array
    being written, whose folder the writer checked and made (only the file itself is checked)."""
    if atomic or durable:
        _guard.replace_file(root, path, data, sync=durable)
    else:
        _guard.write_file(root, path, data, sync=sync, parent_checked=chunk)


# ------------------------------------------------------------------------------------------------- metadata
def read_meta(folder: Path, *, root: Path, strict: bool = False) -> dict[str, Any] | None:
    """The parsed ``zarr.json`` of a node; None when there is none (or, unless ``strict``, when it is not a JSON
    object; ``strict``: ``ValueError`` then). A link or a special file there is a :class:`StudyError`."""
    raw = _guard.read_bytes(root, folder / META)
    if raw is None:
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


def group_attrs(folder: Path, *, root: Path) -> dict[str, Any] | None:
    """The attributes of the group at ``folder``; None when it is not a (readable) group."""
    meta = read_meta(folder, root=root)
    if meta is None or meta.get("node_type") != "group":
        return None
    attrs = meta.get("attributes")
    return attrs if isinstance(attrs, dict) else {}


def child_folders(folder: Path, *, root: Path, digits: bool = False) -> tuple[list[str], list[str]]:
    """The folders directly inside ``folder``: ``(names, odd)``, sorted; ``names`` follow the rule of names
    (:func:`onnx_geom.store._layout.valid_name`; ``digits``: are digits), ``odd`` do not (a damaged or hostile
    study's: never used, only reported)."""
    names: list[str] = []
    odd: list[str] = []
    for name in _guard.folders(root, folder):
        ok = (
            name.isascii() and name.isdigit() and name == str(int(name)) and len(name) <= 9
            if digits
            else valid_name(name)
        )
        (names if ok else odd).append(name)
    return names, odd


def _json(meta: dict[str, Any]) -> bytes:
    # compact (the C encoder, no indent); NaN and infinities as zarr-python writes them (NaN, Infinity)
    return json.dumps(meta, separators=(",", ":")).encode()


def write_group(folder: Path, attrs: dict[str, Any], *, root: Path, durable: bool = False) -> None:
    """Write (or replace, whole) the metadata of the group at ``folder``: one file write."""
    put(
        folder / META,
        _json({"attributes": attrs, "zarr_format": 3, "node_type": "group"}),
        root=root,
        durable=durable,
        atomic=True,
    )


def require_groups(root: Path, key: str, attrs: dict[str, Any] | None = None) -> None:
    """Make every group on the path ``key`` below ``root`` that does not exist (or is unreadable): the last one
    with ``attrs`` (not synced: a claim), the others with none, synced to the disk. Looks from the end, so a
    group below existing ones costs two reads."""
    parts = key.split("/")
    depth = len(parts)
    while depth > 0 and group_attrs(root.joinpath(*parts[:depth]), root=root) is None:
        depth -= 1
    for i in range(depth, len(parts) - 1):  # groups others hang below: durable
        write_group(root.joinpath(*parts[: i + 1]), {}, root=root, durable=True)
    if depth < len(parts):
        write_group(root / key, attrs or {}, root=root)


def remove(folder: Path, *, root: Path) -> None:
    """Remove a node (array or group) and everything below it, if it exists (links below it are removed, never
    followed; a link on the way to it is a :class:`StudyError`)."""
    _guard.remove(root, folder)


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
        root: Path,
        sync: bool = False,
    ) -> None:
        self.folder, self.shape, self.dtype = folder, tuple(int(s) for s in shape), np.dtype(dtype)
        self.root = root
        self.chunks = tuple(int(c) for c in chunks)
        if not self.shape or len(self.chunks) != len(self.shape):
            raise ValueError(f"an array of shape {self.shape} cannot be written in chunks {self.chunks}")
        self._meta = _json(array_meta(self.shape, self.dtype, self.chunks, dimension_names))
        self._sync, self._codec = sync, zstd()
        self._pending: list[np.ndarray] = []
        self.done = 0
        remove(folder, root=root)
        _guard.makedirs(root, folder)

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
        key = ".".join(("c", *map(str, index)))
        put(self.folder / key, self._codec.encode(data), root=self.root, sync=self._sync, chunk=True)

    def close(self, *, atomic: bool = True, durable: bool = False) -> None:
        """Write what is buffered, check that every row was written, then write the array's ``zarr.json``:
        ``atomic``, replaced whole (an array in a unit marked incomplete need not be); ``durable``, synced."""
        self._flush(final=True)
        if self.done != self.shape[0]:
            raise StudyError(
                f"only {self.done} of {self.shape[0]} rows of '{self.folder.name}' were written; the unit stays incomplete."
            )
        put(self.folder / META, self._meta, root=self.root, atomic=atomic, durable=durable)


def write_array(
    folder: Path,
    array: Any,
    dimension_names: Sequence[str],
    *,
    root: Path,
    chunks: Sequence[int],
    durable: bool = False,
) -> None:
    """Write a whole array (a numpy array with at least one axis, or anything sliceable by rows with a ``shape``
    and ``dtype``: it is read one chunk of rows at a time) at ``folder``, chunked by rows (``chunks[1:]`` covers
    ``shape[1:]``). ``durable``: its chunks and its ``zarr.json`` are synced to the disk (data written once)."""
    writer = ArrayWriter(folder, array.shape, array.dtype, chunks, dimension_names, root=root, sync=durable)
    for start in range(0, array.shape[0], writer.chunks[0]):
        writer.append(np.asarray(array[start : start + writer.chunks[0]]))
    writer.close(durable=durable)
