"""The real Qt window under Xvfb: a box drawn with (Qt) mouse events in the local view, then the other views
and the controls must show the same samples."""

import json
import os
import select
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.gui

SCRIPT = r"""
import json, sys, time
import numpy as np
from onnx_geom.viewers.data import ViewerData
from onnx_geom.viewers.selection import Selection
from onnx_geom.viewers.window import make_window
from onnx_geom.viewers._synthetic import synthetic_services
from vispy import app
from PySide6 import QtCore, QtWidgets
from PySide6.QtTest import QTest

def pump(n=10):
    for _ in range(n):
        app.process_events(); time.sleep(0.02)

data = ViewerData.synthetic(400, 4, seed=2)
win = make_window(data, Selection(models=("dense",), condition=("fog", 3)), size=(1400, 860), services=synthetic_services(data))
win.show(); QTest.qWaitForWindowExposed(win); pump(20)
canvas, local = win.canvas, win.views["local"]
box = local.viewbox
o = canvas.scene.node_transform(box).inverse.map([[0, 0], list(box.size)])[:, :2]
ratio = canvas.pixel_scale
at = lambda f: QtCore.QPoint(*[int(v / ratio) for v in (o[0] + (o[1] - o[0]) * np.asarray(f))])
widget = canvas.native
shift = QtCore.Qt.KeyboardModifier.ShiftModifier
left = QtCore.Qt.MouseButton.LeftButton
QTest.mousePress(widget, left, shift, at((0.2, 0.2)))
QTest.mouseMove(widget, at((0.5, 0.5)))
QTest.mouseRelease(widget, left, shift, at((0.75, 0.8)))
waiting = win.views["attribution"].message.text     # said at once; the maps come from the worker thread
pump(10)
for _ in range(250):             # the occlusion map is computed off the GUI thread; wait for it (5 s at most)
    if win.views["attribution"].maps is not None:
        break
    pump(1)
sel = win.selection
out = {"selected": sel.indices.tolist(), "local": local.highlighted().tolist(),
       "global": win.views["global"].highlighted().tolist(), "samples": win.views["samples"].highlighted().tolist(),
       "focus": sel.focus, "attribution": win.views["attribution"].maps is not None, "waiting": waiting,
       "count_label": win.count.text(), "uploads": local.uploads}
win.corruption.setCurrentText("gaussian_noise"); pump(5)
out["condition"] = list(sel.condition); out["uploads_after"] = local.uploads
win.model_b.setCurrentText(data.models[1]); pump(5)
out["models"] = list(sel.models); out["pairs"] = bool(local.pairs.visible)
win.attribution.setCurrentText("occlusion"); pump(2)
out["occlusion"] = win.views["attribution"].attribution
out["occlusion_waiting"] = win.views["attribution"].message.text
win.classes.setText("class 2, 0"); QTest.keyClick(win.classes, QtCore.Qt.Key.Key_Return); pump(3)
out["classes"] = sel.classes.tolist(); out["legend"] = list(local.legend.text.text)
win.classes.setText("no such class"); QTest.keyClick(win.classes, QtCore.Qt.Key.Key_Return); pump(3)
out["class_note"] = win.class_note.text(); out["classes_kept"] = sel.classes.tolist()
win.color_by.setCurrentText("margin"); pump(3)
out["color_by"] = sel.color_by
if len(sys.argv) > 1:
    win.grab().save(sys.argv[1])
win.close(); pump(2)
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def display():
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb); the window test needs a virtual display")
    read, write = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as f:  # Xvfb writes its display number once it is ready; wait 60 s at most
        number = f.readline().strip() if select.select([f], [], [], 60)[0] else ""
    if not number:
        proc.kill()
        pytest.fail("Xvfb started but reported no display number")
    yield f":{number}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.slow  # a fresh Python, Qt and a GL context under Xvfb: about 10 s on a shared 2-core machine
def test_window_links_a_box_selection_across_views_and_controls(display, tmp_path):
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    env.pop("EGL_PLATFORM", None)
    shot = os.environ.get("ONNX_GEOM_WINDOW_PNG", "")
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, *([shot] if shot else [])], env=env, capture_output=True, text=True, timeout=240
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    out = json.loads(lines[-1][7:])
    selected = out["selected"]
    assert 0 < len(selected) < 400
    assert out["local"] == selected and out["global"] == selected
    assert out["samples"] == sorted(selected[:9]) and out["focus"] == selected[0] and out["attribution"]
    assert out["waiting"].startswith("computing the linear maps")
    assert out["occlusion"] == "occlusion" and out["occlusion_waiting"].startswith("computing the occlusion map")
    assert out["count_label"].startswith(f"{len(selected)} sample")
    # the control changed the condition: the cloud was re-uploaded once, the selection kept
    assert out["condition"] == ["gaussian_noise", 3] and out["uploads_after"] == out["uploads"] + 1
    assert out["models"] == ["dense", "magnitude-50"] and out["pairs"]
    assert np.all(np.diff(selected) > 0)
    # the class picker and the colouring control
    assert out["classes"] == [0, 2] and out["legend"][:2] == ["class 0", "class 2"]
    assert out["class_note"].startswith("no class matches 'no such class'") and out["classes_kept"] == [0, 2]
    assert out["color_by"] == "margin"
