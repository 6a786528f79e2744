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
            raise StudyError(f"no space left on the device while {what}; free some space and run again (completed units are kept).") from None
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StudyError(f"permission denied while {what}; choose a study folder you can write to.") from None
        raise StudyError(f"could not finish {what} ({err.strerror or err}); completed units are kept, run again.") from None


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


class UnitWriter:
    """Appends rows to the arrays of one unit being written; whole chunks are flushed as they fill.

    Get one from :meth:`Study.writing`; call :meth:`append` with one keyword per array, in order of rows.
    """

    def __init__(self, group: Any, spec: Mapping[str, tuple[Sequence[int], str]]) -> None:
        self._arrays: dict[str, Any] = {}
        self._pending: dict[str, list[np.ndarray]] = {}
        self._done: dict[str, int] = {}
        for name, (shape, dtype) in spec.items():
            shape = tuple(int(s) for s in shape)
            chunks = _row_chunks(shape, np.dtype(dtype).itemsize)
            self._arrays[name] = group.create_array(name, shape=shape, dtype=dtype, chunks=chunks, overwrite=True)
            self._pending[name], self._done[name] = [], 0

    def append(self, **arrays: np.ndarray) -> None:
        """Add the next rows of each named array (``features=(B, D)``, ...)."""
        for name, rows in arrays.items():
            if name not in self._arrays:
                raise KeyError(f"this unit has no array {name!r}; it has {sorted(self._arrays)}")
            self._pending[name].append(np.asarray(rows))
            self._flush(name, final=False)

    def _flush(self, name: str, *, final: bool) -> None:
        array, pending = self._arrays[name], self._pending[name]
        buffered = sum(len(p) for p in pending)
        step = array.chunks[0]
        ready = buffered if final else (buffered // step) * step
        if ready == 0:
            return
        block = np.concatenate(pending) if len(pending) > 1 else pending[0]
        start = self._done[name]
        if start + ready > array.shape[0]:
            raise StudyError(f"more rows were given for '{name}' than its {array.shape[0]} rows; this is a bug in the caller.")
        array[start : start + ready] = block[:ready]
        self._done[name] = start + ready
        self._pending[name] = [block[ready:]] if ready < len(block) else []

    def close(self) -> None:
        """Flush what is buffered and check that every row of every array was written."""
        for name, array in self._arrays.items():
            self._flush(name, final=True)
            if self._done[name] != array.shape[0]:
                raise StudyError(f"only {self._done[name]} of {array.shape[0]} rows of '{name}' were written; the unit stays incomplete.")
