"""Tables as records: JSON-safe conversion and CSV writing (the I/O edge of the comparison tables).

Every writer checks its path first (:func:`onnx_geom._files.check_output`: never inside a study, a file where a
file belongs, a folder that can be written) and replaces the file whole; an ``OSError`` while writing is an
:class:`~onnx_geom.errors.OutputError` (one sentence).

>>> jsonable({"a": np.float32(1.5), "b": [np.nan, np.int64(2)], "c": np.arange(2)})
{'a': 1.5, 'b': [None, 2], 'c': [0, 1]}
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom._files import check_output, output_errors, replacing
from onnx_geom.errors import DataError

__all__ = [
    "jsonable",
    "matrix_records",
    "require_pyarrow",
    "write_columns_csv",
    "write_columns_parquet",
    "write_csv",
    "write_json",
    "write_parquet",
]


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


def require_pyarrow() -> None:
    """Raise a one-sentence :class:`DataError` when pyarrow (Parquet output) is not installed."""
    if importlib.util.find_spec("pyarrow") is None:
        raise DataError("Parquet output needs pyarrow, which is not installed; `pip install pyarrow`, or write CSV.")


def _atomic_text(path: str | os.PathLike, write) -> Path:
    path = check_output(path)
    with output_errors(path), replacing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        write(handle)
    return Path(path)


def write_csv(path: str | os.PathLike, records: Sequence[Mapping[str, Any]]) -> Path:
    """Write records as CSV (header: the keys in first-seen order); atomic replace."""
    fields = list(dict.fromkeys(k for r in records for k in r))

    def write(handle):
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({k: ("" if v is None else v) for k, v in jsonable(dict(record)).items()})

    return _atomic_text(path, write)


def write_parquet(path: str | os.PathLike, records: Sequence[Mapping[str, Any]]) -> Path:
    """Write records as one Parquet table (columns in first-seen key order, NaN kept; needs pyarrow); atomic."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = list(dict.fromkeys(k for r in records for k in r))
    plain = [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in ((k, r.get(k)) for k in fields)} for r in records
    ]  # numpy scalars -> Python; NaN stays NaN (Parquet has a place for it)
    path = check_output(path)
    with output_errors(path), replacing(path) as tmp:
        pq.write_table(pa.Table.from_pylist(plain) if plain else pa.table({}), tmp)
    return Path(path)


def _text_columns(columns: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    out = []
    for values in columns.values():
        values = np.asarray(values)
        if values.dtype.kind == "f":
            out.append(np.char.mod("%.7g", values.astype(np.float64)))
        elif values.dtype.kind == "b":
            out.append(np.where(values, "true", "false"))
        else:
            out.append(values.astype(str))
    return out


def write_columns_csv(path: str | os.PathLike, chunks: Iterable[Mapping[str, np.ndarray]]) -> int:
    """Stream dicts of equal-length columns into one CSV (header from the first chunk); returns rows written."""
    rows = 0
    path = check_output(path)
    with output_errors(path), replacing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        for i, chunk in enumerate(chunks):
            if i == 0:
                writer.writerow(list(chunk))
            texts = _text_columns(chunk)
            writer.writerows(zip(*texts, strict=True))
            rows += len(texts[0]) if texts else 0
    return rows


def write_columns_parquet(path: str | os.PathLike, chunks: Iterable[Mapping[str, np.ndarray]]) -> int:
    """Stream dicts of equal-length columns into one Parquet file (needs pyarrow); returns rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    rows = 0
    path = check_output(path)
    with output_errors(path), replacing(path) as tmp:
        try:
            for chunk in chunks:
                table = pa.table({k: (v.tolist() if v.dtype == object else v) for k, v in chunk.items()})
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()
    return rows


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
