"""``onnx-geom view STUDY``: the interactive viewer, or a headless screenshot of it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from onnx_geom.cli._console import err, out, user_errors
from onnx_geom.errors import DataError
from onnx_geom.viewers import PANELS  # numpy only: VisPy and Qt load inside the command


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x800"`` -> (1280, 800).

    >>> parse_size("640X480")
    (640, 480)
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise DataError(f"size {text!r} is not WIDTHxHEIGHT; write it like 1280x800.")
    return int(match[1]), int(match[2])


def view(
    study: Annotated[
        Path, typer.Argument(help="The study folder (written by `onnx-geom run`, with `onnx-geom metrics` run on it).")
    ],
    screenshot: Annotated[
        Path | None,
        typer.Option("--screenshot", help="Render to this PNG without a display (EGL) and exit.", dir_okay=False),
    ] = None,
    panel: Annotated[str | None, typer.Option("--panel", help=f"Only this panel: {', '.join(PANELS)}.")] = None,
    size: Annotated[str, typer.Option("--size", help="Image or window size, WIDTHxHEIGHT.")] = "1280x800",
) -> None:
    """Open the linked views of a study (accuracy table, model map, local/global geometry, attribution,
    samples), or write a screenshot of them."""
    with user_errors():
        width, height = parse_size(size)
        if panel is not None and panel not in PANELS:
            raise DataError(f"unknown panel {panel!r}; choose one of {', '.join(PANELS)}.")
        if not study.is_dir():
            from onnx_geom.errors import StudyNotFoundError

            raise StudyNotFoundError(f"study {study} does not exist; give the folder `onnx-geom run -o` wrote.")
        if screenshot is not None:
            from onnx_geom.viewers import screenshot as take

            path = take(study, screenshot, panel=panel, size=(width, height))
            out.print(f"wrote {path}")
            return
        if panel is not None:
            err.print("--panel only applies with --screenshot; opening the whole window.")
        from onnx_geom.viewers import show

        show(study, size=(width, height))
