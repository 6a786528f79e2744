import subprocess
import sys

from typer.testing import CliRunner

from onnx_geom import __version__
from onnx_geom.cli.app import app


def test_version_and_help():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"onnx-geom {__version__}"
    assert CliRunner().invoke(app, ["--help"]).exit_code == 0


def test_python_dash_m_runs_the_same_app():
    out = subprocess.run(
        [sys.executable, "-m", "onnx_geom", "--version"], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == f"onnx-geom {__version__}"


def test_core_never_imports_cli_report_viewers_qt_or_vispy():
    code = (
        "import sys, onnx_geom, onnx_geom.errors, onnx_geom.probe_info, onnx_geom.frames;"
        "bad=[m for m in sys.modules if m.startswith(('onnx_geom.cli','onnx_geom.report','onnx_geom.viewers','vispy',"
        "'PySide6','torch','pandas'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
