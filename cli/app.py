"""The ``onnx-geom`` command: one Typer app, one module per command.

Command modules import their heavy dependencies (onnx, onnxruntime, torch, vispy) inside the command body so
that ``onnx-geom --help`` stays fast.
"""

from __future__ import annotations

import typer

from onnx_geom import __version__

app = typer.Typer(
    name="onnx-geom",
    help="Feature-space geometry of ONNX classifiers (dense and pruned), clean and under common corruptions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"onnx-geom {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Probe models, corrupt data, sweep, measure geometry, compare and view."""


# One module per command; each defines its function and registers nothing itself.
from onnx_geom.cli.compare import compare  # noqa: E402
from onnx_geom.cli.corrupt import corrupt_command  # noqa: E402
from onnx_geom.cli.demo import demo  # noqa: E402
from onnx_geom.cli.metrics import metrics  # noqa: E402
from onnx_geom.cli.probe import probe_command  # noqa: E402
from onnx_geom.cli.run import info_command, run_command  # noqa: E402
from onnx_geom.cli.view import view  # noqa: E402

app.command("probe")(probe_command)
app.command("corrupt")(corrupt_command)
app.command("run")(run_command)
app.command("info")(info_command)
app.command("metrics")(metrics)
app.command("compare")(compare)
app.command("view")(view)
app.command("demo")(demo)


def main() -> None:
    """Console-script entry point."""
    app()
