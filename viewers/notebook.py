"""The six linked views inside Jupyter: the window's canvas on VisPy's ``jupyter_rfb`` backend (frames rendered in
the kernel, offscreen through EGL, and streamed to the notebook) with ipywidgets controls, over the same
:class:`~onnx_geom.viewers.data.ViewerData` and :class:`~onnx_geom.viewers.selection.Selection` as the window.

>>> from onnx_geom.viewers import notebook
>>> viewer = notebook("onnx-geom-demo/study")      # doctest: +SKIP
>>> viewer                                         # doctest: +SKIP
>>> viewer.selection.condition = ("contrast", 5)   # every view follows, as in the window   # doctest: +SKIP

Displayed, the viewer is the live widget; where no widget can show (a static rendering of the notebook, GitHub,
nbconvert), the same output carries a PNG of the views (``image/png``), rendered in the kernel.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from onnx_geom.conditions import CLEAN
from onnx_geom.errors import DeviceError

__all__ = ["NotebookViewer"]

NONE = "(none)"


def _ipywidgets() -> Any:
    try:
        import ipywidgets
    except ImportError:
        raise DeviceError(
            "the viewer inside Jupyter needs ipywidgets and jupyter_rfb; install them with "
            "`pip install 'onnx-geom[viewer,notebook]'`."
        ) from None
    return ipywidgets


def _presize(canvas: Any, size: tuple[int, int]) -> None:
    """Give a ``jupyter_rfb`` canvas its size before a notebook front end reports one, so that it lays out and
    renders in the kernel at once (the front end's own resize event replaces it when the widget shows)."""
    backend = canvas._backend
    width, height = int(size[0]), int(size[1])
    if tuple(canvas.size) == (width, height) or not hasattr(backend, "_helper"):
        return
    backend._logical_size = backend._physical_size = (width, height)
    backend._helper.set_physical_size(width, height)
    backend._emit_resize_event()


class NotebookViewer:
    """The linked views of ``data`` as a Jupyter widget (``widget``: the controls above the canvas).

    ``selection`` is shared by every view and the controls, exactly as in the window: set it from code
    (``viewer.selection.models = ("dense", "random_95")``) or click, shift+drag (box) or ctrl+drag (lasso) in the
    views; hovering shows the values. ``render()`` gives the current frame as an (H, W, 4) array, ``snapshot()``
    as an image to display.
    """

    def __init__(self, data: Any, selection: Any = None, *, size: tuple[int, int] = (1200, 760), services: Any = None):
        from onnx_geom.viewers._backend import jupyter_app

        widgets = _ipywidgets()
        app = jupyter_app()
        from onnx_geom.viewers.interaction import Interaction
        from onnx_geom.viewers.layout import build_canvas, initial_selection

        self.data = data
        self.selection = selection if selection is not None else initial_selection(data)
        self.size = (int(size[0]), int(size[1]))
        self.canvas, self.views = build_canvas(data, self.selection, size=self.size, services=services, app=app)
        _presize(self.canvas, self.size)
        self.interaction = Interaction(self.canvas, self.views)
        layout = {"width": "auto"}
        self.model_a = widgets.Dropdown(options=list(data.models), description="model", layout=layout)
        self.model_b = widgets.Dropdown(options=[NONE, *data.models], description="compare with", layout=layout)
        self.corruption = widgets.Dropdown(options=[CLEAN, *data.corruptions], description="corruption", layout=layout)
        self.severity = widgets.Dropdown(options=[str(s) for s in data.severities] or ["0"], description="severity",
                                         layout=layout)  # fmt: skip
        self.shift = widgets.Checkbox(description="shift from clean", indent=False, layout=layout)
        self.clear = widgets.Button(description="clear selection", layout=layout)
        self.count = widgets.Label()
        self._syncing = False
        for box in (self.model_a, self.model_b, self.corruption, self.severity):
            box.observe(self._controls_changed, names="value")
        self.shift.observe(lambda change: setattr(self.selection, "shift_from_clean", bool(change["new"])),
                           names="value")  # fmt: skip
        self.clear.on_click(lambda _button: setattr(self.selection, "indices", []))
        self._callbacks = []
        for name in ("models", "condition", "indices", "focus", "shift_from_clean"):
            signal = getattr(self.selection.events, name)
            self._callbacks.append((signal, signal.connect(lambda _s: self._sync())))
        self._sync()
        first = widgets.HBox([self.model_a, self.model_b, self.corruption, self.severity])
        second = widgets.HBox([self.shift, self.clear, self.count])
        self.widget = widgets.VBox([first, second, self.canvas.native])

    # -- controls <-> selection ------------------------------------------------------------------------------
    def _controls_changed(self, _change: Any = None) -> None:
        if self._syncing:
            return
        b = self.model_b.value
        self.selection.models = (self.model_a.value,) + (() if b == NONE else (b,))
        corruption = self.corruption.value
        self.severity.disabled = corruption == CLEAN
        severity = 0 if corruption == CLEAN else int(self.severity.value or 0)
        self.selection.condition = (corruption, severity)

    def _sync(self) -> None:
        """The controls show the selection (set from code, a click in a view or a control); the canvas redraws."""
        self._syncing = True
        try:
            models = self.selection.models
            self.model_a.value = models[0] if models else self.data.models[0]
            self.model_b.value = models[1] if len(models) > 1 else NONE
            corruption, severity = self.selection.condition
            if corruption in self.corruption.options:
                self.corruption.value = corruption
            if corruption != CLEAN and str(severity) in self.severity.options:
                self.severity.value = str(severity)
            self.severity.disabled = corruption == CLEAN
            self.shift.value = self.selection.shift_from_clean
            n = self.selection.indices.size
            self.count.value = f"{n:,} sample{'s' if n != 1 else ''} selected"
        finally:
            self._syncing = False
        self.canvas.update()

    # -- images ------------------------------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """(H, W, 4) uint8: the views as they are now, rendered in the kernel."""
        return self.canvas.render()

    def png(self) -> bytes:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(self.render()).convert("RGB").save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()

    def snapshot(self) -> Any:
        """The views now, as an image to display (``IPython.display.Image``)."""
        from IPython.display import Image

        return Image(data=self.png(), format="png")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude)
        data = dict(bundle[0] if isinstance(bundle, tuple) else bundle or {})
        data["image/png"] = base64.b64encode(self.png()).decode("ascii")  # for static renderings of the notebook
        data["text/plain"] = repr(self)
        return data

    def __repr__(self) -> str:
        c, s = self.selection.condition
        where = "clean" if c == CLEAN else f"{c} {s}"
        return (
            f"<onnx-geom viewer: {len(self.data.models)} models, {', '.join(self.selection.models)} under {where}, "
            f"{self.selection.indices.size} samples selected>"
        )

    def close(self) -> None:
        """Disconnect the views and close the widget."""
        for signal, callback in self._callbacks:
            signal.disconnect(callback)
        self._callbacks.clear()
        self.interaction.close()
        for view in self.views.values():
            view.close()
        self.widget.close()
        self.canvas.close()
