"""Files written whole or not at all: the one atomic-write helper that every writer in onnx-geom uses, and the
one check of an output path that every writer outside a study makes first (:func:`check_output`).

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

Outputs outside the store (a probe, a table, a screenshot, a folder of corrupted sets) are checked before
anything is computed or written: never inside a study or any other Zarr store (a study changes only through
:mod:`onnx_geom.store`), never over the command's own input, a file where a file belongs and a folder where a
folder belongs, in a folder that can be written; missing parent folders are created when the file is written.

>>> check_output(target, kind="folder")
Traceback (most recent call last):
...
onnx_geom.errors.OutputError: ... is a file, not a folder; give a folder (created if missing).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from onnx_geom.errors import OnnxGeomError, OutputError

__all__ = ["check_output", "output_errors", "replacing", "write_bytes"]

#: The metadata file of every Zarr v3 node (a group or an array); a folder holding one is part of a Zarr store.
ZARR_JSON = "zarr.json"


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
                fsync(tmp)
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


def fsync(path: str | os.PathLike[str], *, folder: bool = False) -> None:
    """Flush a file's data to the disk (before it is renamed into place); ``folder``: a folder's entries (to make
    a rename in it durable; a folder opens read-only)."""
    fd = os.open(path, os.O_RDONLY if folder else os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_output(
    path: str | os.PathLike[str],
    *,
    kind: Literal["file", "folder"] = "file",
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Refuse, before anything is computed or written, an output path that would lose or mix data or fail
    half-way; returns ``path`` as a Path. Raises :class:`~onnx_geom.errors.OutputError` with one sentence when:

    * the path, or a folder above it (as written, or where symbolic links lead), is an onnx-geom study or any
      other Zarr node (a folder holding ``zarr.json``): a study changes only through :mod:`onnx_geom.store`;
    * it is one of ``inputs`` (the same file, also through a link) or lies inside an input that is a folder;
    * ``kind="file"`` and it is a folder or not a regular file (a device, a pipe); ``kind="folder"`` and it is
      a file; or a folder above it is a file;
    * the folder it goes into (or, when missing, the nearest existing folder above it: the missing ones are
      created) cannot be written.

    Missing parent folders are not created here: the writer creates them when it writes.
    """
    path = Path(path)
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a loop of symbolic links
        raise OutputError(f"cannot write {path}: its symbolic links form a loop; choose another path.") from None
    try:
        _refuse_zarr(path, real)
        _refuse_inputs(path, real, inputs)
        _refuse_kind(path, kind)
    except OnnxGeomError:
        raise
    except OSError as error:  # a folder on the way that cannot be looked into
        raise OutputError(f"cannot write {path} ({error.strerror or error}); choose another path.") from None
    return path


@contextlib.contextmanager
def output_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` (permission denied, disk full, read-only file system, ...) into
    a one-sentence :class:`~onnx_geom.errors.OutputError`; onnx-geom's own errors pass unchanged.

    >>> with output_errors("/tmp/t.csv"):
    ...     raise OSError(errno.ENOSPC, "No space left on device")
    Traceback (most recent call last):
    ...
    onnx_geom.errors.OutputError: cannot write /tmp/t.csv (No space left on device); free some space or choose another path.
    """
    try:
        yield
    except OnnxGeomError:
        raise
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        action = "free some space or choose another path" if error.errno == errno.ENOSPC else "choose another path"
        raise OutputError(f"cannot write {path} ({reason}); {action}.") from error


def _zarr_node(folder: Path) -> str | None:
    """What ``folder`` is when it holds a ``zarr.json``: "the onnx-geom study" (its attributes name an
    ``onnx_geom_version``) or "the Zarr store"; None for a plain folder."""
    meta = folder / ZARR_JSON
    if not meta.is_file():
        return None
    try:
        attrs = json.loads(meta.read_bytes()).get("attributes")
    except (OSError, ValueError, AttributeError):
        attrs = None
    return "the onnx-geom study" if isinstance(attrs, dict) and "onnx_geom_version" in attrs else "the Zarr store"


def _refuse_zarr(path: Path, real: Path) -> None:
    """Refuse ``path`` when it, or a folder above it, is a Zarr node: where links lead, and as written."""
    written = Path(os.path.normpath(os.path.abspath(path)))
    for where in (real, written):  # where links lead first: that is where the bytes would go
        nodes = [(folder, node) for folder in (where, *where.parents) if (node := _zarr_node(folder))]
        if nodes:  # name the study (the root of nested Zarr groups), else the outermost Zarr node
            folder, node = next((n for n in nodes if n[1].endswith("study")), nodes[-1])
            linked = folder != written and folder not in written.parents
            rule = ", which only onnx-geom's own commands change" if node.endswith("study") else ""
            place = f"is {node}" if folder == where else f"lies inside {node}"
            name = f" {folder}" if folder != where or linked else ""
            through = " (through a symbolic link)" if linked else ""
            raise OutputError(f"{path} {place}{name}{through}{rule}; write to a path outside it.")


def _refuse_inputs(path: Path, real: Path, inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse ``path`` when it is one of ``inputs`` or lies inside an input folder."""
    for source in map(Path, inputs):
        if not source.exists():
            continue
        if real == source.resolve() or (path.exists() and os.path.samefile(path, source)):
            what = "folder" if source.is_dir() else "file"
            named = "" if str(source) == str(path) else f" {source}"
            raise OutputError(f"{path} is the input {what}{named} itself; write the output to another {what}.")
        if source.is_dir() and source.resolve() in real.parents:
            raise OutputError(f"{path} lies inside the input folder {source}; write the output outside it.")


def _refuse_kind(path: Path, kind: str) -> None:
    """Refuse a folder where a file belongs (or the reverse), a file on the way, and a folder that cannot be
    written."""
    if path.exists():
        mode = path.stat().st_mode
        if kind == "file" and stat.S_ISDIR(mode):
            raise OutputError(f"{path} is a folder, not a file; give a file name (inside it or elsewhere).")
        if kind == "file" and not stat.S_ISREG(mode):
            raise OutputError(f"{path} is not a regular file (a device, pipe or socket); give a file name.")
        if kind == "folder" and not stat.S_ISDIR(mode):
            raise OutputError(f"{path} is a file, not a folder; give a folder (created if missing).")
    elif kind == "folder" and path.is_symlink():
        raise OutputError(f"{path} is a broken symbolic link, not a folder; remove it or give another folder.")
    folder = path if kind == "folder" and path.is_dir() else path.parent
    existing = next(p for p in (folder, *folder.parents) if os.path.lexists(p) or p == p.parent)
    if not existing.is_dir():
        what = "a file" if existing.is_file() else "a broken symbolic link" if existing.is_symlink() else "something"
        raise OutputError(f"cannot write {path}: {existing} is {what}, not a folder; choose another path.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write {path}: the folder {existing} is not writable; choose another path or make it writable."
        )
