"""Where everything lives in a study: keys, names, chunk shapes and the dimension names of every array.

Private to :mod:`onnx_geom.store`. The layout (docs/store.md)::

    /                                    attrs: onnx_geom_version, format, dataset {...}, corruptions, severities, ...
    /labels, /images                     ("sample",), ("sample", "height", "width", "channel")
    /models/<model>/W, b                 ("class", "feature"), ("class",); group attrs: probe, probe_path, tags
    /models/<model>/<corruption>/<severity>/            a unit: features ("sample", "feature"), logits ("sample", "class")
    /models/<model>/<corruption>/<severity>/geometry/   a group inside a unit: ("sample",), cos ("sample", "class")
    /comparison/                         the stored comparison (its array fields; the rest in its attributes)

>>> Unit("m", "fog", 3).key(), unit_key(Unit("m", "fog", 3), "geometry")
('models/m/fog/3', 'models/m/fog/3/geometry')
>>> dimension_names("features", 2, unit=True), dimension_names("geometry/cos", 2, unit=True)
(['sample', 'feature'], ['sample', 'class'])
>>> dimension_names("extra", 3, unit=True), dimension_names("comparison/sizes", 1)
(['sample', 'extra_1', 'extra_2'], ['sizes_0'])
>>> row_chunks((10_000, 512), 4)
(2048, 512)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from onnx_geom.errors import StudyError
from onnx_geom.geometry import GEOMETRY_ARRAYS

#: Marks a Zarr group as an onnx-geom study (root attribute ``format``).
STUDY_FORMAT = 1

LABELS, IMAGES, MODELS, COMPARISON, GEOMETRY = "labels", "images", "models", "comparison", "geometry"
#: Bytes of one chunk: arrays are chunked by whole rows, about this much each.
CHUNK_BYTES = 4 << 20

#: The dimension names of every array a study holds, by its key below the root, a model or a unit (xarray reads
#: them: ``xarray.open_zarr(study, group=..., zarr_format=3, consolidated=False)``).
DIMENSIONS: dict[str, tuple[str, ...]] = {
    LABELS: ("sample",),
    IMAGES: ("sample", "height", "width", "channel"),
    "W": ("class", "feature"),
    "b": ("class",),
    "features": ("sample", "feature"),
    "logits": ("sample", "class"),
    **{f"{GEOMETRY}/{name}": ("sample",) for name in GEOMETRY_ARRAYS},
    f"{GEOMETRY}/cos": ("sample", "class"),
    f"{COMPARISON}/distance": ("model_a", "model_b"),
    f"{COMPARISON}/embedding": ("model", "axis"),
    f"{COMPARISON}/redundancy": ("corruption_a", "corruption_b"),
    f"{COMPARISON}/linkage": ("merge", "linkage_column"),
}


class Unit(NamedTuple):
    """One model x corruption x severity; ``Unit(m, "clean", 0)`` is the clean set."""

    model: str
    corruption: str
    severity: int

    def key(self) -> str:
        return f"{MODELS}/{self.model}/{self.corruption}/{self.severity}"

    def __str__(self) -> str:
        return f"{self.model}/{self.corruption}/{self.severity}"


def unit_key(unit: Unit, group: str | None = None) -> str:
    """The key of a unit, or of the group ``group`` inside it."""
    return unit.key() + (f"/{group}" if group else "")


def model_key(model: str) -> str:
    return f"{MODELS}/{model}"


#: The rule of every model, corruption and group name in a study, checked when a study is written and when it is
#: read (a folder of a hostile study whose name breaks it is never used, only reported): a letter or digit, then
#: letters, digits, '.', '_' or '-', at most :data:`NAME_MAX` characters in all.
NAME_RULE = "a letter or digit, then letters, digits, '.', '_' or '-'"
NAME_MAX = 100
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def valid_name(name: object) -> bool:
    """Whether ``name`` follows :data:`NAME_RULE`.

    >>> valid_name("resnet-18_v1.5"), valid_name(".hidden"), valid_name("a b"), valid_name("x\\x1b[2J")
    (True, False, False, False)
    """
    return isinstance(name, str) and len(name) <= NAME_MAX and _NAME.fullmatch(name) is not None


def check_name(kind: str, name: str, hint: str = "") -> None:
    """Refuse a model, corruption or group name that breaks :data:`NAME_RULE` (``hint``: how to give another)."""
    if not valid_name(name):
        raise StudyError(
            f"{kind} name {shown(name)} cannot be used in a study; use {NAME_RULE}, at most {NAME_MAX} characters"
            f"{f' ({hint})' if hint else ''}."
        )


def shown(value: object, limit: int = 60) -> str:
    """``value`` as it can be printed in one line of a message: its repr (control characters escaped), cut short.

    >>> shown("a\\nb\\x1b"), shown("x" * 80, limit=10)
    ("'a\\\\nb\\\\x1b'", "'xxxxxx...")
    """
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def dimension_names(name: str, ndim: int, *, unit: bool = False) -> list[str]:
    """The dimension names of the array ``name`` (its key below the root, a model or a unit, e.g. ``"W"``,
    ``"geometry/cos"``, ``"comparison/distance"``) with ``ndim`` axes. An array not in :data:`DIMENSIONS` gets
    ``<name>_<axis>``; in a unit (``unit=True``) its first axis is ``"sample"`` (a unit's rows are samples).
    """
    known = DIMENSIONS.get(name)
    if known is not None and len(known) == ndim:
        return list(known)
    base = name.rsplit("/", 1)[-1]
    names = [f"{base}_{axis}" for axis in range(ndim)]
    if unit and ndim:
        names[0] = "sample"
    return names


def row_chunks(shape: Sequence[int], itemsize: int) -> tuple[int, ...]:
    """Chunks of whole rows, about :data:`CHUNK_BYTES` each: ``(rows, *shape[1:])`` (every chunk side at least 1)."""
    if not len(shape):
        return ()
    row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * itemsize)
    rows = int(min(max(shape[0], 1), max(1, CHUNK_BYTES // row_bytes)))
    return (rows, *(max(1, int(s)) for s in shape[1:]))
