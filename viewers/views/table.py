"""Evaluation table: accuracy of every model (rows, best first) x condition (clean, then corruption x severity).

Cells are drawn as one image with white gaps; clicking a cell selects that model and condition (shift-click
adds a second model, to compare), and the title then gives its accuracy (the tooltip gives any cell's).

Colours: an absolute scale by default, 0% (dark) to 100% (yellow), so that two studies, or two halves of one
table, read alike; the relative scale (click the colour key) stretches the lowest to the highest accuracy in the
table and says so in its key, with as many decimals as its ends need to differ. Labels: a row's name is
written when rows are at least :data:`LABEL_PX` pixels apart at the current zoom, else every k-th (the selected
models' always); corruption names likewise; severity numbers only where columns are wide enough.
"""

from __future__ import annotations

import numpy as np
from vispy import scene
from vispy.visuals.transforms import STTransform

from onnx_geom.conditions import CLEAN
from onnx_geom.viewers.colors import colormap
from onnx_geom.viewers.views.base import MUTED, TEXT, View, colour_key, rect_segments

CELL = 12  # image pixels per cell, gap included
GAP = 1
LABEL_PX = 10.0  # the least distance between two written row names, in pixels
SCALES = ("absolute", "relative")


def percent(value: float, decimals: int = 1) -> str:
    """An accuracy as a percentage; ``-`` when missing.

    >>> percent(0.97213), percent(0.97213, 2), percent(float("nan"))
    ('97.2%', '97.21%', '-')
    """
    return f"{100 * value:.{decimals}f}%" if np.isfinite(value) else "-"


def scale_ends(lo: float, hi: float) -> tuple[str, str]:
    """The two ends of a relative colour scale, with decimals enough to show their difference to two digits
    (1 to 4), so that a narrow range never reads "0% .. 0%".

    >>> scale_ends(0.97213, 0.98631), scale_ends(0.0004, 0.0021)
    (('97.2%', '98.6%'), ('0.04%', '0.21%'))
    """
    spread = 100 * (hi - lo)
    decimals = int(np.clip(np.ceil(-np.log10(spread)) + 1, 1, 4)) if spread > 0 else 4
    return percent(lo, decimals), percent(hi, decimals)


