"""Consoles and the one rule for user errors: one sentence on stderr, exit code 1, no traceback."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from onnx_geom.errors import OnnxGeomError

# piped output (a log, a file) is not wrapped by a terminal: give tables room instead of rich's 80 columns
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120
out = Console(width=_WIDTH)
err = Console(stderr=True)


def print_json(data: Any) -> None:
    """``data`` as JSON on stdout, printed plainly (no Rich highlighting, no wrapping of long strings), so what a
    pipe or a file gets is valid JSON: NaN and infinities become null and numpy values plain numbers
    (:func:`onnx_geom.records.jsonable`), paths strings. The one JSON printer of every ``--json``."""
    from onnx_geom.records import jsonable

    print(json.dumps(jsonable(data), indent=2, allow_nan=False, default=os.fspath), flush=True)


def safe(text: object) -> str:
    """``text`` with every control character (C0 with newline and tab, DEL, C1) written as an escape: what a study,
    a file name or a model's metadata holds can neither break a line nor send a terminal escape sequence.

    >>> safe("m\\x1b[2J\\nx"), safe("tab\\there")
    ('m\\\\x1b[2J\\\\nx', 'tab\\\\there')
    """
    return "".join(c if not (ord(c) < 32 or 127 <= ord(c) < 160) else ascii(c)[1:-1] for c in str(text))


def warn_nonfinite(counts: dict[str, int], n: int) -> None:
    """One warning per model whose units hold samples the model gave NaN or infinite outputs for.

    ``counts``: ``{"model/corruption/severity": samples}`` (units without any left out); ``n``: samples per unit.
    """
    by_model: dict[str, list[tuple[str, int]]] = {}
    for unit, count in counts.items():
        model, _, condition = unit.partition("/")
        by_model.setdefault(model, []).append((condition, count))
    for model, units in by_model.items():
        shown = ", ".join(f"{c} ({k} of {n})" for c, k in units[:4]) + (
            f" and {len(units) - 4} more" if len(units) > 4 else ""
        )
        warn(
            f"model {model} gave NaN or infinite outputs for some images under {shown}; they count as wrong and are "
            "left out of the geometry (a float16 overflow? run without --fp16, or check the model)."
        )


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as an error and return the Exit to raise: ``raise fail("no such file")``."""
    err.print(f"[bold red]error:[/] {escape(safe(message))}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def warn(message: str) -> None:
    """Print ``message`` (one sentence) as a warning on stderr: something was left out, the command went on."""
    err.print(f"[bold yellow]warning:[/] {escape(safe(message))}", highlight=False, soft_wrap=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn an :class:`OnnxGeomError` (and Ctrl-C) into one clear line and a non-zero exit.

    >>> with user_errors():   # in a command body
    ...     pass
    """
    try:
        yield
    except OnnxGeomError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        raise fail("interrupted; everything completed so far is kept.", code=130) from None
