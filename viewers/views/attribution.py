"""Geometric attribution: occlusion sensitivity of the focused sample's angle, length and margin, as heatmaps
over its image, computed on demand through the model's probe file (cached per model and sample).

Set ``background`` to an executor (the window does) and the maps are computed off the GUI thread: the view
says "computing" and draws them when they arrive, if that sample is still the one in focus. Without one
(headless screenshots) they are computed before the frame is drawn."""

from __future__ import annotations

import functools
from concurrent.futures import Executor, Future

import numpy as np
from vispy import app, scene
from vispy.visuals.transforms import STTransform

from onnx_geom.errors import OnnxGeomError
from onnx_geom.viewers.attribution import QUANTITIES, occlusion
from onnx_geom.viewers.colors import colormap, image_rgba
from onnx_geom.viewers.views.base import MUTED, TEXT, View

NAMES = {"angle_true": "Δ angle (deg)", "length": "Δ length", "margin": "Δ margin"}


class AttributionView(View):
    name = "attribution"
    aspect, flip = 1, (False, True)
    title = "Geometric attribution"

    def __init__(self, data, selection, viewbox, services=None) -> None:
        super().__init__(data, selection, viewbox, services)
        self.tiles = [
            scene.visuals.Image(np.ones((2, 2, 4), np.float32), parent=viewbox.scene, interpolation="nearest")
            for _ in range(4)
        ]
        self.overlays = [
            scene.visuals.Image(np.ones((2, 2, 4), np.float32), parent=viewbox.scene, interpolation="nearest")
            for _ in range(3)
        ]
        for overlay in self.overlays:
            overlay.set_gl_state("translucent", depth_test=False)
        self.captions = scene.visuals.Text("", color=TEXT, font_size=7, anchor_y="top", parent=viewbox.scene)
        self.info = scene.visuals.Text(
            "", color=TEXT, font_size=7, anchor_y="bottom", pos=(1.075, 2.28), parent=viewbox.scene
        )
        self.message = scene.visuals.Text("", color=MUTED, font_size=8, pos=(1.075, 1.1), parent=viewbox.scene)
        viewbox.camera.set_range(x=(-0.1, 2.25), y=(-0.2, 2.75), z=(0, 1), margin=0)
        self._cache: dict[tuple[str, int], dict | str] = {}  # maps, or the sentence saying why there are none
        self.maps: dict | None = None
        self.background: Executor | None = None
        self._pending: dict[tuple[str, int], Future] = {}
        self._timer: app.Timer | None = None
        self.subscribe("models", "focus")
        self.reset()

    def _say(self, text: str) -> None:
        self.maps = None
        for visual in (*self.tiles, *self.overlays, self.captions, self.info):
            visual.visible = False
        self.message.text = text
        self.message.visible = True

    def reset(self) -> None:
        sel, data = self.selection, self.data
        if sel.focus is None or not sel.models:
            return self._say("select a sample to see what its geometry depends on")
        model, i = sel.models[0], int(sel.focus)
        if data.images is None:
            return self._say("this study holds no images")
        reason = self.services.features.unavailable(model)
        if reason is not None:
            return self._say(reason)
        key = (model, i)
        if key not in self._cache and self.background is not None:
            if key not in self._pending:
                self._pending[key] = self.background.submit(self._compute, key)
                self._poll_soon()
            return self._say(f"computing the occlusion map of #{i} ...")
        if key not in self._cache:
            self._cache[key] = self._compute(key)
        result = self._cache[key]
        return self._say(result) if isinstance(result, str) else self._draw(result)

    def _compute(self, key: tuple[str, int]) -> dict | str:
        model, i = key
        W, b = self.data.heads[model]
        try:
            images = self.data.thumbnails([i])
            if images is None:
                return "this study holds no images"
            image = images[0]
            features = functools.partial(self.services.features, model)
            return {"image": image, **occlusion(image, int(self.data.labels[i]), features, W, b)}
        except OnnxGeomError as error:
            return str(error)

    def _poll_soon(self) -> None:
        if self._timer is None:
            self._timer = app.Timer(interval=0.05, connect=self._collect)
        if not self._timer.running:
            self._timer.start()

    def _collect(self, _event=None) -> None:
        """Timer callback on the GUI thread: take the finished maps, redraw if one is for the sample in focus."""
        done = [key for key, future in self._pending.items() if future.done()]
        for key in done:
            future = self._pending.pop(key)
            error = future.exception()
            self._cache[key] = f"the occlusion map failed: {error}" if error is not None else future.result()
        if not self._pending and self._timer is not None:
            self._timer.stop()
        if done:
            self.reset()
            canvas = self.viewbox.canvas
            if canvas is not None:
                canvas.update()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        super().close()

    def _draw(self, maps: dict) -> None:
        self.maps = maps
        self.message.visible = False
        image = maps["image"]
        h, w = image.shape[:2]
        rgba = image_rgba(image)
        grey = rgba.copy()  # the image pale and grey under each heatmap
        grey[..., :3] = 0.6 + 0.4 * rgba[..., :3].mean(axis=2, keepdims=True)
        scale = 1.0 / max(h, w)
        corners = [(0.0, 0.0), (1.15, 0.0), (0.0, 1.2), (1.15, 1.2)]
        captions, positions = ["image"], [(0.5, -0.03)]
        self.tiles[0].set_data(rgba)
        for k, q in enumerate(QUANTITIES, start=1):
            delta = maps[q]
            vmax = float(np.abs(delta).max()) or 1.0
            self.tiles[k].set_data(grey)
            self.overlays[k - 1].set_data(colormap(0.5 + 0.5 * delta / vmax, "diverging", alpha=0.8))
            gh, gw = delta.shape
            x0, y0 = corners[k]
            self.tiles[k].transform = STTransform(scale=(scale, scale), translate=(x0, y0))
            self.overlays[k - 1].transform = STTransform(scale=(w * scale / gw, h * scale / gh), translate=(x0, y0))
            captions.append(f"{NAMES[q]}  (±{vmax:.2g})")
            positions.append((x0 + 0.5, y0 - 0.03))
        self.tiles[0].transform = STTransform(scale=(scale, scale))
        base = maps["base"]
        i = self.selection.focus
        self.info.text = (
            f"#{i} {self.data.class_names[self.data.labels[i]]}, clean image: angle {base['angle_true']:.1f} deg, "
            f"length {base['length']:.2f}, margin {base['margin']:.2f}\n"
            "occluding a patch: orange = value drops, purple = rises"
        )
        self.captions.text = captions
        self.captions.pos = positions
        for visual in (*self.tiles, *self.overlays, self.captions, self.info):
            visual.visible = True

    def subtitle(self) -> str:
        return "occlusion" if self.maps is not None else ""

    def grid_shape(self) -> tuple[int, int] | None:
        return None if self.maps is None else self.maps["margin"].shape
