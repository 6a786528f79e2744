"""Low-level pieces of the study store: row chunks, locks, OS errors as sentences, the streaming unit writer.

Private to :mod:`onnx_geom.store`, which re-exports :class:`UnitWriter` and :func:`fingerprint`.

>>> _row_chunks((10_000, 512), 4)
(2048, 512)
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom import _zarr_files
from onnx_geom.errors import StudyError, StudyLockedError

_CHUNK_BYTES = 4 << 20


def _row_chunks(shape: Sequence[int], itemsize: int) -> tuple[int, ...]:
    """Chunks of whole rows, about 4 MiB each: ``(rows, *shape[1:])``."""
    row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * itemsize)
    rows = int(min(max(shape[0], 1), max(1, _CHUNK_BYTES // row_bytes)))
    return (rows, *shape[1:])


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    """Turn disk full / permission errors into one sentence."""
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


@contextlib.contextmanager
def _flock(directory: Path, *, wait_s: float, holder: str) -> Iterator[None]:
    """Exclusive advisory lock on a directory; StudyLockedError if not obtained within ``wait_s`` seconds."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StudyLockedError(holder) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _writer_stamp() -> dict[str, Any]:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": now}


def fingerprint(images: Any, labels: np.ndarray, *, rows: int = 4096) -> str:
    """sha256 of the labels and images (streamed in blocks of ``rows``), to recognise the data of a study."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    for start in range(0, len(images), rows):
        digest.update(np.ascontiguousarray(images[start : start + rows], dtype=np.uint8).tobytes())
    return digest.hexdigest()


def check_spec(spec: Mapping[str, tuple[Sequence[int], str]]) -> None:
    """Refuse, before anything is claimed, unit arrays that cannot be stored: scalars and non-numeric dtypes."""
    for name, (shape, dtype) in spec.items():
        if not tuple(shape):
            raise StudyError(f"array '{name}' of a unit must have rows; got a scalar.")
        if np.dtype(dtype).name not in _zarr_files.DTYPES:
            raise StudyError(
                f"array '{name}' is {np.dtype(dtype)}; a unit holds numbers or booleans "
                f"({', '.join(sorted(_zarr_files.DTYPES))})."
            )


class UnitWriter:
    """Appends rows to the arrays of one unit being written; whole chunks are written as they fill.

    Get one from :meth:`Study.writing`; call :meth:`append` with one keyword per array, in order of rows.
    """

    def __init__(self, folder: Path, spec: Mapping[str, tuple[Sequence[int], str]]) -> None:
        self._folder = folder
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._chunks: dict[str, tuple[int, ...]] = {}
        self._dtypes: dict[str, np.dtype] = {}
        self._pending: dict[str, list[np.ndarray]] = {}
        self._done: dict[str, int] = {}
        for name, (shape, dtype) in spec.items():
            shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
            self._shapes[name], self._dtypes[name] = shape, dtype
            self._chunks[name] = _row_chunks(shape, dtype.itemsize)
            _zarr_files.create_array(folder / name, shape, dtype, self._chunks[name])
            self._pending[name], self._done[name] = [], 0

    def append(self, **arrays: np.ndarray) -> None:
        """Add the next rows of each named array (``features=(B, D)``, ...)."""
        for name, rows in arrays.items():
            if name not in self._shapes:
                raise KeyError(f"this unit has no array {name!r}; it has {sorted(self._shapes)}")
            rows = np.asarray(rows)
            if rows.shape[1:] != self._shapes[name][1:]:
                raise StudyError(
                    f"rows of '{name}' must be {self._shapes[name][1:]}, got {rows.shape[1:]}; this is a bug in the caller."
                )
            self._pending[name].append(rows)
            self._flush(name, final=False)

    def _flush(self, name: str, *, final: bool) -> None:
        pending, shape, chunks = self._pending[name], self._shapes[name], self._chunks[name]
        buffered = sum(len(p) for p in pending)
        step = chunks[0]
        start = self._done[name]
        if start + buffered > shape[0]:
            raise StudyError(
                f"more rows were given for '{name}' than its {shape[0]} rows; this is a bug in the caller."
            )
        ready = buffered if final else (buffered // step) * step
        if ready == 0:
            return
        block = np.concatenate(pending) if len(pending) > 1 else pending[0]
        block = block.astype(self._dtypes[name], copy=False)
        for offset in range(0, ready, step):
            rows = block[offset : min(offset + step, ready)]
            _zarr_files.write_chunk(
                self._folder / name, ((start + offset) // step,) + (0,) * (len(shape) - 1), rows, chunks
            )
        self._done[name] = start + ready
        self._pending[name] = [block[ready:]] if ready < len(block) else []

    def close(self) -> None:
        """Flush what is buffered and check that every row of every array was written."""
        for name, shape in self._shapes.items():
            self._flush(name, final=True)
            if self._done[name] != shape[0]:
                raise StudyError(
                    f"only {self._done[name]} of {shape[0]} rows of '{name}' were written; the unit stays incomplete."
                )
