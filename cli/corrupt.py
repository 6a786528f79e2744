"""``onnx-geom corrupt DATA -o DIR``: write corrupted copies of a data set in the CIFAR-10-C layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from onnx_geom.cli._console import err, out, print_json, user_errors
from onnx_geom.cli._options import (
    JsonOption,
    ProfileOption,
    SeedOption,
    SeveritiesOption,
    Split,
    batch_size_option,
    corruptions_option,
    parse_corruptions,
    plain,
)
from onnx_geom.conditions import parse_severities


def corrupt_command(
    data: Annotated[Path, typer.Argument(help="Clean data: CIFAR python folder, .npz or image folder.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Folder to write CORRUPTION.npy + labels.npy into."),
    ],
    corruptions: Annotated[list[str] | None, corruptions_option(clean_only=False)] = None,
    severities: SeveritiesOption = "1-5",
    profile: ProfileOption = None,
    seed: SeedOption = 0,
    limit: Annotated[int | None, typer.Option(help="Only the first N images.", min=1)] = None,
    split: Annotated[Split, typer.Option(help="CIFAR split to read.")] = Split.test,
    batch_size: Annotated[int, batch_size_option()] = 500,
    as_json: JsonOption = False,
) -> None:
    """Corrupt DATA with the 19 common corruptions x severities; resumable (finished files are kept)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from onnx_geom.datasets import load, write_corrupted

    with user_errors():
        from onnx_geom._files import check_output
        from onnx_geom.corruptions import CORRUPTIONS

        check_output(output, kind="folder", inputs=(data,))  # before the data is read: not in a study, not DATA
        chosen = parse_corruptions(corruptions)
        names = list(CORRUPTIONS) if chosen is None else chosen
        levels = parse_severities(severities)
        dataset = load(data, split=split.value).head(limit)
        per_file = dataset.n * len(levels)
        done_before = [n for n in names if (output / f"{n}.npy").is_file()]
        columns = (TextColumn("{task.description:18s}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        # the bar starts with the first batch: a refusal of the folder is the only line printed
        bar = Progress(*columns, console=err, transient=as_json, disable=as_json)
        total = bar.add_task("all", total=per_file * (len(names) - len(done_before)))
        tasks: dict[str, Any] = {}

        def progress(name: str, images: int) -> None:
            if not tasks:
                bar.start()
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=per_file)
            bar.advance(tasks[name], images)
            bar.advance(total, images)

        try:
            written = write_corrupted(
                dataset, output, corruptions=names, severities=levels, profile=plain(profile), seed=seed,
                batch_size=batch_size, progress=progress, inputs=(data,),
            )  # fmt: skip
        finally:
            bar.stop()
    skipped = [n for n in names if n not in written]
    summary = {"output": str(output), "images": dataset.n, "severities": levels, "written": written, "skipped": skipped}
    if as_json:
        print_json(summary)
    else:
        out.print(
            f"wrote {len(written)} corruption file(s) to {output}"
            + (f"; kept {len(skipped)} finished one(s)" if skipped else "")
        )
