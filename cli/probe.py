"""``onnx-geom probe``: turn an ONNX classifier into a probe, list its head candidates, or check a probe.

onnx-geom probe model.onnx -o model.probe.onnx --preset cifar10
onnx-geom probe --inspect model.onnx
onnx-geom probe --check model.probe.onnx --source model.onnx
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from onnx_geom.cli._console import fail, out, print_json, user_errors
from onnx_geom.cli._options import JsonOption, Layout, Preset, Size, plain, size_option


def probe_command(
    model: Annotated[
        Path, typer.Argument(help="The ONNX classifier (or, with --check, the probe).", show_default=False)
    ],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the probe (.onnx).")] = None,
    preset: Annotated[Preset, typer.Option(help="Normalisation after scaling to [0,1].")] = Preset.none,
    mean: Annotated[str | None, typer.Option(help="Per-channel mean, comma-separated (overrides the preset).")] = None,
    std: Annotated[str | None, typer.Option(help="Per-channel std, comma-separated (overrides the preset).")] = None,
    layout: Annotated[Layout | None, typer.Option(help="The model's input layout (default: detected).")] = None,
    size: Annotated[
        Size | None,
        size_option("Image size WIDTHxHEIGHT (320x240: 320 wide, 240 high) when the model's input does not fix it."),
    ] = None,
    features: Annotated[str | None, typer.Option(help="Tensor that holds the features (the head's input).")] = None,
    logits: Annotated[
        str | None, typer.Option(help="Tensor that holds the logits (the head's pre-softmax output).")
    ] = None,
    inspect: Annotated[
        bool, typer.Option("--inspect", help="Only list the head candidates and why one was chosen.")
    ] = False,
    check: Annotated[bool, typer.Option("--check", help="MODEL is a probe: run its self-check.")] = False,
    source: Annotated[
        Path | None, typer.Option(help="With --check: the source model, to compare the original outputs.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Probe an ONNX classifier: uint8 images in; logits + features out; the head's W, b in its metadata."""
    with user_errors():
        if inspect and check:
            raise fail("give either --inspect or --check, not both.")
        if inspect:
            _inspect(model, as_json)
        elif check:
            _check(model, source, as_json)
        else:
            if output is None:
                raise fail("say where to write the probe with -o PROBE.onnx (or use --inspect / --check).")
            _probe(
                model,
                output,
                preset=preset.value,
                mean=_floats(mean, "--mean"),
                std=_floats(std, "--std"),
                layout=plain(layout),
                image_size=None if size is None else (size.height, size.width),  # the probe's (H, W)
                features=features,
                logits=logits,
                as_json=as_json,
            )


def _probe(model: Path, output: Path, *, as_json: bool, **options: Any) -> None:
    from onnx_geom._files import check_output
    from onnx_geom.probe import probe, save_probe
    from onnx_geom.probe_info import read_probe_info

    inputs = [path for path in (model, *_external_files(model, output)) if path.is_file()]  # a folder: not a model
    check_output(output, inputs=inputs)  # before the work: not in a study, not over the model, not a folder
    result = probe(model, **options)
    save_probe(result, output, inputs=inputs)
    info = read_probe_info(result)
    summary = {"probe": str(output), **info.to_json()}
    if as_json:
        print_json(summary)
        return
    head = info.head
    rows = [
        ("head node", f"{head['node']} [{head['spelling']}]"),
        ("features", f"'{head['features']}'  D = {info.feature_dim}"),
        ("logits", f"'{head['logits']}'  K = {info.num_classes}"),
        ("input", f"uint8 N x {' x '.join(map(str, info.input_shape))} -> {info.layout} '{head['source_input']}'"),
        ("preprocessing", "cast, x / 255, (x - mean) / std per channel"),
        ("mean", _short(info.mean)),
        ("std", _short(info.std)),
        ("source", f"{info.producer or '?'}, opset {info.opset}, sha256 {info.source_sha256[:16]}..."),
        ("self-check", "passed (onnxruntime optimisation on and off)"),
    ]
    out.print(_key_value_table(f"probe written to {output}", rows))


def _external_files(model: Path, output: Path) -> list[Path]:
    """The files holding ``model``'s external data, when ``output`` is an existing file in the model's folder (the
    only place they can be): writing the probe over one would destroy the source."""
    try:
        inside = output.is_file() and model.is_file() and model.resolve().parent in output.resolve().parents
    except OSError:
        return []
    if not inside:
        return []
    from onnx import TensorProto

    from onnx_geom.errors import OnnxGeomError
    from onnx_geom.probe._load import iter_tensors, read_model

    try:
        graph = read_model(model).graph
    except OnnxGeomError:  # the probe itself reports what is wrong with the model
        return []
    locations = {
        entry.value
        for tensor in iter_tensors(graph)
        if tensor.data_location == TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return [model.parent / location for location in sorted(locations)]


def _inspect(model: Path, as_json: bool) -> None:
    from onnx_geom.probe import find_heads, load_model

    candidates = find_heads(load_model(model))
    if as_json:
        print_json({"model": str(model), "candidates": [c.describe() for c in candidates]})
        return
    table = Table(title=f"head candidates in {model}")
    for column in ("node", "spelling", "K", "D", "chosen"):
        table.add_column(column, no_wrap=True)
    table.add_column("features -> logits", overflow="fold", ratio=1)
    table.add_column("why", overflow="fold", ratio=2)
    for c in candidates:
        table.add_row(
            c.node,
            c.spelling,
            str(c.K or "?"),
            str(c.D or "?"),
            "[green]yes[/]" if c.chosen else "no",
            f"{c.features} -> {c.logits}",
            c.reason,
        )
    out.print(table)
    if not candidates:
        out.print("no Gemm or MatMul in the graph: it has no linear head.")


def _check(model: Path, source: Path | None, as_json: bool) -> None:
    from onnx_geom.probe import check_probe

    report = check_probe(model, source=source)
    if as_json:
        print_json({"probe": str(model), **report.to_json()})
        return
    compared = ", ".join(report.outputs_compared) or "not compared (give --source MODEL.onnx)"
    rows = [
        ("images", f"{report.n} random uint8"),
        ("onnxruntime levels", ", ".join(report.levels)),
        ("|logits - (features W^T + b)|", f"max {report.max_logit_error:.3g} (tolerance {report.logit_tolerance:.3g})"),
        ("optimisation on vs off", f"max difference {report.max_level_difference:.3g}"),
        ("original outputs", f"{compared}; max difference {report.max_output_difference:.3g}"),
    ]
    out.print(_key_value_table(f"self-check of {model}: passed", rows))


def _key_value_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table


def _floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        raise fail(f"{option} must be numbers separated by commas, e.g. 0.485,0.456,0.406 (got '{text}').") from None


def _short(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"
