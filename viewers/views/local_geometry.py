"""Local geometry: angle to the true class (x) vs feature length (y), one point per sample.

Coloured by class up to 10 classes, by correctness beyond (``Selection.color_by``: also margin or the group of
the predicted class, :mod:`onnx_geom.viewers.classes`); classes picked with the class picker
(``Selection.classes``) get a colour each and the others turn light grey, and the legend names only what is
coloured. Up to :data:`DENSITY_ABOVE` samples are drawn as translucent points; above, as a density image (each
cell's colour the mean colour of its samples, its opacity the number of samples on a log scale, with a key),
with the picked classes' samples as points on top.

The cloud of all N samples is uploaded once per (model, condition); selecting samples only re-uploads the
small highlight layer, and a shift (two models, or clean -> corruption) draws linked pairs for the selected
samples (or a sample of 300 when none is selected). The tooltip gives the sample's angle, length and margin
(margin: signed distance from f to the nearest pairwise decision boundary between the true class and another
class (negative when misclassified); for a misclassified sample it is the distance to the nearest such boundary,
a lower bound on the distance to the true class's region).
"""

from __future__ import annotations

import numpy as np
from vispy import scene
from vispy.visuals.transforms import STTransform

from onnx_geom.conditions import CLEAN
from onnx_geom.errors import OnnxGeomError
from onnx_geom.viewers.classes import resolve_mode, sample_colors
from onnx_geom.viewers.views.base import (
    CornerLegend,
    UnitView,
    colour_key,
    finite_percentiles,
    nearest,
    points_in_polygon,
    predicted_name,
)

MAX_PAIRS = 2000
#: Above this many samples the cloud is a density image (and the picked classes' samples points on top).
DENSITY_ABOVE = 50_000
BINS = (360, 240)  # density cells across x and y
MAX_PICKED_POINTS = 50_000  # picked classes' samples drawn as points over the density image, at most


