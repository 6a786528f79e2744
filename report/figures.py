"""The report's figures: which models, conditions and samples it shows (a stated rule), rendered by the viewer's
headless screenshots (EGL), and sample thumbnails; each figure a PNG kept in memory for a data URI.

The rule (:func:`choose`), written into the report beside the figures:

- **models**: the reference, the least robust other model (largest relative drop, ``summary.relative_drop``) and
  the most robust other model (lowest mCE, ``summary.mce``; lowest relative drop without mCE);
- **condition**: for each, the corrupted condition with an effect where its accuracy is lowest
  (``accuracy.accuracy``; clean data when the study has no corruption);
- **samples**: the ones that model gets right on clean data and wrong there (``fragile_to_corruption``), up to 9
  spread over the list;
- **most fragile samples**: those that flip from right on clean data to wrong in the most (model, corruption,
  severity) units, over every model; their attribution maps through the reference's and the least robust
  model's probe files, and thumbnails with the most robust samples (right in every condition under the most
  models, ``robust_for``).
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnx_geom.conditions import CLEAN_CONDITION

__all__ = ["Choice", "Figure", "Thumb", "choose", "png_bytes", "render_figures", "thumbnails"]

#: Sizes (width x height) of the rendered panels.
PANEL_SIZE = (540, 410)
MAP_SIZE = (760, 560)
ATTRIBUTION_SIZE = (360, 340)
#: Samples shown per selection (the samples panel shows 9), fragile samples attributed, thumbnails per group.
SELECTED, ATTRIBUTED, THUMBS = 9, 3, 12


@dataclass
class Choice:
    """The models, conditions and samples the report shows, and why (``reason`` per model)."""

    models: list[str]
    reason: dict[str, str]
    condition: dict[str, tuple[str, int]]
    selected: dict[str, list[int]]
    fragile: list[tuple[int, int]]  # (sample, units where it flips), most first
    robust: list[tuple[int, int]]  # (sample, models that get it right in every condition), most first
    attributed: list[str]  # models whose attribution maps are shown
    units: int = 0  # (model, corrupted condition) units the flips are counted over


@dataclass
class Figure:
    """One rendered panel: ``png`` bytes, a title, a caption, what it shows."""

    key: str
    title: str
    caption: str
    png: bytes
    width: int
    height: int


@dataclass
class Thumb:
    """A sample's clean image as a small PNG, with its index, label and the numbers shown under it."""

    index: int
    label: str
    png: bytes
    note: str
    tip: str = ""


@dataclass
class Rendered:
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _spread(indices: list[int], k: int) -> list[int]:
    """Up to ``k`` of ``indices`` spread evenly over the list, first and last included.

    >>> _spread(list(range(48)), 4), _spread([5, 7], 9)
    ([0, 16, 31, 47], [5, 7])
    """
    if len(indices) <= k:
        return list(indices)
    return [indices[round(float(i))] for i in np.linspace(0, len(indices) - 1, k)]


def _no_effect(cmp: Any) -> set[tuple[str, int]]:
    out = set()
    for row in cmp.corruption_status:
        for s in row.get("no_effect_severities") or []:
            out.add((row["corruption"], int(s)))
    return out


def worst_condition(cmp: Any, model: str) -> tuple[str, int]:
    """The corrupted condition with an effect where ``model``'s accuracy is lowest (the first such in the
    accuracy table on a tie); clean when there is none."""
    skip = _no_effect(cmp)
    rows = [
        r
        for r in cmp.accuracy
        if r["model"] == model
        and r["corruption"] != CLEAN_CONDITION[0]
        and (r["corruption"], int(r["severity"])) not in skip
        and math.isfinite(float(r["accuracy"]))
    ]
    if not rows:
        return CLEAN_CONDITION
    row = min(rows, key=lambda r: float(r["accuracy"]))
    return str(row["corruption"]), int(row["severity"])


