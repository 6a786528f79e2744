"""``onnx-geom report STUDY -o report.html``: one self-contained HTML file of a study's findings, tables and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from onnx_geom.cli._console import out, print_json, safe, user_errors, warn
from onnx_geom.cli._options import JsonOption


def report_command(
    study: Annotated[
        Path,
        typer.Argument(
            exists=True,
            file_okay=False,
            help="The study folder, with its geometry (`onnx-geom metrics`); only read.",
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The HTML file to write (never inside a study)."),
    ] = Path("report.html"),
    reference: Annotated[
        str | None,
        typer.Option("--reference", "-r", help="The reference model (default: the one tagged dense, else the first)."),
    ] = None,
    figures: Annotated[
        bool,
        typer.Option(
            "--figures/--no-figures",
            help="Embed the viewer's headless screenshots (needs the [viewer] extra and EGL); thumbnails stay.",
        ),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Write one self-contained HTML report of a study: the findings written from its tables (every number names
    its table), the evaluation table and heatmap, the model map with its tree, local and global geometry of the
    reference and of the least and most robust models under their worst condition, attribution maps of the most
    fragile samples, robust and fragile samples, and every table (sortable). Figures are embedded; the file
    fetches nothing and opens offline in any browser.

    The study's stored comparison (`onnx-geom compare`) is used while it is fresh; otherwise one is computed for
    the report (the study is not written).
    """
    with user_errors():
        from onnx_geom._files import check_output
        from onnx_geom.report import write_report
        from onnx_geom.store import Study, left_out, left_out_sentences

        check_output(output, inputs=(study,))  # before the study is read: not into it, not a folder
        opened = Study.open(study)
        for sentence in left_out_sentences(left_out(opened)):
            warn(sentence)
        result = write_report(opened, output, reference=reference, figures=figures)
        for note in result.notes:
            warn(note)
        if as_json:
            print_json(
                {
                    "report": str(result.path),
                    "bytes": result.bytes,
                    "figures": result.figures,
                    "findings": result.findings,
                    "notes": result.notes,
                    "stored_comparison": result.stored_comparison,
                }
            )
            return
        size = f"{result.bytes / 1e6:.1f} MB" if result.bytes >= 1e5 else f"{result.bytes / 1e3:.0f} kB"
        out.print(
            f"wrote {safe(result.path)} ({size}, {result.figures} figures, {len(result.findings)} findings); "
            "open it in any browser, it needs no network",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
