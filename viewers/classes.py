"""Many classes (CIFAR-100, ImageNet): the classes ordered by how alike their directions are, groups of alike
classes, the class picker's grammar and the colours of samples. No Qt, no VisPy.

>>> W = np.array([[1.0, 0.0], [0.0, 1.0], [0.99, 0.1], [0.1, 0.99]])
>>> order = class_order(W, ["a", "b", "c", "d"], ordered_from=2)
>>> [order.names[c] for c in order.order], order.group_of([0, 2, 1, 3]).tolist()
(['a', 'c', 'd', 'b'], [0, 0, 1, 1])
>>> order.parse("b, g1").tolist()          # a class by name, and group 1 (a and c)
[0, 1, 2]

Up to :data:`ORDERED_FROM` - 1 classes keep their own order (class 0, 1, ...); from it on, the classes are the
leaves of an average-linkage tree of their directions (cosine distance between the rows of ``W``), with the
optimal leaf order up to :data:`OPTIMAL_UP_TO` classes, so alike classes sit side by side; the tree cut into
about sqrt(K) clusters gives the groups, each a run of neighbours in that order, numbered from 1 along it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from onnx_geom.errors import DataError
from onnx_geom.viewers.colors import OKABE_ITO, class_colors, colormap, hex_to_rgba

__all__ = [
    "COLOR_MODES",
    "ORDERED_FROM",
    "ClassOrder",
    "class_order",
    "resolve_mode",
    "sample_colors",
]

#: From this many classes on, the class axes and groups follow the similarity of the class directions.
ORDERED_FROM = 13
#: Up to this many classes, scipy's optimal leaf ordering (O(K^3)) also orders the leaves; beyond, the tree's.
OPTIMAL_UP_TO = 300
#: How the points of the local view and the selected lines of the global view are coloured: ``auto`` is
#: ``class`` up to :data:`CLASS_COLOURS_UP_TO` classes and ``correct`` beyond.
COLOR_MODES = ("auto", "class", "correct", "margin", "group")
CLASS_COLOURS_UP_TO = 10
CORRECT, WRONG, OTHER = "#0072B2", "#D55E00", "#bbbbbb"


@dataclass
class ClassOrder:
    """``order`` (K,): class ids in display order; ``position`` (K,): class id -> place in that order;
    ``groups`` (K,): class id -> group number (0-based, numbered along the order); ``how``: the order in words."""

    order: np.ndarray
    groups: np.ndarray
    names: list[str]
    how: str
    position: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.position = np.empty_like(self.order)
        self.position[self.order] = np.arange(len(self.order))

    @property
    def n_groups(self) -> int:
        return int(self.groups.max()) + 1 if self.groups.size else 0

    def group_of(self, classes) -> np.ndarray:
        """Group numbers (0-based) of class ids; -1 for a class id of -1 (no prediction)."""
        classes = np.asarray(classes, np.int64)
        return np.where(classes >= 0, self.groups[np.clip(classes, 0, None)], -1)

    def members(self, group: int) -> np.ndarray:
        """Class ids of group ``group`` (0-based), in display order."""
        return self.order[self.groups[self.order] == group]

    def parse(self, text: str) -> np.ndarray:
        """Class ids picked by ``text``: comma-separated class names (exact, else every class whose name holds
        the text, so "dog" picks every dog breed), class numbers (``7``), ranges of numbers (``3-7``) and groups
        (``g2`` or ``group 2``, 1-based as the panels number them). Sorted, unique; a part that matches nothing
        is a :class:`DataError` naming it."""
        lower = [n.lower() for n in self.names]
        out: list[int] = []
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                continue
            key = part.lower()
            group = re.fullmatch(r"(?:g|group\s*)(\d+)", key)
            numbers = re.fullmatch(r"(\d+)\s*-\s*(\d+)", key)
            if key in lower:
                out += [i for i, n in enumerate(lower) if n == key]
            elif group and 1 <= int(group.group(1)) <= self.n_groups:
                out += self.members(int(group.group(1)) - 1).tolist()
            elif key.isdigit() and int(key) < len(self.names):
                out.append(int(key))
            elif numbers and int(numbers.group(1)) <= int(numbers.group(2)) < len(self.names):
                out += list(range(int(numbers.group(1)), int(numbers.group(2)) + 1))
            elif any(key in n for n in lower):
                out += [i for i, n in enumerate(lower) if key in n]
            else:
                raise DataError(
                    f"no class matches {part!r}; type class names or numbers (0-{len(self.names) - 1}), ranges "
                    f"(3-7) or groups (g1-g{self.n_groups}), separated by commas."
                )
        return np.unique(np.asarray(out, np.int64))

    def describe(self, picked: Sequence[int] | np.ndarray, *, room: int = 48) -> str:
        """The picked classes in a few words: ``"cat, dog"``, ``"group 3 (12 classes)"`` or ``"57 classes"``."""
        classes = np.unique(np.asarray(picked, np.int64))
        if classes.size == 0:
            return ""
        groups = np.unique(self.groups[classes])
        if groups.size == 1 and classes.size > 1 and np.array_equal(np.sort(self.members(int(groups[0]))), classes):
            return f"group {int(groups[0]) + 1} ({classes.size} classes)"
        text = ", ".join(self.names[c] for c in classes)
        return text if len(text) <= room else f"{classes.size} classes"


def class_order(W: np.ndarray | None, names: Sequence[str], *, source: str = "", ordered_from: int = ORDERED_FROM):
    """The :class:`ClassOrder` of a head's class directions ``W`` (K, D) (None: keep the class numbers).

    ``source`` names whose ``W`` it is (a model), for the sentence the panels show."""
    names = [str(n) for n in names]
    k = len(names)
    natural = ClassOrder(np.arange(k), np.arange(k), names, "class number")
    if W is None or k < max(ordered_from, 3) or np.shape(W)[0] != k:
        return natural
    from scipy.cluster.hierarchy import fcluster, leaves_list, linkage, optimal_leaf_ordering

    rows = np.asarray(W, np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if not np.isfinite(rows).all():
        return natural
    unit = np.where(norms > 0, rows / np.where(norms > 0, norms, 1.0), 0.0)
    unit[norms[:, 0] == 0, 0] = 1.0  # a zero row has no direction: any fixed one keeps the distances finite
    distance = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    condensed = distance[np.triu_indices(k, 1)]
    tree = linkage(condensed, method="average")
    if k <= OPTIMAL_UP_TO:
        tree = optimal_leaf_ordering(tree, condensed)
    order = leaves_list(tree).astype(np.int64)
    raw = fcluster(tree, t=max(2, round(np.sqrt(k))), criterion="maxclust")
    # number the groups along the order (clusters of a cut tree are runs of neighbouring leaves)
    first_seen: dict[int, int] = {}
    for c in order:
        first_seen.setdefault(int(raw[c]), len(first_seen))
    groups = np.array([first_seen[int(g)] for g in raw], np.int64)
    whose = f"{source}'s " if source else ""
    return ClassOrder(order, groups, names, f"similarity of {whose}class directions")


def resolve_mode(mode: str, k: int) -> str:
    """The colouring ``mode`` (:data:`COLOR_MODES`) a study of ``k`` classes gets: ``auto`` is ``class`` up to
    10 classes, ``correct`` beyond.

    >>> resolve_mode("auto", 10), resolve_mode("auto", 100), resolve_mode("margin", 100)
    ('class', 'correct', 'margin')
    """
    if mode not in COLOR_MODES:
        raise DataError(f"unknown colouring {mode!r}; choose one of {', '.join(COLOR_MODES)}.")
    if mode == "auto":
        return "class" if k <= CLASS_COLOURS_UP_TO else "correct"
    return mode


def sample_colors(
    mode: str,
    *,
    labels: np.ndarray,
    geom,
    order: ClassOrder,
    picked: Sequence[int] | np.ndarray = (),
    rows: np.ndarray | None = None,
    other: str = OTHER,
) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """(n, 4) RGBA of samples ``rows`` (default all) and the legend ``[(text, rgba)]`` that explains them.

    With ``picked`` classes, the samples of those classes get a colour each (Okabe & Ito, up to 8; more picked
    classes share them in turn) and every other sample is ``other`` (light grey); without, ``mode``
    (:func:`resolve_mode`): ``class`` (class palette; many classes: viridis along the similarity order),
    ``correct`` (blue correct, vermillion wrong), ``margin`` (orange below 0, grey at 0, purple above, up to
    the 98th percentile of |margin|), ``group`` (the group of the predicted class).
    """
    k = len(order.names)
    idx = np.arange(len(labels)) if rows is None else np.asarray(rows, np.int64)
    y = np.asarray(labels)[idx]
    chosen = np.unique(np.asarray(picked, np.int64))
    if chosen.size:
        palette = hex_to_rgba(OKABE_ITO)
        out = np.tile(hex_to_rgba([other]), (idx.size, 1))
        slot = np.full(k, -1)
        slot[chosen] = np.arange(chosen.size) % len(palette)
        mine = slot[y] >= 0
        out[mine] = palette[slot[y[mine]]]
        legend = [(order.names[c], palette[slot[c]]) for c in chosen[:8]]
        if chosen.size > 8:
            legend.append((f"+{chosen.size - 8} more (colours repeat)", hex_to_rgba([other])[0]))
        legend.append(("other classes", hex_to_rgba([other])[0]))
        return out, legend
    mode = resolve_mode(mode, k)
    if mode == "class":
        if k <= CLASS_COLOURS_UP_TO:
            colours = class_colors(k)
            return colours[y], [(order.names[c], colours[c]) for c in range(k)]
        t = order.position[y] / max(k - 1, 1)
        ends = colormap(np.array([0.0, 1.0]))
        return colormap(t), [(f"{order.names[order.order[0]]} (first axis)", ends[0]), ("... last axis", ends[1])]
    if mode == "correct":
        correct = np.asarray(geom["correct"])[idx]
        two = hex_to_rgba([CORRECT, WRONG])
        return np.where(correct[:, None], two[0], two[1]).astype(np.float32), [("correct", two[0]), ("wrong", two[1])]
    if mode == "margin":
        margin = np.asarray(geom["margin"], np.float64)
        finite = np.abs(margin[np.isfinite(margin)])
        scale = float(np.percentile(finite, 98)) if finite.size else 1.0
        scale = scale if scale > 0 else 1.0
        t = 0.5 + 0.5 * margin[idx] / scale
        ends = colormap(np.array([0.0, 0.5, 1.0]), "signed")
        return colormap(t, "signed"), [
            (f"margin -{scale:.3g} (wrong side)", ends[0]),
            ("margin 0", ends[1]),
            (f"margin +{scale:.3g}", ends[2]),
        ]
    # group of the predicted class
    g = order.group_of(np.asarray(geom["pred"])[idx])
    n = max(order.n_groups, 1)
    colours = class_colors(n)
    out = np.where((g >= 0)[:, None], colours[np.clip(g, 0, None)], hex_to_rgba([OTHER])[0]).astype(np.float32)
    if n <= CLASS_COLOURS_UP_TO:
        legend = [(f"predicted in group {i + 1}", colours[i]) for i in range(n)]
    else:
        legend = [("predicted in group 1", colours[0]), (f"... group {n} (along the axes)", colours[-1])]
    return out, legend
