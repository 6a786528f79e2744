"""The lazy reader of Zarr v3 arrays stored as plain files (:mod:`onnx_geom.store._zarrio` writes them).

Private to :mod:`onnx_geom.store`. Reads arrays of the dtypes in :data:`~onnx_geom.store._zarrio.DTYPES` with
the ``bytes`` codec (either endianness), optionally followed by ``zstd``, on a regular chunk grid under either
chunk key encoding (``default`` or ``v2``, ``/`` or ``.``): what onnx-geom writes and what zarr-python 3 writes
by default. An array stored any other way (another codec, sharding, a filter) is a one-sentence
:class:`StudyError`, as is a damaged chunk. Every file is read through :mod:`onnx_geom.store._guard` (never
through a link, a regular file of bounded size), and a chunk is decoded into a buffer of the chunk's size (a
zstd frame that declares another size is damaged: never decompressed).

>>> import tempfile, pathlib
>>> from onnx_geom.store._zarrio import write_array
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> write_array(root / "a", np.arange(6, dtype=np.float32).reshape(3, 2), ["row", "column"], chunks=(2, 2), root=root)
>>> array = open_array(root / "a", root=root)
>>> array.shape, array.dimension_names, array[2], array[[0, 2], 1]
((3, 2), ('row', 'column'), array([4., 5.], dtype=float32), array([1., 5.], dtype=float32))
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom.errors import StudyError
from onnx_geom.store import _guard
from onnx_geom.store._schema import Damaged
from onnx_geom.store._zarrio import DTYPES, META, read_meta, zstd

_FLOAT_FILLS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_CHECK = "`onnx-geom check STUDY` lists what is, and how to repair it"
#: The largest chunk read (decoded): larger ones are refused before anything is allocated.
MAX_CHUNK_BYTES = 1 << 30


def frame_size(raw: bytes) -> int | None:
    """The decoded size a zstd frame declares in its header (None when it declares none or is no frame).

    >>> frame_size(zstd().encode(np.zeros(1000, np.uint8))), frame_size(b"nope")
    (1000, None)
    """
    if len(raw) < 6 or raw[:4] != b"\x28\xb5\x2f\xfd":
        return None
    descriptor = raw[4]
    size_flag, single = descriptor >> 6, (descriptor >> 5) & 1
    at = 5 + (0 if single else 1) + (0, 1, 2, 4)[descriptor & 3]
    width = (1 if single else 0, 2, 4, 8)[size_flag]
    if width == 0 or len(raw) < at + width:
        return None
    size = int.from_bytes(raw[at : at + width], "little")
    return size + 256 if width == 2 else size


def _unsupported(folder: Path, what: str) -> StudyError:
    return StudyError(
        f"the array at {folder} is stored with {what}, which onnx-geom does not read "
        f"(it reads {'/'.join(sorted(DTYPES))} arrays with the bytes codec, optionally then zstd); "
        "read it with zarr-python."
    )


class ZarrArray:
    """A Zarr v3 array on disk, read lazily: ``array[idx]`` reads only the chunks that hold the rows of ``idx``
    (any numpy index; the first axis picks the chunks); ``array[...]`` / ``np.asarray(array)`` reads it all.
    Missing chunks hold the fill value, as in Zarr.
    """

    def __init__(self, folder: Path, meta: dict[str, Any], *, root: Path) -> None:
        self.folder, self.root = folder, root
        try:
            self._parse(folder, meta)
        except StudyError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError, IndexError, OverflowError):
            raise Damaged(
                f"the array metadata at {folder / META} is damaged", _CHECK, "the study may be damaged"
            ) from None

    def _parse(self, folder: Path, meta: dict[str, Any]) -> None:
        name, codecs = meta["data_type"], list(meta["codecs"])
        grid, keys = meta["chunk_grid"], meta["chunk_key_encoding"]
        shape = tuple(int(s) for s in meta["shape"])
        chunks = tuple(int(c) for c in grid["configuration"]["chunk_shape"])
        encoding, sep = keys["name"], (keys.get("configuration") or {}).get("separator")
        fill, dims = meta.get("fill_value"), meta.get("dimension_names")
        if not isinstance(name, str) or name not in DTYPES:
            raise _unsupported(folder, f"the data type {name!r}")
        if grid.get("name") != "regular" or len(chunks) != len(shape) or min(chunks, default=1) < 1:
            raise _unsupported(folder, f"the chunk grid {grid!r}")
        if encoding not in ("default", "v2") or (sep or ("/" if encoding == "default" else ".")) not in ("/", "."):
            raise _unsupported(folder, f"the chunk key encoding {keys!r}")
        if meta.get("storage_transformers"):
            raise _unsupported(folder, "storage transformers")
        names = [c.get("name") if isinstance(c, dict) else c for c in codecs]
        first = (codecs[0].get("configuration") if isinstance(codecs[0], dict) else None) or {} if codecs else {}
        endian = first.get("endian", "little") if names[:1] == ["bytes"] else None
        if endian not in ("little", "big") or names[1:] not in ([], ["zstd"]):
            raise _unsupported(folder, f"the codecs {names}")
        dtype = np.dtype(name)
        if isinstance(fill, str) and dtype.kind == "f" and fill in _FLOAT_FILLS:
            fill = _FLOAT_FILLS[fill]
        if not isinstance(fill, (bool, int, float)):
            raise _unsupported(folder, f"the fill value {fill!r}")
        if min(shape, default=0) < 0 or math.prod(chunks) * dtype.itemsize > MAX_CHUNK_BYTES:
            raise Damaged(
                f"the array metadata at {folder / META} declares a shape {list(shape)} or chunks {list(chunks)} "
                "onnx-geom does not read (chunks over 1 GiB)",
                _CHECK,
                "the study may be damaged",
            )
        self.shape, self.dtype, self.chunks, self.fill_value = shape, dtype, chunks, fill
        self.dimension_names = tuple(dims) if isinstance(dims, list) else None
        self.attrs = dict(meta.get("attributes") or {})
        self._stored = dtype.newbyteorder("<" if endian == "little" else ">") if dtype.itemsize > 1 else dtype
        self._zstd = zstd() if names[1:] else None
        self._key_sep = sep or ("/" if encoding == "default" else ".")
        self._v2 = encoding == "v2"
        self._grid = tuple(-(-s // c) for s, c in zip(shape, chunks, strict=True))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"<ZarrArray {self.folder} shape={self.shape} dtype={self.dtype}>"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.read()
        return out if dtype is None else out.astype(dtype, copy=False)

    def _key(self, index: tuple[int, ...]) -> str:
        if self._v2:
            return self._key_sep.join(map(str, index)) if index else "0"
        return self._key_sep.join(("c", *map(str, index)))

    def _raw(self, index: tuple[int, ...]) -> bytes | None:
        """The stored bytes of a chunk; None when it is missing (Zarr does not write chunks that hold only the fill
        value). Never through a link (the array's folder was checked when it was opened; chunk keys with ``/``
        have folders of their own, checked here)."""
        path = self.folder / self._key(index)
        return _guard.read_bytes(self.root, path, parent_checked=path.parent == self.folder)

    def _damaged(self, index: tuple[int, ...], err: Exception) -> StudyError:
        return Damaged(
            f"the array at {self.folder} is unreadable (chunk {self._key(index)}: {err})", _CHECK, "it may be damaged"
        )

    def _decode(self, index: tuple[int, ...], raw: bytes, out: np.ndarray | None = None) -> np.ndarray:
        """The whole chunk at ``index`` (``out``: decoded straight into it, a contiguous native whole chunk)."""
        try:
            if self._zstd is None:
                chunk = np.frombuffer(raw, dtype=self._stored).reshape(self.chunks)
            else:
                nbytes = math.prod(self.chunks) * self._stored.itemsize
                declared = frame_size(raw)
                if declared is not None and declared != nbytes:
                    raise ValueError(f"its zstd frame holds {declared} bytes, not the chunk's {nbytes}")
                if out is not None:  # straight into the caller's rows
                    self._zstd.decode(raw, out=out)
                    return out
                chunk = np.empty(self.chunks, self._stored)  # bounded: a frame larger than the chunk is refused
                self._zstd.decode(raw, out=chunk)
            if out is not None:
                out[...] = chunk
            return chunk
        except (RuntimeError, ValueError, TypeError) as err:  # RuntimeError: a damaged zstd frame (numcodecs)
            raise self._damaged(index, err) from None

    def _row_block(self, row: int, out: np.ndarray) -> None:
        """Fill ``out`` (the rows of chunk row ``row``, clipped at the end) from the chunks of that row."""
        for rest in np.ndindex(*self._grid[1:]):
            index = (row, *rest)
            region = tuple(
                slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(rest, self.chunks[1:], self.shape[1:], strict=True)
            )
            where_in_out = (slice(None), *region)
            target = out[where_in_out]
            raw = self._raw(index)
            if raw is None:
                target[...] = self.fill_value
            elif target.shape == self.chunks and target.flags.c_contiguous and self._stored == target.dtype:
                self._decode(index, raw, out=target)  # no copy: whole row chunks of a native dtype
            else:
                chunk = self._decode(index, raw)
                target[...] = chunk[tuple(slice(0, n) for n in target.shape)]

    def read(self) -> np.ndarray:
        """The whole array, numpy."""
        out = np.empty(self.shape, self.dtype)
        if not self.shape:
            raw = self._raw(())
            out[...] = self.fill_value if raw is None else self._decode((), raw).reshape(())
            return out
        step = self.chunks[0]
        for row in range(self._grid[0]):
            self._row_block(row, out[row * step : (row + 1) * step])
        return out

    def verify(self) -> int:
        """Decode every stored chunk, one at a time (nothing is kept); a damaged one is a :class:`StudyError`.
        Returns the number of chunks read (missing ones hold the fill value, as Zarr allows)."""
        read = 0
        for index in np.ndindex(*self._grid) if self.shape else [()]:
            raw = self._raw(tuple(index))
            if raw is not None:
                self._decode(tuple(index), raw)
                read += 1
        return read

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows ``rows`` (int indices, in [0, len)), reading only the chunks that hold them."""
        rows = np.asarray(rows, np.int64).ravel()
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        step = self.chunks[0]
        which = rows // step
        order = np.argsort(which, kind="stable")
        bounds = np.flatnonzero(np.diff(which[order])) + 1
        for group in np.split(order, bounds) if len(rows) else []:
            row = int(which[group[0]])
            block = np.empty((min(step, self.shape[0] - row * step), *self.shape[1:]), self.dtype)
            self._row_block(row, block)
            out[group] = block[rows[group] - row * step]
        return out

    def __getitem__(self, key: Any) -> Any:
        key = key if isinstance(key, tuple) else (key,)
        first = key[0] if key else Ellipsis
        if (
            not self.shape
            or first is Ellipsis
            or first is None
            or (np.ndim(first) > 1 and np.asarray(first).dtype == bool)
        ):
            return self.read()[key]
        rows = np.arange(self.shape[0])[first]  # numpy's rules: negatives, masks, IndexError
        if isinstance(first, slice):
            every_row = (slice(None), *key[1:])
            return self.take(rows)[every_row]
        if np.ndim(rows) == 0:
            one_row = (0, *key[1:])
            return self.take(rows)[one_row]
        needed, where = np.unique(rows, return_inverse=True)  # each chunk read once, rows in any order
        in_order = (where.reshape(np.shape(rows)), *key[1:])
        return self.take(needed)[in_order]


def open_array(folder: Path, *, root: Path) -> ZarrArray | None:
    """The array at ``folder`` of the study at ``root``, lazy; None when there is no node there. Metadata that is
    not a Zarr v3 array, or an array stored in a form this module does not read, is a one-sentence
    :class:`StudyError`."""
    try:
        meta = read_meta(folder, root=root, strict=True)
    except ValueError:
        raise Damaged(f"{folder / META} is not valid JSON", _CHECK, "the study may be damaged") from None
    if meta is None:
        return None
    if meta.get("node_type") != "array" or meta.get("zarr_format") != 3:
        raise Damaged(
            f"{folder} is not a Zarr v3 array (node type {meta.get('node_type')!r})", _CHECK, "the study may be damaged"
        )
    return ZarrArray(folder, meta, root=root)


def read_array(folder: Path, *, root: Path) -> np.ndarray | None:
    """The whole array at ``folder`` (numpy), or None when there is none (see :func:`open_array`)."""
    array = open_array(folder, root=root)
    return None if array is None else array.read()
