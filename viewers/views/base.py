"""What every view shares: its data, the selection, one ViewBox, subscriptions that ``close()`` undoes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from vispy import scene

from onnx_geom.errors import OnnxGeomError
from onnx_geom.viewers.data import ViewerData
from onnx_geom.viewers.selection import Selection, Signal
from onnx_geom.viewers.services import Services

TEXT = "#222222"
MUTED = "#666666"


def finite_percentiles(values: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``values`` (N, A) the ``low`` and ``high`` percentiles of its finite entries (samples the model
    gave NaN for are left out); a column with none gets 0..1."""
    values = np.where(np.isfinite(values), values, np.nan)
    lo, hi = np.zeros(values.shape[1]), np.ones(values.shape[1])
    seen = np.isfinite(values).any(axis=0)
    if seen.any():
        lo[seen], hi[seen] = np.nanpercentile(values[:, seen], [low, high], axis=0)
    return lo, hi


def predicted_name(names: list[str], pred: int) -> str:
    """The name of a predicted class; -1 (the model gave NaN or inf for the sample) reads "none (NaN output)"."""
    return names[pred] if pred >= 0 else "none (NaN output)"


class View:
    """Base class: ``View(data, selection, viewbox, services)`` builds its visuals and subscribes in ``__init__``.

    Subclasses set ``title``, implement ``reset()`` (redraw from data + selection) and may implement
    ``pick_point(xy, radius)``, ``pick_box(lo, hi)`` and ``pick_polygon(poly)`` in scene coordinates (they
    change the selection) and ``hover(xy, radius) -> str``.
    """

    title = ""
    name = ""
    aspect: float | None = None  # the PanZoomCamera the layout gives the ViewBox
    flip: tuple[bool, bool] = (False, False)
    title_label: Any = None  # the panel's title (a vispy Label), set by the layout

    def __init__(
        self, data: ViewerData, selection: Selection, viewbox: scene.ViewBox, services: Services | None = None
    ) -> None:
        self.data, self.selection, self.viewbox = data, selection, viewbox
        self.services = services if services is not None else Services.for_data(data)
        self._subscriptions: list[tuple[Signal, Callable]] = []
        self.status = ""  # a short sentence shown in the panel's title (errors, notes)

    def subscribe(self, *names: str, callback: Callable | None = None) -> None:
        """Call ``callback`` (default ``reset``) when any of the selection's events ``names`` fires."""
        callback = callback or (lambda _sel: self.reset())
        for name in names:
            signal = getattr(self.selection.events, name)
            signal.connect(callback)
            self._subscriptions.append((signal, callback))

    def reset(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        for signal, callback in self._subscriptions:
            signal.disconnect(callback)
        self._subscriptions.clear()

    def subtitle(self) -> str:
        """Context shown after the panel's title."""
        return ""

    def highlighted(self) -> np.ndarray:
        """(S,) the sample indices this view draws highlighted now."""
        return np.zeros(0, np.int64)

    # interaction defaults: nothing to pick
    def pick_point(self, xy: np.ndarray, radius: np.ndarray, extend: bool = False) -> bool:
        return False

    def pick_box(self, lo: np.ndarray, hi: np.ndarray) -> bool:
        return False

    def pick_polygon(self, polygon: np.ndarray) -> bool:
        return False

    def hover(self, xy: np.ndarray, radius: np.ndarray) -> str:
        return ""


class UnitView(View):
    """A view of one unit (the first selected model under the current condition) with the selection
    highlighted on top: the unit's geometry is uploaded once per unit (``uploads`` counts it), a selection change
    only calls :meth:`update_highlight`. Subclasses implement ``upload(geom)``, ``clear()`` (the unit has no
    geometry: hide what the last one drew) and ``update_highlight()``."""

    _unit: tuple | None = None  # the unit drawn now
    uploads = 0  # full uploads of a unit's points (a selection change never adds one)

    def reset(self) -> None:
        if not self.selection.models:
            return
        unit = (self.selection.models[0], *self.selection.condition)
        if unit != self._unit:
            self._unit = unit
            try:
                geom = self.data.geometry(*unit)
            except OnnxGeomError as error:
                self.status = str(error)
                self.clear()
            else:
                self.status = ""
                self.upload(geom)
                self.uploads += 1
        self.update_highlight()

    def upload(self, geom) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def update_highlight(self) -> None:
        raise NotImplementedError


def rect_segments(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    """The four sides of a rectangle as line segments (pairs of points), for ``Line(connect="segments")``."""
    return [(x0, y0), (x1, y0), (x1, y0), (x1, y1), (x1, y1), (x0, y1), (x0, y1), (x0, y0)]


def corner_legend(viewbox, names: list[str], colors: np.ndarray, *, right: bool = True) -> scene.visuals.Text:
    """Coloured names stacked in a corner of ``viewbox`` (pixel coordinates, kept there on resize)."""
    legend = scene.visuals.Text(
        names,
        color=colors[: len(names)],
        font_size=7,
        bold=True,
        anchor_x="right" if right else "left",
        anchor_y="bottom",
        parent=viewbox,
    )

    def place(_event=None) -> None:
        x = viewbox.size[0] - 6 if right else 6
        legend.pos = [(x, 16 + 12 * i) for i in range(len(names))]

    viewbox.events.resize.connect(place)
    place()
    return legend


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) bool: which of ``points`` (N, 2) lie inside ``polygon`` (P, 2) (even-odd rule, vectorised).

    >>> square = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], float)
    >>> points_in_polygon(np.array([[1, 1], [3, 1], [1, -0.5]], float), square).tolist()
    [True, False, False]
    """
    x, y = points[:, 0], points[:, 1]
    inside = np.zeros(len(points), bool)
    lo, hi = polygon.min(0), polygon.max(0)
    cand = np.flatnonzero((x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]))
    px, py = x[cand], y[cand]
    hit = np.zeros(cand.size, bool)
    for (x0, y0), (x1, y1) in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        crosses = (y0 > py) != (y1 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xcross = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        hit ^= crosses & (px < xcross)
    inside[cand] = hit
    return inside


def nearest(points: np.ndarray, xy: np.ndarray, radius: np.ndarray) -> int | None:
    """Index of the point of ``points`` (N, 2) nearest to ``xy`` within the ellipse ``radius`` (2,), or None."""
    if len(points) == 0:
        return None
    d = (((points - xy) / radius) ** 2).sum(1)
    i = int(np.argmin(d))
    return i if d[i] <= 1.0 else None
