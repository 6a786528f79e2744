"""Headless screenshots of the viewer (EGL, no display): the whole window or one panel.

>>> screenshot("runs/cifar", "view.png", panel="local", size=(1280, 800))     # doctest: +SKIP
PosixPath('view.png')
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from onnx_geom.errors import DataError

__all__ = ["render", "screenshot"]


def render(
    study_or_data,
    *,
    panel: str | None = None,
    size: tuple[int, int] = (1280, 800),
    selection=None,
    services=None,
    attribution: str = "margin",
    reference: str | None = None,
) -> np.ndarray:
    """(H, W, 4) uint8 image of the viewer (``panel`` one of the six names, or None for all); ``services`` and
    ``attribution`` (what the attribution panel shows): see :func:`onnx_geom.viewers.layout.build_canvas`."""
    from onnx_geom.viewers._backend import use_backend

    use_backend("egl")
    from onnx_geom.viewers import ATTRIBUTIONS
    from onnx_geom.viewers.layout import PANELS, build_canvas, initial_selection

    if panel is not None and panel not in PANELS:
        raise DataError(f"unknown panel {panel!r}; choose one of {', '.join(PANELS)}.")
    if attribution not in ATTRIBUTIONS:
        raise DataError(f"unknown attribution {attribution!r}; choose one of {', '.join(ATTRIBUTIONS)}.")
    if len(size) != 2 or min(size) < 64 or max(size) > 8192:
        raise DataError(f"size {size[0]}x{size[1]} is out of range; give a width and height from 64 to 8192.")
    from onnx_geom.viewers.data import ViewerData

    data = ViewerData.of(study_or_data, reference=reference)
    selection = selection or initial_selection(data)
    width, height = size
    canvas, views = build_canvas(
        data, selection, panels=[panel] if panel else None, size=(width, height), services=services,
        attribution=attribution,
    )  # fmt: skip
    try:
        return canvas.render()
    finally:
        for view in views.values():
            view.close()
        canvas.close()


def screenshot(
    study_or_data,
    out_png: str | os.PathLike,
    *,
    panel: str | None = None,
    size: tuple[int, int] = (1280, 800),
    selection=None,
    services=None,
    attribution: str = "margin",
    reference: str | None = None,
) -> Path:
    """Render the viewer without a display and write a PNG; returns its path.

    ``study_or_data``: a study folder, an :class:`onnx_geom.store.Study` or a :class:`ViewerData`;
    ``selection``: a :class:`Selection` (default: the first model, its strongest corruption, a few samples that
    corruption flips); ``attribution``: what the attribution panel shows (``onnx_geom.viewers.ATTRIBUTIONS``).
    ``out_png`` is checked before anything is rendered (:func:`onnx_geom._files.check_output`: not inside a
    study, not a folder, writable; missing folders are created) and replaced whole.
    """
    from PIL import Image

    from onnx_geom._files import check_output, output_errors, replacing

    out = check_output(out_png, inputs=_inputs(study_or_data))
    image = render(study_or_data, panel=panel, size=size, selection=selection, services=services,
                   attribution=attribution, reference=reference)  # fmt: skip
    with output_errors(out), replacing(out) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return out


def _inputs(study_or_data) -> tuple[Path, ...]:
    """The study folder a screenshot is taken of, when it is known."""
    if isinstance(study_or_data, (str, os.PathLike)):
        return (Path(study_or_data),)
    path = getattr(study_or_data, "path", None)
    return (Path(path),) if isinstance(path, (str, os.PathLike)) else ()
