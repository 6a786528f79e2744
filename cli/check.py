"""``onnx-geom check STUDY [--repair]``: read every array of a study, list what is damaged, mark it for recomputation.

onnx-geom check study            # exit 0: nothing damaged; exit 1: what is damaged, and what to do
onnx-geom check study --repair   # damaged units and geometry marked incomplete: `run` / `metrics` compute them again
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from onnx_geom.cli._console import out, print_json, safe, user_errors
from onnx_geom.cli._options import JsonOption


def check_command(
    study: Annotated[Path, typer.Argument(help="The study folder.", show_default=False)],
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Mark damaged units and geometry incomplete (the next `onnx-geom run` / `onnx-geom metrics` "
            "computes exactly those again), remove damaged labels, images or comparison.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Read every array of every complete unit and group of a study and list what is damaged (exit code 1 when
    something is; with --repair, when something is left that needs you)."""
    with user_errors():
        from onnx_geom.store import Study, check

        report = check(Study.open(study, mode="a" if repair else "r"), repair=repair)
    if as_json:
        print_json(report)
    else:
        _print(report, repair)
    if report["left"] if repair else report["damaged"]:
        raise typer.Exit(1)


def _print(report: dict, repair: bool) -> None:
    damaged = report["damaged"]
    summary = f"checked {report['arrays']} arrays of {report['units']} complete units in {report['path']}"
    if not damaged:
        out.print(safe(f"{summary}: nothing is damaged."), highlight=False, markup=False, soft_wrap=True)
        return
    out.print(safe(f"{summary}: {len(damaged)} damaged."), highlight=False, markup=False, soft_wrap=True)
    for entry in damaged:
        state = "repaired" if entry["repaired"] else ("not repaired" if repair else "to do")
        line = f"damaged: {entry['path']}: {entry['problem']}; {state}: {entry['repair']}."
        out.print(safe(line), highlight=False, markup=False, soft_wrap=True)
    if repair and report["next"]:
        out.print(
            safe("now run " + ", then ".join(report["next"]) + "."), highlight=False, markup=False, soft_wrap=True
        )
    elif not repair and any("--repair" in entry["repair"] for entry in damaged):
        out.print(
            safe(f"run `onnx-geom check {report['path']} --repair` to mark what is damaged for recomputation."),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
