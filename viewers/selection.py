"""The one shared selection of the viewer: samples, models, condition; events fire only on real changes.

>>> sel = Selection(models=("dense",))
>>> seen = []
>>> _ = sel.events.indices.connect(lambda s: seen.append(s.indices.tolist()))
>>> sel.indices = [3, 1, 3]
>>> sel.indices = [1, 3]          # the same set: no event
>>> seen
[[1, 3]]

No Qt and no VisPy here (napari style): views subscribe to these events, and every setter compares before
it stores, which is what keeps linked views from looping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import SimpleNamespace

import numpy as np

from onnx_geom.conditions import CLEAN_CONDITION

__all__ = ["Selection", "Signal"]


class Signal:
    """A list of callbacks called with the selection that changed (``connect``, ``disconnect``, ``emit``)."""

    def __init__(self) -> None:
        self._callbacks: list[Callable] = []

    def connect(self, callback: Callable) -> Callable:
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, value) -> None:
        for callback in list(self._callbacks):
            callback(value)

    def __len__(self) -> int:
        return len(self._callbacks)


def _as_indices(values: Iterable[int] | np.ndarray | None) -> np.ndarray:
    if values is None:
        return np.zeros(0, np.int64)
    arr = np.unique(np.asarray(values, dtype=np.int64).ravel())
    arr.setflags(write=False)
    return arr


class Selection:
    """What the user picked: ``indices`` (sorted unique sample ids), ``focus`` (one sample for attribution),
    ``models`` (one or two model names: two means "show the shift from the first to the second"),
    ``condition`` (corruption, severity; ``("clean", 0)`` is clean) and ``shift_from_clean`` (with one model
    and a corruption, show the shift from clean data to it).

    ``classes`` (sorted unique class ids: the class picker; the local view colours their samples, the global
    view shows their axes) and ``color_by`` (how samples are coloured: ``auto``, ``class``, ``correct``,
    ``margin`` or ``group``, see :mod:`onnx_geom.viewers.classes`).

    Events (``selection.events.<name>.connect(callback)``, called with the selection): ``indices``, ``focus``,
    ``models``, ``condition``, ``shift_from_clean``, ``classes``, ``color_by``.
    """

    def __init__(
        self,
        *,
        models: Iterable[str] = (),
        condition: tuple[str, int] = CLEAN_CONDITION,
        indices: Iterable[int] | None = None,
        shift_from_clean: bool = False,
        classes: Iterable[int] | None = None,
        color_by: str = "auto",
    ) -> None:
        self.events = SimpleNamespace(
            indices=Signal(),
            focus=Signal(),
            models=Signal(),
            condition=Signal(),
            shift_from_clean=Signal(),
            classes=Signal(),
            color_by=Signal(),
        )
        self._indices = _as_indices(indices)
        self._focus: int | None = int(self._indices[0]) if self._indices.size else None
        self._models = tuple(models)[:2]
        self._condition = (str(condition[0]), int(condition[1]))
        self._shift = bool(shift_from_clean)
        self._classes = _as_indices(classes)
        self._color_by = "auto"
        self.color_by = color_by  # checked; nobody listens yet

    # -- samples ---------------------------------------------------------------------------------------------
    @property
    def indices(self) -> np.ndarray:
        """(S,) int64, sorted, read-only."""
        return self._indices

    @indices.setter
    def indices(self, values) -> None:
        new = _as_indices(values)
        if np.array_equal(new, self._indices):
            return
        self._indices = new
        self.events.indices.emit(self)
        if self._focus is None or not np.isin(self._focus, new):
            self.focus = int(new[0]) if new.size else None

    @property
    def focus(self) -> int | None:
        return self._focus

    @focus.setter
    def focus(self, value: int | None) -> None:
        value = None if value is None else int(value)
        if value == self._focus:
            return
        self._focus = value
        self.events.focus.emit(self)

    # -- models and condition ----------------------------------------------------------------------------------
    @property
    def models(self) -> tuple[str, ...]:
        return self._models

    @models.setter
    def models(self, values: Iterable[str]) -> None:
        new = tuple(dict.fromkeys(str(v) for v in values))[:2]
        if new == self._models:
            return
        self._models = new
        self.events.models.emit(self)

    @property
    def condition(self) -> tuple[str, int]:
        return self._condition

    @condition.setter
    def condition(self, value: tuple[str, int]) -> None:
        new = (str(value[0]), int(value[1]))
        if new == self._condition:
            return
        self._condition = new
        self.events.condition.emit(self)

    @property
    def shift_from_clean(self) -> bool:
        return self._shift

    @shift_from_clean.setter
    def shift_from_clean(self, value: bool) -> None:
        if bool(value) == self._shift:
            return
        self._shift = bool(value)
        self.events.shift_from_clean.emit(self)

    # -- classes and colouring ---------------------------------------------------------------------------------
    @property
    def classes(self) -> np.ndarray:
        """(P,) int64 picked class ids, sorted, read-only."""
        return self._classes

    @classes.setter
    def classes(self, values) -> None:
        new = _as_indices(values)
        if np.array_equal(new, self._classes):
            return
        self._classes = new
        self.events.classes.emit(self)

    @property
    def color_by(self) -> str:
        return self._color_by

    @color_by.setter
    def color_by(self, value: str) -> None:
        from onnx_geom.viewers.classes import COLOR_MODES

        value = str(value)
        if value not in COLOR_MODES:
            from onnx_geom.errors import DataError

            raise DataError(f"unknown colouring {value!r}; choose one of {', '.join(COLOR_MODES)}.")
        if value == self._color_by:
            return
        self._color_by = value
        self.events.color_by.emit(self)

    def shift_pair(self) -> tuple[tuple[str, str, int], tuple[str, str, int]] | None:
        """The two (model, corruption, severity) units whose per-sample shift is shown, or None.

        >>> Selection(models=("a", "b"), condition=("fog", 2)).shift_pair()
        (('a', 'fog', 2), ('b', 'fog', 2))
        """
        c, s = self._condition
        if len(self._models) == 2:
            return (self._models[0], c, s), (self._models[1], c, s)
        if self._shift and self._models and self._condition != CLEAN_CONDITION:
            return (self._models[0], *CLEAN_CONDITION), (self._models[0], c, s)
        return None