def every_kth(count: int, pixels_per_item: float, least: float, keep=()) -> list[int]:
    """Which of ``count`` evenly spaced labels to write so that written ones are at least ``least`` pixels apart:
    every k-th, the ``keep`` ones first (each written one pushes its too-near neighbours out).

    >>> every_kth(10, 4.0, 10.0), every_kth(10, 4.0, 10.0, keep=[4])
    ([0, 3, 6, 9], [0, 4, 9])
    """
    step = max(1, int(np.ceil(least / max(pixels_per_item, 1e-9))))
    chosen: list[int] = []
    for i in [*keep, *range(0, count, step)]:
        if 0 <= i < count and all(abs(i - j) >= step for j in chosen):
            chosen.append(int(i))
    return sorted(chosen)


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
    scale = "absolute"  # or "relative" (:data:`SCALES`); :meth:`set_scale`

    def __init__(self, data, selection, viewbox, services=None) -> None:
        super().__init__(data, selection, viewbox, services)
        acc = np.concatenate([data.clean_accuracy[:, None], data.accuracy.reshape(len(data.models), -1)], axis=1)
        with np.errstate(all="ignore"):
            mean = (
                np.nanmean(np.where(np.isfinite(acc[:, 1:]), acc[:, 1:], np.nan), axis=1)
                if acc.shape[1] > 1
                else acc[:, 0]
            )
        self.order = np.argsort(-np.nan_to_num(mean, nan=-1), kind="stable")  # best first
        self.row_of = np.argsort(self.order)  # model index -> row
        self.values = acc[self.order]  # (M, 1 + C*S)
        self.columns = data.conditions
        m, c = self.values.shape
        finite = self.values[np.isfinite(self.values)]
        self.range = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        self.image = scene.visuals.Image(np.ones((2, 2, 4), np.float32), parent=viewbox.scene, interpolation="nearest")
        self.image.transform = STTransform(scale=(1.0 / CELL, 1.0 / CELL))
        self.key = colour_key(viewbox, "viridis", "", corner="bottom-right")
        self.row_names = [model_label(data.models[i], data.tags.get(data.models[i], {})) for i in self.order]
        self.row_text = scene.visuals.Text("", anchor_x="right", color=TEXT, font_size=7, parent=self.viewbox.scene)
        self.column_text = scene.visuals.Text(
            "", color=TEXT, font_size=7, parent=self.viewbox.scene, rotation=-60, anchor_x="left"
        )
        self._labels(m, c)
        self.frame = scene.visuals.Line(parent=viewbox.scene, color="black", width=2, connect="segments")
        self.frame.set_gl_state("translucent", depth_test=False)
        self.frame.order = 10
        viewbox.camera.set_range(
            x=(-0.38 * max(c, 8), c + 0.2 + 0.04 * max(c, 8)),
            y=(-max(3.0, 0.3 * m), m + max(3.0, 0.3 * m)),  # room below for the notes and the colour key
            z=(0, 1),
            margin=0,
        )
        self._paint()
        self._shown_labels: tuple = ()
        viewbox.events.resize.connect(self._place_labels)
        viewbox.scene.transform.changed.connect(self._place_labels)  # zoom: more names fit
        self.subscribe("models", "condition")
        self.reset()

    # -- colours ----------------------------------------------------------------------------------------------
    def set_scale(self, scale: str) -> None:
        """``absolute`` (0-100%) or ``relative`` (the table's lowest to highest accuracy) colours."""
        if scale not in SCALES:
            raise ValueError(f"unknown colour scale {scale!r}; choose one of {', '.join(SCALES)}")
        if scale != self.scale:
            self.scale = scale
            self._paint()

    def shade(self, values: np.ndarray) -> np.ndarray:
        """0..1 positions of accuracies on the current colour scale."""
        if self.scale == "absolute":
            return np.asarray(values, np.float64)
        lo, hi = self.range
        return (np.asarray(values, np.float64) - lo) / max(hi - lo, 1e-12)

    def _paint(self) -> None:
        m, c = self.values.shape
        cells = colormap(self.shade(self.values), "viridis")  # (M, C, 4)
        rgba = np.ones((m, CELL, c, CELL, 4), np.float32)
        rgba[:, GAP : CELL - GAP, :, GAP : CELL - GAP] = cells[:, None, :, None, :]
        self.image.set_data(rgba.reshape(m * CELL, c * CELL, 4))
        if self.scale == "absolute":
            self.key.set_ends("0%", "100%", "accuracy, absolute (click: relative)")
        else:
            lo, hi = scale_ends(*self.range)
            self.key.set_ends(lo, hi, "RELATIVE: lowest..highest (click)")
        if self.cell_text is not None:
            t = self.shade(self.values).ravel()
            self.cell_text.color = np.where((t > 0.6)[:, None], [[0, 0, 0, 1]], [[1, 1, 1, 1]])

    cell_text = None

    # -- labels -----------------------------------------------------------------------------------------------
    def _labels(self, m: int, c: int) -> None:
        data = self.data
        n = max(len(data.severities), 1)
        self.groups = [CLEAN, *data.corruptions]
        self.centres = [0.5] + [1 + k * n + n / 2 for k in range(len(data.corruptions))]
        self.digits = bool(data.severities) and 0 < c - 1 <= 40  # severity numbers only while they can be read
        if self.digits:
            scene.visuals.Text(
                [str(s) for _, s in self.columns[1:]],
                pos=[(j + 1.5, -0.4) for j in range(c - 1)],
                color=MUTED,
                font_size=6,
                parent=self.viewbox.scene,
            )
        if m * c <= 120:
            self.cell_text = scene.visuals.Text(
                [f"{100 * v:.0f}" if np.isfinite(v) else "-" for v in self.values.ravel()],
                pos=[(j + 0.5, i + 0.5) for i in range(m) for j in range(c)],
                font_size=6,
                parent=self.viewbox.scene,
            )
        key = ["rows: best mean corruption accuracy first" if c > 1 else "rows: best clean accuracy first"]
        if data.severities and data.corruptions and not self.digits:
            key.append(f"each corruption: severity {data.severities[0]} .. {data.severities[-1]}, left to right")
        if m > 12:
            key.append("not every row named: zoom (wheel), hover")
        scene.visuals.Text(
            "\n".join(key),
            pos=(0, m + 0.15),
            anchor_x="left",
            anchor_y="bottom",
            color=MUTED,
            font_size=6,
            parent=self.viewbox.scene,
        )

    def _place_labels(self, _event=None) -> None:
        """Row and corruption names where they have room at the current size and zoom (see the module's text)."""
        rect = self.viewbox.camera.rect
        width, height = self.viewbox.size
        row_px = height / max(abs(rect.height), 1e-9)
        col_px = width / max(abs(rect.width), 1e-9)
        keep = [int(self.row_of[self.data.models.index(m)]) for m in self.selection.models if m in self.data.models]
        rows = every_kth(len(self.row_names), row_px, LABEL_PX, keep=keep)
        n = max(len(self.data.severities), 1)
        groups = every_kth(len(self.groups), col_px * n, 12.0, keep=[0])
        shown = (tuple(rows), tuple(groups))
        if shown == self._shown_labels:
            return
        self._shown_labels = shown
        self.row_text.text = [self.row_names[i][:28] for i in rows]
        self.row_text.pos = [(-0.2, i + 0.5) for i in rows]
        self.row_text.color = np.asarray([(0.0, 0.0, 0.0, 1.0) if i in keep else (0.13, 0.13, 0.13, 1.0) for i in rows])
        self.column_text.text = [self.groups[g].replace("_", " ") for g in groups]
        self.column_text.pos = [(self.centres[g], -1.0 if self.digits else -0.3) for g in groups]

    def close(self) -> None:
        self.viewbox.events.resize.disconnect(self._place_labels)
        self.viewbox.scene.transform.changed.disconnect(self._place_labels)
        super().close()

    # -- selection --------------------------------------------------------------------------------------------
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
        self._shown_labels = ()
        self._place_labels()

    def subtitle(self) -> str:
        text = f"{len(self.data.models)} models x {len(self.columns)} conditions"
        sel = self.selection
        if sel.models and sel.models[0] in self.data.models and sel.condition in self.columns:
            value = self.values[self.row_of[self.data.models.index(sel.models[0])], self.columns.index(sel.condition)]
            c, s = sel.condition
            text += f" · {sel.models[0]}, {c if c == CLEAN else f'{c} {s}'}: {percent(value, 2)}"
        return text

    def cell_at(self, xy) -> tuple[int, int] | None:
        """(model index in data.models, condition index) under scene point ``xy``, or None."""
        j, i = int(np.floor(xy[0])), int(np.floor(xy[1]))
        if 0 <= i < len(self.order) and 0 <= j < len(self.columns):
            return int(self.order[i]), j
        return None

    def _on_key(self, xy) -> bool:
        """Whether scene point ``xy`` falls on the colour key (which lives in pixel coordinates)."""
        px = self.viewbox.scene.node_transform(self.viewbox).map(np.asarray([xy[0], xy[1], 0, 1], float))[:2]
        return self.key.contains(px)

    def pick_point(self, xy, radius, extend: bool = False) -> bool:
        if self._on_key(xy):
            self.set_scale("relative" if self.scale == "absolute" else "absolute")
            return True
        cell = self.cell_at(xy)
        if cell is None:
            return False
        model = self.data.models[cell[0]]
        self.selection.models = (*self.selection.models[:1], model) if extend else (model,)
        self.selection.condition = self.columns[cell[1]]
        return True

    def hover(self, xy, radius) -> str:
        if self._on_key(xy):
            return f"colour scale: {self.scale}; click to switch"
        cell = self.cell_at(xy)
        if cell is None:
            return ""
        (c, s), v = self.columns[cell[1]], self.values[self.row_of[cell[0]], cell[1]]
        label = model_label(self.data.models[cell[0]], self.data.tags.get(self.data.models[cell[0]], {}))
        return f"{label}  {c if c == CLEAN else f'{c} {s}'}: accuracy {percent(v, 2)}"
