"""``onnx-geom view STUDY``: the interactive viewer, or a headless screenshot of it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from onnx_geom.cli._console import err, out, user_errors, warn
from onnx_geom.cli._options import Attribution, Panel, Size, plain, size_option


def view(
    study: Annotated[
        Path,
        typer.Argument(
            exists=True,
            file_okay=False,
            help="The study folder (written by `onnx-geom run`, with `onnx-geom metrics` run on it).",
        ),
    ],
    screenshot: Annotated[
        Path | None,
        typer.Option("--screenshot", help="Render to this PNG without a display (EGL) and exit."),
    ] = None,
    panel: Annotated[Panel | None, typer.Option("--panel", help="Only this panel (with --screenshot).")] = None,
    size: Annotated[Size, size_option("Image or window size, WIDTHxHEIGHT.")] = "1280x800",  # type: ignore[assignment]
    attribution: Annotated[
        Attribution,
        typer.Option(
            help="What the attribution panel shows: the exact linear decomposition of the margin, cos (angle to "
            "the true class), length, the true or the predicted logit, for the selected model and the reference "
            "side by side; or occlusion patches."
        ),
    ] = "margin",  # type: ignore[assignment]
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference",
            "-r",
            help="The model the others are compared with, in the attribution panel and the comparison (default: "
            "the one tagged dense, else the first; a comparison `onnx-geom compare -r` stored is reused).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Open the linked views of a study (accuracy table, model map, local/global geometry, attribution,
    samples), or write a screenshot of them."""
    with user_errors():
        from onnx_geom.errors import DataError
        from onnx_geom.store import Study, left_out, left_out_sentences

        if screenshot is not None:
            from onnx_geom._files import check_output

            check_output(screenshot, inputs=(study,))  # before the study is read: not into it, not a folder
        opened = Study.open(study)
        for sentence in left_out_sentences(left_out(opened)):
            warn(sentence)
        if reference is not None and reference not in opened.models:
            raise DataError(
                f"reference model {reference!r} is not in the study; choose one of {', '.join(opened.models)}."
            )
        shown = {"size": tuple(size), "attribution": plain(attribution), "reference": reference}
        if screenshot is not None:
            from onnx_geom.viewers import screenshot as take

            path = take(opened, screenshot, panel=plain(panel), **shown)
            out.print(f"wrote {path}")
            return
        if panel is not None:
            err.print("--panel only applies with --screenshot; opening the whole window.")
        from onnx_geom.viewers import show

        show(opened, **shown)
