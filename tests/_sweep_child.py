"""Run a test sweep in a child process: python _sweep_child.py WORKDIR STUDY [SLEEP_PER_BATCH]."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _probes import toy_corrupt

from onnx_geom.sweep import sweep

work, study = Path(sys.argv[1]), sys.argv[2]
pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
data = np.load(work / "data.npz")


def slow_corrupt(images, name, severity, **kw):
    time.sleep(pause)
    return toy_corrupt(images, name, severity, **kw)


def progress(event, unit, count):
    if event in ("unit", "skip"):
        print(event, unit, flush=True)


summary = sweep(
    {"a": work / "a.onnx", "b": work / "b.onnx"},
    (data["images"], data["labels"]),
    study,
    corruptions=["n1", "n2", "n3"],
    severities=[1, 2],
    batch_size=8,
    device="cpu",
    seed=5,
    corrupt=slow_corrupt,
    progress=progress,
)
print("summary", json.dumps(summary["units"]), flush=True)
