"""Attribution of the focused sample: by default the exact linearization (margin, cos of the angle to the true
class, length, the true or the predicted logit as per-pixel contributions plus a bias that add up to the value)
of two models side by side, the reference and the selected one, and their difference: where pruning moves the
evidence. ``attribution="occlusion"`` shows the occlusion sensitivity of angle, length and margin instead.

Set ``background`` to an executor (the window does) and the maps are computed off the GUI thread: the view says
"computing" and draws them when they arrive, if that sample is still the one in focus. Without one (headless
screenshots) they are computed before the frame is drawn. Results are cached per model, condition and sample."""

from __future__ import annotations

import functools
from concurrent.futures import Executor, Future
from typing import Any

import numpy as np
from vispy import app, scene
from vispy.visuals.transforms import STTransform

from onnx_geom.conditions import condition_name
from onnx_geom.errors import DataError, OnnxGeomError
from onnx_geom.viewers.attribution import QUANTITIES, occlusion
from onnx_geom.viewers.colors import colormap, image_rgba
from onnx_geom.viewers.views.base import MUTED, TEXT, View, predicted_name

NAMES = {"angle_true": "Δ angle (deg)", "length": "Δ length", "margin": "Δ margin"}
#: What the panel can show (the same names as ``onnx_geom.viewers.ATTRIBUTIONS``): the linearization of one
#: quantity, or occlusion.
ATTRIBUTIONS = ("margin", "cos", "length", "true-logit", "predicted-logit", "occlusion")
#: attribution name -> the quantity of :func:`onnx_geom.explain.explanation`, and how it is called on screen
LINEAR = {
    "margin": ("margin", "margin"),
    "cos": ("cos", "cos(angle to the true class)"),
    "length": ("length", "feature length"),
    "true-logit": ("true_logit", "logit of the true class"),
    "predicted-logit": ("predicted_logit", "logit of the predicted class"),
}
#: where the tiles sit (scene units; y grows downwards): a pair of models, or one model
PAIR = {"reference": (0.0, 0.0), "selected": (1.15, 0.0), "image": (0.0, 1.3), "difference": (1.15, 1.3)}
SINGLE = {"image": (0.0, 0.65), "selected": (1.15, 0.65)}
#: the colour scale of the maps reaches full colour at this percentile of |contribution|
PERCENTILE = 99.0


def pixel_map(decomposition_map: np.ndarray) -> np.ndarray:
    """(H, W) float64: the contributions of one image's values, its channels summed (what one pixel adds)."""
    return np.asarray(decomposition_map, np.float64).sum(axis=-1)


def colour_scale(*maps: np.ndarray) -> float:
    """The half-width of a symmetric colour scale centred on zero: the 99th percentile of ``|value|`` over
    ``maps`` (the few pixels beyond it get the full colour, so one hot pixel does not pale the rest); 1 when
    every value is 0.

    >>> colour_scale(np.arange(-100.0, 101.0)[None]), colour_scale(np.zeros((2, 2)))
    (99.0, 1.0)
    """
    values = np.abs(np.concatenate([np.ravel(m) for m in maps]))
    return float(np.percentile(values, PERCENTILE)) or float(values.max()) or 1.0


def sum_text(contributions: float, bias: float, value: float, digits: int = 2) -> str:
    """The sum check as text: ``"11.92 + 1.94 = 13.86"`` (a negative bias is subtracted).

    >>> sum_text(11.9249, -1.9404, 9.9845), sum_text(0.51234, 0.1, 0.61234, digits=4)
    ('11.92 - 1.94 = 9.98', '0.5123 + 0.1000 = 0.6123')
    """
    sign = "-" if bias < 0 else "+"
    return f"{contributions:.{digits}f} {sign} {abs(bias):.{digits}f} = {value:.{digits}f}"