def _positions(geom: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([geom["angle_true"], geom["length"]], axis=1).astype(np.float32)


def density_rgba(
    points: np.ndarray, colors: np.ndarray, extent: tuple[np.ndarray, np.ndarray], bins: tuple[int, int]
) -> tuple[np.ndarray, int]:
    """(bins_y, bins_x, 4) image of ``points`` (N, 2) inside ``extent`` (low corner, high corner): each cell the
    mean colour of its points, opaque in proportion to log(1 + count) (empty cells transparent); and the largest
    count."""
    (x0, y0), (x1, y1) = extent
    finite = np.isfinite(points).all(axis=1)
    ix = np.floor((points[finite, 0] - x0) / (x1 - x0) * bins[0]).astype(np.int64)
    iy = np.floor((points[finite, 1] - y0) / (y1 - y0) * bins[1]).astype(np.int64)
    inside = (ix >= 0) & (ix < bins[0]) & (iy >= 0) & (iy < bins[1])
    cell = iy[inside] * bins[0] + ix[inside]
    size = bins[0] * bins[1]
    count = np.bincount(cell, minlength=size).astype(np.float64)
    rgba = np.zeros((size, 4), np.float32)
    shown = colors[finite][inside]
    for c in range(3):
        rgba[:, c] = np.bincount(cell, weights=shown[:, c], minlength=size) / np.maximum(count, 1)
    top = int(count.max()) if count.size else 0
    rgba[:, 3] = np.where(count > 0, 0.2 + 0.8 * np.log1p(count) / max(np.log1p(top), 1e-9), 0.0)
    return rgba.reshape(bins[1], bins[0], 4), top


class LocalView(UnitView):
    name = "local"
    aspect, flip = None, (False, False)
    title = "Local geometry"
    axes = ("angle to true class (deg)", "feature length ||f||")

    def __init__(self, data, selection, viewbox, services=None) -> None:
        super().__init__(data, selection, viewbox, services)
        self.order = data.class_order()
        self.colors = np.zeros((0, 4), np.float32)  # (N, 4) of the unit drawn now
        self.density = scene.visuals.Image(
            np.zeros((2, 2, 4), np.float32), parent=viewbox.scene, interpolation="nearest"
        )
        self.density.set_gl_state("translucent", depth_test=False)
        self.density.visible = False
        self.cloud = scene.visuals.Markers(parent=viewbox.scene)
        self.pairs = scene.visuals.Line(parent=viewbox.scene, connect="segments", width=1.2)
        self.ends = scene.visuals.Markers(parent=viewbox.scene)
        self.marked = scene.visuals.Markers(parent=viewbox.scene)
        for visual in (self.cloud, self.ends, self.marked):
            visual.set_gl_state(
                "translucent", depth_test=False
            )  # Markers test depth by default: clouds at one depth would come out pale
        self.pairs.set_gl_state("translucent", depth_test=False)
        self.legend = CornerLegend(viewbox, right=True, top=True)
        self.key = colour_key(viewbox, "opacity", "samples per cell (opacity, log)", corner="bottom-right")
        self.key.visible = False
        self.points = np.zeros((0, 2), np.float32)
        self.extent = (np.zeros(2), np.ones(2))
        self.subscribe("models", "condition", "shift_from_clean")
        self.subscribe("classes", "color_by", callback=lambda _s: self._recolour())
        self.subscribe("indices", callback=lambda _s: self.update_highlight())
        self.reset()

    def clear(self) -> None:
        self.points = np.zeros((0, 2), np.float32)
        self.cloud.visible = self.density.visible = self.key.visible = False

    def upload(self, geom) -> None:
        self.points = _positions(geom)
        n = len(self.points)
        lo, hi = finite_percentiles(self.points, 0.2, 99.8) if n else (np.zeros(2), np.ones(2))
        pad = (hi - lo) * 0.05 + 1e-6
        self.extent = (lo - pad, hi + pad)
        self.viewbox.camera.set_range(
            x=(lo[0] - pad[0], hi[0] + pad[0]), y=(lo[1] - pad[1], hi[1] + pad[1]), z=(0, 1), margin=0
        )
        self._draw_cloud(geom)

    def _recolour(self) -> None:
        """The colouring or the picked classes changed: redraw the cloud (same points) and the highlight."""
        if self._unit is not None and len(self.points):
            try:
                self._draw_cloud(self.data.geometry(*self._unit))
            except OnnxGeomError as error:
                self.status = str(error)
        self.update_highlight()

    def _draw_cloud(self, geom) -> None:
        n = len(self.points)
        picked = self.selection.classes
        self.colors, legend = sample_colors(
            self.selection.color_by, labels=self.data.labels, geom=geom, order=self.order, picked=picked
        )
        self.legend.set([t for t, _ in legend[:12]], np.asarray([c for _, c in legend[:12]]).reshape(-1, 4))
        dense = n > DENSITY_ABOVE
        self.density.visible = self.key.visible = dense
        if not dense:
            alpha = float(np.clip(3000.0 / max(n, 1), 0.08, 0.85))
            if picked.size:  # the picked classes' samples last (on top) and opaque enough to find
                mine = np.isin(self.data.labels[:n], picked)
                self._draw_points(np.concatenate([np.flatnonzero(~mine), np.flatnonzero(mine)]), alpha, mine)
            else:
                self._draw_points(np.arange(n), alpha)
            return
        image, top = density_rgba(self.points, self.colors, self.extent, BINS)
        self.density.set_data(image)
        (x0, y0), (x1, y1) = self.extent
        self.density.transform = STTransform(scale=((x1 - x0) / BINS[0], (y1 - y0) / BINS[1]), translate=(x0, y0))
        self.key.set_ends("1", f"{top:,}")
        on_top = np.flatnonzero(np.isin(self.data.labels, picked))[:MAX_PICKED_POINTS] if picked.size else None
        if on_top is not None and on_top.size:
            self._draw_points(on_top, alpha=float(np.clip(3000.0 / on_top.size, 0.3, 0.85)))
        else:
            self.cloud.visible = False

    def _draw_points(self, rows: np.ndarray, alpha: float, strong: np.ndarray | None = None) -> None:
        """Points ``rows`` in their colours at opacity ``alpha`` (those where ``strong[row]`` at 0.85, larger)."""
        n = rows.size
        size = 7.0 if n < 5000 else 4.0 if n < 100_000 else 3.0
        # Antialiasing pads every marker by 6 px on each axis; at pixel-sized points it only costs fill rate
        # (about 3x the frame time at 1M points on Mesa llvmpipe), so it fades out with the number of points.
        self.cloud.antialias = 1.0 if n < 5000 else 0.5 if n < 100_000 else 0.0
        face = self.colors[rows] * [1, 1, 1, alpha]
        sizes = np.full(n, size, np.float32)
        if strong is not None:
            bold = strong[rows]
            face[bold, 3] = max(alpha, 0.85)
            sizes[bold] = max(size, 5.0)
        self.cloud.set_data(self.points[rows], face_color=face, edge_width=0, size=sizes)
        self.cloud.visible = True

    def update_highlight(self) -> None:
        """Re-upload the highlight and pair layers only (the N-point cloud stays on the GPU)."""
        idx = self.selection.indices
        idx = idx[idx < len(self.points)]
        if idx.size:
            self.marked.set_data(
                self.points[idx],
                face_color=self.colors[idx],
                edge_color="black",
                edge_width=2,
                size=12,
            )
        self.marked.visible = bool(idx.size)
        self._draw_pairs(idx)

    def _draw_pairs(self, idx: np.ndarray) -> None:
        pair = self.selection.shift_pair()
        self.pairs.visible = self.ends.visible = False
        if pair is None or not len(self.points):
            return
        try:
            a, b = (_positions(self.data.geometry(*unit)) for unit in pair)
        except OnnxGeomError as error:
            self.status = str(error)
            return
        if not idx.size:
            idx = np.random.default_rng(0).choice(len(a), min(300, len(a)), replace=False)
        idx = idx[:MAX_PAIRS]
        segments = np.empty((2 * idx.size, 2), np.float32)
        segments[0::2], segments[1::2] = a[idx], b[idx]
        colors = np.repeat(self.colors[idx], 2, axis=0)
        colors[0::2, 3] = 0.25
        self.pairs.set_data(segments, color=colors)
        self.ends.set_data(b[idx], face_color=(1, 1, 1, 0), edge_color=self.colors[idx], edge_width=1.5, size=7)
        self.pairs.visible = self.ends.visible = True

    def subtitle(self) -> str:
        sel = self.selection
        if not sel.models:
            return ""
        condition = CLEAN if sel.condition[0] == CLEAN else f"{sel.condition[0]} {sel.condition[1]}"
        pair = sel.shift_pair()
        if pair is None:
            text = f"{sel.models[0]}, {condition}"
        elif pair[0][0] != pair[1][0]:
            text = f"{pair[0][0]} -> {pair[1][0]}, {condition}"
        else:
            text = f"{sel.models[0]}, clean -> {condition}"
        if sel.classes.size:
            return f"{text} · {self.order.describe(sel.classes, room=32)}"
        mode = resolve_mode(sel.color_by, self.data.n_classes)
        coloured = {
            "class": "by class",
            "correct": "by correctness",
            "margin": "by margin",
            "group": "by predicted group",
        }
        return f"{text} · {coloured[mode]}" + (" (density)" if len(self.points) > DENSITY_ABOVE else "")

    def highlighted(self) -> np.ndarray:
        idx = self.selection.indices
        return idx[idx < len(self.points)] if self.marked.visible else np.zeros(0, np.int64)

    # -- picking -------------------------------------------------------------------------------------------
    def pick_point(self, xy, radius, extend: bool = False) -> bool:
        i = nearest(self.points, xy, radius)
        if i is None:
            return False
        self.selection.indices = np.append(self.selection.indices, i) if extend else [i]
        self.selection.focus = i
        return True

    def pick_box(self, lo, hi) -> bool:
        p = self.points
        self.selection.indices = np.flatnonzero(
            (p[:, 0] >= lo[0]) & (p[:, 0] <= hi[0]) & (p[:, 1] >= lo[1]) & (p[:, 1] <= hi[1])
        )
        return True

    def pick_polygon(self, polygon) -> bool:
        self.selection.indices = np.flatnonzero(points_in_polygon(self.points, polygon))
        return True

    def hover(self, xy, radius) -> str:
        i = nearest(self.points, xy, radius)
        if i is None or self._unit is None:
            return ""
        g = self.data.geometry(*self._unit)
        names = self.data.class_names
        return (
            f"#{i}  {names[self.data.labels[i]]} -> {predicted_name(names, int(g['pred'][i]))}\n"
            f"angle {g['angle_true'][i]:.1f} deg  length {g['length'][i]:.2f}  margin {g['margin'][i]:.2f}"
        )
