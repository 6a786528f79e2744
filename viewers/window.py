"""The interactive window: Qt (PySide6) controls on the left, the six linked views on one VisPy canvas.

>>> from onnx_geom.viewers import show
>>> show("runs/cifar")                 # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from onnx_geom.conditions import CLEAN
from onnx_geom.errors import DeviceError
from onnx_geom.viewers._backend import use_backend

NONE = "(none)"


def check_display(environ=os.environ, platform: str = sys.platform) -> None:
    """Refuse, with a sentence, to open a window where Qt would abort the process for want of a display.

    >>> check_display({"DISPLAY": ":0"}, "linux")
    """
    if platform.startswith("linux") and not (
        environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY") or environ.get("QT_QPA_PLATFORM")
    ):
        raise DeviceError(
            "there is no display to open the viewer window on; use `--screenshot out.png` for a "
            "headless image, or run under Xvfb (xvfb-run onnx-geom view STUDY)."
        )


def check_x_server(environ=os.environ) -> None:
    """Refuse, with a sentence, a ``DISPLAY`` where no X server answers (Qt would abort the whole process).

    Asked only where Qt would use X (no Wayland, no other ``QT_QPA_PLATFORM``), through libxcb, which Qt's X
    platform loads anyway; where libxcb is missing, Qt says so itself.
    """
    display = environ.get("DISPLAY")
    if not display or environ.get("WAYLAND_DISPLAY") or environ.get("QT_QPA_PLATFORM", "xcb") != "xcb":
        return
    try:
        xcb = ctypes.CDLL(ctypes.util.find_library("xcb") or "libxcb.so.1")
    except OSError:
        return
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(display.encode(), None)
    try:
        failed = xcb.xcb_connection_has_error(connection)
    finally:
        xcb.xcb_disconnect(connection)
    if failed:
        raise DeviceError(
            f"no X server answers on DISPLAY={display}; start one (or ssh -X), use `--screenshot out.png` for a "
            "headless image, or run under Xvfb (xvfb-run onnx-geom view STUDY)."
        )


def make_window(
    data, selection=None, *, size: tuple[int, int] = (1500, 900), services=None, attribution: str = "margin"
):
    """Build (not show) the main window for ``data``; returns it (``.canvas``, ``.views``, ``.selection``,
    ``.attribution``: the control choosing what the attribution panel shows)."""
    check_display()
    check_x_server()
    use_backend("pyside6")
    from PySide6 import QtCore, QtWidgets
    from vispy import app

    from onnx_geom.errors import DataError
    from onnx_geom.viewers import ATTRIBUTIONS
    from onnx_geom.viewers.classes import COLOR_MODES
    from onnx_geom.viewers.interaction import Interaction
    from onnx_geom.viewers.layout import build_canvas, initial_selection

    app.use_app("pyside6").create()
    selection = selection or initial_selection(data)

    class ViewerWindow(QtWidgets.QMainWindow):
        def __init__(self) -> None:
            super().__init__()
            self.setWindowTitle(f"onnx-geom view: {data.title}")
            self.selection = selection
            self.canvas, self.views = build_canvas(
                data, selection, size=(size[0] - 220, size[1]), services=services, attribution=attribution
            )
            self.interaction = Interaction(self.canvas, self.views)
            self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx-geom-attribution")
            self.views["attribution"].background = self.worker  # linear and occlusion maps off the GUI thread
            side = QtWidgets.QWidget()
            form = QtWidgets.QFormLayout(side)
            self.model_a, self.model_b = QtWidgets.QComboBox(), QtWidgets.QComboBox()
            self.model_a.addItems(data.models)
            self.model_b.addItems([NONE, *data.models])
            self.corruption, self.severity = QtWidgets.QComboBox(), QtWidgets.QComboBox()
            self.corruption.addItems([CLEAN, *data.corruptions])
            self.severity.addItems([str(s) for s in data.severities])
            self.attribution = QtWidgets.QComboBox()
            self.attribution.addItems(list(ATTRIBUTIONS))
            self.attribution.setCurrentText(attribution)
            self.attribution.setToolTip(
                "What the attribution panel shows: the exact linear decomposition of the margin, cos (angle to the "
                "true class), length, the true or the predicted logit, or occlusion patches"
            )
            self.shift = QtWidgets.QCheckBox("shift from clean")
            # the class picker: names, numbers, ranges, groups (onnx_geom.viewers.classes), with completion
            self.classes = QtWidgets.QLineEdit()
            self.classes.setPlaceholderText("names, 3-7, g2 (Enter)")
            order = data.class_order()
            completer = QtWidgets.QCompleter([*data.class_names, *[f"g{g + 1}" for g in range(order.n_groups)]])
            completer.setCaseSensitivity(QtCore.Qt.CaseSensitivity.CaseInsensitive)
            completer.setFilterMode(QtCore.Qt.MatchFlag.MatchContains)
            self.classes.setCompleter(completer)
            self.class_note = QtWidgets.QLabel()
            self.class_note.setWordWrap(True)
            self.color_by = QtWidgets.QComboBox()
            self.color_by.addItems(list(COLOR_MODES))
            clear = QtWidgets.QPushButton("clear selection")
            self.count = QtWidgets.QLabel()
            help_text = QtWidgets.QLabel(
                "click: pick · shift+drag: box\nctrl+drag: lasso · drag: pan\n"
                "wheel: zoom · shift+click a model\nor table row: compare two"
            )
            for label, widget in (
                ("model", self.model_a),
                ("compare with", self.model_b),
                ("corruption", self.corruption),
                ("severity", self.severity),
                ("attribution", self.attribution),
                ("classes", self.classes),
                ("colour by", self.color_by),
            ):
                form.addRow(label, widget)
            for extra in (self.class_note, self.shift, clear, self.count, help_text):
                form.addRow(extra)
            splitter = QtWidgets.QSplitter()
            splitter.addWidget(side)
            splitter.addWidget(self.canvas.native)
            splitter.setStretchFactor(1, 1)
            self.setCentralWidget(splitter)
            self.resize(*size)
            for box in (self.model_a, self.model_b, self.corruption, self.severity):
                box.currentIndexChanged.connect(self.controls_changed)
            self.attribution.currentTextChanged.connect(self.views["attribution"].set_attribution)
            self.shift.toggled.connect(lambda on: setattr(selection, "shift_from_clean", on))
            self.classes.returnPressed.connect(self.classes_changed)
            self.color_by.currentTextChanged.connect(lambda mode: setattr(selection, "color_by", mode))
            clear.clicked.connect(lambda: setattr(selection, "indices", []))
            for name in ("models", "condition", "indices"):
                getattr(selection.events, name).connect(lambda _s: self.sync_controls())
            self.sync_controls()

        def controls_changed(self, _index=None) -> None:
            b = self.model_b.currentText()
            selection.models = (self.model_a.currentText(),) + (() if b == NONE else (b,))
            corruption = self.corruption.currentText()
            self.severity.setEnabled(corruption != CLEAN)
            severity = 0 if corruption == CLEAN else int(self.severity.currentText() or 0)
            selection.condition = (corruption, severity)
            self.canvas.update()

        def classes_changed(self) -> None:
            try:
                selection.classes = data.class_order().parse(self.classes.text())
            except DataError as error:
                self.class_note.setText(str(error))
            else:
                self.class_note.setText(data.class_order().describe(selection.classes))
            self.canvas.update()

        def sync_controls(self) -> None:
            boxes = (self.model_a, self.model_b, self.corruption, self.severity)
            for box in boxes:
                box.blockSignals(True)
            models = selection.models
            self.model_a.setCurrentText(models[0] if models else data.models[0])
            self.model_b.setCurrentText(models[1] if len(models) > 1 else NONE)
            corruption, severity = selection.condition
            self.corruption.setCurrentText(corruption)
            if corruption != CLEAN:
                self.severity.setCurrentText(str(severity))
            self.severity.setEnabled(corruption != CLEAN)
            for box in boxes:
                box.blockSignals(False)
            n = selection.indices.size
            self.count.setText(f"{n:,} sample{'s' if n != 1 else ''} selected")
            self.canvas.update()

        def closeEvent(self, event) -> None:
            self.interaction.close()
            for view in self.views.values():
                view.close()
            self.worker.shutdown(wait=False, cancel_futures=True)
            super().closeEvent(event)

    return ViewerWindow()


def show(
    study_path, *, size: tuple[int, int] = (1500, 900), services=None, attribution: str = "margin",
    reference: str | None = None,
) -> None:  # fmt: skip
    """Open the viewer on a study (a folder, a Study or a ViewerData) and block until the window closes;
    ``attribution``: what the attribution panel shows first (``onnx_geom.viewers.ATTRIBUTIONS``); ``reference``:
    the model the others are compared with (default: the study's dense model)."""
    from vispy import app

    from onnx_geom.viewers.data import ViewerData

    check_display()
    data = ViewerData.of(study_path, reference=reference)
    window = make_window(data, size=size, services=services, attribution=attribution)
    window.show()
    app.run()
