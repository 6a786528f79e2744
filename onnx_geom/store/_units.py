"""What a unit holds: the check of its arrays before it is claimed, the streaming unit writer, the data's
fingerprint.

Private to :mod:`onnx_geom.store`, which re-exports :class:`UnitWriter` and :func:`fingerprint`.

>>> fingerprint(np.zeros((2, 1, 1, 1), np.uint8), np.array([0, 1]))[:12]
'5a0f6fdc76ae'
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom.errors import StudyError
from onnx_geom.store import _zarrio
from onnx_geom.store._layout import dimension_names, row_chunks


def fingerprint(images: Any, labels: np.ndarray, *, rows: int = 4096) -> str:
    """sha256 of the labels and images (streamed in blocks of ``rows``), to recognise the data of a study."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    for start in range(0, len(images), rows):
        digest.update(np.ascontiguousarray(images[start : start + rows], dtype=np.uint8).tobytes())
    return digest.hexdigest()


def check_spec(spec: Mapping[str, tuple[Sequence[int], str]]) -> None:
    """Refuse, before anything is claimed, unit arrays that cannot be stored: scalars and non-numeric dtypes."""
    for name, (shape, dtype) in spec.items():
        if not tuple(shape):
            raise StudyError(f"array '{name}' of a unit must have rows; got a scalar.")
        if np.dtype(dtype).name not in _zarrio.DTYPES:
            raise StudyError(
                f"array '{name}' is {np.dtype(dtype)}; a unit holds numbers or booleans "
                f"({', '.join(sorted(_zarrio.DTYPES))})."
            )


class UnitWriter:
    """Appends rows to the arrays of one unit being written; whole chunks are written as they fill.

    Get one from :meth:`Study.writing`; call :meth:`append` with one keyword per array, in order of rows.
    ``root``: the study's folder (every file is written inside it, never through a link).
    ``group``: the unit's group being written (``"geometry"``), None for the unit itself (it names the arrays'
    dimensions). Chunks are not synced to the disk as they are written (see docs/store.md, "Guarantees").
    """

    def __init__(
        self,
        folder: Path,
        spec: Mapping[str, tuple[Sequence[int], str]],
        *,
        root: Path,
        group: str | None = None,
    ) -> None:
        self._arrays: dict[str, _zarrio.ArrayWriter] = {}
        for name, (declared, kind) in spec.items():
            shape, dtype = tuple(int(s) for s in declared), np.dtype(kind)
            dims = dimension_names(f"{group}/{name}" if group else name, len(shape), unit=True)
            self._arrays[name] = _zarrio.ArrayWriter(
                folder / name, shape, dtype, row_chunks(shape, dtype.itemsize), dims, root=root
            )

    def append(self, **arrays: np.ndarray) -> None:
        """Add the next rows of each named array (``features=(B, D)``, ...)."""
        for name, rows in arrays.items():
            if name not in self._arrays:
                raise KeyError(f"this unit has no array {name!r}; it has {sorted(self._arrays)}")
            self._arrays[name].append(rows)

    def close(self) -> None:
        """Flush what is buffered, check that every row of every array was written, write their metadata (in
        place: the unit, marked incomplete, is what becomes complete)."""
        for writer in self._arrays.values():
            writer.close(atomic=False)
