"""Beacons: one-off files that prove that two processes (on two machines) see the same folder and can write it.

Private to :mod:`onnx_geom.store`. A sweep on a cluster writes a beacon (a random token) where its study is (in
the study's folder, or in the nearest folder above it that exists when the study is new), and every node reads
it there and answers with a beacon of its own, which the sweep reads back: a node that mounts another file
system at that path, or none, or a read-only one, is found before anything is computed. Every file goes through
:mod:`onnx_geom.store._guard` (no link on the way, bounded reads).

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> write_beacon(folder, "c0ffee")
>>> read_beacon(folder, "c0ffee"), read_beacon(folder, "c0ffee", "node1")
(True, False)
>>> write_beacon(folder, "c0ffee", "node1"); remove_beacons(folder, "c0ffee", ["node1"])
>>> sorted(p.name for p in folder.iterdir())
[]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from onnx_geom.store import _guard

PREFIX = ".onnx-geom-beacon-"


def beacon_folder(study: str | os.PathLike[str]) -> Path:
    """Where the beacon of a study at ``study`` goes: the study's folder when it exists, else the nearest folder
    above it that exists (where the study will be created)."""
    folder = Path(os.path.abspath(study))
    while not folder.is_dir() and folder.parent != folder:
        folder = folder.parent
    return folder


def _path(folder: Path, token: str, answer: str) -> Path:
    if not token.isalnum() or (answer and not answer.isalnum()):
        raise ValueError(f"a beacon's token and answer are letters and digits, not {token!r}, {answer!r}")
    return folder / f"{PREFIX}{token}{'.' + answer if answer else ''}"


def write_beacon(folder: Path, token: str, answer: str = "") -> None:
    """Write the beacon ``token`` in ``folder`` (``answer``: a node's answer to it, e.g. its id)."""
    _guard.write_file(folder, _path(folder, token, answer), token.encode(), sync=False)


def read_beacon(folder: Path, token: str, answer: str = "") -> bool:
    """Whether ``folder`` holds the beacon ``token`` (or the answer ``answer`` to it), with its content."""
    return _guard.read_bytes(folder, _path(folder, token, answer)) == token.encode()


def remove_beacons(folder: Path, token: str, answers: Sequence[str] = ()) -> None:
    """Remove the beacon ``token`` and the ``answers`` to it from ``folder`` (those that are there)."""
    for answer in ["", *answers]:
        _guard.remove(folder, _path(folder, token, answer))
