"""Render lists of records (the tables the core returns) as Rich tables; write them as CSV/Parquet streams."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.table import Table


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def records_table(title: str, records: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Table:
    """A Rich table of ``columns`` of ``records``; numbers right-aligned, NaN as ``-``; names (text columns)
    are never cut, a narrow terminal wraps the headers of the numbers instead."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    cells = [[_cell(record.get(name, "")) for name in columns] for record in records]
    for k, name in enumerate(columns):
        numeric = bool(records) and isinstance(records[0].get(name), (int, float)) and not isinstance(records[0].get(name), bool)
        if numeric:     # the numbers and the words of a long header keep their width; the header wraps
            header = name.replace("_", " ")
            widest = max([len(row[k]) for row in cells] + [len(word) for word in header.split()])
            table.add_column(header, justify="right", min_width=widest)
        else:
            table.add_column(name, no_wrap=True)
    for row in cells:
        table.add_row(*row)
    return table


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


def write_columns_csv(path: Path, chunks: Iterable[Mapping[str, np.ndarray]]) -> int:
    """Stream dicts of equal-length columns into one CSV (header from the first chunk); returns rows written."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    rows = 0
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        for i, chunk in enumerate(chunks):
            if i == 0:
                writer.writerow(list(chunk))
            texts = _text_columns(chunk)
            writer.writerows(zip(*texts))
            rows += len(texts[0]) if texts else 0
    os.replace(tmp, path)
    return rows


def write_columns_parquet(path: Path, chunks: Iterable[Mapping[str, np.ndarray]]) -> int:
    """Stream dicts of equal-length columns into one Parquet file (needs pyarrow); returns rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    writer = None
    rows = 0
    try:
        for chunk in chunks:
            table = pa.table({k: (v.tolist() if v.dtype == object else v) for k, v in chunk.items()})
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:
        os.replace(tmp, path)
    return rows
