"""``onnx-geom metrics STUDY``: per-sample geometry of every complete unit, stored in the study; summaries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from onnx_geom.cli._console import err, fail, out, print_json, user_errors, warn, warn_nonfinite
from onnx_geom.cli._options import JsonOption

_SUMMARY = ("model", "corruption", "severities", "accuracy", "mean_length", "mean_angle", "mean_margin")
_HEADERS = ("model", "corruption", "severity", "acc", "length", "angle", "margin")


def _span(severities: list[int]) -> str:
    """Severities as a short label.

    >>> _span([1, 2, 3, 4, 5]), _span([1, 3, 5]), _span([0])
    ('1-5', '1,3,5', '0')
    """
    if len(severities) > 2 and severities == list(range(severities[0], severities[-1] + 1)):
        return f"{severities[0]}-{severities[-1]}"
    return ",".join(map(str, severities))


def _by_corruption(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model x corruption: the mean over severities of each unit's accuracy and means (equal N per unit)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["corruption"]), []).append(row)
    merged = []
    for (model, corruption), group in groups.items():
        record = {
            "model": model,
            "corruption": corruption,
            "severities": _span(sorted(int(r["severity"]) for r in group)),
        }
        for key in _SUMMARY[3:]:
            record[key] = sum(r[key] for r in group) / len(group)
        merged.append(record)
    return merged


def metrics(
    study: Annotated[Path, typer.Argument(help="The study folder written by `onnx-geom run -o STUDY`.")],
    as_json: JsonOption = False,
    csv_path: Annotated[
        Path | None,
        typer.Option("--csv", help="Also write the per-sample table (one row per model x unit x sample) as CSV."),
    ] = None,
    parquet_path: Annotated[
        Path | None,
        typer.Option("--parquet", help="Also write the per-sample table as Parquet (needs pyarrow)."),
    ] = None,
) -> None:
    """Compute length, angles, margin and correctness per sample for every unit and store them in the study.

    Resumable: units whose geometry is already stored are skipped. Prints accuracy and mean length, angle to
    the true class and margin per model x corruption (averaged over severities). The margin is the signed
    distance from f to the nearest pairwise decision boundary between the true class and another class
    (negative when misclassified); for a misclassified sample it is the distance to the nearest such boundary, a
    lower bound on the distance to the true class's region.
    """
    with user_errors():
        from onnx_geom._files import check_output
        from onnx_geom.records import require_pyarrow

        for path in (csv_path, parquet_path):  # before any geometry is computed: not into the study, not a folder
            if path is not None:
                check_output(path, inputs=(study,))
        if parquet_path is not None:
            require_pyarrow()
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from onnx_geom.metrics import compute_metrics, sample_records
        from onnx_geom.store import Study

        handle = Study.open(study, mode="a")
        columns = (
            TextColumn("geometry"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err, transient=True, disable=as_json) as bar:
            task = bar.add_task("", total=None)

            def progress(unit, done: int, total: int) -> None:
                bar.update(
                    task, completed=done, total=total, description=f"{unit.model}/{unit.corruption}/{unit.severity}"
                )

            rows = compute_metrics(handle, progress=progress)
        for reason in handle.damaged_models().values():
            warn(f"left out: {reason}")
        if not rows:
            raise fail(f"{study} has no complete unit yet; run `onnx-geom run ... -o STUDY` first.")
        from onnx_geom.cli._records import records_table
        from onnx_geom.records import write_columns_csv, write_columns_parquet

        for path, writer in ((csv_path, write_columns_csv), (parquet_path, write_columns_parquet)):
            if path is not None:
                count = writer(path, sample_records(handle))  # an OSError is a one-sentence OutputError
                err.print(f"wrote {count} rows to {path}")
        broken = {f"{r['model']}/{r['corruption']}/{r['severity']}": r["nonfinite"] for r in rows if r["nonfinite"]}
        if broken:
            warn_nonfinite(broken, rows[0]["n"])
        if as_json:
            print_json(rows)
        else:
            shown = [dict(zip(_HEADERS, (r[k] for k in _SUMMARY), strict=True)) for r in _by_corruption(rows)]
            out.print(records_table(f"geometry of {study}: means over samples and severities", shown, _HEADERS))
