"""Who is writing what: exclusive advisory locks on the study's folders, and the writer's stamp.

Private to :mod:`onnx_geom.store`. On POSIX systems a lock is ``flock(LOCK_EX)`` on the folder itself (a unit's
folder while it is written, the study's root folder for short metadata changes); the kernel releases it when the
process ends, even on SIGKILL. ``flock`` works between processes on one machine's local disks; on NFS it depends
on the client and the mount (see flock(2)).
Where Python has no ``fcntl`` (Windows) onnx-geom takes no locks: :data:`LOCKS` is False, every lock is granted,
and the first write of a process warns once that two processes must not write one study at a time there.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> with lock(folder, wait_s=0.0, holder="busy"):
...     pass
>>> sorted(writer_stamp())
['host', 'pid', 'started']

A process that writes for a cluster (a Ray worker) names its node once with :func:`set_writer_node`; every stamp
it writes afterwards carries ``node`` too, and the stamp stays with the unit once it is complete.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from onnx_geom.errors import StudyLockedError
from onnx_geom.store._guard import open_folder

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

#: Whether this platform has the locks (POSIX ``flock``); where it does not, locks are granted without locking.
LOCKS = fcntl is not None
_warned: list[bool] = []
_NODE: dict[str, str] = {}


@contextlib.contextmanager
def lock(
    directory: Path, *, wait_s: float, holder: str | Callable[[], str], root: Path | None = None
) -> Iterator[None]:
    """Exclusive advisory lock on ``directory`` of the study at ``root`` (None: ``directory`` is the root);
    :class:`StudyLockedError` with the sentence ``holder`` (or what ``holder()`` returns then) when it is not
    obtained within ``wait_s`` seconds. Released when the block ends (or the process dies). The folder is opened
    through :mod:`onnx_geom.store._guard`: never through a link inside the study."""
    if fcntl is None:
        if not _warned:
            _warned.append(True)
            warnings.warn(
                "file locks are not available on this platform; let only one process write a study at a time.",
                RuntimeWarning,
                stacklevel=3,
            )
        yield
        return
    fd = open_folder(directory if root is None else root, directory)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StudyLockedError(holder if isinstance(holder, str) else holder()) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def set_writer_node(node: str | None) -> None:
    """Name the cluster node (a Ray node id) this process writes from, or None for none; every writer stamp of
    this process carries it from now on."""
    if node is None:
        _NODE.clear()
    else:
        _NODE["node"] = str(node)


def writer_stamp() -> dict[str, Any]:
    """Who writes: ``{"pid", "host", "started"}`` (and ``"node"``, see :func:`set_writer_node`), stored in a unit
    being written and kept once it is complete."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": now, **_NODE}
