"""Global geometry: parallel coordinates, one axis per class direction (angle to each W_c), then angle to the
true class, length and margin. No class axis is ever dropped: the class axes follow the similarity of the class
directions (:mod:`onnx_geom.viewers.classes`; up to 12 classes, their own order), and up to :data:`BAND` of them
are drawn at once; with more classes a strip above the axes stands for all of them, and a click on it moves
the band there, a shift-drag over it shows just the classes dragged over (at most :data:`MAX_BAND`); picking
classes (``Selection.classes``) brings their axes into the band.

Up to :data:`DENSITY_ABOVE` samples every polyline is drawn (translucent); above, all samples are drawn as
accumulated line density (how many polylines cross each pixel, on a log colour scale whose key is in the
panel), computed exactly from the 2-D histogram of each pair of neighbouring axes, so its cost grows with N
times the number of axes, never with the pixels each line covers. The selected samples are drawn as lines on
top. A box over an axis selects the samples whose value lies in it (brushing).

margin: signed distance from f to the nearest pairwise decision boundary between the true class and another
class (negative when misclassified); for a misclassified sample it is the distance to the nearest such boundary,
a lower bound on the distance to the true class's region (the margin axis's tooltip says so).
"""

from __future__ import annotations

import numpy as np
from vispy import scene
from vispy.visuals.transforms import STTransform

from onnx_geom.errors import OnnxGeomError
from onnx_geom.geometry import MARGIN_DEFINITION
from onnx_geom.viewers.classes import sample_colors
from onnx_geom.viewers.colors import colormap
from onnx_geom.viewers.views.base import MUTED, TEXT, CornerLegend, UnitView, colour_key, finite_percentiles

#: Above this many samples the polylines are drawn as a density image (accumulated line density); up to it,
#: every polyline (at 2,000 translucent lines already cover most pixels of a panel).
DENSITY_ABOVE = 2_000
BAND = 100  # class axes drawn at once by default (all of them up to 100 classes)
MAX_BAND = 250  # the widest band a shift-drag over the strip can ask for
ROWS = 256  # density rows (the axes' height in bins)
DENSITY_WIDTH = 640  # about this many density columns across the panel, whatever the number of axes
MAX_LINES = 2000  # selected samples drawn as lines on top
PERCENTILE_ROWS = 200_000  # the axis ranges (0.5th to 99.5th percentile) come from at most this many samples
STRIP = (1.07, 1.13)  # the overview strip's height, in scene units (the axes run from 0 to 1)
SUMMARY = ("angle", "length", "margin")  # the axes after the class axes


def axis_ranges(values: np.ndarray, *, shared: int = 0, rows: int = PERCENTILE_ROWS) -> np.ndarray:
    """(2, A) low and high end of each axis: the 0.5th and 99.5th percentiles of its finite values (of at most
    ``rows`` samples drawn at random), the first ``shared`` axes one range for all of them."""
    if len(values) > rows:
        values = values[np.sort(np.random.default_rng(0).choice(len(values), rows, replace=False))]
    lo, hi = finite_percentiles(np.asarray(values, np.float32), 0.5, 99.5)
    if shared:
        lo[:shared], hi[:shared] = lo[:shared].min(), hi[:shared].max()
    hi = np.where(hi > lo, hi, lo + 1)
    return np.stack([lo, hi])


