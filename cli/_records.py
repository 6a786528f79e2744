"""Render lists of records (the tables the core returns) as Rich tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

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
        numeric = (
            bool(records)
            and isinstance(records[0].get(name), (int, float))
            and not isinstance(records[0].get(name), bool)
        )
        if numeric:  # the numbers and the words of a long header keep their width; the header wraps
            header = name.replace("_", " ")
            widest = max([len(row[k]) for row in cells] + [len(word) for word in header.split()])
            table.add_column(header, justify="right", min_width=widest)
        else:
            table.add_column(name, no_wrap=True)
    for row in cells:
        table.add_row(*row)
    return table