def choose(cmp: Any) -> Choice:
    """The models, conditions and samples of the report's figures, by the rule of this module's docstring."""
    rows = {r["model"]: r for r in cmp.summary}
    ref = cmp.reference
    others = [m for m in cmp.models if m != ref and m in rows]

    def value(m: str, key: str) -> float:
        v = rows[m].get(key)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(float(v)) else math.nan

    models, reason = [ref], {ref: "the reference"}
    drops = [m for m in others if math.isfinite(value(m, "relative_drop"))]
    least = max(drops, key=lambda m: value(m, "relative_drop")) if drops else None
    if least is not None:
        models.append(least)
        reason[least] = f"the least robust (largest relative drop, {100 * value(least, 'relative_drop'):.1f}%)"
    rest = [m for m in others if m != least]
    scored = [m for m in rest if math.isfinite(value(m, "mce"))]
    if scored:
        most = min(scored, key=lambda m: value(m, "mce"))
        reason[most] = f"the most robust other model (lowest mCE, {value(most, 'mce'):.2f})"
    else:
        scored = [m for m in rest if math.isfinite(value(m, "relative_drop"))]
        most = min(scored, key=lambda m: value(m, "relative_drop")) if scored else None
        if most is not None:
            reason[most] = (
                f"the most robust other model (lowest relative drop, {100 * value(most, 'relative_drop'):.1f}%)"
            )
    if most is not None:
        models.append(most)
    condition = {m: worst_condition(cmp, m) for m in models}
    fragile_lists = (cmp.samples or {}).get("fragile_to_corruption") or {}
    selected = {}
    for m in models:
        c, s = condition[m]
        selected[m] = _spread(list((fragile_lists.get(m, {}).get(c) or {}).get(s, [])), SELECTED)
    flips: Counter[int] = Counter()
    units = 0
    skip = _no_effect(cmp)
    for per_corruption in fragile_lists.values():
        for c, per_severity in per_corruption.items():
            for s, indices in per_severity.items():
                if (c, int(s)) not in skip:
                    units += 1
                    flips.update(int(i) for i in indices)
    fragile = sorted(flips.items(), key=lambda kv: (-kv[1], kv[0]))
    right: Counter[int] = Counter()
    for indices in ((cmp.samples or {}).get("robust_for") or {}).values():
        right.update(int(i) for i in indices)
    robust = sorted(right.items(), key=lambda kv: (-kv[1], kv[0]))
    attributed = [m for m in (ref, least) if m is not None]
    return Choice(models, reason, condition, selected, fragile, robust, attributed, units)


def png_bytes(image: np.ndarray, *, colors: int | None = 256) -> bytes:
    """PNG bytes of an (H, W, 3|4) or (H, W) uint8 image; ``colors``: a palette of that many colours (smaller
    files for screenshots), None for full colour."""
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(image))
    if picture.mode == "RGBA":
        picture = picture.convert("RGB")
    if colors is not None and picture.mode == "RGB":
        picture = picture.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _condition_words(condition: tuple[str, int]) -> str:
    return "clean data" if condition == CLEAN_CONDITION else f"{condition[0].replace('_', ' ')} {condition[1]}"


