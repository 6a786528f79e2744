"""Geometric similarity: the models in the study's 2-D embedding, minimum-spanning-tree edges, coloured by
pruning method (or name); the selected models are ringed. Click a model to select it (shift: compare).

The subtitle says how much of the distances the 2-D map keeps (the fraction of the positive eigenvalue mass of
classical MDS in its two axes); below :data:`onnx_geom.similarity.MAP_KEEPS_ENOUGH` (60%) it adds "read
neighbours from the tree": the spanning tree is drawn from the full distances, the map is not."""

from __future__ import annotations

import numpy as np
from vispy import scene

from onnx_geom.viewers.colors import class_colors
from onnx_geom.viewers.views.base import MUTED, TEXT, View, corner_legend, nearest

CHAR_PX, LINE_PX = 5.2, 11.0  # a 7-point label's mean character width and line height, in pixels
#: More models than this: a name is written only where it covers no dot and no other name, the selected models'
#: and their nearest neighbours' first; the others are on hover.
ALL_NAMES_UP_TO = 12


def place_some_labels(
    points: np.ndarray,
    widths: np.ndarray,
    height: float,
    gap: float,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    priority: np.ndarray | None = None,
    always: int = 0,
    dot: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Centres (N, 2) and which labels to write (N,) bool: in ``priority`` order (default: as given), each label
    takes the first place beside its dot (right, left, above, below, the diagonals) where it covers no dot,
    no label placed before it and stays inside ``bounds``; a label with no such place is not written, except
    the first ``always`` of the order (placed where they conflict least). ``dot``: a dot's radius (default
    ``gap / 3``), by which a box must miss it.

    >>> pts = np.array([[0.0, 0.0], [0.2, 0.0], [-0.2, 0.0], [0.0, 0.2]])  # four dots close together
    >>> bounds = (np.array([-5.0, -2.0]), np.array([5.0, 2.0]))  # a panel with room for three such names
    >>> place_some_labels(pts, np.full(4, 4.0), 1.0, 0.5, bounds)[1].tolist()
    [True, True, True, False]
    >>> place_some_labels(pts, np.full(4, 4.0), 1.0, 0.5, bounds, priority=np.array([3, 0, 1, 2]))[1].tolist()
    [True, True, False, True]
    """
    points = np.asarray(points, np.float64)
    n = len(points)
    centres, shown = points.copy(), np.zeros(n, bool)
    order = np.arange(n) if priority is None else np.asarray(priority, np.int64)
    half = np.stack([np.asarray(widths, np.float64) / 2, np.full(n, height / 2)], axis=1)
    placed: list[int] = []
    dot = gap / 3 if dot is None else dot
    for rank, i in enumerate(order):
        wide, tall, d = gap + half[i, 0], gap + half[i, 1], 0.7 * gap
        offsets = [(wide, 0.0), (-wide, 0.0), (0.0, tall), (0.0, -tall)]
        offsets += [(sx * (d + half[i, 0]), sy * (d + half[i, 1])) for sy in (1, -1) for sx in (1, -1)]
        others = np.delete(points, i, axis=0)
        conflicts = []
        for dx, dy in offsets:
            c = points[i] + (dx, dy)
            hit = int((np.abs(others - c) < half[i] + dot).all(axis=1).sum())
            if placed:
                hit += int((np.abs(centres[placed] - c) < half[i] + half[placed]).all(axis=1).sum())
            if bounds is not None:
                hit += int((c - half[i] < bounds[0]).any() or (c + half[i] > bounds[1]).any())
            conflicts.append(hit)
            if hit == 0:
                break
        best = int(np.argmin(conflicts))
        if conflicts[best] == 0 or rank < always:
            centres[i] = points[i] + offsets[best]
            shown[i] = True
            placed.append(int(i))
    return centres, shown


def label_positions(
    points: np.ndarray,
    widths: np.ndarray,
    height: float,
    gap: float,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Centres (N, 2) for labels of ``widths`` (N,) and ``height`` beside ``points`` (N, 2), ``gap`` away.

    Greedy, most crowded point first (:func:`place_some_labels` with every label written): each label takes the
    first place (right, left, above, below, then the four diagonals) whose box holds no other point, overlaps no
    label placed before it and stays inside ``bounds`` (lowest, highest corner) when given, else the side with the
    fewest such conflicts.

    >>> label_positions(np.array([[0.0, 0.0], [0.1, 0.0]]), np.array([4.0, 4.0]), 1.0, 0.5).round(1).tolist()
    [[2.5, 0.0], [-2.4, 0.0]]
    """
    points = np.asarray(points, np.float64)
    n = len(points)
    if n == 0:
        return points.copy()
    distance = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    crowding = distance.min(axis=1)
    return place_some_labels(points, widths, height, gap, bounds, np.argsort(crowding, kind="stable"), always=n)[0]


