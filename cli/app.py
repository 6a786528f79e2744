"""The ``onnx-geom`` command: one Typer app, one module per command.

Command modules import their heavy dependencies (onnx, onnxruntime, torch, vispy) inside the command body so
that ``onnx-geom --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from onnx_geom import __version__
from onnx_geom.cli._console import fail

#: Click's usage error (Typer vendors Click in recent releases; its public BadParameter derives from it either way)
UsageError: type[Exception] = typer.BadParameter.__base__  # type: ignore[assignment]
#: `onnx-geom` alone prints the help: not an error
_HELP = getattr(sys.modules[UsageError.__module__], "NoArgsIsHelpError", ())


class _Commands(TyperGroup):
    """The command group. A mistyped command line (an unknown option, a choice not offered, a missing argument, a
    path that must exist) is one sentence on stderr and exit code 1, like every other user error, instead of
    Click's boxed usage text: at the top (``make_context``) and in a command (``invoke``)."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except _HELP:
            raise
        except UsageError as error:
            raise fail(_usage_sentence(error)) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as error:
            raise fail(_usage_sentence(error)) from None


def _usage_sentence(error: Any) -> str:
    """Click's message as one sentence that points at the command's ``--help``.

    >>> _usage_sentence(UsageError("Missing option '--data' / '-d'."))
    "Missing option '--data' / '-d'; see `onnx-geom --help`."
    """
    # Typer checks choices through pydantic, whose message starts with its error kind
    message = error.format_message().replace("Value error, ", "").rstrip(". ")
    command = error.ctx.command_path if error.ctx is not None else "onnx-geom"
    return f"{message}; see `{command} --help`."


app = typer.Typer(
    cls=_Commands,
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
    """Probe models, corrupt data, sweep, measure geometry, compare, view and report."""


# One module per command; each defines its function and registers nothing itself.
from onnx_geom.cli.check import check_command  # noqa: E402
from onnx_geom.cli.compare import compare  # noqa: E402
from onnx_geom.cli.corrupt import corrupt_command  # noqa: E402
from onnx_geom.cli.demo import demo  # noqa: E402
from onnx_geom.cli.explain import explain_command  # noqa: E402
from onnx_geom.cli.metrics import metrics  # noqa: E402
from onnx_geom.cli.probe import probe_command  # noqa: E402
from onnx_geom.cli.report import report_command  # noqa: E402
from onnx_geom.cli.run import info_command, run_command  # noqa: E402
from onnx_geom.cli.view import view  # noqa: E402

app.command("probe")(probe_command)
app.command("corrupt")(corrupt_command)
app.command("run")(run_command)
app.command("info")(info_command)
app.command("check")(check_command)
app.command("metrics")(metrics)
app.command("compare")(compare)
app.command("view")(view)
app.command("explain")(explain_command)
app.command("report")(report_command)
app.command("demo")(demo)


def main() -> None:
    """Console-script entry point."""
    app()
