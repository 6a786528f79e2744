"""``onnx-geom corrupt DATA -o DIR``: write corrupted copies of a data set in the CIFAR-10-C layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from onnx_geom.cli._console import err, out, user_errors
from onnx_geom.conditions import parse_severities
from onnx_geom.errors import DataError


def parse_corruptions(names: list[str] | None) -> list[str]:
    """Names (repeated or comma-separated); ``all`` = the 19, ``benchmark`` = the 15; default all."""
    from onnx_geom.corruptions import BENCHMARK_CORRUPTIONS, CORRUPTIONS

    chosen: list[str] = []
    for item in names or ["all"]:
        for name in filter(None, (n.strip() for n in item.split(","))):
            group = {"all": CORRUPTIONS, "benchmark": BENCHMARK_CORRUPTIONS}.get(name, (name,))
            chosen += [n for n in group if n not in chosen]
    unknown = [n for n in chosen if n not in CORRUPTIONS]
    if unknown:
        raise DataError(
            f"unknown corruption(s) {', '.join(unknown)}; choose from all, benchmark, {', '.join(CORRUPTIONS)}."
        )
    return chosen


def corrupt_command(
    data: Annotated[Path, typer.Argument(help="Clean data: CIFAR python folder, .npz or image folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write <corruption>.npy + labels.npy into.")],
    corruptions: Annotated[
        list[str] | None,
        typer.Option(
            "--corruptions", "-c", help="Names, comma-separated or repeated; 'all' (default, 19) or 'benchmark' (15)."
        ),
    ] = None,
    severities: Annotated[str, typer.Option(help="Severities: a list (1,3,5), a range (1-5) or both (1,3-5).")] = "1-5",
    profile: Annotated[
        str | None, typer.Option(help="cifar or imagenet constants (default: cifar up to 64 px).")
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed; image i always gets the same noise for a corruption and severity.")
    ] = 0,
    limit: Annotated[int | None, typer.Option(help="Only the first N images.", min=1)] = None,
    split: Annotated[str, typer.Option(help="CIFAR split to read: test or train.")] = "test",
    batch_size: Annotated[int, typer.Option(help="Images per batch.", min=1)] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of text.")] = False,
) -> None:
    """Corrupt DATA with the 19 common corruptions x severities; resumable (finished files are kept)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from onnx_geom.datasets import load, write_corrupted

    with user_errors():
        names = parse_corruptions(corruptions)
        levels = parse_severities(severities)
        dataset = load(data, split=split).head(limit)
        per_file = dataset.n * len(levels)
        done_before = [n for n in names if (output / f"{n}.npy").is_file()]
        columns = (TextColumn("{task.description:18s}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=as_json, disable=as_json) as bar:
            total = bar.add_task("all", total=per_file * (len(names) - len(done_before)))
            tasks = {}

            def progress(name: str, images: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=per_file)
                bar.advance(tasks[name], images)
                bar.advance(total, images)

            written = write_corrupted(
                dataset, output, corruptions=names, severities=levels, profile=profile, seed=seed,
                batch_size=batch_size, progress=progress,
            )  # fmt: skip
    skipped = [n for n in names if n not in written]
    summary = {"output": str(output), "images": dataset.n, "severities": levels, "written": written, "skipped": skipped}
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        out.print(
            f"wrote {len(written)} corruption file(s) to {output}"
            + (f"; kept {len(skipped)} finished one(s)" if skipped else "")
        )
