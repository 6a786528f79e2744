"""A child process of the concurrency tests, spoken to by lines (tests/_child.py is the parent's side).

    python _study_child.py sweep WORK STUDY     the sweep of test_sweep.py: probes a, b; corruptions n1-n3 x 1, 2
    python _study_child.py metrics STUDY        compute_metrics on STUDY
    python _study_child.py hold STUDY MODEL CORRUPTION SEVERITY ROWS DIM   claim one unit and keep it until killed

Handshakes (stdout -> parent, stdin <- parent):

* ``holding UNIT`` (``UNIT/GROUP`` for a group) as soon as a unit is claimed, i.e. while its lock is held;
* ``batch NAME SEVERITY FIRST`` when the sweep starts to corrupt the batch whose first sample is FIRST;

after each, the child waits for a line: ``go`` carries on, ``free`` carries on and stops waiting from then on
(so does the end of stdin). The sweep also prints ``unit UNIT`` when a unit is complete, ``skip UNIT`` when it
leaves one to another process, and at the end ``summary {units as JSON}``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _probes import toy_corrupt

from onnx_geom.store import Study, Unit

gated = True


def say(*words: object) -> None:
    print(*words, flush=True)


def wait_for_the_parent() -> None:
    global gated
    if gated:
        word = sys.stdin.readline().strip()
        if word in ("free", ""):
            gated = False
        elif word != "go":
            raise SystemExit(f"unknown word from the parent: {word!r}")


_real_writing = Study.writing


@contextlib.contextmanager
def _announced_writing(self, unit, spec, *, group=None):
    with _real_writing(self, unit, spec, group=group) as writer:
        say("holding", f"{unit}/{group}" if group else unit)
        wait_for_the_parent()
        yield writer


Study.writing = _announced_writing  # every claim, by the sweep, compute_metrics or write_unit, is announced


def gated_corrupt(images, name, severity, *, indices, **kw):
    say("batch", name, severity, int(indices[0]))
    wait_for_the_parent()
    return toy_corrupt(images, name, severity, indices=indices, **kw)


def run_sweep(work: Path, study: str) -> None:
    from onnx_geom.sweep import sweep

    with np.load(work / "data.npz") as data:
        images, labels = data["images"], data["labels"]
    summary = sweep(
        {"a": work / "a.onnx", "b": work / "b.onnx"},
        (images, labels),
        study,
        corruptions=["n1", "n2", "n3"],
        severities=[1, 2],
        batch_size=8,
        device="cpu",
        seed=5,
        corrupt=gated_corrupt,
        progress=lambda event, unit, count: say(event, unit) if event in ("unit", "skip") else None,
    )
    say("summary", json.dumps(summary["units"]))


def run_metrics(study: str) -> None:
    from onnx_geom.metrics import compute_metrics

    compute_metrics(Study.open(study, mode="a"))
    say("done")


def hold(study: str, model: str, corruption: str, severity: str, rows: str, dim: str) -> None:
    global gated
    gated = False  # announce, do not wait: the lock is kept below
    with Study.open(study, mode="a").writing(
        Unit(model, corruption, int(severity)), {"features": ((int(rows), int(dim)), "float32")}
    ):
        sys.stdin.read()  # until the parent kills this process (or closes stdin)
        raise SystemExit(0)  # leaves the unit claimed and incomplete, as a killed writer does


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "sweep":
        run_sweep(Path(args[0]), args[1])
    elif command == "metrics":
        run_metrics(*args)
    elif command == "hold":
        hold(*args)
    else:
        raise SystemExit(f"unknown command {command!r}")
