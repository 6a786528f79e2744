"""``onnx-geom run`` (probes x corruptions -> study) and ``onnx-geom info`` (what a study holds).

onnx-geom run dense.onnx pruned=pruned90.onnx --data cifar-10-batches-py -o study --corruptions fog,snow
onnx-geom run *.probe.onnx --data cifar-10-batches-py --corrupted CIFAR-10-C -o study --device cuda --fp16
onnx-geom info study
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from onnx_geom.cli._console import err, fail, out, print_json, safe, user_errors, warn_nonfinite
from onnx_geom.cli._options import (
    Device,
    DeviceOption,
    Executor,
    JsonOption,
    ProfileOption,
    SeedOption,
    VerboseOption,
    batch_size_option,
    corruptions_option,
    parse_corruptions,
    plain,
)
from onnx_geom.conditions import CLEAN, parse_severities


def _model_names(specs: list[str]) -> dict[str, Path]:
    """``NAME=PATH`` or ``PATH`` (named after the file: ``resnet.probe.onnx`` -> ``resnet``); names unique."""
    from onnx_geom.store import check_name

    models: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        file = Path(path if sep else spec)
        name = name if sep else file.name.removesuffix(".onnx").removesuffix(".probe")
        check_name("model", name, "name it with NAME=PATH")  # before anything is created
        if name in models:
            raise fail(f"two models are named {name!r} ({models[name]} and {file}); name them with NAME=PATH.")
        models[name] = file
    return models


class _Speed(ProgressColumn):
    def render(self, task: Any) -> Text:
        return Text(f"{task.speed or 0:>9,.0f} images/s")


class _Bar:
    """The sweep's progress callback as a rich bar: units done, images/s, ETA."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.task, self.units, self.done = (
            progress,
            progress.add_task("sweep", total=None, units="0/?"),
            0,
            0,
        )

    def __call__(self, event: str, unit: Any, count: int) -> None:
        if event == "plan":
            self.units = count
        elif event == "plan_images":
            self.progress.update(self.task, total=count)
        elif event == "images":
            self.progress.update(self.task, advance=count)
        elif event in ("unit", "skip"):
            self.done += 1
        self.progress.update(self.task, units=f"{self.done}/{self.units}")


