"""Local geometry: angle to the true class (x) vs feature length (y), one point per sample, coloured by class.

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

from onnx_geom.conditions import CLEAN
from onnx_geom.errors import OnnxGeomError
from onnx_geom.viewers.colors import class_colors
from onnx_geom.viewers.views.base import (
    UnitView,
    corner_legend,
    finite_percentiles,
    nearest,
    points_in_polygon,
    predicted_name,
)

MAX_PAIRS = 2000


def _positions(geom: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([geom["angle_true"], geom["length"]], axis=1).astype(np.float32)


class LocalView(UnitView):
    name = "local"
    aspect, flip = None, (False, False)
    title = "Local geometry"
    axes = ("angle to true class (deg)", "feature length ||f||")

    def __init__(self, data, selection, viewbox, services=None) -> None:
        super().__init__(data, selection, viewbox, services)
        self.colors = class_colors(data.n_classes)
        self.cloud = scene.visuals.Markers(parent=viewbox.scene)
        self.pairs = scene.visuals.Line(parent=viewbox.scene, connect="segments", width=1.2)
        self.ends = scene.visuals.Markers(parent=viewbox.scene)
        self.marked = scene.visuals.Markers(parent=viewbox.scene)
        for visual in (self.cloud, self.ends, self.marked):
            visual.set_gl_state(
                "translucent", depth_test=False
            )  # Markers test depth by default: clouds at one depth would come out pale
        self.pairs.set_gl_state("translucent", depth_test=False)
        corner_legend(viewbox, data.class_names[:12], self.colors)
        self.points = np.zeros((0, 2), np.float32)
        self.subscribe("models", "condition", "shift_from_clean")
        self.subscribe("indices", callback=lambda _s: self.update_highlight())
        self.reset()

    def clear(self) -> None:
        self.points = np.zeros((0, 2), np.float32)
        self.cloud.visible = False

    def upload(self, geom) -> None:
        self.cloud.visible = True
        self.points = _positions(geom)
        n = len(self.points)
        alpha = float(np.clip(3000.0 / max(n, 1), 0.08, 0.85))
        size = 7.0 if n < 5000 else 4.0 if n < 100_000 else 3.0
        # Antialiasing pads every marker by 6 px on each axis; at pixel-sized points it only costs fill rate
        # (about 3x the frame time at 1M points on Mesa llvmpipe), so it fades out with the number of points.
        self.cloud.antialias = 1.0 if n < 5000 else 0.5 if n < 100_000 else 0.0
        self.cloud.set_data(
            self.points, face_color=self.colors[self.data.labels] * [1, 1, 1, alpha], edge_width=0, size=size
        )
        lo, hi = finite_percentiles(self.points, 0.2, 99.8) if n else (np.zeros(2), np.ones(2))
        pad = (hi - lo) * 0.05 + 1e-6
        self.viewbox.camera.set_range(
            x=(lo[0] - pad[0], hi[0] + pad[0]), y=(lo[1] - pad[1], hi[1] + pad[1]), z=(0, 1), margin=0
        )

    def update_highlight(self) -> None:
        """Re-upload the highlight and pair layers only (the N-point cloud stays on the GPU)."""
        idx = self.selection.indices
        idx = idx[idx < len(self.points)]
        if idx.size:
            self.marked.set_data(
                self.points[idx],
                face_color=self.colors[self.data.labels[idx]],
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
        colors = np.repeat(self.colors[self.data.labels[idx]], 2, axis=0)
        colors[0::2, 3] = 0.25
        self.pairs.set_data(segments, color=colors)
        self.ends.set_data(
            b[idx], face_color=(1, 1, 1, 0), edge_color=self.colors[self.data.labels[idx]], edge_width=1.5, size=7
        )
        self.pairs.visible = self.ends.visible = True

    def subtitle(self) -> str:
        sel = self.selection
        if not sel.models:
            return ""
        condition = CLEAN if sel.condition[0] == CLEAN else f"{sel.condition[0]} {sel.condition[1]}"
        pair = sel.shift_pair()
        if pair is None:
            return f"{sel.models[0]}, {condition}"
        if pair[0][0] != pair[1][0]:
            return f"{pair[0][0]} -> {pair[1][0]}, {condition}"
        return f"{sel.models[0]}, clean -> {condition}"

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