def density_image(scaled: np.ndarray, *, steps: int = 16, rows: int = ROWS, gaps=None) -> np.ndarray:
    """(rows, steps * sum(gaps) + 1) counts of the polylines through ``scaled`` (N, A) crossing each pixel;
    ``gaps`` (A - 1,) are the distances between neighbouring axes in axis units (default all 1), each gap
    ``steps * gap`` columns wide.

    Each value is put on the row grid (``round(y * (rows - 1))``; up to one panel height outside 0..1 kept,
    beyond clipped there); between two neighbouring axes the 2-D histogram of (row at the left axis, row at
    the right axis) is computed once (O(N)), and each of its occupied cells draws its line, weighted by its
    count, at ``steps`` columns (rows rounded half to even); the parts of a line outside 0..1 are left out, and
    a sample with NaN at either end of a gap is left out of that gap.
    """
    n, a = scaled.shape
    top = rows - 1
    gaps = np.ones(max(a - 1, 0), np.int64) if gaps is None else np.asarray(gaps, np.int64)
    offsets = np.concatenate([[0], np.cumsum(gaps * steps)])  # first column of each gap
    width = int(offsets[-1]) + 1
    out = np.zeros((rows, width), np.float64)
    levels = 3 * top + 1  # rows -top .. 2 top

    def on_grid(column: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Grid rows (shifted by ``top``, int32) of a column, and where it is finite (None: everywhere)."""
        y = np.asarray(scaled[:, column], np.float32)
        finite = np.isfinite(y)
        every = bool(finite.all())
        y = y * top if every else np.where(finite, y, 0) * top
        np.rint(y, out=y)
        np.clip(y, -top, 2 * top, out=y)
        q = y.astype(np.int32)
        q += top
        return q, None if every else finite

    left_rows, left_ok = on_grid(0)
    for k in range(a - 1):
        right_rows, right_ok = on_grid(k + 1)
        if left_ok is None and right_ok is None:
            index = left_rows * levels + right_rows
        else:
            both = np.ones(n, bool) if left_ok is None else left_ok.copy()
            if right_ok is not None:
                both &= right_ok
            index = left_rows[both] * levels + right_rows[both]
        cells = np.bincount(index, minlength=levels * levels)
        occupied = np.flatnonzero(cells)
        left, right = occupied // levels - top, occupied % levels - top  # (C,) rows at the two axes
        cols = int(gaps[k] * steps)
        s = np.arange(cols)[:, None]
        # the row at column s of the gap: left + (right - left) s / cols, from an exact integer numerator
        r = np.rint((left[None, :] * cols + (right - left)[None, :] * s) / cols).astype(np.int64)  # (cols, C)
        inside = (r >= 0) & (r <= top)
        column = np.broadcast_to(np.arange(cols)[:, None], r.shape)
        weights = np.broadcast_to(cells[occupied][None, :], r.shape)
        block = np.bincount((r * cols + column)[inside], weights=weights[inside], minlength=rows * cols)
        out[:, offsets[k] : offsets[k + 1]] += block.reshape(rows, cols)
        left_rows, left_ok = right_rows, right_ok
    last = (left_rows if left_ok is None else left_rows[left_ok]) - top
    last = last[(last >= 0) & (last <= top)]
    out[:, width - 1] += np.bincount(last, minlength=rows)
    return out.astype(np.int64)


class GlobalView(UnitView):
    name = "global"
    aspect, flip = None, (False, False)
    title = "Global geometry"

    def __init__(self, data, selection, viewbox, services=None) -> None:
        super().__init__(data, selection, viewbox, services)
        self.order = data.class_order()
        self.k = data.n_classes
        self.band = (0, min(self.k, BAND))  # (first position in the order, number of class axes)
        self.image = scene.visuals.Image(np.ones((2, 2, 4), np.float32), parent=viewbox.scene, interpolation="linear")
        self.all_lines = scene.visuals.Line(parent=viewbox.scene, connect="segments", width=1)
        self.all_lines.set_gl_state("translucent", depth_test=False)
        self.lines = scene.visuals.Line(parent=viewbox.scene, connect="segments", width=2)
        self.lines.set_gl_state("translucent", depth_test=False)
        self.grid = scene.visuals.Line(parent=viewbox.scene, connect="segments")
        self.grid.set_gl_state("translucent", depth_test=False)
        self.marks = scene.visuals.Line(parent=viewbox.scene, connect="segments", color="#D55E00", width=2.5)
        self.names = scene.visuals.Text("", color=TEXT, font_size=7, anchor_x="left", rotation=40, parent=viewbox.scene)
        self.ticks = scene.visuals.Text("", color=MUTED, font_size=6, anchor_x="left", parent=viewbox.scene)
        self.strip = scene.visuals.Image(np.ones((1, 2, 4), np.float32), parent=viewbox.scene, interpolation="nearest")
        self.window = scene.visuals.Line(parent=viewbox.scene, connect="segments", color="black", width=2)
        self.strip_text = scene.visuals.Text(  # VisPy's text rises from a "top" anchor here (y up)
            "", color=MUTED, font_size=6, anchor_x="left", anchor_y="top", parent=viewbox.scene
        )
        for visual in (self.marks, self.window):
            visual.set_gl_state("translucent", depth_test=False)
        self.key = colour_key(viewbox, "density", "polylines per pixel (log)")
        self.key.visible = False
        self.legend = CornerLegend(viewbox, right=False)
        self.scaled = np.zeros((0, self.n_axes), np.float32)
        self.counts_max = 0
        self._shown = np.zeros(0, np.int64)
        viewbox.events.resize.connect(self._label_axes)
        self._layout()
        self.subscribe("models", "condition")
        self.subscribe("indices", "color_by", callback=lambda _s: self.update_highlight())
        self.subscribe("classes", callback=lambda _s: self._show_classes())
        self._show_classes(draw=False)
        self.reset()

    # -- axes -------------------------------------------------------------------------------------------------
    @property
    def band_classes(self) -> np.ndarray:
        """Class ids of the class axes drawn now, left to right."""
        start, width = self.band
        return self.order.order[start : start + width]

    @property
    def n_axes(self) -> int:
        return self.band[1] + len(SUMMARY)

    @property
    def xs(self) -> np.ndarray:
        """Scene x of every axis: the class axes 1 apart, then the summary axes a tenth of the band apart (so
        angle, length and margin keep their room however many class axes there are)."""
        width = self.band[1]
        gap = max(1, round(width / 10))
        return np.concatenate([np.arange(width), width - 1 + gap * np.arange(1, len(SUMMARY) + 1)]).astype(np.float64)

    @property
    def axis_names(self) -> list[str]:
        prefix = "to " if self.k < 13 else ""
        return [f"{prefix}{self.data.class_names[c]}" for c in self.band_classes] + list(SUMMARY)

    def set_band(self, start: int, width: int | None = None) -> None:
        """Show the class axes at positions ``start .. start + width - 1`` of the order (clipped to the classes)."""
        width = int(np.clip(width if width is not None else self.band[1], 1, min(self.k, MAX_BAND)))
        start = int(np.clip(start, 0, self.k - width))
        if (start, width) == self.band:
            return
        self.band = (start, width)
        self._layout()
        self._unit = None  # the band's columns are read again
        self.reset()
        self.refresh_title()

    def _show_classes(self, draw: bool = True) -> None:
        """Bring the picked classes' axes into the band (centred when they fit in it, else from the first of them),
        and mark them."""
        picked = self.selection.classes
        if picked.size:
            where = np.sort(self.order.position[picked])
            start, width = self.band
            if not (where[0] >= start and where[-1] < start + width):
                inside = where[-1] - where[0] + 1 <= width
                self.set_band(int(where[0] - (width - (where[-1] - where[0] + 1)) // 2 if inside else where[0]))
        if draw:
            self._draw_marks()
            self._label_axes()
            self.update_highlight()

    def _layout(self) -> None:
        """The axes, the strip and the camera for the current band."""
        xs = self.xs
        grid = np.array([[x, y] for x in xs for y in (0, 1)], np.float32)
        ticks = np.array([[x, y] for x in xs for y in (1.0, 1.02)], np.float32)  # one tick per axis, above it
        # many class axes: their lines fade (the density between them is what is read), the ticks stay dark
        fade = np.ones((len(grid), 4), np.float32) * (0.3, 0.3, 0.3, 1.0)
        fade[: 2 * self.band[1], 3] = min(1.0, max(0.3, 20.0 / self.band[1]))
        dark = np.tile(np.array([0.3, 0.3, 0.3, 1.0], np.float32), (len(ticks), 1))
        self.grid.set_data(np.concatenate([grid, ticks]), color=np.concatenate([fade, dark]))
        strip = self.band[1] < self.k
        top = STRIP[1] + 0.1 if strip else 1.1
        span = xs[-1]
        self.viewbox.camera.set_range(x=(-0.3 - 0.06 * span, 1.1 * span + 0.6), y=(-0.3, top), z=(0, 1), margin=0)
        self._draw_strip(strip)
        self._draw_marks()
        self._label_axes()

    def _strip_x(self, position: np.ndarray) -> np.ndarray:
        """Scene x of positions in the order, along the strip (which spans the class axes)."""
        span = max(self.band[1] - 1, 1)
        return (np.asarray(position, np.float64) + 0.5) / self.k * span

    def _draw_strip(self, visible: bool) -> None:
        for visual in (self.strip, self.window):
            visual.visible = visible
        groups = f"{self.order.n_groups} groups" if self.order.how != "class number" else ""
        self.strip_text.visible = visible or bool(groups)
        if not visible:
            self.strip_text.text = f"class axes ordered by {self.order.how} ({groups})" if groups else ""
            self.strip_text.pos = (0, 1.04)
            return
        shade = np.where(self.order.groups[self.order.order] % 2 == 0, 0.78, 0.9)  # alternate grey per group
        rgba = np.ones((1, self.k, 4), np.float32)
        rgba[0, :, :3] = shade[:, None]
        span = max(self.band[1] - 1, 1)
        self.strip.set_data(rgba)
        self.strip.transform = STTransform(scale=(span / self.k, STRIP[1] - STRIP[0]), translate=(0, STRIP[0]))
        start, width = self.band
        x0, x1 = start / self.k * span, (start + width) / self.k * span
        y0, y1 = STRIP[0] - 0.012, STRIP[1] + 0.012
        self.window.set_data(
            np.array([(x0, y0), (x1, y0), (x1, y0), (x1, y1), (x1, y1), (x0, y1), (x0, y1), (x0, y0)], np.float32)
        )
        self.strip_text.text = (
            f"all {self.k:,} classes by {self.order.how} ({self.order.n_groups} groups, grey); "
            "click: move here, shift+drag: zoom"
        )
        self.strip_text.pos = (0, STRIP[1] + 0.025)

    def _draw_marks(self) -> None:
        """The picked classes: an orange tick above each of their axes, and at their places on the strip."""
        picked = self.selection.classes
        seg = []
        band = self.band_classes
        for x in self.xs[np.flatnonzero(np.isin(band, picked))]:
            seg += [(x, 1.0), (x, 1.045)]  # a tick above the axis
        if self.band[1] < self.k and picked.size:
            for x in self._strip_x(self.order.position[picked]):
                seg += [(x, STRIP[0] - 0.02), (x, STRIP[1] + 0.02)]
        if seg:
            self.marks.set_data(np.asarray(seg, np.float32))
        self.marks.visible = bool(seg)

    def _label_axes(self, _event=None) -> None:
        """Axis names, every one when they are at least 14 pixels apart, else every k-th (and every picked one)."""
        n, xs = self.n_axes, self.xs
        px_per_axis = self.viewbox.size[0] / max(1.16 * xs[-1] + 0.9, 1)
        every = max(1, int(np.ceil(14.0 / max(px_per_axis, 1e-6))))  # rotated names need ~14 px
        classes = self.band[1]
        picked = np.flatnonzero(np.isin(self.band_classes, self.selection.classes))
        show: list[int] = []
        for k in [*picked, *range(0, classes, every)]:  # picked names first, then every k-th that has room
            if all(abs(k - j) >= every for j in show):
                show.append(int(k))
        show = sorted(show) + list(range(classes, n))
        names = self.axis_names
        self.names.text = [names[k] if len(names[k]) < 13 else names[k][:12] for k in show]
        self.names.pos = [(xs[k], -0.03) for k in show]
        self.names.color = np.asarray(
            [(0.84, 0.37, 0.0, 1.0) if k in picked else (0.13, 0.13, 0.13, 1.0) for k in show]
        )

    # -- data -------------------------------------------------------------------------------------------------
    def clear(self) -> None:
        self.scaled = np.zeros((0, self.n_axes), np.float32)
        for visual in (self.image, self.all_lines, self.ticks):
            visual.visible = False
        self.key.visible = False

    def upload(self, geom) -> None:
        assert self._unit is not None  # set by UnitView.reset before it calls upload
        model, corruption, severity = self._unit
        n = len(geom["margin"])
        classes = self.band[1]
        store = np.float32 if n <= 100_000 else np.float16  # 10^6 samples x 103 axes: 206 MB, not 412
        values = np.empty((n, self.n_axes), store, order="F")  # column by column below, and in the density
        cos = self.data.cos_columns(model, corruption, severity, self.band_classes)
        for start in range(0, n, 65536):  # degrees, a block of rows at a time (no (N, band) float64 temporaries)
            block = np.clip(cos[start : start + 65536], -1, 1)
            values[start : start + 65536, :classes] = np.degrees(np.arccos(block))
        del cos
        for i, key in enumerate(("angle_true", "length", "margin")):
            values[:, classes + i] = geom[key]
        ranges = axis_ranges(values, shared=classes)
        for k in range(self.n_axes):  # in place, column by column
            values[:, k] = (values[:, k].astype(np.float32) - ranges[0, k]) / (ranges[1, k] - ranges[0, k])
        self.scaled = values
        dense = n > DENSITY_ABOVE
        self.image.visible = self.key.visible = dense
        self.all_lines.visible = not dense
        if not dense:
            alpha = float(np.clip(150.0 / max(n, 1), 0.04, 0.5))
            self.all_lines.set_data(self._segments(np.arange(n)), color=(0.35, 0.35, 0.35, alpha))
        else:
            xs = self.xs
            steps = int(np.clip(DENSITY_WIDTH // max(xs[-1], 1), 2, 16))
            counts = density_image(self.scaled, steps=steps, gaps=np.diff(xs).astype(np.int64))
            self.counts_max = int(counts.max())
            shade = np.log1p(counts) / max(np.log1p(self.counts_max), 1e-9)
            self.image.set_data(colormap(shade, "density"))
            self.image.transform = STTransform(
                scale=(1.0 / steps, 1.0 / (ROWS - 1)), translate=(-0.5 / steps, -0.5 / (ROWS - 1))
            )
            self.key.set_ends("1", f"{self.counts_max:,}")
        self.ticks.visible = True
        # the class axes share one range: labelled once, left of the first of them; the others right of theirs
        xs = self.xs
        axes = [0, *range(classes, self.n_axes)]
        self.ticks.text = [f"{v:.0f}" if abs(v) >= 10 else f"{v:.2g}" for y in (0, 1) for v in ranges[y, axes]]
        self.ticks.pos = [
            (xs[a] - 0.03 * xs[-1] - 0.25 if a == 0 else xs[a] + 0.015 * xs[-1] + 0.05, y) for y in (0, 1) for a in axes
        ]

    def update_highlight(self) -> None:
        idx = self.selection.indices
        idx = idx[idx < len(self.scaled)][:MAX_LINES]
        if idx.size and self._unit is not None:
            try:
                geom = self.data.geometry(*self._unit)
            except OnnxGeomError:
                geom = None
            if geom is not None:
                colours, legend = sample_colors(
                    self.selection.color_by,
                    labels=self.data.labels,
                    geom=geom,
                    order=self.order,
                    picked=self.selection.classes,
                    rows=idx,
                    other="#555555",
                )
                self._legend(legend)
                alpha = np.full(idx.size, 0.9 if idx.size < 50 else 0.4)
                if self.selection.classes.size:  # selected samples of other classes recede
                    alpha[~np.isin(self.data.labels[idx], self.selection.classes)] = 0.3
                colours[:, 3] = alpha
                colours = np.repeat(colours, 2 * (self.n_axes - 1), axis=0)
                self.lines.set_data(self._segments(idx), color=colours)
            else:
                idx = idx[:0]
        self.lines.visible = bool(idx.size)
        if not idx.size:
            self.legend.set([], np.zeros((0, 4)))
        self._shown = idx

    def _legend(self, legend: list) -> None:
        """What the colours of the selected lines mean (nothing when they are the class colours of few classes:
        the axes name the classes)."""
        if self.selection.classes.size:
            legend = [("selected, of a picked class", legend[0][1]), ("selected, other classes", legend[-1][1])]
        elif len(legend) == self.k and self.k <= 10:
            legend = []
        self.legend.set([t for t, _ in legend], np.asarray([c for _, c in legend]).reshape(-1, 4))

    def _segments(self, idx: np.ndarray) -> np.ndarray:
        """(2 * S * (A - 1), 2) line segments of the polylines of samples ``idx``."""
        n = self.n_axes
        x = self.xs.astype(np.float32)
        y = np.clip(np.asarray(self.scaled[idx], np.float32), -0.03, 1.03)  # outliers end at the frame
        start = np.stack([np.broadcast_to(x[:-1], (idx.size, n - 1)), y[:, :-1]], -1)
        end = np.stack([np.broadcast_to(x[1:], (idx.size, n - 1)), y[:, 1:]], -1)
        return np.stack([start, end], axis=2).reshape(-1, 2).astype(np.float32)

    def highlighted(self) -> np.ndarray:
        return self._shown if self.lines.visible else np.zeros(0, np.int64)

    def subtitle(self) -> str:
        n = len(self.scaled)
        start, width = self.band
        axes = f"axes {start + 1}-{start + width} of {self.k:,}" if width < self.k else f"{self.k:,} class axes"
        axes += f" by {'similarity' if self.order.how != 'class number' else 'class number'}"
        if not n:
            return axes
        return f"{axes} · {n:,} samples" if n <= DENSITY_ABOVE else f"{axes} · density of {n:,} samples"

    # -- interaction ------------------------------------------------------------------------------------------
    def _on_strip(self, y: float) -> bool:
        return self.band[1] < self.k and STRIP[0] - 0.03 <= y <= STRIP[1] + 0.03

    def _strip_position(self, x: float) -> int:
        span = max(self.band[1] - 1, 1)
        return int(np.clip(np.floor(x / span * self.k), 0, self.k - 1))

    def pick_point(self, xy, radius, extend: bool = False) -> bool:
        if not self._on_strip(xy[1]):
            return False
        self.set_band(self._strip_position(xy[0]) - self.band[1] // 2)
        return True

    def pick_box(self, lo, hi) -> bool:
        if self.band[1] < self.k and lo[1] > 1.0 and hi[1] >= STRIP[0] - 0.03:  # over the strip: zoom there
            a, b = self._strip_position(lo[0]), self._strip_position(hi[0])
            self.set_band(a, b - a + 1)
            return True
        k = self._axis_at((lo[0] + hi[0]) / 2, 0.5)
        if k is None or len(self.scaled) == 0:
            return False
        v = self.scaled[:, k]
        self.selection.indices = np.flatnonzero((v >= lo[1]) & (v <= hi[1]))
        return True

    def hover(self, xy, radius) -> str:
        if self._on_strip(xy[1]):
            c = int(self.order.order[self._strip_position(xy[0])])
            group = int(self.order.groups[c]) + 1
            return f"class {self.data.class_names[c]} (group {group}); click to show its axes"
        k = self._axis_at(xy[0], 0.15)
        if k is not None and -0.05 <= xy[1] <= 1.05:
            if k < self.band[1]:
                c = int(self.band_classes[k])
                return (
                    f"angle to the direction of class {self.data.class_names[c]} (axis {self.band[0] + k + 1} of "
                    f"{self.k:,}, group {int(self.order.groups[c]) + 1}); drag a box (shift) over it to select samples"
                )
            name = MARGIN_DEFINITION if self.axis_names[k] == "margin" else self.axis_names[k]
            return f"axis {name}; drag a box (shift) over it to select samples"
        return ""

    def _axis_at(self, x: float, within: float) -> int | None:
        """The axis nearest to scene ``x``, if it is within ``within`` axis units of it."""
        k = int(np.argmin(np.abs(self.xs - x)))
        return k if abs(self.xs[k] - x) <= within else None

    def close(self) -> None:
        self.viewbox.events.resize.disconnect(self._label_axes)
        super().close()
