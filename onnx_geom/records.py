"""Tables as records: JSON-safe conversion and CSV writing (the I/O edge of the comparison tables).

>>> jsonable({"a": np.float32(1.5), "b": [np.nan, np.int64(2)], "c": np.arange(2)})
{'a': 1.5, 'b': [None, 2], 'c': [0, 1]}
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["jsonable", "write_csv", "write_parquet", "write_json", "matrix_records"]


def jsonable(obj: Any) -> Any:
    """Plain Python (dict, list, str, int, float, bool, None) from numpy scalars/arrays; NaN and inf -> None."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _atomic_text(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        write(handle)
    os.replace(tmp, path)
    return path


def write_csv(path: str | os.PathLike, records: Sequence[Mapping[str, Any]], *,
              fieldnames: Sequence[str] | None = None) -> Path:
    """Write records as CSV (header from ``fieldnames`` or the keys in first-seen order); atomic replace."""
    fields = list(fieldnames) if fieldnames is not None else list(dict.fromkeys(k for r in records for k in r))

    def write(handle):
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({k: ("" if v is None else v) for k, v in jsonable(dict(record)).items()})

    return _atomic_text(Path(path), write)


def write_parquet(path: str | os.PathLike, records: Sequence[Mapping[str, Any]]) -> Path:
    """Write records as one Parquet table (columns in first-seen key order, NaN kept; needs pyarrow); atomic."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in records for k in r))
    plain = [{k: r.get(k) for k in fields} for r in (_plain(dict(r)) for r in records)]
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(pa.Table.from_pylist(plain) if plain else pa.table({}), tmp)
    os.replace(tmp, path)
    return path


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars -> Python scalars (NaN stays a float NaN: Parquet has a place for it)."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in record.items()}


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``jsonable(obj)`` as indented JSON; atomic replace."""
    return _atomic_text(Path(path), lambda handle: json.dump(jsonable(obj), handle, indent=1))


def matrix_records(names: Iterable[str], matrix: np.ndarray, *, key: str = "name") -> list[dict[str, Any]]:
    """A square matrix as wide records: ``[{key: row_name, col_name: value, ...}, ...]``.

    >>> matrix_records(["a", "b"], np.eye(2), key="model")[1]
    {'model': 'b', 'a': 0.0, 'b': 1.0}
    """
    names = list(names)
    return [{key: row, **{col: float(matrix[i, j]) for j, col in enumerate(names)}} for i, row in enumerate(names)]
