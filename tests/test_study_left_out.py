"""Nothing silently partial or vanishing: `compare` and `view` after an interrupted `metrics` say which units lack
geometry (how many, a few names) and the command that fills them, on stderr and in `--json`, and still work on
what is there; a damaged model is listed and said, not hidden."""

from __future__ import annotations

import json
import shutil

import pytest
from _study_files import make_cli_study, snapshot
from typer.testing import CliRunner

from onnx_geom.cli.app import app
from onnx_geom.store import Study, Unit, left_out

RUNNER = CliRunner()


def invoke(*args):
    return RUNNER.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("left")
    make_cli_study(root, RUNNER)
    return root


@pytest.fixture
def partial(built, tmp_path):
    """The study as an interrupted `metrics` leaves it: the fog unit of both models has no geometry."""
    shutil.copytree(built / "study", tmp_path / "study")
    for model in ("dense", "pruned"):
        shutil.rmtree(tmp_path / "study" / Unit(model, "fog", 1).key() / "geometry")
    return tmp_path / "study"


def test_compare_says_which_units_lack_geometry_and_works_on_the_rest(partial):
    before = snapshot(partial)
    result = invoke("compare", partial, "--json")
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warning == [
        f"warning: 2 units have no geometry yet and are left out (dense/fog/1, pruned/fog/1); run `onnx-geom metrics "
        f"{partial}` to compute it."
    ]
    report = json.loads(result.stdout)
    assert report["left_out"]["units_without_geometry"] == {
        "count": 2,
        "units": ["dense/fog/1", "pruned/fog/1"],
        "command": f"onnx-geom metrics {partial}",
    }
    assert {r["corruption"] for r in report["accuracy"]} == {"clean"}  # what is there
    assert {k: v for k, v in snapshot(partial).items() if not k.startswith("comparison")} == {
        k: v for k, v in before.items() if not k.startswith("comparison")
    }
    table = invoke("compare", partial)
    assert table.exit_code == 0 and "2 units have no geometry yet" in table.stderr


def test_many_missing_units_are_counted_and_a_few_named(partial):
    Study.open(partial, mode="a").mark_incomplete(Unit("dense", "clean", 0), "geometry")
    report = left_out(Study.open(partial), shown_units=2)["units_without_geometry"]
    assert report["count"] == 3 and report["units"] == ["dense/clean/0", "dense/fog/1"]


@pytest.mark.gui
def test_view_says_which_units_lack_geometry(partial, tmp_path):
    result = invoke("view", partial, "--screenshot", tmp_path / "x.png", "--panel", "table", "--size", "320x200")
    assert result.exit_code == 0, result.output
    assert "2 units have no geometry yet and are left out" in result.stderr and "onnx-geom metrics" in result.stderr
    assert (tmp_path / "x.png").is_file()


@pytest.mark.gui
def test_a_damaged_model_is_said_by_view_and_metrics(built, tmp_path):
    path = tmp_path / "study"
    shutil.copytree(built / "study", path)
    shutil.rmtree(path / "models" / "pruned" / "W")
    result = invoke("view", path, "--screenshot", tmp_path / "x.png", "--panel", "table", "--size", "320x200")
    assert result.exit_code == 0, result.output
    assert "left out: model 'pruned' is damaged (its head W is missing)" in result.stderr
    metrics = invoke("metrics", path)
    assert metrics.exit_code == 0 and "left out: model 'pruned' is damaged" in metrics.stderr
    assert Study.open(path).damaged_models().keys() == {"pruned"}


def test_nothing_is_said_when_nothing_is_left_out(built):
    result = invoke("compare", built / "study", "--json")
    assert result.exit_code == 0 and "warning" not in result.stderr
    assert json.loads(result.stdout)["left_out"]["units_without_geometry"]["count"] == 0