def run_command(
    models: Annotated[
        list[str],
        typer.Argument(
            help="Probes or plain ONNX classifiers (probed on the fly), as PATH or NAME=PATH.", show_default=False
        ),
    ],
    data: Annotated[
        Path,
        typer.Option("--data", "-d", help="Clean data: CIFAR python folder, .npz or image folder.", show_default=False),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", file_okay=False, help="The study folder (created, or resumed).", show_default=False
        ),
    ],
    corrupted: Annotated[
        Path | None,
        typer.Option(help="A CIFAR-10-C style folder to read corrupted sets from (default: made on the fly)."),
    ] = None,
    corruptions: Annotated[list[str] | None, corruptions_option(clean_only=True)] = None,
    severities: Annotated[
        str | None,
        typer.Option(
            help="Severities: a list (1,3,5), a range (1-5) or both (1,3-5) (default: 1-5, or those of the --corrupted folder).",
            metavar="LEVELS",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N images.")] = None,
    batch_size: Annotated[
        int | None, batch_size_option("256 on the CPU, 2048 on a GPU, fewer for large images")
    ] = None,
    device: DeviceOption = Device.auto,
    fp16: Annotated[
        bool, typer.Option("--fp16", help="Run a float16 copy of each probe (GPU only; features stay float32).")
    ] = False,
    profile: ProfileOption = None,
    seed: SeedOption = 0,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
    executor: Annotated[
        Executor,
        typer.Option(help="Where the sweep runs: this process, or a Ray cluster (the [ray] extra; docs/run.md)."),
    ] = Executor.local,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray: the cluster's address, HOST:PORT as `ray start --head` prints it (default: a Ray of its own on this machine, every core and GPU).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Ray: processes that run the probes and write the units (default: one per GPU share, else one per node); every CPU makes corrupted images.",
            show_default=False,
        ),
    ] = None,
    gpus_per_worker: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Ray: the share of a GPU each worker takes, fractions allowed (default: 1 on a cluster with GPUs, else 0).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run probes over clean data and every corruption x severity into a study (resumable: run again to finish)."""
    with user_errors():
        from onnx_geom.sweep import sweep

        named, sevs = _model_names(models), None if severities is None else parse_severities(severities)
        # a --corrupted folder may hold sets of its own names: the sweep checks them against the folder
        chosen = parse_corruptions(corruptions, clean_only=True, check=corrupted is None)
        columns = (
            TextColumn("units {task.fields[units]}"),
            BarColumn(),
            TaskProgressColumn(),
            _Speed(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
            summary = sweep(named, data, output, corruptions=chosen, severities=sevs, corrupted_dir=corrupted, limit=limit,
                            batch_size=batch_size, device=device.value, fp16=fp16, profile=plain(profile), seed=seed,
                            progress=_Bar(progress), verbose=verbose, executor=executor.value, address=address,
                            workers=workers, gpus_per_worker=gpus_per_worker)  # fmt: skip
        if summary["nonfinite"]:
            warn_nonfinite(summary["nonfinite"], summary["images"])
        if as_json:
            print_json(summary)
        else:
            _print_summary(summary)


_WIDE = 4  # more corruptions than this: one compact row per model instead of one column per corruption


def _print_summary(summary: dict[str, Any]) -> None:
    accuracy = summary["accuracy"]
    corruptions = list(dict.fromkeys(c for per in accuracy.values() for c in per if c != CLEAN))
    compact = len(corruptions) > _WIDE
    out.print(f"top-1 accuracy, % (mean over severities), {summary['images']} images", highlight=False, soft_wrap=True)
    table = Table()
    table.add_column("model")
    shown = [CLEAN] + ([] if compact else corruptions)
    extra = (["mean corrupted"] if corruptions else []) + (["worst corruption"] if compact else [])
    for name in [*shown, *extra]:
        table.add_column(name, justify="right")
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}"
    for model, per in accuracy.items():
        cells = [pct(per.get(c)) for c in shown]
        corrupted = {c: per[c] for c in corruptions if c in per}
        if corruptions:
            cells.append(pct(sum(corrupted.values()) / len(corrupted) if corrupted else None))
        if compact:
            worst = min(corrupted, key=corrupted.__getitem__, default=None)
            cells.append(f"{escape(safe(worst))} {pct(corrupted[worst])}" if worst else "-")
        table.add_row(escape(safe(model)), *cells)
    out.print(table)
    if compact:
        out.print("per corruption: `onnx-geom compare STUDY` or `--json`", highlight=False, markup=False)
    units = summary["units"]
    out.print(
        f"{len(units['computed'])} units computed, {units['already_complete']} already complete, on {summary['device']} "
        f"({', '.join(summary['providers'])}{', fp16' if summary['fp16'] else ''}, batch {summary['batch_size']}), "
        f"{summary['images_per_s']:,.0f} images/s, {summary['seconds']:.1f} s; study: {escape(safe(summary['study']))}",
        highlight=False,
        soft_wrap=True,
    )
    if summary.get("executor") == "ray":
        nodes = "; ".join(
            f"{node[:12]} ({row['host']}): {row['units']} units, {row['images']:,} images, models ran "
            f"{row['running_s']:.1f} s, waited {row['waiting_s']:.1f} s for images"
            for node, row in summary["nodes"].items()
        )
        out.print(
            escape(
                safe(
                    f"on Ray: {_count(summary['workers'], 'worker')} on {_count(len(summary['nodes']), 'node')} ({nodes})."
                )
            ),
            highlight=False,
            soft_wrap=True,
        )
    for message in units["locked"]:
        err.print(
            f"[yellow]skipped:[/] {escape(safe(message))} Run again later to finish.", highlight=False, soft_wrap=True
        )


def _count(n: int, what: str) -> str:
    """``3 nodes``, ``1 node``."""
    return f"{n} {what}{'' if n == 1 else 's'}"


def _tags(tags: dict) -> str:
    """``key=value`` pairs, numbers to 3 significant digits.

    >>> _tags({"method": "gmp", "sparsity": 0.8032110091743119, "clean_accuracy": 0.97})
    'method=gmp, sparsity=0.803, clean_accuracy=0.97'
    """
    return safe(", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in tags.items()))


def info_command(
    study: Annotated[Path, typer.Argument(help="The study folder.", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """Print what a study holds: data, plan, complete and missing units per model, units left incomplete."""
    with user_errors():
        from onnx_geom.store import Study, describe

        summary = describe(Study.open(study))
        if as_json:
            print_json(summary)
            return
        data = summary["dataset"]
        source = summary["corrupted"]
        folder = (
            f", corrupted images from {source.get('folder')}" if isinstance(source, dict) and "folder" in source else ""
        )
        out.print(
            escape(
                safe(
                    f"study {summary['path']}: {data.get('name')}, {data['n']} images {'x'.join(map(str, data.get('image_shape', [])))}; "
                    f"{len(summary['corruptions'])} corruptions x severities {summary['severities']}, profile {summary['profile']}, "
                    f"seed {summary['seed']}{folder}"
                )
            ),
            highlight=False,
            soft_wrap=True,
        )
        table = Table(title=f"units per model (of {summary['planned_per_model']} planned)", title_justify="left")
        for name, justify in [("model", "left"), ("complete", "right"), ("missing", "left"), ("tags", "left")]:
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for model, row in summary["models"].items():
            missing = row["missing"]
            shown = ", ".join(u.split("/", 1)[1] for u in missing[:4]) + (
                f" (+{len(missing) - 4})" if len(missing) > 4 else ""
            )
            table.add_row(
                escape(safe(model)), str(row["complete"]), escape(safe(shown)) or "-", escape(_tags(row["tags"]))
            )
        for model, reason in summary["damaged_models"].items():
            table.add_row(escape(safe(model)), "-", "[bold red]damaged[/]", escape(safe(reason)))
        out.print(table)
        for entry in summary["damaged"]:
            out.print(
                f"[bold red]damaged:[/] {escape(safe(entry['problem']))}",
                highlight=False,
                soft_wrap=True,
            )
        if summary["nodes"]:
            nodes = "; ".join(
                f"{node[:12]} ({', '.join(map(str, row['hosts']))}): {row['units']}"
                for node, row in summary["nodes"].items()
            )
            out.print(escape(safe(f"complete units per Ray node: {nodes}")), highlight=False, soft_wrap=True)
        for entry in summary["incomplete"]:
            who = (
                f"process {entry.get('pid')} on {entry.get('host')}"
                + (f" (Ray node {str(entry['node'])[:12]})" if "node" in entry else "")
                + f" since {entry.get('started')}"
                if "pid" in entry
                else "unknown writer"
            )
            out.print(
                f"incomplete: {escape(safe(entry['unit']))} ({escape(safe(who))}); being written now, or left by a stopped run (run again to finish)",
                highlight=False,
                soft_wrap=True,
            )
