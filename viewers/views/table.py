"""Evaluation table: accuracy of every model (rows, best first) x condition (clean, then corruption x severity).

Cells are drawn as one image with white gaps; clicking a cell selects that model and condition (shift-click
adds a second model, to compare).
"""

from __future__ import annotations

import numpy as np
from vispy import scene
from vispy.visuals.transforms import STTransform

from onnx_geom.conditions import CLEAN
from onnx_geom.viewers.colors import colormap
from onnx_geom.viewers.views.base import MUTED, TEXT, View, rect_segments

CELL = 12  # image pixels per cell, gap included
GAP = 1


def model_label(name: str, tags: dict) -> str:
    """``name`` plus its method/sparsity tags when they add something.

    >>> model_label("m1", {"method": "magnitude", "sparsity": 0.9})
    'm1 (magnitude 90%)'
    """
    bits = []
    if tags.get("method") and str(tags["method"]) not in name:
        bits.append(str(tags["method"]))
    if isinstance(tags.get("sparsity"), (int, float)) and f"{round(100 * tags['sparsity'])}" not in name:
        bits.append(f"{100 * float(tags['sparsity']):.0f}%")
    return f"{name} ({' '.join(bits)})" if bits else name


class TableView(View):
    name = "table"
    aspect, flip = None, (False, True)
    title = "Evaluation: accuracy"

    def __init__(self, data, selection, viewbox, services=None) -> None:
        super().__init__(data, selection, viewbox, services)
        acc = np.concatenate([data.clean_accuracy[:, None], data.accuracy.reshape(len(data.models), -1)], axis=1)
        mean = np.nanmean(acc[:, 1:], axis=1) if acc.shape[1] > 1 else acc[:, 0]
        self.order = np.argsort(-np.nan_to_num(mean, nan=-1), kind="stable")  # best first
        self.row_of = np.argsort(self.order)  # model index -> row
        self.values = acc[self.order]  # (M, 1 + C*S)
        self.columns = data.conditions
        m, c = self.values.shape
        lo, hi = np.nanmin(self.values), np.nanmax(self.values)
        self.range = (float(lo), float(hi)) if np.isfinite(lo) else (0.0, 1.0)
        span = max(self.range[1] - self.range[0], 1e-9)
        rgba = np.ones((m * CELL, c * CELL, 4), np.float32)
        cells = colormap((self.values - self.range[0]) / span, "viridis")
        for i in range(m):
            for j in range(c):
                rgba[i * CELL + GAP : (i + 1) * CELL - GAP, j * CELL + GAP : (j + 1) * CELL - GAP] = cells[i, j]
        self.image = scene.visuals.Image(rgba, parent=viewbox.scene, interpolation="nearest")
        self.image.transform = STTransform(scale=(1.0 / CELL, 1.0 / CELL))
        self._labels(m, c)
        self.frame = scene.visuals.Line(parent=viewbox.scene, color="black", width=2, connect="segments")
        self.frame.set_gl_state("translucent", depth_test=False)
        self.frame.order = 10
        viewbox.camera.set_range(
            x=(-0.38 * max(c, 8), c + 0.2 + 0.04 * max(c, 8)),
            y=(-max(3.0, 0.3 * m), m + max(2.0, 0.16 * m)),
            z=(0, 1),
            margin=0,
        )
        self.subscribe("models", "condition")
        self.reset()

    def _labels(self, m: int, c: int) -> None:
        data = self.data
        rows = [model_label(data.models[i], data.tags.get(data.models[i], {})) for i in self.order]
        scene.visuals.Text(
            rows,
            pos=[(-0.2, i + 0.5) for i in range(m)],
            anchor_x="right",
            color=TEXT,
            font_size=7,
            parent=self.viewbox.scene,
        )
        # corruption names at the centre of their severity columns, steep enough that neighbours never touch
        groups = [CLEAN, *data.corruptions]
        n = max(len(data.severities), 1)
        centres = [0.5] + [1 + k * n + n / 2 for k in range(len(data.corruptions))]
        digits = bool(data.severities) and 0 < c - 1 <= 40  # severity numbers only while they can be read
        scene.visuals.Text(
            [g.replace("_", " ") for g in groups],
            pos=[(x, -1.0 if digits else -0.3) for x in centres],
            color=TEXT,
            font_size=7,
            parent=self.viewbox.scene,
            rotation=-60,
            anchor_x="left",
        )
        if digits:
            scene.visuals.Text(
                [str(s) for _, s in self.columns[1:]],
                pos=[(j + 1.5, -0.4) for j in range(c - 1)],
                color=MUTED,
                font_size=6,
                parent=self.viewbox.scene,
            )
        if m * c <= 120:
            text = [f"{100 * v:.0f}" if np.isfinite(v) else "-" for v in self.values.ravel()]
            t = (self.values.ravel() - self.range[0]) / max(self.range[1] - self.range[0], 1e-9)
            colors = np.where((t > 0.6)[:, None], [[0, 0, 0, 1]], [[1, 1, 1, 1]])
            scene.visuals.Text(
                text,
                pos=[(j + 0.5, i + 0.5) for i in range(m) for j in range(c)],
                color=colors,
                font_size=6,
                parent=self.viewbox.scene,
            )
        lo, hi = self.range
        key = [
            f"accuracy {100 * lo:.0f}% (dark) .. {100 * hi:.0f}% (yellow)",
            "rows: best mean corruption accuracy first" if c > 1 else "rows: best clean accuracy first",
        ]
        if data.severities and data.corruptions and not digits:
            key.append(f"each corruption: severity {data.severities[0]} .. {data.severities[-1]}, left to right")
        scene.visuals.Text(
            "\n".join(key),
            pos=(0, m + 0.15),
            anchor_x="left",
            anchor_y="bottom",
            color=MUTED,
            font_size=6,
            parent=self.viewbox.scene,
        )

    def reset(self) -> None:
        sel = self.selection
        rows = [int(self.row_of[self.data.models.index(m)]) for m in sel.models if m in self.data.models]
        col = self.columns.index(sel.condition) if sel.condition in self.columns else None
        segments = []
        c = len(self.columns)
        for r in rows:
            segments += rect_segments(0, r, c, r + 1)
        if col is not None:
            segments += rect_segments(col, 0, col + 1, len(self.order))
        if segments:
            self.frame.set_data(np.asarray(segments, np.float32))
        self.frame.visible = bool(segments)

    def subtitle(self) -> str:
        return f"{len(self.data.models)} models x {len(self.columns)} conditions"

    def cell_at(self, xy) -> tuple[int, int] | None:
        """(model index in data.models, condition index) under scene point ``xy``, or None."""
        j, i = int(np.floor(xy[0])), int(np.floor(xy[1]))
        if 0 <= i < len(self.order) and 0 <= j < len(self.columns):
            return int(self.order[i]), j
        return None

    def pick_point(self, xy, radius, extend: bool = False) -> bool:
        cell = self.cell_at(xy)
        if cell is None:
            return False
        model = self.data.models[cell[0]]
        self.selection.models = (*self.selection.models[:1], model) if extend else (model,)
        self.selection.condition = self.columns[cell[1]]
        return True

    def hover(self, xy, radius) -> str:
        cell = self.cell_at(xy)
        if cell is None:
            return ""
        (c, s), v = self.columns[cell[1]], self.values[self.row_of[cell[0]], cell[1]]
        return f"{self.data.models[cell[0]]}  {c} {s}: accuracy {100 * v:.1f}%"