def map_subtitle(quality: dict) -> str:
    """The similarity panel's subtitle: how much of the distances the map keeps, and whether to trust it.

    >>> map_subtitle({"kept": 0.63, "read_tree": False}), map_subtitle({"kept": 0.41, "read_tree": True})
    ('MDS map keeps 63% of the distances, spanning tree', 'MDS map keeps 41%: read neighbours from the tree')
    >>> map_subtitle({})
    'MDS map, spanning tree'
    """
    kept = quality.get("kept")
    if kept is None or not np.isfinite(kept):
        return "MDS map, spanning tree"
    if quality.get("read_tree"):
        return f"MDS map keeps {100 * kept:.0f}%: read neighbours from the tree"
    return f"MDS map keeps {100 * kept:.0f}% of the distances, spanning tree"


class SimilarityView(View):
    name = "similarity"
    aspect, flip = 1, (False, False)
    title = "Geometric similarity"

    def __init__(self, data, selection, viewbox, services=None) -> None:
        super().__init__(data, selection, viewbox, services)
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
        self.labels = scene.visuals.Text(
            list(data.models), pos=self.points, color=TEXT, font_size=7, parent=viewbox.scene
        )
        self.named = np.ones(len(data.models), bool)  # which models' names are written
        self._placed: tuple = ()
        viewbox.events.resize.connect(self._place_labels)
        viewbox.scene.transform.changed.connect(self._place_labels)  # the camera settles after a resize
        corner_legend(viewbox, self.groups, palette, right=False)
        lo, hi = self.points.min(0), self.points.max(0)
        pad = 0.2 * span
        viewbox.camera.set_range(x=(lo[0] - pad, hi[0] + 2.2 * pad), y=(lo[1] - pad, hi[1] + pad), z=(0, 1), margin=0)
        self.subscribe("models")
        self.subscribe("models", callback=lambda _s: self._place_labels())
        self._place_labels()
        self.reset()

    def _place_labels(self, _event=None) -> None:
        """Each name beside its dot on a side (right, left, above, below, diagonal) where it covers no other dot or name,
        at the panel's current pixel scale."""
        # the visible region and scale from the camera's transform itself (with aspect 1 the camera widens its
        # rect to the panel's shape: camera.rect alone would misjudge the scale)
        corners = self.viewbox.node_transform(self.viewbox.scene).map([[0, 0], list(self.viewbox.size)])[:, :2]
        per_pixel = float(abs(corners[1, 0] - corners[0, 0]) / max(self.viewbox.size[0], 1.0))
        bounds = (corners.min(axis=0), corners.max(axis=0))
        key = (tuple(np.round(corners.ravel(), 9)), self.selection.models)
        if key == self._placed or not np.isfinite(per_pixel) or per_pixel <= 0:
            return
        self._placed = key
        names = list(self.data.models)
        widths = np.array([len(t) for t in names], np.float64) * CHAR_PX * per_pixel
        if len(names) <= ALL_NAMES_UP_TO:
            self.labels.pos = label_positions(
                self.points, widths, LINE_PX * per_pixel, gap=16 * per_pixel, bounds=bounds
            )
            return
        chosen = [names.index(m) for m in self.selection.models if m in names]
        anchor = self.points[chosen[0]] if chosen else self.points.mean(axis=0)
        near = np.argsort(np.linalg.norm(self.points - anchor, axis=1), kind="stable")  # nearest first
        priority = np.array([*chosen, *[i for i in near if i not in chosen]], np.int64)
        centres, self.named = place_some_labels(
            self.points,
            widths,
            LINE_PX * per_pixel,
            10 * per_pixel,
            bounds,
            priority,
            always=len(chosen),
            dot=7.5 * per_pixel,  # the dots are 13 pixels wide, with a white edge
        )
        shown = np.flatnonzero(self.named)
        self.labels.text = [names[i] for i in shown]
        self.labels.pos = centres[shown]
        self.refresh_title()

    def close(self) -> None:
        self.viewbox.events.resize.disconnect(self._place_labels)
        self.viewbox.scene.transform.changed.disconnect(self._place_labels)
        super().close()

    def reset(self) -> None:
        chosen = [self.data.models.index(m) for m in self.selection.models if m in self.data.models]
        if chosen:
            shapes = ["o", "s"][: len(chosen)]
            self.ring.set_data(
                self.points[chosen], face_color=(1, 1, 1, 0), edge_color="black", edge_width=2.5, size=24, symbol=shapes
            )
        self.ring.visible = bool(chosen)

    def subtitle(self) -> str:
        if not len(self.points):
            return ""
        text = map_subtitle(self.data.embedding_quality)
        if not self.named.all():
            first = self.selection.models[0] if self.selection.models else "the centre"
            text += f" · {int(self.named.sum())} of {len(self.named)} names (nearest to {first}; hover: the rest)"
        return text

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
