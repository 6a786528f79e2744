"""Mouse interaction shared by every panel of a canvas: click, box and lasso selection, hover tooltips.

- click: the nearest sample (or model, cell, thumbnail) within 8 pixels; shift-click adds it;
- shift + drag: a box; ctrl + drag: a lasso (free polygon); a plain drag pans, the wheel zooms;
- hovering shows a tooltip.
Each gesture is handed to the view under the mouse in scene coordinates; the view changes the shared
selection, and every other view follows through the selection's events.
"""

from __future__ import annotations

import numpy as np
from vispy import scene

PICK_PIXELS = 8.0


class Interaction:
    """``Interaction(canvas, views)`` connects the canvas' mouse events; ``close()`` disconnects them."""

    def __init__(self, canvas, views: dict) -> None:
        self.canvas, self.views = canvas, views
        self.tip_box = scene.visuals.Rectangle(
            center=(0, 0), width=1, height=1, color=(1, 1, 0.9, 0.92), border_color="#888888", parent=canvas.scene
        )
        self.tip_box.visible = False
        # canvas pixels run downwards, so a text anchored at its "bottom" hangs below its position
        self.tooltip = scene.visuals.Text(
            "", parent=canvas.scene, color="#111111", font_size=8, anchor_x="left", anchor_y="bottom"
        )
        self.tip_box.order, self.tooltip.order = 100, 101  # above every panel
        self.outline = scene.visuals.Line(parent=canvas.scene, color="#D55E00", width=1.5)
        self.outline.set_gl_state("translucent", depth_test=False)
        self.outline.visible = False
        self._press: tuple | None = None
        self._path: list[tuple[float, float]] = []
        self._handlers = {"mouse_press": self.on_press, "mouse_move": self.on_move, "mouse_release": self.on_release}
        for name, handler in self._handlers.items():
            getattr(canvas.events, name).connect(handler)

    def close(self) -> None:
        for name, handler in self._handlers.items():
            getattr(self.canvas.events, name).disconnect(handler)

    # -- geometry ------------------------------------------------------------------------------------------
    def view_at(self, pos):
        """(view, to_scene transform) of the panel under canvas pixel ``pos``, or (None, None)."""
        for view in self.views.values():
            box = view.viewbox
            local = self.canvas.scene.node_transform(box).map(pos)[:2]
            if 0 <= local[0] <= box.size[0] and 0 <= local[1] <= box.size[1]:
                return view, self.canvas.scene.node_transform(box.scene)
        return None, None

    @staticmethod
    def _scene(tr, pos) -> np.ndarray:
        return np.asarray(tr.map(np.atleast_2d(np.asarray(pos, float)))[:, :2])

    def _radius(self, tr, pos) -> np.ndarray:
        a, b = self._scene(tr, [pos, np.asarray(pos, float) + PICK_PIXELS])
        return np.abs(b - a) + 1e-12

    # -- events --------------------------------------------------------------------------------------------
    def on_press(self, event) -> None:
        if event.button != 1:
            return
        mods = {m.name.lower() for m in event.modifiers}
        self._press = (np.asarray(event.pos, float), mods)
        self._path = [tuple(event.pos)]

    def on_move(self, event) -> None:
        if self._press is not None and self._press[1] & {"shift", "control", "meta"}:
            self._path.append(tuple(event.pos))
            start = self._path[0]
            if "shift" in self._press[1]:
                x0, y0, (x1, y1) = *start, event.pos
                outline = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
            else:
                outline = [*self._path, start]
            self.outline.set_data(np.asarray(outline, np.float32))
            self.outline.visible = True
            self.canvas.update()
            return
        if self._press is None:
            self.show_tooltip(event.pos)

    def on_release(self, event) -> None:
        if self._press is None:
            return
        start, mods = self._press
        self._press = None
        self.outline.visible = False
        view, tr = self.view_at(start)
        if view is None:
            return
        moved = np.abs(np.asarray(event.pos, float) - start).max() > 3
        if not moved:
            view.pick_point(self._scene(tr, start)[0], self._radius(tr, start), extend="shift" in mods)
        elif "shift" in mods:
            corners = self._scene(tr, [start, event.pos])
            view.pick_box(corners.min(0), corners.max(0))
        elif mods & {"control", "meta"} and len(self._path) > 2:
            view.pick_polygon(self._scene(tr, self._path))
        self.canvas.update()

    def show_tooltip(self, pos) -> str:
        """Show the tooltip of whatever is under canvas pixel ``pos``; returns its text."""
        view, tr = self.view_at(pos)
        text = view.hover(self._scene(tr, pos)[0], self._radius(tr, pos)) if view is not None else ""
        if text != self.tooltip.text or text:
            self.tooltip.text = text
            lines = text.split("\n")
            width, height = 6.5 * max(len(line) for line in lines) + 10, 14 * len(lines) + 8
            x = min(pos[0] + 14, self.canvas.size[0] - width - 4)
            y = min(pos[1] + 14, self.canvas.size[1] - height - 4)
            self.tooltip.pos = (x + 5, y + 4)
            self.tip_box.center = (x + width / 2, y + height / 2)
            self.tip_box.width, self.tip_box.height = width, height
            self.tip_box.visible = bool(text)
            self.canvas.update()
        return text
