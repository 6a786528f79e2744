"""Conditions: the clean data, or one corruption at one severity; and the one way to write them as text.

A condition is a ``(corruption, severity)`` pair; the clean data is ``(CLEAN, 0)``. Severities of corruptions are
1 to 5. On the command line a list of severities is written ``1-5`` or ``1,3,5`` (or a mix: ``1,3-5``), and a
condition ``fog/3`` or ``clean``.

>>> parse_severities("1,3-5"), parse_severities("5,1")
([1, 3, 4, 5], [1, 5])
>>> parse_condition("fog/3"), parse_condition("clean"), condition_name("fog", 3)
(('fog', 3), ('clean', 0), 'fog/3')
"""

from __future__ import annotations

import re

from onnx_geom.errors import DataError

__all__ = ["CLEAN", "CLEAN_CONDITION", "SEVERITIES", "condition_name", "parse_condition", "parse_severities"]

#: The corruption name of the clean data (its severity is 0).
CLEAN = "clean"
#: The clean data as a condition.
CLEAN_CONDITION = (CLEAN, 0)
#: The severities of every corruption.
SEVERITIES = (1, 2, 3, 4, 5)
_SPAN = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


def parse_severities(text: str) -> list[int]:
    """Severities from ``"1-5"``, ``"1,3,5"`` or a mix (``"1,3-5"``): sorted, each once, each in 1..5.

    Raises :class:`DataError` with one sentence on anything else.
    """
    values: set[int] = set()
    for part in str(text).split(","):
        match = _SPAN.fullmatch(part)
        if match is None or int(match[1]) > int(match[2] or match[1]):
            raise DataError(f"severities must look like 1-5 or 1,3,5, not {text!r}.")
        values.update(range(int(match[1]), int(match[2] or match[1]) + 1))
    if not values or not values <= set(SEVERITIES):
        raise DataError(f"severities must be between 1 and 5 (like 1-5 or 1,3,5), not {text!r}.")
    return sorted(values)


def parse_condition(text: str) -> tuple[str, int]:
    """``"fog/3"`` -> ``("fog", 3)``; ``"clean"`` (or ``"clean/0"``) -> ``("clean", 0)``."""
    name, sep, level = str(text).strip().partition("/")
    if name == CLEAN and level in ("", "0"):
        return CLEAN, 0
    try:
        severity = int(level)
    except ValueError:
        severity = -1
    if not name or not sep or name == CLEAN or severity not in SEVERITIES:
        raise DataError(
            f"a condition is written CORRUPTION/SEVERITY (like fog/3, severity 1-5) or clean, not {text!r}."
        )
    return name, severity


def condition_name(corruption: str, severity: int) -> str:
    """The text form of a condition: ``"fog/3"``, or ``"clean"``."""
    return CLEAN if corruption == CLEAN else f"{corruption}/{int(severity)}"
