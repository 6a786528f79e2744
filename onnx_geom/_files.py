"""Files written whole or not at all: the one atomic-write helper that every writer in onnx-geom uses.

A file is written under a temporary name beside its target (same folder, so the rename is atomic), flushed to
the disk (``fsync``), then renamed over the target; if anything fails, the temporary file is removed and the
target is left as it was. A reader therefore sees the old file or the new one, never half of one, even when the
process is killed or the machine loses power.

>>> import tempfile, pathlib
>>> target = pathlib.Path(tempfile.mkdtemp()) / "sub" / "table.csv"
>>> with replacing(target) as tmp:
...     _ = tmp.write_text("a,b\\n1,2\\n")
>>> target.read_text()
'a,b\\n1,2\\n'
>>> write_bytes(target, b"new") == target, target.read_bytes()
(True, b'new')
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["replacing", "write_bytes"]


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str], *, sync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (its folder created); when the block succeeds, the file written there
    is synced and renamed to ``path``; when it fails, the file is removed and ``path`` is untouched.

    A block that writes nothing at the temporary path leaves ``path`` alone. ``sync=False`` skips the ``fsync``:
    the file is still replaced whole (a killed process leaves the old or the new one), but after a power loss
    the new one may be empty; for files whose loss costs a recomputation, not a result.
    """
    path = Path(path)
    if not path.parent.is_dir():  # a stat: cheaper than a mkdir that fails
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        yield tmp
        if tmp.exists():
            if sync:
                _sync(tmp)
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes | memoryview, *, sync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`replacing`); returns ``path`` as a Path."""
    with replacing(path, sync=False) as tmp, open(tmp, "wb") as f:
        f.write(data)
        if sync:  # through the open file: no second open
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def _sync(path: Path) -> None:
    """Flush a file's data to the disk (before it is renamed into place)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