class AttributionView(View):
    name = "attribution"
    aspect, flip = 1, (False, True)
    title = "Attribution"

    def __init__(self, data, selection, viewbox, services=None, *, attribution: str = "margin") -> None:
        super().__init__(data, selection, viewbox, services)
        _check(attribution)
        self.attribution = attribution
        self.tiles = {
            name: scene.visuals.Image(np.ones((2, 2, 4), np.float32), parent=viewbox.scene, interpolation="nearest")
            for name in ("image", "reference", "selected", "difference", "angle_true", "length", "margin")
        }
        self.overlays = [
            scene.visuals.Image(np.ones((2, 2, 4), np.float32), parent=viewbox.scene, interpolation="nearest")
            for _ in range(3)
        ]
        for overlay in self.overlays:
            overlay.set_gl_state("translucent", depth_test=False)
        # y grows downwards here: a text anchored at its "top" sits above its position, at its "bottom" below
        self.captions = scene.visuals.Text("", color=TEXT, font_size=6, anchor_y="top", parent=viewbox.scene)
        self.info = scene.visuals.Text("", color=TEXT, font_size=7, anchor_y="bottom", parent=viewbox.scene)
        self.message = scene.visuals.Text("", color=MUTED, font_size=8, pos=(1.075, 1.1), parent=viewbox.scene)
        viewbox.camera.set_range(x=(-0.1, 2.25), y=(-0.25, 2.7), z=(0, 1), margin=0)
        self._cache: dict[tuple, dict | str] = {}  # results, or the sentence saying why there are none
        self.maps: dict | None = None  # what is drawn now (see _draw_linear and _draw_occlusion)
        self.background: Executor | None = None
        self._pending: dict[tuple, Future] = {}
        self._timer: app.Timer | None = None
        self.subscribe("models", "focus", "condition")
        self.reset()

    # -- what to show ------------------------------------------------------------------------------------------
    def set_attribution(self, attribution: str) -> None:
        """Show ``attribution`` (one of :data:`ATTRIBUTIONS`) from now on."""
        _check(attribution)
        if attribution != self.attribution:
            self.attribution = attribution
            self.reset()
            self._redraw()

    def _redraw(self) -> None:
        """After a change the selection did not announce: the panel's title, then a new frame."""
        if self.title_label is not None:
            from onnx_geom.viewers.layout import refresh_titles

            refresh_titles({self.name: self})
        canvas = self.viewbox.canvas
        if canvas is not None:
            canvas.update()

    def pair(self) -> tuple[str, str | None]:
        """``(selected, reference)``. With two selected models, the second and the first (the difference is the
        change from the first to the second, as in the local view); with one, that model and the study's
        reference (None when it is the reference itself)."""
        models = self.selection.models
        if len(models) > 1:
            return models[1], models[0]
        reference = self.data.reference
        return models[0], (None if reference == models[0] or reference not in self.data.models else reference)

    def _say(self, text: str) -> None:
        self.maps = None
        for visual in (*self.tiles.values(), *self.overlays, self.captions, self.info):
            visual.visible = False
        self.message.text = text
        self.message.visible = True

    def reset(self) -> None:
        sel, data = self.selection, self.data
        if sel.focus is None or not sel.models:
            return self._say("select a sample to see what its prediction depends on")
        if data.images is None:
            return self._say("this study holds no images")
        i = int(sel.focus)
        if self.attribution == "occlusion":
            model = sel.models[0]
            reason = self.services.features.unavailable(model)
            keys: list[tuple] = [("occlusion", model, i)]
        else:
            selected, reference = self.pair()
            models = [m for m in (reference, selected) if m is not None]
            reason = next((r for r in map(self.services.explain.unavailable, models) if r is not None), None)
            keys = [("linear", m, sel.condition, i) for m in models]
        if reason is not None:
            return self._say(reason)
        missing = [key for key in keys if key not in self._cache]
        if missing and self.background is not None:
            for key in missing:
                if key not in self._pending:
                    self._pending[key] = self.background.submit(self._compute, key)
            self._poll_soon()
            what = "occlusion map" if self.attribution == "occlusion" else "linear maps"
            return self._say(f"computing the {what} of #{i} ...")
        for key in missing:
            self._cache[key] = self._compute(key)
        results = [self._cache[key] for key in keys]
        failed = next((r for r in results if isinstance(r, str)), None)
        if failed is not None:
            return self._say(failed)
        if self.attribution == "occlusion":
            return self._draw_occlusion(results[0])  # type: ignore[arg-type]
        return self._draw_linear(results)  # type: ignore[arg-type]

    def _compute(self, key: tuple) -> dict | str:
        try:
            if key[0] == "occlusion":
                _, model, i = key
                W, b = self.data.heads[model]
                images = self.data.thumbnails([i])
                assert images is not None  # reset says "this study holds no images" before asking
                features = functools.partial(self.services.features, model)
                return {"image": images[0], **occlusion(images[0], int(self.data.labels[i]), features, W, b)}
            _, model, condition, i = key
            images = self.data.thumbnails([i], condition)
            assert images is not None  # as above
            labels = np.asarray(self.data.labels[[i]], np.int64)
            return {"image": images[0], "explanation": self.services.explain(model, images, labels)}
        except OnnxGeomError as error:
            return str(error)

    # -- background work ---------------------------------------------------------------------------------------
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
            what = "occlusion map" if key[0] == "occlusion" else "linearization"
            self._cache[key] = f"the {what} failed: {error}" if error is not None else future.result()
        if not self._pending and self._timer is not None:
            self._timer.stop()
        if done:
            self.reset()
            self._redraw()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        super().close()

    # -- drawing -----------------------------------------------------------------------------------------------
    def _place(self, tile: Any, rgba: np.ndarray, corner: tuple[float, float]) -> None:
        h, w = rgba.shape[:2]
        scale = 1.0 / max(h, w)
        tile.set_data(rgba)
        tile.transform = STTransform(scale=(scale, scale), translate=corner)
        tile.visible = True

    def _draw_linear(self, results: list[dict]) -> None:
        """One map per model (its pixels' contributions on one symmetric colour scale centred on zero, shared by
        the models: :func:`colour_scale`), the image, and with two models the difference selected - reference (on
        its own symmetric scale); above each map the sum check ``contributions + bias = value``."""
        quantity, label = LINEAR[self.attribution]
        selected, reference = self.pair()
        names = [m for m in (reference, selected) if m is not None]
        parts = {name: r["explanation"].quantities[quantity] for name, r in zip(names, results, strict=True)}
        explanations = {name: r["explanation"] for name, r in zip(names, results, strict=True)}
        image = results[-1]["image"]
        maps = {("reference" if name == reference else "selected"): pixel_map(parts[name].map[0]) for name in names}
        if reference is not None:
            maps["difference"] = maps["selected"] - maps["reference"]
        vmax = colour_scale(*(maps[role] for role in ("reference", "selected") if role in maps))
        dmax = colour_scale(maps["difference"]) if "difference" in maps else None
        layout = PAIR if reference is not None else SINGLE
        for visual in (*self.tiles.values(), *self.overlays):
            visual.visible = False
        self.message.visible = False
        self._place(self.tiles["image"], image_rgba(image), layout["image"])
        for role, values in maps.items():
            scale = dmax if role == "difference" and dmax is not None else vmax
            self._place(self.tiles[role], colormap(0.5 + 0.5 * values / scale, "diverging"), layout[role])
        digits = 4 if quantity == "cos" else 2
        i = int(self.selection.focus)  # type: ignore[arg-type]
        names_of = self.data.class_names
        sums, captions, positions = {}, [], []
        for name in names:
            part, exp = parts[name], explanations[name]
            role = "reference" if name == reference else "selected"
            sums[role] = (float(part.map[0].sum(dtype=np.float64)), float(part.bias[0]), float(part.value[0]))
            heading = f"{name}\npredicts {predicted_name(names_of, int(exp.predicted[0]))}"
            if quantity == "margin" and exp.rival[0] >= 0:
                heading += f", rival {names_of[int(exp.rival[0])]}"
            captions.append(f"{heading}\n{sum_text(*sums[role], digits=digits)}")
            positions.append(_above(layout[role]))
        if reference is not None:
            sums["difference"] = tuple(a - b for a, b in zip(sums["selected"], sums["reference"], strict=True))  # type: ignore[assignment]
            captions.append(f"difference\n{sum_text(*sums['difference'], digits=digits)}")
            positions.append(_above(layout["difference"]))
        condition = self.selection.condition
        shown = condition_name(*condition) if self.data.remakes(condition) else "clean (not remade here)"
        captions.append(f"#{i} {names_of[int(self.data.labels[i])]}, {shown}")
        positions.append(_above(layout["image"]))
        self.captions.text, self.captions.pos = captions, positions
        kinds = {exp.kind for exp in explanations.values()}
        kind = "exact local linear map" if kinds == {"exact local linear map"} else "; ".join(sorted(kinds))
        if reference is not None:
            bottom, compare = 2.33, f"difference = {selected} - {reference}, full colour at ±{dmax:.3g}"
        else:
            is_reference = f"{selected} is the reference: " if selected == self.data.reference else ""
            bottom, compare = 1.68, f"{is_reference}pick a second model to compare with it"
        self.info.text = (
            f"{label} = pixel contributions + bias ({kind})\n"
            f"purple raises it, orange lowers it; full colour at ±{vmax:.3g} per pixel\n{compare}"
        )
        self.info.pos = (1.075, bottom)
        self.captions.visible = self.info.visible = True
        self.maps = {"quantity": quantity, "vmax": vmax, "dmax": dmax, "image": image, "sums": sums,
                     "pair": (selected, reference), **maps}  # fmt: skip

    def _draw_occlusion(self, maps: dict) -> None:
        self.maps = maps
        self.message.visible = False
        for visual in (self.tiles["reference"], self.tiles["selected"], self.tiles["difference"]):
            visual.visible = False
        image = maps["image"]
        h, w = image.shape[:2]
        rgba = image_rgba(image)
        grey = rgba.copy()  # the image pale and grey under each heatmap
        grey[..., :3] = 0.6 + 0.4 * rgba[..., :3].mean(axis=2, keepdims=True)
        scale = 1.0 / max(h, w)
        corners = [(0.0, 0.0), (1.15, 0.0), (0.0, 1.2), (1.15, 1.2)]
        captions, positions = ["image"], [_above(corners[0])]
        self._place(self.tiles["image"], rgba, corners[0])
        for k, q in enumerate(QUANTITIES, start=1):
            delta = maps[q]
            vmax = float(np.abs(delta).max()) or 1.0
            self._place(self.tiles[q], grey, corners[k])
            self.overlays[k - 1].set_data(colormap(0.5 + 0.5 * delta / vmax, "diverging", alpha=0.8))
            gh, gw = delta.shape
            x0, y0 = corners[k]
            self.overlays[k - 1].transform = STTransform(scale=(w * scale / gw, h * scale / gh), translate=(x0, y0))
            self.overlays[k - 1].visible = True
            captions.append(f"{NAMES[q]}  (±{vmax:.2g})")
            positions.append(_above(corners[k]))
        base = maps["base"]
        i = self.selection.focus
        self.info.text = (
            f"#{i} {self.data.class_names[self.data.labels[i]]}, clean image: angle {base['angle_true']:.1f} deg, "
            f"length {base['length']:.2f}, margin {base['margin']:.2f}\n"
            "occluding a patch: orange = value drops, purple = rises"
        )
        self.info.pos = (1.075, 2.23)
        self.captions.text = captions
        self.captions.pos = positions
        self.captions.visible = self.info.visible = True

    def subtitle(self) -> str:
        if self.maps is None:
            return ""
        if self.attribution == "occlusion":
            return "occlusion"
        selected, reference = self.maps["pair"]
        return f"{self.attribution}: {selected}" + (f" vs {reference}" if reference else "")

    def grid_shape(self) -> tuple[int, int] | None:
        """The occlusion grid (rows, columns) drawn now; None when no occlusion map is drawn."""
        if self.maps is None or self.attribution != "occlusion":
            return None
        return self.maps["margin"].shape


def _above(corner: tuple[float, float]) -> tuple[float, float]:
    """Where a tile's caption sits: centred over the tile, just above it."""
    return (corner[0] + 0.5, corner[1] - 0.03)


def _check(attribution: str) -> None:
    if attribution not in ATTRIBUTIONS:
        raise DataError(f"unknown attribution {attribution!r}; choose one of {', '.join(ATTRIBUTIONS)}.")
