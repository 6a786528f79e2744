"""Samples: thumbnails of the selected samples (the focused one framed) as the model saw them, with label,
prediction and metrics under the current model and condition. Click a thumbnail to focus it (the attribution view follows)."""

from __future__ import annotations

import numpy as np
from vispy import scene
from vispy.visuals.transforms import STTransform

from onnx_geom.errors import OnnxGeomError
from onnx_geom.viewers.colors import image_rgba
from onnx_geom.viewers.views.base import MUTED, TEXT, View, predicted_name, rect_segments

COLUMNS = 3
ROWS = 3
PITCH = (1.45, 1.75)  # tile + caption, in tile units


class SamplesView(View):
    name = "samples"
    aspect, flip = 1, (False, True)
    title = "Samples"

    def __init__(self, data, selection, viewbox, services=None) -> None:
        super().__init__(data, selection, viewbox, services)
        self.tiles = [
            scene.visuals.Image(np.ones((2, 2, 4), np.float32), parent=viewbox.scene, interpolation="nearest")
            for _ in range(COLUMNS * ROWS)
        ]
        self.captions = scene.visuals.Text("", color=TEXT, font_size=6, anchor_y="bottom", parent=viewbox.scene)
        self.frame = scene.visuals.Line(parent=viewbox.scene, color="#E69F00", width=3, connect="segments")
        self.message = scene.visuals.Text("", color=MUTED, font_size=8, pos=(COLUMNS / 2, 1.0), parent=viewbox.scene)
        viewbox.camera.set_range(x=(-0.05, COLUMNS * PITCH[0]), y=(-0.1, ROWS * PITCH[1]), z=(0, 1), margin=0)
        self.shown = np.zeros(0, np.int64)
        self.subscribe("indices", "models", "condition")
        # a focus among the shown thumbnails only moves the frame; one beyond them (picked in another view) is
        # brought into the grid
        self.subscribe(
            "focus", callback=lambda s: self._draw_frame() if s.focus is None or s.focus in self.shown else self.reset()
        )
        self.reset()

    def reset(self) -> None:
        sel, data = self.selection, self.data
        self.shown = sel.indices[: COLUMNS * ROWS]
        if sel.focus is not None and sel.focus not in self.shown and self.shown.size:
            self.shown = np.concatenate([[sel.focus], self.shown[:-1]])
        if not self.shown.size:
            for visual in (*self.tiles, self.captions, self.frame):
                visual.visible = False
            self.message.text = "select samples: click, shift+drag (box) or ctrl+drag (lasso) in a view"
            self.message.visible = True
            return
        self.message.visible = False
        captions, positions = [], []
        geom = None
        if sel.models:
            try:
                geom = data.geometry(sel.models[0], *sel.condition)
            except OnnxGeomError as error:
                self.status = str(error)
        names = data.class_names
        for k, i in enumerate(self.shown):
            x, y = _corner(k)
            text = f"#{i} {names[data.labels[i]][:12]}"
            if geom is not None:
                ok = "correct" if geom["correct"][i] else "WRONG"
                text += (
                    f"\npred {predicted_name(names, int(geom['pred'][i]))[:12]} ({ok})\n"
                    f"a {geom['angle_true'][i]:.0f}° l {geom['length'][i]:.1f} m {geom['margin'][i]:.1f}"
                )
            captions.append(text)
            positions.append((x + 0.5, y + 1.03))
        thumbs = data.thumbnails(self.shown, sel.condition)
        if thumbs is not None:
            self._mosaic(thumbs)
        self.captions.text, self.captions.pos = captions, positions
        self.captions.visible = True
        self._draw_frame()

    def _mosaic(self, thumbs: np.ndarray) -> None:
        n, h, w, _ = thumbs.shape
        rgba = image_rgba(thumbs)
        for k, tile in enumerate(self.tiles):
            tile.visible = k < n
            if k < n:
                tile.set_data(rgba[k])
                tile.transform = STTransform(scale=(1.0 / w, 1.0 / h), translate=_corner(k))

    def _draw_frame(self) -> None:
        focus = self.selection.focus
        hit = np.flatnonzero(self.shown == focus) if focus is not None else np.zeros(0, np.int64)
        if len(hit) == 0:
            self.frame.visible = False
            return
        k = int(hit[0])
        x, y = _corner(k)
        self.frame.set_data(np.asarray(rect_segments(x - 0.03, y - 0.03, x + 1.03, y + 1.03), np.float32))
        self.frame.visible = True

    def highlighted(self) -> np.ndarray:
        return np.sort(self.shown) if self.captions.visible else np.zeros(0, np.int64)

    def subtitle(self) -> str:
        n = self.selection.indices.size
        if not n:
            return ""
        shown = "" if self.data.remakes(self.selection.condition) else " (clean images)"
        return f"{min(n, COLUMNS * ROWS)} of {n} selected{shown}"

    def thumb_at(self, xy) -> int | None:
        col, row = int(np.floor(xy[0] / PITCH[0])), int(np.floor(xy[1] / PITCH[1]))
        k = row * COLUMNS + col
        inside = 0 <= col < COLUMNS and 0 <= xy[0] - col * PITCH[0] <= 1 and 0 <= xy[1] - row * PITCH[1] <= PITCH[1]
        return int(self.shown[k]) if inside and 0 <= k < self.shown.size else None

    def pick_point(self, xy, radius, extend: bool = False) -> bool:
        i = self.thumb_at(xy)
        if i is None:
            return False
        self.selection.focus = i
        return True

    def hover(self, xy, radius) -> str:
        i = self.thumb_at(xy)
        return "" if i is None else f"sample #{i}: click to see its attribution"


def _corner(k: int) -> tuple[float, float]:
    """Top-left corner of thumbnail ``k`` in scene units (one thumbnail is 1 x 1)."""
    return (k % COLUMNS) * PITCH[0], (k // COLUMNS) * PITCH[1]
