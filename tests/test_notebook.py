"""Jupyter: docs/notebook.ipynb runs top to bottom on the (reduced) demo study in a headless python3 kernel, with
the outputs it promises; the notebook widget shares the window's data and selection model (a box drawn through
the widget's own events selects in every view and the controls); the tables load as DataFrames."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from geometry_study import make_study
from PIL import Image

import onnx_geom
from onnx_geom.errors import DataError, DeviceError

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebook.ipynb"


def _png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), dtype=np.int32)


def _not_blank(pixels: np.ndarray) -> bool:
    return pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3) // 16, axis=0)) > 8


@pytest.mark.slow  # the shared demo study (about 10 s), a kernel, the views and a report (about 40 s)
@pytest.mark.gui
def test_the_example_notebook_runs_top_to_bottom(demo_study, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("ONNX_GEOM_STUDY", str(demo_study.study))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # committed without outputs
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    cells = {c.metadata["tags"][0]: c for c in nb.cells if c.cell_type == "code"}
    for cell in cells.values():
        assert cell.execution_count is not None and not [o for o in cell.outputs if o.output_type == "error"]

    def result(tag: str) -> dict:
        return next(o for o in cells[tag].outputs if o.output_type == "execute_result")["data"]

    def printed(tag: str) -> str:
        return "".join(o.get("text", "") for o in cells[tag].outputs if o.output_type == "stream")

    tables = onnx_geom.tables(demo_study.study)
    assert eval(result("tables")["text/plain"]) == sorted(tables)  # the list of table names
    summary = result("summary")["text/html"]
    assert "<table" in summary and all(m in summary for m in demo_study.comparison.models)
    rho = tables["correlations"].set_index("clean_geometry").loc["median_margin", "spearman"]
    assert f"Spearman rho = {rho:+.2f}" in printed("correlations")
    assert "contrast" in result("pivot")["text/html"]
    viewer = result("viewer")
    assert "application/vnd.jupyter.widget-view+json" in viewer  # the live widget ...
    pixels = _png(viewer["image/png"])  # ... and its picture for static renderings
    assert pixels.shape == (760, 1200, 3) and _not_blank(pixels)
    assert _not_blank(_png(result("snapshot")["image/png"]))
    least = tables["summary"].set_index("model")["relative_drop"].idxmax()
    assert f"{demo_study.comparison.reference}, {least} under" in printed("snapshot")
    report = Path(demo_study.study).parent / "report.html"
    assert f"{report}:" in printed("report") and report.is_file() and "Spearman" in printed("report")


SCRIPT = r"""
import json, sys, time
import numpy as np
from onnx_geom.viewers import ViewerData, notebook
from onnx_geom.viewers._synthetic import synthetic_services

data = ViewerData.synthetic(400, 4, seed=2)
viewer = notebook(data, size=(1000, 640), services=synthetic_services(data))
out = {"size": list(viewer.canvas.size), "bundle": sorted(viewer._repr_mimebundle_())}
local = viewer.views["local"]
box = local.viewbox
o = viewer.canvas.scene.node_transform(box).inverse.map([[0, 0], list(box.size)])[:, :2]
at = lambda f: [float(v) for v in o[0] + (o[1] - o[0]) * np.asarray(f)]
def event(kind, where, buttons):   # what jupyter_rfb's front end sends for a shift+drag
    x, y = at(where)
    viewer.canvas.native.handle_event({"type": kind, "x": x, "y": y, "button": 1, "buttons": buttons,
                                       "modifiers": ["Shift"], "timestamp": time.time()})
    time.sleep(0.03)   # VisPy drops moves closer than 10 ms
event("pointer_down", (0.2, 0.2), [1]); event("pointer_move", (0.5, 0.5), [1]); event("pointer_up", (0.75, 0.8), [])
sel = viewer.selection
out.update(selected=sel.indices.tolist(), local=local.highlighted().tolist(),
           global_=viewer.views["global"].highlighted().tolist(), count=viewer.count.value,
           attribution=viewer.views["attribution"].maps is not None)
viewer.corruption.value = "gaussian_noise"       # a control changes the shared selection
out["condition"] = list(sel.condition)
sel.models = ("dense", "magnitude-50")           # code changes it: the controls follow
out["model_b"] = viewer.model_b.value
frame = viewer.canvas.native.get_frame()         # what the widget streams to the notebook
out["frame"] = [list(frame.shape), float(frame[..., :3].std())]
viewer.close()
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow  # a fresh Python, VisPy and an EGL context: about 8 s on a shared 2-core machine
@pytest.mark.gui
def test_the_notebook_widget_links_the_views_like_the_window():
    """In a fresh process (as a kernel is): the jupyter_rfb canvas, its events, the shared selection."""
    env = {**os.environ}
    env.pop("DISPLAY", None)
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=240)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    out = json.loads(lines[-1][7:])
    assert out["size"] == [1000, 640] and "image/png" in out["bundle"]
    assert "application/vnd.jupyter.widget-view+json" in out["bundle"]
    selected = out["selected"]
    assert 0 < len(selected) < 400 and out["local"] == selected and out["global_"] == selected
    assert out["count"] == f"{len(selected)} samples selected" and out["attribution"]
    assert out["condition"] == ["gaussian_noise", 3] and out["model_b"] == "magnitude-50"
    assert out["frame"][0] == [640, 1000, 4] and out["frame"][1] > 10


def test_jupyter_without_jupyter_rfb_is_one_sentence(monkeypatch):
    import importlib.util

    from onnx_geom.viewers import _backend

    real = importlib.util.find_spec
    monkeypatch.setattr(_backend, "_JUPYTER", None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jupyter_rfb" else real(name, *a))
    with pytest.raises(
        DeviceError, match=r"needs jupyter_rfb; install it with `pip install 'onnx-geom\[viewer,notebook\]'`"
    ):
        _backend.jupyter_app()


def test_a_study_s_tables_load_as_dataframes(tmp_path):
    import pandas as pd

    from onnx_geom.comparison import compare_study

    study = make_study(tmp_path / "study", geometry=True)
    cmp = compare_study(study)
    study.write_comparison(cmp)
    frames = onnx_geom.tables(tmp_path / "study", samples=True)
    assert set(frames) == {*cmp.tables(), "metrics", "samples"}
    assert all(isinstance(f, pd.DataFrame) for f in frames.values())
    summary = frames["summary"].set_index("model")
    for row in cmp.summary:  # the same numbers as the comparison stored in the study
        assert summary.loc[row["model"], "mce"] == pytest.approx(row["mce"], nan_ok=True)
    units = study.units(group="geometry")
    assert len(frames["metrics"]) == len(units) and len(frames["samples"]) == len(units) * len(study.labels)
    assert list(frames["samples"].columns[:4]) == ["model", "corruption", "severity", "sample"]
    assert frames["pairs"].columns.str.endswith(("_clean", "_all")).sum() >= 8


def test_tables_without_pandas_is_one_sentence(tmp_path, monkeypatch):
    study = make_study(tmp_path / "study", geometry=True)
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` fails
    with pytest.raises(DataError, match=r"need pandas, which is not installed; `pip install pandas`"):
        onnx_geom.tables(study)