def render_figures(data: Any, cmp: Any, choice: Choice, *, services: Any = None) -> Rendered:
    """Render the report's panels from :class:`~onnx_geom.viewers.ViewerData` ``data`` through the viewer's
    headless screenshots. A figure that cannot be rendered (no EGL, no probe file for attribution) is left out,
    and ``notes`` says why (one sentence each)."""
    from onnx_geom.errors import OnnxGeomError
    from onnx_geom.viewers import Selection, Services, render

    out = Rendered()
    services = services if services is not None else Services.for_data(data)

    def add(key: str, title: str, caption: str, panel: str, size: tuple[int, int], selection: Any) -> bool:
        try:
            image = render(data, panel=panel, size=size, selection=selection, services=services)
        except OnnxGeomError as error:
            out.notes.append(f"{title} is left out: {error}")
            return False
        out.figures[key] = Figure(key, title, caption, png_bytes(image), size[0], size[1])
        return True

    first = Selection(models=(cmp.reference,), condition=choice.condition.get(cmp.reference, CLEAN_CONDITION))
    if not add(
        "map",
        "Model map",
        "The viewer's similarity panel: classical MDS of the model distance with its minimum spanning tree; "
        "the reference is selected.",
        "similarity",
        MAP_SIZE,
        first,
    ):
        return out  # the viewer cannot render here: say it once, not once per figure
    for m in choice.models:
        condition = choice.condition[m]
        words = _condition_words(condition)
        n = len(choice.selected[m])
        picked = f"{n} samples {m} gets right on clean data and wrong under {words}" if n else "no sample selected"
        shift = condition != CLEAN_CONDITION
        local = Selection(models=(m,), condition=condition, indices=choice.selected[m], shift_from_clean=shift)
        add(
            f"local-{m}",
            f"Local geometry: {m}, {words}",
            "Angle to the true class against feature length, one point per sample coloured by class"
            + (", with each sample's shift from clean data (hollow ring: where it went)" if shift else "")
            + f"; highlighted: {picked}.",
            "local",
            PANEL_SIZE,
            local,
        )
        add(
            f"global-{m}",
            f"Global geometry: {m}, {words}",
            f"Parallel coordinates: angle to every class direction, angle to the true class, length and margin of "
            f"every sample under {words}; highlighted: {picked}.",
            "global",
            PANEL_SIZE,
            Selection(models=(m,), condition=condition, indices=choice.selected[m]),
        )
        if n:
            add(
                f"samples-{m}",
                f"Samples: {m}, {words}",
                f"The highlighted samples as {m} saw them under {words}, with label, prediction, angle, length "
                "and margin.",
                "samples",
                PANEL_SIZE,
                Selection(models=(m,), condition=condition, indices=choice.selected[m]),
            )
    for m in choice.attributed:
        reason = services.features.unavailable(m)
        if reason is not None:
            out.notes.append(f"the attribution maps of {m} are left out: {reason}.")
            continue
        for i, _count in choice.fragile[:ATTRIBUTED]:
            selection = Selection(models=(m,), condition=CLEAN_CONDITION, indices=[i])
            add(
                f"attribution-{m}-{i}",
                f"Attribution: {m}, sample #{i}",
                f"Sample #{i}: each pixel's exact contribution to the margin under {m} (contributions + bias = the "
                "margin), beside the reference's map and their difference.",
                "attribution",
                ATTRIBUTION_SIZE,
                selection,
            )
    return out


def thumbnails(
    images: Any,
    labels: np.ndarray,
    class_names: list[str],
    ranked: list[tuple[int, int]],
    note: Callable[[int], str],
    tip: Callable[[int, int], str] | None = None,
    *,
    count: int = THUMBS,
    side: int = 96,
) -> list[Thumb]:
    """Small PNGs of the clean images of the first ``count`` samples of ``ranked`` ((sample, score) pairs), each
    with ``note(score)`` under it and ``tip(sample, score)`` on hover; images larger than ``side`` pixels are shrunk. ``images``: the study's lazy (N, H, W, C) uint8 array, or None
    (then no thumbnails)."""
    from PIL import Image

    if images is None or not ranked:
        return []
    idx = np.asarray([i for i, _ in ranked[:count]], np.int64)
    order = np.argsort(idx)
    pictures = np.empty((idx.size, *images.shape[1:]), np.uint8)
    pictures[order] = np.asarray(images[idx[order]])  # the lazy array reads sorted indices chunk by chunk
    out = []
    for (i, score), picture in zip(ranked[:count], pictures, strict=True):
        array = picture[..., 0] if picture.shape[-1] == 1 else picture[..., :3]
        img = Image.fromarray(np.ascontiguousarray(array))
        if max(img.size) > side:
            img.thumbnail((side, side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        img.save(buffer, format="PNG", optimize=True)
        label = int(labels[i])
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        out.append(Thumb(int(i), name, buffer.getvalue(), note(score), tip(int(i), score) if tip else ""))
    return out
