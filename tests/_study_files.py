"""What a study folder holds, for tests: every entry's bytes (byte-identical before and after), and its content
(arrays and attributes, without what differs from one run to another: who wrote a unit, when, its completion id).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from onnx_geom.store._zarrarray import open_array

#: attributes that differ between two runs that computed the same thing
VOLATILE = ("writer", "completion", "geometry_fingerprint")


def snapshot(folder: str | os.PathLike[str]) -> dict[str, str]:
    """Every entry below ``folder`` (links not followed): relative path -> sha256 of a file's bytes, ``link -> TARGET``
    or ``folder``."""
    folder = Path(folder)
    entries = {}
    for here, names, files in os.walk(folder):
        for name in [*names, *files]:
            path = Path(here) / name
            key = path.relative_to(folder).as_posix()
            if path.is_symlink():
                entries[key] = f"link -> {os.readlink(path)}"
            elif path.is_dir():
                entries[key] = "folder"
            else:
                entries[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return entries


def content(study: str | os.PathLike[str], *, comparison: bool = False) -> dict[str, object]:
    """A study's content: every group's attributes (without :data:`VOLATILE`), every array's dtype, shape and bytes
    (decoded); incomplete groups and what lies below them count as absent. ``comparison``: include the stored
    comparison (it records the completion ids of what it was computed from)."""
    root = Path(study)
    out: dict[str, object] = {}
    for here, names, files in os.walk(root):
        here_path = Path(here)
        key = here_path.relative_to(root).as_posix()
        if not comparison and key.split("/")[0] == "comparison":
            names[:] = []
            continue
        if "zarr.json" not in files:
            continue
        meta = json.loads((here_path / "zarr.json").read_text())
        if meta["node_type"] == "group":
            attrs = {k: v for k, v in meta["attributes"].items() if k not in VOLATILE}
            if attrs.get("complete") is False:
                names[:] = []  # nothing below an incomplete group counts
                continue
            out[key] = attrs
        else:
            array = open_array(here_path, root=root).read()
            out[key] = (array.dtype.str, array.shape, hashlib.sha256(array.tobytes()).hexdigest())
            names[:] = []
    return out


def one_sentence(result, *words: str) -> str:
    """A CLI result of a user error: exit code 1, one line on stderr (``error: ...``) holding ``words``, no
    traceback; returns the line."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def make_cli_study(root: Path, runner) -> list[str]:
    """Probes (``dense``, ``pruned``: 16x16x3 images, 4 classes), data (25 images) and a study ``root/study`` made
    by ``onnx-geom run`` (clean + fog 1), ``metrics`` and ``compare``; returns the run's arguments but ``-o``."""
    import numpy as np
    import onnx
    from _probes import make_probe

    from onnx_geom.cli.app import app

    shape = (16, 16, 3)
    onnx.save(make_probe(seed=1, shape=shape)[0], root / "dense.probe.onnx")
    onnx.save(make_probe(seed=2, shape=shape, features=5)[0], root / "other.onnx")
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (25, *shape), dtype=np.uint8)
    np.savez(root / "data.npz", images=images, labels=rng.integers(0, 4, 25))
    args = [
        "run", str(root / "dense.probe.onnx"), f"pruned={root / 'other.onnx'}", "--data", str(root / "data.npz"),
        "-c", "fog", "--severities", "1", "--device", "cpu", "--batch-size", "10",
    ]  # fmt: skip
    for command in (
        [*args, "-o", str(root / "study")],
        ["metrics", str(root / "study")],
        ["compare", str(root / "study")],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
    return args
