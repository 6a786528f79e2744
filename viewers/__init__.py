"""The VisPy viewer of a study (installed as ``onnx_geom.viewers``); it only reads what the core wrote.

>>> from onnx_geom.viewers import ViewerData, screenshot
>>> screenshot(ViewerData.synthetic(5000, 10), "view.png", panel="local")    # doctest: +SKIP

``screenshot`` renders without a display (EGL); ``show`` opens the Qt window; ``notebook`` shows the same linked
views inside Jupyter. VisPy is imported lazily.
"""

from __future__ import annotations

from onnx_geom.viewers.data import ViewerData
from onnx_geom.viewers.selection import Selection
from onnx_geom.viewers.services import Services

__all__ = ["ATTRIBUTIONS", "PANELS", "Selection", "Services", "ViewerData", "notebook", "render", "screenshot", "show"]

PANELS = ("table", "similarity", "samples", "local", "global", "attribution")
#: What the attribution panel shows: the exact linearization of one quantity (margin, cos of the angle to the true
#: class, length, the true or the predicted logit), or occlusion patches.
ATTRIBUTIONS = ("margin", "cos", "length", "true-logit", "predicted-logit", "occlusion")


def screenshot(
    study_or_data, out_png, *, panel=None, size=(1280, 800), selection=None, services=None, attribution="margin",
    reference=None,
):  # fmt: skip
    """Render the viewer headless to a PNG; see :func:`onnx_geom.viewers.headless.screenshot`."""
    from onnx_geom.viewers.headless import screenshot as _screenshot

    return _screenshot(study_or_data, out_png, panel=panel, size=size, selection=selection, services=services,
                       attribution=attribution, reference=reference)  # fmt: skip


def render(
    study_or_data, *, panel=None, size=(1280, 800), selection=None, services=None, attribution="margin", reference=None
):
    """(H, W, 4) uint8 image of the viewer; see :func:`onnx_geom.viewers.headless.render`."""
    from onnx_geom.viewers.headless import render as _render

    return _render(study_or_data, panel=panel, size=size, selection=selection, services=services,
                   attribution=attribution, reference=reference)  # fmt: skip


def show(study_path, *, size=(1500, 900), services=None, attribution="margin", reference=None):
    """Open the interactive window; see :func:`onnx_geom.viewers.window.show`."""
    from onnx_geom.viewers.window import show as _show

    return _show(study_path, size=size, services=services, attribution=attribution, reference=reference)


def notebook(study_or_data, *, size=(1200, 760), selection=None, services=None, reference=None):
    """The linked views inside Jupyter, as a widget; see :class:`onnx_geom.viewers.notebook.NotebookViewer`.

    ``study_or_data``: a study folder, an :class:`onnx_geom.store.Study` or a :class:`ViewerData`; the study's
    stored comparison is used while it is fresh (:func:`onnx_geom.frames.study_comparison`)."""
    from onnx_geom.viewers.notebook import NotebookViewer

    data = study_or_data
    if not isinstance(data, ViewerData):
        from onnx_geom.frames import study_comparison
        from onnx_geom.store import Study

        study = Study.open(data) if not hasattr(data, "units") else data
        comparison, _ = study_comparison(study, reference=reference)
        data = ViewerData.from_study(study, reference=reference, comparison=comparison)
    return NotebookViewer(data, selection, size=size, services=services)
