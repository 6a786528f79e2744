"""One SceneCanvas holding the panels (all six, or one): titles, axes, a ViewBox per view.

>>> canvas, views = build_canvas(data, Selection(models=data.models[:1]))        # doctest: +SKIP
>>> image = canvas.render()                                                     # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from vispy import scene

from onnx_geom.conditions import CLEAN_CONDITION
from onnx_geom.viewers.data import ViewerData
from onnx_geom.viewers.selection import Selection
from onnx_geom.viewers.services import Services
from onnx_geom.viewers.views import VIEWS
from onnx_geom.viewers.views.base import MUTED, TEXT

PANELS = tuple(VIEWS)  # the same names as onnx_geom.viewers.PANELS
COLUMNS = 3


def initial_selection(data: ViewerData, *, fragile: int = 8) -> Selection:
    """The first model that is not the reference (what a user compares first: the attribution panel shows it beside
    the reference; the reference itself when it is the only model), its strongest corruption (lowest accuracy), and
    up to ``fragile`` samples it gets right on clean data but wrong under that corruption (the samples a user asks
    about first)."""
    model = next((m for m in data.models if m != data.reference), data.models[0])
    condition = CLEAN_CONDITION
    accuracy = data.accuracy[list(data.models).index(model)]  # (C, S) of that model
    if accuracy.size and np.isfinite(accuracy).any():
        c, s = np.unravel_index(np.nanargmin(accuracy), accuracy.shape)
        condition = (data.corruptions[c], data.severities[s])
    selection = Selection(models=(model,), condition=condition)
    if data.has(model, *CLEAN_CONDITION) and data.has(model, *condition) and condition != CLEAN_CONDITION:
        flipped = np.flatnonzero(
            data.geometry(model, *CLEAN_CONDITION)["correct"] & ~data.geometry(model, *condition)["correct"]
        )
        selection.indices = flipped[:: max(1, len(flipped) // fragile)][:fragile]
    return selection


def _panel(grid, row: int, col: int, view_cls, title_size: float):
    cell = grid.add_grid(row=row, col=col, margin=4, spacing=0)
    title = scene.Label(view_cls.title, color=TEXT, font_size=title_size, bold=True)
    title.height_max = 22
    cell.add_widget(title, row=0, col=0, col_span=2)
    axes = getattr(view_cls, "axes", None)
    viewbox = cell.add_view(
        row=1, col=1 if axes else 0, col_span=1 if axes else 2, border_color="#bbbbbb", bgcolor="white"
    )
    viewbox.camera = scene.PanZoomCamera(aspect=view_cls.aspect, flip=view_cls.flip)
    if axes:
        y = scene.AxisWidget(
            orientation="left",
            axis_label=axes[1],
            axis_font_size=8,
            tick_font_size=7,
            axis_label_margin=38,
            tick_label_margin=4,
            text_color=TEXT,
            axis_color=MUTED,
            tick_color=MUTED,
        )
        y.width_max = 58
        x = scene.AxisWidget(
            orientation="bottom",
            axis_label=axes[0],
            axis_font_size=8,
            tick_font_size=7,
            axis_label_margin=26,
            tick_label_margin=12,
            text_color=TEXT,
            axis_color=MUTED,
            tick_color=MUTED,
        )
        x.height_max = 40
        cell.add_widget(y, row=1, col=0)
        cell.add_widget(x, row=2, col=1)
        for axis in (x, y):
            axis.link_view(viewbox)
            # The axis maps its own ends into the scene, so it must also follow layout changes (VisPy only
            # follows the camera): without this, ticks computed before the grid is laid out stay wrong.
            axis.events.resize.connect(axis._view_changed)
            viewbox.events.resize.connect(axis._view_changed)
    return title, viewbox


def build_canvas(
    data: ViewerData,
    selection: Selection,
    *,
    panels: list[str] | None = None,
    size: tuple[int, int] = (1280, 800),
    show: bool = False,
    parent=None,
    services: Services | None = None,
    attribution: str = "margin",
    app=None,
):
    """A SceneCanvas with ``panels`` (default all six, 2 rows x 3 columns); returns (canvas, {name: view}).

    ``services`` (default :meth:`Services.for_data`) is what the views use to run models; ``attribution`` what
    the attribution panel shows first (``onnx_geom.viewers.ATTRIBUTIONS``); ``app`` the VisPy application of the
    canvas (default: the process's; Jupyter's for the notebook widget).
    """
    panels = list(panels or PANELS)
    services = services if services is not None else Services.for_data(data)
    canvas = scene.SceneCanvas(size=size, show=show, bgcolor="white", keys=None, parent=parent, app=app)
    grid = canvas.central_widget.add_grid(margin=6, spacing=4)
    columns = min(COLUMNS, len(panels))
    views = {}
    for i, name in enumerate(panels):
        cls = VIEWS[name]
        title, viewbox = _panel(grid, i // columns, i % columns, cls, 10 if len(panels) > 1 else 12)
        options = {"attribution": attribution} if name == "attribution" else {}
        view = cls(data, selection, viewbox, services, **options)
        view.title_label = title
        views[name] = view
    refresh_titles(views)
    for view in views.values():  # the room a title has is known once the grid is laid out
        view.title_label.events.resize.connect(lambda _e: refresh_titles(views))
    # one subscription (held by the first view, so closing the views removes it) refreshes every title
    next(iter(views.values())).subscribe(
        "models",
        "condition",
        "indices",
        "focus",
        "shift_from_clean",
        "classes",
        "color_by",
        callback=lambda _s: refresh_titles(views),
    )
    return canvas, views


def refresh_titles(views) -> None:
    """Titles carry each view's context (its subtitle) and status sentence; when the panel is too narrow for
    all of it, the view's own name goes first, then the end of the line."""
    for view in views.values():
        parts = [part for part in (view.title, view.subtitle(), view.status) if part]
        text = fit_title(parts, view.title_label.size[0] / TITLE_CHAR_PX)
        if view.title_label.text != text:
            view.title_label.text = text


#: mean width of a character of a panel title (10-point bold), in pixels
TITLE_CHAR_PX = 6.6


def fit_title(parts: list[str], room: float) -> str:
    """``parts`` joined by " · ", within ``room`` characters: without the first part if that fits, else cut.

    >>> fit_title(["Local geometry", "dense, fog 3"], 20)
    'dense, fog 3'
    >>> fit_title(["Samples", "9 of 114 selected"], 80)
    'Samples  ·  9 of 114 selected'
    """
    text = "  ·  ".join(parts)
    if len(text) <= room or room < 8:  # room < 8: not laid out yet
        return text
    text = "  ·  ".join(parts[1:]) or text
    return text if len(text) <= room else text[: int(room) - 1] + "…"
