"""Global geometry: parallel coordinates, one axis per class direction (angle to each W_c), then angle to the
true class, length and margin. All samples are drawn as a density image (computed once per unit); the
selected samples as lines on top. A box over an axis selects the samples whose value lies in it (brushing).

margin: signed distance from f to the nearest pairwise decision boundary between the true class and another
class (negative when misclassified); for a misclassified sample it is the distance to the nearest such boundary,
a lower bound on the distance to the true class's region (the margin axis's tooltip says so).
"""

from __future__ import annotations

import numpy as np
from vispy import scene
from vispy.visuals.transforms import STTransform

from onnx_geom.geometry import MARGIN_DEFINITION
from onnx_geom.viewers.colors import class_colors, colormap
from onnx_geom.viewers.views.base import MUTED, TEXT, UnitView, finite_percentiles

STEPS = 16  # density columns between two axes
ROWS = 256  # density rows
DENSITY_SAMPLES = 200_000
LINES_UP_TO = 20_000  # fewer samples than this: every polyline is drawn (translucent); more: a density image
MAX_LINES = 2000
MAX_CLASS_AXES = 12  # more classes: no per-class axes (unreadable, and the (N, K) cosines stay unread)


def axis_values(geom, *, class_axes: bool = True) -> np.ndarray:
    """(N, K + 3): angle to every class direction (deg), angle to the true class, length, margin; without
    ``class_axes`` (N, 4): angle to the true class, angle to the predicted class, length, margin."""
    if not class_axes:
        return np.column_stack([geom["angle_true"], geom["angle_pred"], geom["length"], geom["margin"]]).astype(
            np.float32
        )
    angles = np.degrees(np.arccos(np.clip(np.asarray(geom["cos"], np.float32), -1, 1)))
    return np.column_stack([angles, geom["angle_true"], geom["length"], geom["margin"]]).astype(np.float32)


