"""The stored comparison: a dataclass as a Zarr group, its numeric array fields as arrays (with dimension
names), every other field as JSON in the group's attributes, beside the parameters it was computed with and the
fingerprint of the geometry it was computed from.

Private to :mod:`onnx_geom.store` (``Study.write_comparison`` / ``Study.read_comparison``). Generic over the
fields, so a field added to :class:`onnx_geom.comparison.Comparison` is stored without a change here. JSON
holds what JSON cannot say as one-key objects: a tuple ``{"$tuple": [...]}``, a dict whose keys are not all
strings (or start with ``$``) ``{"$items": [[key, value], ...]}``, a numpy array inside a field
``{"$array": [...flat...], "dtype": "<f8", "shape": [...]}``; NaN and infinities as zarr-python writes them.

>>> value = {"mst": [(0, 1, 0.5)], "by_severity": {3: [1, 2]}, "x": np.float64("nan")}
>>> to_json(value)
{'mst': [{'$tuple': [0, 1, 0.5]}], 'by_severity': {'$items': [[3, [1, 2]]]}, 'x': nan}
>>> from_json(to_json(value))["by_severity"], from_json(to_json(value))["mst"]
({3: [1, 2]}, [(0, 1, 0.5)])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom.store import _guard
from onnx_geom.store._layout import COMPARISON, dimension_names, row_chunks
from onnx_geom.store._zarrarray import open_array
from onnx_geom.store._zarrio import DTYPES, META, group_attrs, remove, write_array, write_group


def to_json(value: Any) -> Any:
    """``value`` as JSON-able Python, losslessly (see the module docstring)."""
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: to_json(v) for k, v in value.items()}
        return {"$items": [[to_json(k), to_json(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"$tuple": [to_json(v) for v in value]}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"$array": to_json(value.ravel().tolist()), "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return to_json(value.item())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a {type(value).__name__} cannot be stored as JSON in a study")


def from_json(value: Any) -> Any:
    """The inverse of :func:`to_json`."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"$tuple"}:
        return tuple(from_json(v) for v in value["$tuple"])
    if set(value) == {"$items"}:
        return {from_json(k): from_json(v) for k, v in value["$items"]}
    if set(value) == {"$array", "dtype", "shape"}:
        return np.array(value["$array"], dtype=np.dtype(value["dtype"])).reshape(value["shape"])
    return {k: from_json(v) for k, v in value.items()}


def is_array(value: Any) -> bool:
    """Whether a field is stored as an array of its own (a numpy array of numbers or booleans, one axis or more)."""
    return isinstance(value, np.ndarray) and value.dtype.name in DTYPES and value.ndim > 0


def split(obj: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A dataclass instance -> (its array fields, the JSON of the others)."""
    arrays, values = {}, {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if is_array(value):
            arrays[f.name] = value
        else:
            values[f.name] = to_json(value)
    return arrays, values


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def join(cls: type, arrays: dict[str, np.ndarray], values: dict[str, Any]) -> Any:
    """The inverse of :func:`split`: an instance of the dataclass ``cls``."""
    return cls(**{name: arrays[name] if name in arrays else from_json(values[name]) for name in field_names(cls)})


def store(folder: Path, obj: Any, fingerprint: Callable[[], str], *, root: Path) -> None:
    """Write the dataclass ``obj`` as the group at ``folder`` of the study at ``root`` (an existing folder, locked
    by the caller), replacing what was there: marked incomplete first, its arrays, then its attributes, synced to
    the disk. ``fingerprint()``: the study's geometry now, for an ``obj`` that does not say which geometry it came
    from."""
    from onnx_geom import __version__

    arrays, values = split(obj)
    write_group(folder, {"complete": False}, root=root)
    for child in _guard.folders(root, folder):
        remove(folder / child, root=root)
    for name, array in arrays.items():
        dims = dimension_names(f"{COMPARISON}/{name}", array.ndim)
        write_array(folder / name, array, dims, root=root, chunks=row_chunks(array.shape, array.itemsize))
    attrs = {
        "complete": True,
        "onnx_geom_version": __version__,
        "parameters": values.get("parameters"),
        "geometry_fingerprint": values.get("geometry_fingerprint") or fingerprint(),
        "arrays": sorted(arrays),
        "fields": values,
    }
    write_group(folder, attrs, root=root, durable=True)


def load(folder: Path, cls: type, parameters: dict[str, Any], fingerprint: str, *, root: Path) -> Any:
    """The dataclass ``cls`` stored at ``folder`` of the study at ``root`` with these ``parameters`` and geometry
    ``fingerprint``, by this version of onnx-geom with these fields; None otherwise (also when its attributes are
    not what :func:`store` writes: a damaged one is computed again), or while another process replaces it."""
    from onnx_geom import __version__

    before = _guard.identity(root, folder / META)
    attrs = group_attrs(folder, root=root)
    if (
        attrs is None
        or attrs.get("complete") is not True
        or attrs.get("onnx_geom_version") != __version__
        or attrs.get("parameters") != parameters
        or attrs.get("geometry_fingerprint") != fingerprint
    ):
        return None
    values, names = attrs.get("fields"), attrs.get("arrays")
    if not isinstance(values, dict) or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    if sorted([*values, *names]) != sorted(field_names(cls)):
        return None  # stored by a version of onnx-geom whose dataclass had other fields
    arrays = {}
    for name in names:
        array = open_array(folder / name, root=root)
        if array is None:
            return None
        arrays[name] = array.read()
    if _guard.identity(root, folder / META) != before:
        return None  # replaced while it was read
    try:
        return join(cls, arrays, values)
    except (TypeError, ValueError, KeyError, AttributeError):
        return None  # fields of the wrong shape: damaged, computed again
