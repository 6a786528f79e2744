"""Damaged metadata and arrays are said in one sentence (the file and the key), and repairable: `onnx-geom check`
lists what is damaged, `check --repair` marks it for recomputation, and the same `run` / `metrics` make the study
equal to an undamaged one."""

from __future__ import annotations

import json
import shutil

import pytest
from _study_files import content, make_cli_study, one_sentence, snapshot
from typer.testing import CliRunner

from onnx_geom.cli.app import app
from onnx_geom.store import Study, Unit

RUNNER = CliRunner()
UNIT = Unit("dense", "fog", 1)


def invoke(*args):
    return RUNNER.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("damage")
    args = make_cli_study(root, RUNNER)
    return root, args, content(root / "study")


@pytest.fixture
def study(built, tmp_path):
    root, args, reference = built
    shutil.copytree(root / "study", tmp_path / "study")
    return tmp_path / "study", [*args, "-o", str(tmp_path / "study")], reference


def edit(path, key, value, *, inside=None):
    """Set ``attributes[inside][key]`` (or ``attributes[key]``) of the zarr.json at ``path`` to ``value``."""
    meta = json.loads(path.read_text())
    attrs = meta["attributes"] if inside is None else meta["attributes"][inside]
    attrs[key] = value
    path.write_text(json.dumps(meta))


ROOT_DAMAGE = [
    ("severities", "abc", None, "must be a list of integers of at least 0, not 'abc'"),
    ("dataset", 5, None, "'dataset' must be an object, not 5"),
    ("seed", "x", None, "'seed' must be an integer, not 'x'"),
    ("corruptions", ["clean", "fog\x1b[2J"], None, "must be a list of names"),
    ("n", "25", "dataset", "'dataset.n' must be an integer of at least 0"),
    ("name", "evil\x1b]0;title\x07", "dataset", "'dataset.name' must be a string without control characters"),
]


@pytest.mark.parametrize(("key", "value", "inside", "message"), ROOT_DAMAGE)
@pytest.mark.parametrize("command", ["info", "metrics", "compare", "check", "run", "view", "report"])
def test_damaged_root_attributes_are_one_sentence_naming_the_file_and_key(study, command, key, value, inside, message):
    path, args, _ = study
    edit(path / "zarr.json", key, value, inside=inside)
    before = snapshot(path)
    extra = {
        "run": args[1:],
        "view": [path, "--screenshot", path.parent / "x.png"],
        "report": [path, "-o", path.parent / "r.html"],
    }.get(command, [path])
    line = one_sentence(invoke(command, *extra), f"{path / 'zarr.json'}: the key", message, "damaged")
    assert "\x1b" not in line and "\x07" not in line
    assert snapshot(path) == before


UNIT_DAMAGE = [
    ("complete", "yes", "'complete' must be true or false, not 'yes'"),
    ("writer", "me", "'writer' must be an object, not 'me'"),
    ("completion", 5, "'completion' must be a string without control characters, not 5"),
]


@pytest.mark.parametrize(("key", "value", "message"), UNIT_DAMAGE)
def test_damaged_unit_attributes_are_said_then_repaired(study, key, value, message):
    path, args, reference = study
    file = path / UNIT.key() / "zarr.json"
    edit(file, key, value)
    before = snapshot(path)
    report = ["report", path, "-o", path.parent / "r.html"]
    for command in (["metrics", path], ["compare", path], args, ["view", path, "--screenshot", path.parent / "x.png"],
                    report):  # fmt: skip
        line = one_sentence(invoke(*command), f"{file}: the key", message, "onnx-geom check STUDY --repair")
        assert snapshot(path) == before, (command, line)
    info = invoke("info", path)  # info shows it, and what to do
    assert info.exit_code == 0 and message in info.stdout and "damaged" in info.stdout
    check = invoke("check", path)
    assert check.exit_code == 1 and str(file) in check.stdout and snapshot(path) == before
    repaired = invoke("check", path, "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert "onnx-geom run" in repaired.stdout and "onnx-geom metrics" in repaired.stdout
    assert invoke(*args).exit_code == 0 and invoke("metrics", path).exit_code == 0
    assert content(path) == reference
    assert invoke("check", path).exit_code == 0


def test_a_damaged_labels_chunk_is_one_sentence_and_restored_by_run(study):
    path, args, reference = study
    (path / "labels" / "c.0").write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 4)
    before = snapshot(path)
    for command in (["metrics", path], args, ["view", path, "--screenshot", path.parent / "x.png"]):
        one_sentence(invoke(*command), "labels", "unreadable", "damaged")
        assert snapshot(path) == before
    check = invoke("check", path)
    assert check.exit_code == 1 and "labels" in check.stdout and "--repair" in check.stdout
    assert invoke("check", path, "--repair").exit_code == 0
    result = invoke(*args)  # the same data: the labels are written again (checked against the fingerprint)
    assert result.exit_code == 0, result.output
    assert content(path) == reference and invoke("check", path).exit_code == 0


