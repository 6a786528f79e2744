"""Geometric similarity: the models in the study's 2-D embedding, minimum-spanning-tree edges, coloured by
pruning method (or name); the selected models are ringed. Click a model to select it (shift: compare)."""

from __future__ import annotations

import numpy as np
from vispy import scene

from onnx_geom.viewers.colors import class_colors
from onnx_geom.viewers.views.base import MUTED, TEXT, View, corner_legend, nearest
from onnx_geom.viewers.views.table import model_label


class SimilarityView(View):
    name = "similarity"
    aspect, flip = 1, (False, False)
    title = "Geometric similarity"

    def __init__(self, data, selection, viewbox) -> None:
        super().__init__(data, selection, viewbox)
        self.points = np.zeros((0, 2), np.float32)
        if data.embedding is None or len(data.models) == 0:
            self.status = data.embedding_note or "no model map in this study"
            scene.visuals.Text(self.status, pos=(0, 0), color=MUTED, font_size=8, parent=viewbox.scene)
            viewbox.camera.set_range(x=(-1, 1), y=(-1, 1), z=(0, 1))
            return
        self.points = np.asarray(data.embedding, np.float32)[:, :2]
        groups = [str(data.tags.get(m, {}).get("method") or m) for m in data.models]
        self.groups = list(dict.fromkeys(groups))
        palette = class_colors(len(self.groups))
        self.colors = palette[[self.groups.index(g) for g in groups]]
        if data.mst:
            seg = np.asarray([self.points[k] for i, j, _ in data.mst for k in (i, j)], np.float32)
            scene.visuals.Line(seg, connect="segments", color=(0.5, 0.5, 0.5, 1), width=1.5, parent=viewbox.scene)
        self.ring = scene.visuals.Markers(parent=viewbox.scene)
        self.ring.set_gl_state("translucent", depth_test=False)
        dots = scene.visuals.Markers(parent=viewbox.scene)
        dots.set_gl_state("translucent", depth_test=False)
        dots.set_data(self.points, face_color=self.colors, edge_color="white", edge_width=1, size=13)
        span = float(np.ptp(self.points, axis=0).max()) if len(self.points) > 1 else 1.0
        span = span or 1.0
        labels = [model_label(m, {}) for m in data.models]
        scene.visuals.Text(labels, pos=self.points + [0.06 * span, 0.0], color=TEXT, font_size=7,
                           anchor_x="left", parent=viewbox.scene)
        corner_legend(viewbox, self.groups, palette, right=False)
        lo, hi = self.points.min(0), self.points.max(0)
        pad = 0.2 * span
        viewbox.camera.set_range(x=(lo[0] - pad, hi[0] + 2.2 * pad), y=(lo[1] - pad, hi[1] + pad), z=(0, 1), margin=0)
        self.subscribe("models")
        self.reset()

    def reset(self) -> None:
        chosen = [self.data.models.index(m) for m in self.selection.models if m in self.data.models]
        if chosen:
            shapes = ["o", "s"][: len(chosen)]
            self.ring.set_data(self.points[chosen], face_color=(1, 1, 1, 0), edge_color="black", edge_width=2.5,
                               size=24, symbol=shapes)
        self.ring.visible = bool(chosen)

    def subtitle(self) -> str:
        return "MDS of model distances, MST edges" if len(self.points) else ""

    def pick_point(self, xy, radius, extend: bool = False) -> bool:
        i = nearest(self.points, xy, radius * 2)
        if i is None:
            return False
        model = self.data.models[i]
        self.selection.models = (*self.selection.models[:1], model) if extend else (model,)
        return True

    def hover(self, xy, radius) -> str:
        i = nearest(self.points, xy, radius * 2)
        if i is None:
            return ""
        m = self.data.models[i]
        tags = ", ".join(f"{k}={v}" for k, v in self.data.tags.get(m, {}).items())
        return f"{m}  {tags}  clean acc {100 * self.data.clean_accuracy[i]:.1f}%"
