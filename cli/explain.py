"""``onnx-geom explain``: the exact linear map behind chosen predictions, and the per-pixel maps of margin, angle
and length, into one .npz.

onnx-geom explain resnet.probe.onnx --data cifar-10-batches-py --samples 0,5,9 -o explain.npz
onnx-geom explain study --model pruned --condition fog/3 --samples 0-9 -o fog.npz --json
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from onnx_geom.cli._console import fail, out, print_json, user_errors
from onnx_geom.cli._options import Device, DeviceOption, JsonOption


def explain_command(
    source: Annotated[
        Path,
        typer.Argument(
            exists=True,
            help="A probe or a plain ONNX classifier (probed on the fly) with --data, or a study folder with --model.",
            show_default=False,
        ),
    ],
    samples: Annotated[
        str,
        typer.Option(
            "--samples",
            "-s",
            metavar="INDICES",
            help="Samples to explain: 0,5,9, ranges like 10-19, or both.",
            show_default=False,
        ),
    ],
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            dir_okay=False,
            help="Write the arrays to this .npz (default: print only).",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", "-d", help="With a model: CIFAR python folder, .npz or image folder.", show_default=False
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="With a study: the model to explain.", show_default=False)
    ] = None,
    condition: Annotated[
        str,
        typer.Option(help="With a study: the images its models saw under CORRUPTION/SEVERITY (fog/3) or clean."),
    ] = "clean",
    corrupted: Annotated[
        Path | None,
        typer.Option(
            help="With a study whose corrupted sets were read from a folder: that folder (as given to `run`).",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str,
        typer.Option(
            "--output",
            help="The graph output to explain: logits (with the margin, angle and length maps), features, or any "
            "other per-image output.",
        ),
    ] = "logits",
    device: DeviceOption = Device.auto,
    as_json: JsonOption = False,
) -> None:
    """Explain predictions exactly: per sample, the linear map W(x) and bias b(x) with W(x) x + b(x) == the
    output, and the margin, the angle to the true class and the feature length as per-pixel maps plus a bias."""
    with user_errors():
        from onnx_geom._files import check_output
        from onnx_geom.conditions import parse_condition
        from onnx_geom.explain import explain_arrays, parse_samples
        from onnx_geom.probe_info import LOGITS

        if out_file is not None:  # before any work: not into a study, not over an input, not a folder
            check_output(out_file, inputs=[p for p in (source, data, corrupted) if p is not None])
        if source.is_dir():
            if data is not None:
                raise fail("--data goes with a model file; a study explains the images it holds (use --condition).")
            if model is None:
                raise fail("explaining a study needs --model NAME, the model to explain.")
            probe, images, labels, indices, where = _from_study(
                source, model, parse_condition(condition), samples, corrupted
            )
        else:
            if data is None:
                raise fail("explaining a model needs --data DATA, the images to explain (or give a study folder).")
            if model is not None or condition != "clean" or corrupted is not None:
                raise fail("--model, --condition and --corrupted go with a study folder, not with a model file.")
            from onnx_geom.datasets import load

            dataset = load(data)
            indices = parse_samples(samples, dataset.n)
            probe, images, labels, where = source, dataset.images[indices], dataset.labels[indices], None
        geometry = output == LOGITS
        from onnx_geom.linearize import Linearizer

        start = time.perf_counter()
        lin = Linearizer(probe, output=output, geometry=geometry, device=device.value)
        built = time.perf_counter() - start
        start = time.perf_counter()
        res = lin(images, labels if geometry else None)
        seconds = time.perf_counter() - start
        arrays = explain_arrays(res, images, indices, labels)
        written = None
        if out_file is not None:
            from onnx_geom.explain import write_explanation

            written = write_explanation(out_file, arrays)
        summary = _summary(source, model, where, res, arrays, lin.device, built, seconds, written)
        if as_json:
            print_json(summary)
        else:
            _print(summary)


def _from_study(
    folder: Path, model: str, condition: tuple[str, int], samples: str, corrupted: Path | None
) -> tuple[Path, Any, Any, Any, str]:
    from onnx_geom.conditions import condition_name
    from onnx_geom.explain import condition_images, parse_samples, study_probe
    from onnx_geom.store import Study

    study = Study.open(folder)
    probe = study_probe(study, model)
    labels = study.labels
    indices = parse_samples(samples, len(labels))
    images = condition_images(study, condition, indices, corrupted=corrupted)
    return probe, images, labels[indices], indices, condition_name(*condition)


def _summary(
    source: Path,
    model: str | None,
    where: str | None,
    res: Any,
    arrays: dict[str, Any],
    device: str,
    built: float,
    seconds: float,
    written: Path | None,
) -> dict[str, Any]:
    import numpy as np

    n = len(arrays["samples"])
    rows = []
    for s in range(n):
        row: dict[str, Any] = {"sample": int(arrays["samples"][s])}
        if "labels" in arrays:
            row["label"] = int(arrays["labels"][s])
        if "predicted" in arrays:
            row["predicted"] = int(arrays["predicted"][s])
        if "margin" in arrays:
            contributions = float(arrays["margin_map"][s].sum(dtype=np.float64))
            row.update(
                margin=float(arrays["margin"][s]),
                margin_contributions=contributions,
                margin_bias=float(arrays["margin_bias"][s]),
            )
        row["residual"] = float(arrays["residual"][s])
        rows.append(row)
    geometry = [getattr(res, g).residual for g in ("margin", "cos", "length") if getattr(res, g) is not None]
    return {
        "source": str(source),
        "model": model,
        "condition": where,
        "output": res.output,
        "kind": res.report.kind,
        "exact": res.report.exact,
        "gates": [{"op": op, "node": node} for op, node in res.report.gates],
        "frozen_patterns": len(res.report.patterns),
        "largest_residual": float(res.residual.max()),
        "largest_geometry_residual": float(max(g.max() for g in geometry)) if geometry else None,
        "outputs": int(res.W.shape[1]),
        "device": device,
        "build_seconds": built,
        "seconds_per_sample": seconds / n,
        "file": None if written is None else str(written),
        "samples": rows,
    }


def _print(summary: dict[str, Any]) -> None:
    table = Table(title=f"{escape(summary['output'])}: W(x) x + b(x) per sample", title_justify="left")
    rows = summary["samples"]
    columns = [
        ("sample", "sample"),
        ("label", "label"),
        ("predicted", "prediction"),
        ("margin", "margin"),
        ("margin_contributions", "= contributions"),
        ("margin_bias", "+ bias"),
        ("residual", "residual"),
    ]
    columns = [(key, title) for key, title in columns if key in rows[0]]  # the keys this output's rows have
    for _, title in columns:
        table.add_column(title, justify="right")
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row[key]
            cells.append(
                f"{value:.1e}" if key == "residual" else f"{value:.4f}" if isinstance(value, float) else str(value)
            )
        table.add_row(*cells)
    out.print(table)
    where = f"{summary['model']} under {summary['condition']}: " if summary["model"] else ""
    out.print(
        f"{escape(where)}{escape(summary['kind'])}; largest identity residual {summary['largest_residual']:.1e}; "
        f"{1000 * summary['seconds_per_sample']:.1f} ms per sample on {summary['device']}"
        + (f"; wrote {escape(summary['file'])}" if summary["file"] else ""),
        highlight=False,
        soft_wrap=True,
    )
