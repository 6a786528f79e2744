"""Every file the store touches lies inside the study: no symbolic link on the way, no special file, reads bounded.

Private to :mod:`onnx_geom.store`; the only module of it that opens, lists, creates or removes anything on the
disk. A study is untrusted input: a folder copied from elsewhere may hold links planted to make a writer write
(or remove) outside it, or to make a reader read ``/dev/zero`` or a FIFO for ever. So every path below the
study's root is checked component by component from the root with ``lstat`` (a link anywhere, or a FIFO, device
or socket, is one :class:`StudyError` sentence that names it and says to remove it), files are opened with
``O_NOFOLLOW`` (and ``O_NONBLOCK``, then checked to be regular files), and a read reads exactly the file's size.
The root itself is the folder the user named and may be reached through a link of the user's own.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> write_file(root, root / "a" / "x.bin", b"data")
>>> read_bytes(root, root / "a" / "x.bin"), read_bytes(root, root / "a" / "none")
(b'data', None)
>>> (root / "b").symlink_to(root / "a")
>>> try:
...     read_bytes(root, root / "b" / "x.bin")
... except StudyError as err:
...     print(str(err).replace(str(root), "STUDY"))
STUDY/b is a symbolic link inside the study; onnx-geom neither reads nor writes through links in a study (it could reach outside it): remove the link, then run the command again.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

from onnx_geom._files import write_bytes
from onnx_geom.errors import StudyError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # 0 where the platform has none (Windows): lstat still checks
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO opens at once (and is then refused) instead of blocking
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class Unsafe(StudyError):
    """A link, or a special file, inside a study: refused wherever it is met (never listed as mere damage)."""


def linked(path: Path) -> StudyError:
    return Unsafe(
        f"{path} is a symbolic link inside the study; onnx-geom neither reads nor writes through links in a study "
        "(it could reach outside it): remove the link, then run the command again."
    )


def _special(path: Path, mode: int) -> StudyError:
    kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO, device or socket" if not stat.S_ISREG(mode) else "a file"
    where = "a file" if stat.S_ISDIR(mode) else "a folder or a regular file"
    return (Unsafe if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)) else StudyError)(
        f"{path} is {kind} where the study has {where}; the study is damaged: remove it, then run the command again."
    )


def check(root: Path, path: Path, *, file: bool = False) -> None:
    """Refuse (:class:`StudyError`) unless ``path`` lies in ``root`` and each of its components below ``root`` that
    exists is a real folder, the last one a real folder or (``file``: only) a regular file. Components that do not
    exist yet are fine: they will be created as real folders and files. (Strings, not pathlib: this runs for every
    file the store touches.)"""
    root_s, path_s = os.fspath(root), os.fspath(path)
    if path_s == root_s:
        return
    prefix = root_s if root_s.endswith(os.sep) else root_s + os.sep
    parts = path_s[len(prefix) :].split(os.sep) if path_s.startswith(prefix) else [".."]
    if ".." in parts:
        raise StudyError(f"{path} lies outside the study at {root}; this is a bug in onnx-geom, please report it.")
    current = prefix[:-1]
    last = len(parts) - 1
    for i, part in enumerate(parts):
        current = current + os.sep + part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISDIR(mode) and not (i == last and file):
            continue
        if i == last and stat.S_ISREG(mode):
            return
        if stat.S_ISLNK(mode):
            raise linked(Path(current))
        raise _special(Path(current), mode)


def read_bytes(root: Path, path: Path, *, parent_checked: bool = False) -> bytes | None:
    """The bytes of the regular file ``path`` in the study ``root``, None when there is none. A link, a folder or a
    special file there is a :class:`StudyError`; exactly the file's size is read. ``parent_checked``: the folder
    holding ``path`` was checked already (a chunk of an array whose folder was)."""
    if not parent_checked:
        check(root, path.parent)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        if err.errno == errno.ELOOP or os.path.islink(path):
            raise linked(path) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _special(path, info.st_mode)
        chunks, left = [], info.st_size
        while left > 0:
            block = os.read(fd, left)
            if not block:
                break
            chunks.append(block)
            left -= len(block)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_file(
    root: Path, path: Path, data: bytes | memoryview, *, sync: bool = False, parent_checked: bool = False
) -> None:
    """Write ``data`` to ``path`` in place (its folders created), never through a link. ``parent_checked``: the
    folder holding ``path`` was checked (and made) already: a chunk of an array being written."""
    if not parent_checked:
        check(root, path, file=True)
        if not os.path.isdir(path.parent):
            os.makedirs(path.parent, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW | _NONBLOCK | _CLOEXEC, 0o666)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise linked(path) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        mode = os.fstat(fd).st_mode
        os.close(fd)
        raise _special(path, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(root: Path, path: Path, data: bytes | memoryview, *, sync: bool = False) -> None:
    """Replace ``path`` whole (:func:`onnx_geom._files.write_bytes`: a temporary file beside it, then a rename,
    which replaces the name itself and never writes through it), after checking the way to it."""
    check(root, path, file=True)
    write_bytes(path, data, sync=sync)


def makedirs(root: Path, path: Path) -> None:
    """Make the folder ``path`` and the missing folders above it, all inside the study."""
    check(root, path)
    os.makedirs(path, exist_ok=True)


def remove(root: Path, path: Path) -> None:
    """Remove the file or folder ``path`` (a folder with everything below it), if it exists. A link anywhere below
    it is refused like one on the way to it (nothing is removed then): a study with links planted in it is said,
    not silently changed."""
    check_tree(root, path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def check_tree(root: Path, path: Path) -> None:
    """:func:`check` ``path``, and refuse a link anywhere below it (a folder about to be rewritten or removed)."""
    check(root, path)
    for folder, names, files in os.walk(path):  # lists entries without following links (os.walk's default)
        for name in [*names, *files]:
            if os.path.islink(os.path.join(folder, name)):
                raise linked(Path(folder) / name)


def folders(root: Path, path: Path) -> list[str]:
    """The names of the folders directly inside ``path`` (none when it does not exist), sorted; a link among its
    entries is a :class:`StudyError` (files and other entries are left alone)."""
    check(root, path)
    try:
        entries = list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
    names = []
    for entry in entries:
        if entry.is_symlink():
            raise linked(path / entry.name)
        if entry.is_dir(follow_symlinks=False):
            names.append(entry.name)
    return sorted(names)


def identity(root: Path, path: Path) -> tuple[int, int] | None:
    """``(inode, mtime_ns)`` of the file ``path`` (a replaced file is a new one); None when there is none."""
    check(root, path, file=True)
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns


def open_folder(root: Path, path: Path) -> int:
    """A descriptor of the folder ``path`` of the study (to lock it); never through a link, never a FIFO."""
    check(root, path)
    flags = os.O_RDONLY | _DIRECTORY | _CLOEXEC | (_NOFOLLOW if path != root else 0)
    return os.open(path, flags)
