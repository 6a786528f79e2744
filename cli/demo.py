"""``onnx-geom demo``: the whole story on the bundled zoo, its report, then the viewer (or its screenshots when
headless).

onnx-geom demo                      # probe, sweep 19 corruptions x 5 severities, metrics, compare, report, view
onnx-geom demo --headless -o out    # the same, writing PNGs of every view instead of opening a window
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from onnx_geom.cli._console import err, out, print_json, user_errors, warn
from onnx_geom.cli._options import JsonOption, SeveritiesOption, corruptions_option, parse_corruptions


def _has_display() -> bool:
    """An X or Wayland display to open the window on (otherwise the demo writes screenshots, and does not block
    on an offscreen Qt platform)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _headline(result: Any) -> Table:
    """One row per model: pruning method and sparsity, clean and mean corruption accuracy, nearest model."""
    from onnx_geom.demo.pipeline import nearest_models

    comparison = result.comparison
    nearest = {m: n for m, n, _ in nearest_models(comparison)}
    table = Table(
        title="accuracy % clean and mean over corruptions; relative drop; nearest model "
        f"({comparison.distance_name} distance)",
        title_justify="left",
    )
    for name, justify in [("model", "left"), ("pruning", "left"), ("clean", "right"), ("corrupted", "right"),
                          ("drop", "right"), ("nearest", "left")]:  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=name in ("model", "nearest"))  # type: ignore[arg-type]
    for row in comparison.summary:
        model, tags = row["model"], comparison.tags.get(row["model"], {})
        pruning = f"{tags.get('method', '-')} {100 * float(tags.get('sparsity', 0)):.0f}%"
        table.add_row(escape(model), escape(pruning), f"{100 * row['clean_accuracy']:.1f}",
                      f"{100 * row['mean_corruption_accuracy']:.1f}", f"{100 * row['relative_drop']:.1f}%",
                      escape(nearest.get(model, "-")))  # fmt: skip
    return table


def demo(
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Folder for probes, the study, tables, the report and screenshots (reused when run again).",
        ),
    ] = Path("onnx-geom-demo"),
    headless: Annotated[
        bool,
        typer.Option(
            "--headless",
            help="Write screenshots of every view instead of opening the window (automatic without a display).",
        ),
    ] = False,
    models: Annotated[str | None, typer.Option(help="Comma-separated zoo models (default: all 14).")] = None,
    corruptions: Annotated[list[str] | None, corruptions_option(clean_only=False)] = None,
    severities: SeveritiesOption = "1-5",
    limit: Annotated[int | None, typer.Option(help="Use only the first N of the 359 test images.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the whole pipeline on the bundled mini zoo (scikit-learn digits; a dense CNN, 12 pruned ones and an
    MLP), write its report (report.html in the output folder), then open the viewer on it; nothing is downloaded."""
    with user_errors():
        from onnx_geom._files import check_output
        from onnx_geom.conditions import parse_severities
        from onnx_geom.demo.pipeline import check_folder, run_demo

        sevs, chosen = parse_severities(severities), parse_corruptions(corruptions)
        check_folder(output)  # before anything is made: not in a study, not a file, not another study inside
        check_output(output / "report.html")
        if headless or not _has_display():
            check_output(output / "screenshots", kind="folder")
        columns = (TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=True, disable=as_json or not err.is_terminal) as bar:
            tasks: dict[str, Any] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            result = run_demo(output, models=_split(models), corruptions=chosen, severities=sevs,
                              limit=limit, progress=progress)  # fmt: skip

        from onnx_geom.report import write_report
        from onnx_geom.viewers import ViewerData

        data = ViewerData.from_study(result.study, comparison=result.comparison)  # read once for all figures
        shots: list[Path] = []
        window = None
        if headless or not _has_display():
            from onnx_geom.viewers import PANELS, screenshot

            folder = output / "screenshots"
            for name in ("window", *PANELS):
                shots.append(screenshot(data, folder / f"{name}.png", panel=None if name == "window" else name))
        else:
            from onnx_geom.viewers.window import make_window

            # built (not shown) before the report: VisPy keeps the first backend a process picks, and the report's
            # figures render offscreen through the window's Qt backend as well as through EGL
            window = make_window(data)
        report = write_report(result.study, output / "report.html", comparison=result.comparison, data=data)
        if not as_json:
            for note in report.notes:
                warn(note)
        if as_json:
            print_json({"study": str(result.study), "seconds": result.seconds, "accuracy": result.sweep["accuracy"],
                        "screenshots": [str(p) for p in shots], "report": str(report.path),
                        "report_notes": report.notes})  # fmt: skip
        else:
            out.print(_headline(result))
            ranks = [f"{c['clean_geometry'].replace('_', ' ')} {c['spearman']:+.2f}" for c in result.comparison.correlations
                     if c["models"] >= 3]  # fmt: skip
            if ranks:
                out.print(
                    f"clean geometry vs relative drop, Spearman across models: {', '.join(ranks)}",
                    highlight=False,
                    soft_wrap=True,
                )
            timing = ", ".join(f"{stage} {s:.1f} s" for stage, s in result.seconds.items())
            out.print(f"study: {escape(str(result.study))}  tables: {escape(str(output / 'compare'))}  ({timing})",
                      highlight=False, soft_wrap=True)  # fmt: skip
            if shots:
                out.print(f"screenshots: {escape(str(shots[0].parent))}/ ({', '.join(p.name for p in shots)})",
                          highlight=False, soft_wrap=True)  # fmt: skip
            out.print(f"report: {escape(str(report.path))} (findings, tables and figures in one file; open it in any "
                      "browser)", highlight=False, soft_wrap=True)  # fmt: skip
        if window is not None:
            from vispy import app

            window.show()
            app.run()