@pytest.mark.parametrize("array", ["features", "logits"])
def test_a_damaged_unit_array_is_found_repaired_and_recomputed(study, array):
    path, args, reference = study
    chunk = path / UNIT.key() / array / "c.0.0"
    chunk.write_bytes(chunk.read_bytes()[:-7])  # truncated
    before = snapshot(path)
    check = invoke("check", path)
    assert check.exit_code == 1 and "1 damaged" in check.stdout and f"{UNIT.key()}" in check.stdout
    assert snapshot(path) == before
    assert invoke("check", path, "--repair").exit_code == 0
    assert Study.open(path).units() == sorted(set(Study.open(path).units()))  # readable
    assert UNIT not in Study.open(path).units()
    written = invoke(*args, "--json")
    assert json.loads(written.stdout)["units"]["computed"] == [str(UNIT)]  # exactly that unit again
    assert invoke("metrics", path).exit_code == 0
    assert content(path) == reference and invoke("check", path).exit_code == 0


def test_a_damaged_geometry_chunk_is_recomputed_by_metrics(study):
    path, _, reference = study
    chunk = path / UNIT.key() / "geometry" / "margin" / "c.0"
    chunk.write_bytes(b"\0" * 8)
    check = invoke("check", path, "--json")
    assert check.exit_code == 1 and [d["path"] for d in json.loads(check.stdout)["damaged"]] == [
        str(path / UNIT.key() / "geometry")
    ]
    assert invoke("check", path, "--repair").exit_code == 0
    assert invoke("metrics", path).exit_code == 0
    assert content(path) == reference


def test_a_damaged_head_is_said_and_restored_from_the_same_probe(study):
    path, args, reference = study
    (path / "models" / "dense" / "W" / "c.0.0").write_bytes(b"broken")
    check = invoke("check", path, "--repair")  # not repairable by check: what to do instead
    assert check.exit_code == 1 and "onnx-geom run` with this model (dense=PROBE)" in check.stdout
    result = invoke(*args)  # the head's sha256 was recorded: the same probe writes it again
    assert result.exit_code == 0, result.output
    assert content(path) == reference and invoke("check", path).exit_code == 0


def test_a_damaged_model_is_listed_not_hidden_and_run_rewrites_it(study):
    path, args, reference = study
    edit(path / "models" / "dense" / "zarr.json", "probe", "not an object")
    assert Study.open(path).models == ["pruned"]
    info = invoke("info", path, "--json")
    damaged = json.loads(info.stdout)["damaged_models"]
    assert list(damaged) == ["dense"] and "'probe' must be an object" in damaged["dense"]
    shown = invoke("info", path)
    assert shown.exit_code == 0 and "damaged" in shown.stdout and "dense=PROBE" in shown.stdout
    compared = invoke("compare", path, "--json")  # works on what is there, and says what it leaves out
    assert compared.exit_code == 0 and "left out: model 'dense' is damaged" in compared.stderr
    assert list(json.loads(compared.stdout)["left_out"]["damaged_models"]) == ["dense"]
    with pytest.raises(Exception, match="model 'dense' is damaged"):
        Study.open(path).head("dense")
    assert invoke(*args).exit_code == 0  # the same probe: its head equals the stored one, the metadata is rewritten
    assert Study.open(path).models == ["dense", "pruned"]
    assert content(path) == reference


def test_a_model_whose_W_is_missing_is_listed_as_damaged(study):
    path, args, reference = study
    shutil.rmtree(path / "models" / "dense" / "W")
    info = json.loads(invoke("info", path, "--json").stdout)
    assert "its head W is missing" in info["damaged_models"]["dense"] and "dense" not in info["models"]
    assert invoke(*args).exit_code == 0  # restored: the probe's head has the recorded sha256
    assert content(path) == reference
