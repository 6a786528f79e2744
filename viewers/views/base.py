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

    def refresh_title(self) -> None:
        """Rewrite the panel's title now (after a change no selection event announces)."""
        if self.title_label is not None:
            from onnx_geom.viewers.layout import refresh_titles

            refresh_titles({self.name: self})

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


class ColourKey:
    """A colour scale in a corner of ``viewbox`` (pixel coordinates, kept there on resize): a gradient of the map
    ``cmap`` with the values of its two ends beside it and a ``caption`` above; :meth:`set_ends` sets the values,
    ``visible`` shows or hides it all."""

    WIDTH, HEIGHT = 90, 8

    def __init__(self, viewbox, cmap: str, caption: str, *, corner: str = "top-right") -> None:
        from vispy.visuals.transforms import STTransform

        from onnx_geom.viewers.colors import colormap

        self.viewbox, self.corner = viewbox, corner
        ramp = colormap(np.linspace(0.0, 1.0, 64)[None, :], cmap)  # (1, 64, 4)
        self.bar = scene.visuals.Image(ramp, parent=viewbox, interpolation="linear")
        self.bar.transform = STTransform()
        self.frame = scene.visuals.Line(parent=viewbox, color=MUTED, width=1)
        self.low = scene.visuals.Text("", color=TEXT, font_size=6, anchor_x="right", parent=viewbox)
        self.high = scene.visuals.Text("", color=TEXT, font_size=6, anchor_x="left", parent=viewbox)
        # pixel coordinates run downwards: a text anchored at its "top" rises above its position
        self.caption = scene.visuals.Text(caption, color=MUTED, font_size=6, anchor_y="top", parent=viewbox)
        self._lo, self._hi = "", ""
        self._box = (0.0, 0.0, 0.0, 0.0)
        viewbox.events.resize.connect(self.place)
        self.place()

    def set_ends(self, lo: str, hi: str, caption: str | None = None) -> None:
        self._lo, self._hi = lo, hi
        if caption is not None:
            self.caption.text = caption
        self.place()

    def place(self, _event=None) -> None:
        width, height = self.viewbox.size
        x1 = width - 8 - 6 * max(len(self._hi), 1)
        x0 = x1 - self.WIDTH
        y = 22 if self.corner.startswith("top") else height - 14
        self.bar.transform.scale = (self.WIDTH / 64, self.HEIGHT)
        self.bar.transform.translate = (x0, y)
        self.frame.set_data(
            np.array([(x0, y), (x1, y), (x1, y + self.HEIGHT), (x0, y + self.HEIGHT), (x0, y)], np.float32)
        )
        self.low.text, self.high.text = self._lo, self._hi
        self.low.pos, self.high.pos = (x0 - 3, y + self.HEIGHT / 2), (x1 + 3, y + self.HEIGHT / 2)
        self.caption.pos = (x1 - self.WIDTH / 2, y - 2)
        self._box = (x0 - 8 - 6 * len(self._lo), y - 14, x1 + 8 + 6 * len(self._hi), y + self.HEIGHT + 4)

    def contains(self, px) -> bool:
        """Whether viewbox pixel ``px`` lies on the key (its bar, its ends or its caption)."""
        x0, y0, x1, y1 = self._box
        return x0 <= px[0] <= x1 and y0 <= px[1] <= y1

    @property
    def visible(self) -> bool:
        return bool(self.bar.visible)

    @visible.setter
    def visible(self, value: bool) -> None:
        for visual in (self.bar, self.frame, self.low, self.high, self.caption):
            visual.visible = bool(value)


def colour_key(viewbox, cmap: str, caption: str, *, corner: str = "top-right") -> ColourKey:
    """A :class:`ColourKey` in ``viewbox``."""
    return ColourKey(viewbox, cmap, caption, corner=corner)


class CornerLegend:
    """Coloured names stacked in a corner of ``viewbox`` (pixel coordinates, kept there on resize), changeable
    with :meth:`set`."""

    def __init__(self, viewbox, *, right: bool = True, top: bool = False) -> None:
        self.viewbox, self.right, self.top = viewbox, right, top
        self.text = scene.visuals.Text(
            "",
            color=TEXT,
            font_size=7,
            bold=True,
            anchor_x="right" if right else "left",
            anchor_y="bottom",
            parent=viewbox,
        )
        self.n = 0
        viewbox.events.resize.connect(self.place)

    def set(self, names: list[str], colors: np.ndarray) -> None:
        self.n = len(names)
        self.text.visible = bool(names)
        if names:
            self.text.text = list(names)
            self.text.color = np.asarray(colors, np.float32)[: len(names)]
        self.place()

    def place(self, _event=None) -> None:
        if not self.n:
            return
        x = self.viewbox.size[0] - 6 if self.right else 6
        y0 = 16 if self.top else self.viewbox.size[1] - 8 - 12 * self.n
        self.text.pos = [(x, y0 + 12 * i) for i in range(self.n)]


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
