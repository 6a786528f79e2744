"""One rule of names (a letter or digit, then letters, digits, '.', '_' or '-', at most 100 characters), checked when
a study is written and when it is read: a hostile study's folder names are never used, and nothing a study holds
puts a control character (a newline, a terminal escape sequence) into what onnx-geom prints."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from _study_files import make_cli_study, one_sentence, snapshot
from typer.testing import CliRunner

from onnx_geom.cli.app import app
from onnx_geom.errors import StudyError
from onnx_geom.probe_info import ProbeInfo
from onnx_geom.store import NAME_RULE, Study, Unit

RUNNER = CliRunner()
BAD = ["a b", "x\ny", "evil\x1b[2J", ".hidden", "-x", "a" * 101, "", "café", "m/n", "m\x00"]
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # every control character but the newline


def invoke(*args):
    return RUNNER.invoke(app, [str(a) for a in args])


@pytest.fixture
def study(tmp_path):
    study = Study.create(
        tmp_path / "s", images=np.zeros((4, 2, 2, 3), np.uint8), labels=[0, 1, 0, 1], dataset_name="toy"
    )
    info = ProbeInfo(W=np.ones((2, 3), np.float32), b=np.zeros(2, np.float32), input_shape=(2, 2, 3), layout="NCHW",
                     mean=(0.0,) * 3, std=(1.0,) * 3)  # fmt: skip
    study.add_model("m", info)
    return study, info


@pytest.mark.parametrize("name", BAD)
def test_names_that_break_the_rule_are_refused_when_written(study, name):
    study, info = study
    before = snapshot(study.path)
    for write in (
        lambda: study.add_model(name, info),
        lambda: study.write_unit(Unit("m", name, 1), {"features": np.ones((4, 3), np.float32)}),
        lambda: study.write_group(Unit("m", "clean", 0), name, {"x": np.ones(4, np.float32)}),
        lambda: Study.create(
            study.path.parent / "t",
            images=np.zeros((4, 2, 2, 3), np.uint8),
            labels=[0, 1, 0, 1],
            dataset_name="toy",
            corruptions=["clean", name],
        ),
    ):
        with pytest.raises(StudyError, match=re.escape(NAME_RULE)) as info_:
            write()
        assert "\n" not in str(info_.value) and not CONTROL.search(str(info_.value))
    assert snapshot(study.path) == before and not (study.path.parent / "t").exists()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("names")
    return root, make_cli_study(root, RUNNER)


@pytest.mark.parametrize("name", ["evil\x1b[2J", "two words", "x\ny"])
def test_run_refuses_a_bad_model_name_before_anything_is_created(built, tmp_path, name):
    _, args = built
    args = [a if not a.startswith("pruned=") else f"{name}={a.split('=', 1)[1]}" for a in args]
    line = one_sentence(invoke(*args, "-o", tmp_path / "new"), "cannot be used in a study", "NAME=PATH")
    assert not CONTROL.search(line)
    assert not (tmp_path / "new").exists()


def test_a_hostile_study_is_read_without_its_odd_names_and_printed_without_control_characters(built, tmp_path):
    root, _ = built
    path = tmp_path / "study"
    shutil.copytree(root / "study", path)
    shutil.copytree(path / "models" / "dense", path / "models" / "evil\x1b[2J\nname")  # a whole model, odd name
    shutil.copytree(path / "models" / "dense" / "fog", path / "models" / "dense" / "fog\x1b[31m")  # a corruption
    shutil.copytree(path / "models" / "dense" / "fog" / "1", path / "models" / "dense" / "fog" / "01x")  # a severity
    meta = json.loads((path / "models" / "dense" / "zarr.json").read_text())
    meta["attributes"]["tags"] = {"method\x1b[2J": "gmp\x1b]0;pwned\x07", "sparsity": 0.5}
    meta["attributes"]["probe_path"] = "/tmp/x\x1b[2J.onnx"
    (path / "models" / "dense" / "zarr.json").write_text(json.dumps(meta))

    opened = Study.open(path)
    assert opened.models == ["dense", "pruned"]
    assert {u.corruption for u in opened.units()} == {"clean", "fog"} and {u.severity for u in opened.units()} == {0, 1}
    info = invoke("info", path)
    assert info.exit_code == 0, info.output
    assert not CONTROL.search(info.stdout) and "\\x1b" in info.stdout  # shown, escaped
    assert "breaks the rule of names" in info.stdout
    described = json.loads(invoke("info", path, "--json").stdout)
    assert len(described["damaged"]) == 3 and set(described["models"]) == {"dense", "pruned"}
    for command in (["metrics", path], ["compare", path], ["check", path]):
        result = invoke(*command)
        assert not CONTROL.search(result.output), command
    check = json.loads(invoke("check", path, "--json").stdout)
    assert (
        sorted(d["repair"] for d in check["damaged"])
        == ["remove it"] + ["remove it (or rename it) if it should not be there"] * 2
    )