def normalise(values: np.ndarray, *, shared: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scale each column to 0..1 between its 0.5th and 99.5th percentiles (the first ``shared`` columns share
    one range, so class angles compare across axes); returns (scaled (N, A), ranges (2, A))."""
    lo, hi = finite_percentiles(values, 0.5, 99.5)
    if shared:
        lo[:shared], hi[:shared] = lo[:shared].min(), hi[:shared].max()
    hi = np.where(hi > lo, hi, lo + 1)
    return ((values - lo) / (hi - lo)).astype(np.float32), np.stack([lo, hi])


def density_image(scaled: np.ndarray, *, steps: int = STEPS, rows: int = ROWS) -> np.ndarray:
    """(rows, (A-1)*steps + 1) counts of the polylines through ``scaled`` (N, A), rasterised by sampling each
    segment at ``steps`` columns; the parts of a line outside 0..1 are left out."""
    n, a = scaled.shape
    width = (a - 1) * steps + 1
    counts = np.zeros(rows * width, np.int64)
    t = np.arange(steps, dtype=np.float32) / steps
    for k in range(a - 1):
        y = scaled[:, k : k + 1] * (1 - t) + scaled[:, k + 1 : k + 2] * t  # (N, steps)
        cols = np.broadcast_to(k * steps + np.arange(steps), y.shape)
        counts += _count(y, cols, rows, width)
    counts += _count(scaled[:, -1], np.full(n, width - 1), rows, width)
    return counts.reshape(rows, width)


def _count(y: np.ndarray, cols: np.ndarray, rows: int, width: int) -> np.ndarray:
    """Pixel counts of points at heights ``y`` (0..1; outside is dropped, not piled on the frame) in ``cols``."""
    inside = (y >= 0) & (y <= 1)
    r = (y[inside] * (rows - 1)).round().astype(np.int64)
    return np.bincount(r * width + cols[inside], minlength=rows * width)


class GlobalView(UnitView):
    name = "global"
    aspect, flip = None, (False, False)
    title = "Global geometry"

    def __init__(self, data, selection, viewbox, services=None) -> None:
        super().__init__(data, selection, viewbox, services)
        self.colors = class_colors(data.n_classes)
        self.class_axes = data.n_classes <= MAX_CLASS_AXES
        self.shared = data.n_classes if self.class_axes else 0
        self.axis_names = (
            [f"to {c}" for c in data.class_names] + ["angle", "length", "margin"]
            if self.class_axes
            else ["angle", "angle pred", "length", "margin"]
        )
        self.n_axes = len(self.axis_names)
        self.image = scene.visuals.Image(np.ones((2, 2, 4), np.float32), parent=viewbox.scene, interpolation="linear")
        self.all_lines = scene.visuals.Line(parent=viewbox.scene, connect="segments", width=1)
        self.all_lines.set_gl_state("translucent", depth_test=False)
        self.lines = scene.visuals.Line(parent=viewbox.scene, connect="segments", width=2)
        self.lines.set_gl_state("translucent", depth_test=False)
        grid = np.array([[k, y] for k in range(self.n_axes) for y in (0, 1)], np.float32)
        scene.visuals.Line(grid, connect="segments", color=(0.3, 0.3, 0.3, 1), parent=viewbox.scene)
        self.names = scene.visuals.Text(
            [n if len(n) < 13 else n[:12] for n in self.axis_names],
            pos=[(k, -0.03) for k in range(self.n_axes)],
            color=TEXT,
            font_size=7,
            anchor_x="left",
            rotation=40,
            parent=viewbox.scene,
        )
        self.ticks = scene.visuals.Text("", color=MUTED, font_size=6, anchor_x="left", parent=viewbox.scene)
        viewbox.camera.set_range(x=(-0.3, self.n_axes - 0.1), y=(-0.35, 1.08), z=(0, 1), margin=0)
        self.scaled = np.zeros((0, self.n_axes), np.float32)
        self._shown = np.zeros(0, np.int64)
        self.subscribe("models", "condition")
        self.subscribe("indices", callback=lambda _s: self.update_highlight())
        self.reset()

    def clear(self) -> None:
        self.scaled = np.zeros((0, self.n_axes), np.float32)
        for visual in (self.image, self.all_lines, self.ticks):
            visual.visible = False

    def upload(self, geom) -> None:
        values = axis_values(geom, class_axes=self.class_axes)
        self.scaled, ranges = normalise(values, shared=self.shared)
        n = len(self.scaled)
        self.image.visible = n > LINES_UP_TO
        self.all_lines.visible = n <= LINES_UP_TO
        if n <= LINES_UP_TO:
            alpha = float(np.clip(150.0 / max(n, 1), 0.04, 0.5))
            self.all_lines.set_data(self._segments(np.arange(n)), color=(0.35, 0.35, 0.35, alpha))
        else:
            sub = self.scaled[np.random.default_rng(0).choice(n, min(n, DENSITY_SAMPLES), replace=False)]
            counts = density_image(sub)
            shade = np.log1p(counts) / max(np.log1p(counts.max()), 1e-9)
            self.image.set_data(colormap(shade, "density"))
            self.image.transform = STTransform(scale=(1.0 / STEPS, 1.0 / (ROWS - 1)), translate=(-0.5 / STEPS, 0))
        self.ticks.visible = True
        k = self.shared  # the class axes share one range: label the first of them only
        axes = [0, *range(max(k, 1), self.n_axes)]
        self.ticks.text = [f"{v:.0f}" if abs(v) >= 10 else f"{v:.2g}" for y in (0, 1) for v in ranges[y, axes]]
        self.ticks.pos = [(a + 0.05, y) for y in (0, 1) for a in axes]

    def update_highlight(self) -> None:
        idx = self.selection.indices
        idx = idx[idx < len(self.scaled)][:MAX_LINES]
        if idx.size:
            seg = self._segments(idx)
            colors = np.repeat(self.colors[self.data.labels[idx]], 2 * (self.n_axes - 1), axis=0)
            colors[:, 3] = 0.9 if idx.size < 50 else 0.4
            self.lines.set_data(seg, color=colors)
        self.lines.visible = bool(idx.size)
        self._shown = idx

    def _segments(self, idx: np.ndarray) -> np.ndarray:
        """(2 * S * (A - 1), 2) line segments of the polylines of samples ``idx``."""
        x = np.arange(self.n_axes, dtype=np.float32)
        y = np.clip(self.scaled[idx], -0.03, 1.03)  # outliers end at the frame
        start = np.stack([np.broadcast_to(x[:-1], (idx.size, self.n_axes - 1)), y[:, :-1]], -1)
        end = np.stack([np.broadcast_to(x[1:], (idx.size, self.n_axes - 1)), y[:, 1:]], -1)
        return np.stack([start, end], axis=2).reshape(-1, 2).astype(np.float32)

    def highlighted(self) -> np.ndarray:
        return self._shown if self.lines.visible else np.zeros(0, np.int64)

    def subtitle(self) -> str:
        n = len(self.scaled)
        return "" if not n else f"{n:,} samples" if n <= LINES_UP_TO else f"density of {n:,} samples"

    def pick_box(self, lo, hi) -> bool:
        k = round((lo[0] + hi[0]) / 2)
        if not 0 <= k < self.n_axes or len(self.scaled) == 0:
            return False
        v = self.scaled[:, k]
        self.selection.indices = np.flatnonzero((v >= lo[1]) & (v <= hi[1]))
        return True

    def hover(self, xy, radius) -> str:
        k = round(xy[0])
        if 0 <= k < self.n_axes and abs(xy[0] - k) < 0.15:
            name = MARGIN_DEFINITION if self.axis_names[k] == "margin" else self.axis_names[k]
            return f"axis {name}; drag a box (shift) over it to select samples"
        return ""
