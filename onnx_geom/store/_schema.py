"""What the attributes of a study's groups must hold: checked whenever they are read.

Private to :mod:`onnx_geom.store`. A study is untrusted input: its ``zarr.json`` files may have been edited,
damaged or written by someone else. Each check names the file and the key that is wrong, in one sentence that
says what to do (:class:`StudyError`); a key a check does not know is left alone (zarr-python and xarray users
may add their own). Strings that onnx-geom prints must not hold control characters (a terminal escape sequence
in a name could rewrite what ``onnx-geom info`` shows).

>>> try:
...     check_unit({"complete": "yes"}, "s/models/m/fog/1/zarr.json")
... except StudyError as err:
...     print(err.problem)
s/models/m/fog/1/zarr.json: the key 'complete' must be true or false, not 'yes'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from onnx_geom.errors import StudyError
from onnx_geom.store._layout import NAME_MAX, NAME_RULE, shown, valid_name


class Damaged(StudyError):
    """Something in a study is damaged: ``problem`` says what and where, ``fix`` what to do; said as one sentence
    (``onnx-geom check`` lists the problems with fixes of its own)."""

    def __init__(self, problem: str, fix: str, why: str = "the study's metadata is damaged") -> None:
        self.problem, self.fix = problem, fix
        super().__init__(f"{problem}; {why}: {fix}.")


def problem_of(error: Exception) -> str:
    """What is wrong, without what to do (a :class:`Damaged`'s problem, else the sentence)."""
    return error.problem if isinstance(error, Damaged) else str(error).rstrip(".")


#: What to do about damaged metadata, by where it is.
FIX_ROOT = "restore the study folder from a copy, or make a new study with `onnx-geom run ... -o NEW`"
FIX_MODEL = "run `onnx-geom run` with this model (NAME=PROBE) and the same data again to rewrite it"
FIX_UNIT = "run `onnx-geom check STUDY --repair`, then the same `onnx-geom run` (and `onnx-geom metrics`) again"


def printable(value: Any) -> bool:
    """A string without control characters (C0, DEL, C1)."""
    return isinstance(value, str) and not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ints(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(_int(x) and x >= low for x in v)


_TEXT = ("a string without control characters", printable)
_OPTIONAL_TEXT = ("a string without control characters, or null", lambda v: v is None or printable(v))
_OBJECT = ("an object", lambda v: isinstance(v, dict))
_NAMES = (
    f"a list of names ({NAME_RULE}, at most {NAME_MAX} characters)",
    lambda v: isinstance(v, list) and all(valid_name(x) for x in v),
)
_SHA = (
    "a hexadecimal sha256",
    lambda v: isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v),
)

ROOT: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "onnx_geom_version": _TEXT,
    "format": ("an integer", _int),
    "dataset": _OBJECT,
    "corruptions": _NAMES,
    "severities": ("a list of integers of at least 0", _ints(0)),
    "profile": _OPTIONAL_TEXT,
    "seed": ("an integer", _int),
    "corrupted": ("an object or null", lambda v: v is None or isinstance(v, dict)),
}
DATASET: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "name": _TEXT,
    "n": ("an integer of at least 0", lambda v: _int(v) and v >= 0),
    "image_shape": ("a list of three positive integers", lambda v: _ints(1)(v) and len(v) == 3),
    "class_names": (
        "a list of strings without control characters",
        lambda v: isinstance(v, list) and all(map(printable, v)),
    ),
    "sha256": _SHA,
}
REQUIRED_ROOT = ("onnx_geom_version", "dataset")
REQUIRED_DATASET = ("n",)
MODEL: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "probe": _OBJECT,
    "probe_path": ("a string", lambda v: isinstance(v, str)),
    "tags": _OBJECT,
    "head_sha256": _SHA,
}
UNIT: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "complete": ("true or false", lambda v: isinstance(v, bool)),
    "writer": _OBJECT,
    "completion": _TEXT,
}
WRITER: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "pid": ("an integer", _int),
    "host": _TEXT,
    "started": _TEXT,
    "node": _TEXT,
}


def _check(
    attrs: Mapping[str, Any],
    schema: Mapping[str, tuple[str, Callable[[Any], bool]]],
    file: Any,
    fix: str,
    *,
    required: tuple[str, ...] = (),
    prefix: str = "",
) -> None:
    for key in required:
        if key not in attrs:
            raise Damaged(f"{file}: the key {prefix + key!r} is missing", fix)
    for key, (what, ok) in schema.items():
        if key in attrs and not ok(attrs[key]):
            raise Damaged(f"{file}: the key {prefix + key!r} must be {what}, not {shown(attrs[key])}", fix)


def check_root(attrs: Mapping[str, Any], file: Any) -> dict[str, Any]:
    """The root's attributes, checked (``file``: its ``zarr.json``, for the message)."""
    _check(attrs, ROOT, file, FIX_ROOT, required=REQUIRED_ROOT)
    _check(attrs["dataset"], DATASET, file, FIX_ROOT, required=REQUIRED_DATASET, prefix="dataset.")
    return dict(attrs)


def check_model(attrs: Mapping[str, Any], file: Any) -> dict[str, Any]:
    """A model group's attributes, checked."""
    _check(attrs, MODEL, file, FIX_MODEL)
    return dict(attrs)


def check_unit(attrs: Mapping[str, Any], file: Any) -> dict[str, Any]:
    """A unit's (or a group inside it: geometry) attributes, checked."""
    _check(attrs, UNIT, file, FIX_UNIT)
    if "writer" in attrs:
        _check(attrs["writer"], WRITER, file, FIX_UNIT, prefix="writer.")
    return dict(attrs)
