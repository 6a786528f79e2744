"""Zarr v3 groups and arrays written and read as plain files, for the study's many small units.

Private to :mod:`onnx_geom.store`. zarr-python sends every call through its event-loop thread and every file
operation through a worker thread; on a busy machine those hops cost milliseconds, many per unit. The files
written here follow the Zarr v3 spec exactly as zarr-python writes them (``zarr.json`` metadata, regular chunk
grid, default chunk keys, ``bytes`` + ``zstd`` codecs), so plain zarr reads them. Group metadata (which holds a
unit's ``complete`` flag) is written to a ``*.partial`` file first and renamed into place, as zarr-python does;
arrays are written in place (``atomic=False``): they belong to a unit marked incomplete until they are all
written, and an array is removed and written afresh whenever it is written again. Chunk keys use the ``.``
separator (``c.0.0``: no folder per chunk row) and the codec is zstd level -1, zstd's fast mode (post-ReLU
features: 0.60 of their raw size against 0.55 at zarr's default level, encoded 4-10 times faster).

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "a"
>>> write_array(folder, np.arange(6, dtype=np.float32).reshape(3, 2), chunks=(2, 2))
>>> read_array(folder)
array([[0., 1.],
       [2., 3.],
       [4., 5.]], dtype=float32)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom._files import write_bytes

META = "zarr.json"
#: dtypes written and read here (a unit array of another dtype is refused; an array of another form, written by
#: another tool, is read through zarr-python).
DTYPES = {
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
}
_ZSTD_LEVEL = -1


def put(path: Path, data: bytes | memoryview, *, atomic: bool = True) -> None:
    """Write ``data`` to ``path``, creating folders; ``atomic``: through :func:`onnx_geom._files.write_bytes`."""
    if atomic:
        write_bytes(path, data)
        return
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _json(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, separators=(",", ":")).encode()  # compact: the C encoder, no indent


def read_meta(folder: Path) -> dict[str, Any] | None:
    """The parsed ``zarr.json`` of a node, or None when there is none or it is not a JSON object."""
    try:
        with open(folder / META, "rb") as f:
            meta = json.loads(f.read())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


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


def write_group(folder: Path, attrs: dict[str, Any]) -> None:
    """Write (or replace) the metadata of the group at ``folder`` with ``attrs``."""
    meta = {"attributes": attrs, "zarr_format": 3, "node_type": "group"}
    put(folder / META, _json(meta))


def require_groups(root: Path, key: str, attrs: dict[str, Any] | None = None) -> None:
    """Make every group on the path ``key`` below ``root`` that does not exist yet: the last one with ``attrs``,
    the others with none.
    """
    folder, parts = root, key.split("/")
    for i, part in enumerate(parts):
        folder = folder / part
        if not (folder / META).is_file():
            write_group(folder, (attrs or {}) if i == len(parts) - 1 else {})


def remove(folder: Path) -> None:
    """Remove a node (array or group) and everything below it, if it exists."""
    if folder.is_dir():
        shutil.rmtree(folder)


def _fill(dtype: np.dtype) -> Any:
    return False if dtype == np.bool_ else (0.0 if dtype.kind == "f" else 0)


def array_meta(shape: Sequence[int], dtype: Any, chunks: Sequence[int]) -> dict[str, Any]:
    """The ``zarr.json`` of an array as zarr-python 3 writes it by default (bytes little-endian, then zstd)."""
    dtype = np.dtype(dtype)
    if dtype.name not in DTYPES:
        raise TypeError(f"arrays of {dtype} are not stored here")
    bytes_codec: dict[str, Any] = (
        {"name": "bytes"} if dtype.itemsize == 1 else {"name": "bytes", "configuration": {"endian": "little"}}
    )
    return {
        "shape": [int(s) for s in shape],
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [int(c) for c in chunks]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "."}},
        "fill_value": _fill(dtype),
        "codecs": [bytes_codec, {"name": "zstd", "configuration": {"level": _ZSTD_LEVEL, "checksum": False}}],
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def create_array(folder: Path, shape: Sequence[int], dtype: Any, chunks: Sequence[int]) -> None:
    """Replace whatever is at ``folder`` with an empty array (its metadata only; chunks come with :func:`write_chunk`)."""
    remove(folder)
    os.makedirs(folder, exist_ok=True)
    put(folder / META, _json(array_meta(shape, dtype, chunks)), atomic=False)


def _codec() -> Any:
    from numcodecs import Zstd

    return Zstd(level=_ZSTD_LEVEL)


def write_chunk(folder: Path, index: Sequence[int], block: np.ndarray, chunks: Sequence[int]) -> None:
    """Write the chunk at grid position ``index`` of the array at ``folder``; a clipped last chunk (fewer
    rows than ``chunks``) is padded with the fill value, as Zarr v3 stores every chunk whole.
    """
    if block.shape != tuple(chunks):
        padded = np.full(tuple(chunks), _fill(block.dtype), dtype=block.dtype)
        padded[tuple(slice(0, n) for n in block.shape)] = block
        block = padded
    data = np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("<") if block.dtype.itemsize > 1 else block.dtype)
    put(folder / ".".join(("c", *map(str, index))), _codec().encode(data), atomic=False)


def write_array(folder: Path, array: np.ndarray, *, chunks: Sequence[int]) -> None:
    """Write a whole array (chunked along rows only: ``chunks[1:] == array.shape[1:]``) at ``folder``."""
    create_array(folder, array.shape, array.dtype, chunks)
    step = max(1, int(chunks[0])) if array.ndim else 1
    if array.ndim == 0:
        write_chunk(folder, (), array, ())
        return
    for i, start in enumerate(range(0, array.shape[0], step)):
        write_chunk(folder, (i,) + (0,) * (array.ndim - 1), array[start : start + step], chunks)


def _endian(codec: dict[str, Any]) -> str | None:
    if codec.get("name") != "bytes":
        return None
    endian = (codec.get("configuration") or {}).get("endian", "little")
    return {"little": "<", "big": ">"}.get(endian)


def read_array(folder: Path) -> np.ndarray | None:
    """The array at ``folder``, or None when it is not one written in the plain form this module reads
    (then zarr-python reads it); missing chunks hold the fill value, as in zarr.
    """
    meta = read_meta(folder)
    try:
        if (
            meta is None
            or meta.get("node_type") != "array"
            or meta.get("zarr_format") != 3
            or meta.get("storage_transformers")
        ):
            return None
        name, codecs = meta["data_type"], meta["codecs"]
        grid, keys = meta["chunk_grid"], meta["chunk_key_encoding"]
        if (
            not isinstance(name, str)
            or name not in DTYPES
            or grid.get("name") != "regular"
            or keys.get("name") != "default"
        ):
            return None
        endian = _endian(codecs[0]) if codecs else None
        rest = [c.get("name") for c in codecs[1:]]
        if endian is None or rest not in ([], ["zstd"]):
            return None
        shape = tuple(int(s) for s in meta["shape"])
        chunks = tuple(int(c) for c in grid["configuration"]["chunk_shape"])
        sep = (keys.get("configuration") or {}).get("separator", "/")
        fill = meta["fill_value"]
        if len(chunks) != len(shape) or sep not in ("/", ".") or not isinstance(fill, (bool, int, float)):
            return None
    except (KeyError, TypeError, AttributeError, IndexError):
        return None
    stored = np.dtype(name).newbyteorder(endian) if np.dtype(name).itemsize > 1 else np.dtype(name)
    out = np.empty(shape, dtype=np.dtype(name))
    decode = _codec().decode if rest else None
    for index in np.ndindex(*(-(-s // c) if c else 0 for s, c in zip(shape, chunks, strict=True))):
        region = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, chunks, shape, strict=True))
        try:
            with open(folder / sep.join(("c", *map(str, index))), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            out[region] = fill  # zarr does not write chunks that hold only the fill value
            continue
        target = out[region]
        if (
            decode is not None
            and out.ndim
            and target.shape == chunks
            and target.flags.c_contiguous
            and stored == target.dtype
        ):
            decode(raw, out=target)  # straight into the result: no copy (whole row chunks)
            continue
        block = np.frombuffer(decode(raw) if decode else raw, dtype=stored).reshape(chunks)
        out[region] = block[tuple(slice(0, r.stop - r.start) for r in region)]
    return out
