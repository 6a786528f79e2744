"""A study is untrusted input: links planted in it are refused, nothing is written (or removed) outside it, and a
special file is never read. Every command that writes a study is tried through the CLI with links at several
depths: exit code 1, one sentence that names the link, the target outside and the study byte-identical."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from _study_files import make_cli_study, one_sentence, snapshot
from typer.testing import CliRunner

from onnx_geom.cli.app import app
from onnx_geom.errors import StudyError
from onnx_geom.store import Study, Unit

RUNNER = CliRunner()
UNIT = Unit("dense", "fog", 1)


def invoke(*args):
    return RUNNER.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Probes, data, and a study made by `run` (clean + fog 1), `metrics` and `compare` (built once)."""
    root = tmp_path_factory.mktemp("guard")
    root.joinpath("args.json").write_text(json.dumps(make_cli_study(root, RUNNER)))
    return root


def run_args(root, study):
    return [*json.loads(root.joinpath("args.json").read_text()), "-o", study]


@pytest.fixture
def study(built, tmp_path):
    """A fresh copy of the built study, and a folder ``outside`` it holding a copy of it too (link targets)."""
    shutil.copytree(built / "study", tmp_path / "study", symlinks=True)
    shutil.copytree(built / "study", tmp_path / "outside" / "copy", symlinks=True)
    (tmp_path / "outside" / "victim.txt").write_bytes(b"not yours")
    (tmp_path / "outside" / "empty").mkdir()
    return tmp_path / "study"


def plant(study, key, *, target=None):
    """Replace the entry ``key`` of the study with a link to its copy outside (or to ``target``)."""
    path = study / key
    outside = study.parent / "outside"
    target = target or outside / "copy" / key
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(target)
    return path


# (where the link goes, whether the unit is first marked incomplete so that the command has to write it)
WHERE = {
    "root zarr.json": ("zarr.json", False),
    "models folder": ("models", False),
    "model folder": ("models/dense", False),
    "unit folder": (UNIT.key(), False),
    "unit zarr.json": (f"{UNIT.key()}/zarr.json", False),
    "geometry of a unit being rewritten": (f"{UNIT.key()}/geometry", True),
    "chunk of a unit being rewritten": (f"{UNIT.key()}/features/c.0.0", True),
    "array folder of a unit being rewritten": (f"{UNIT.key()}/logits", True),
}


def _check_refused(study, key, result):
    line = one_sentence(result, "symbolic link", "remove")
    assert str(study / key) in line or "symbolic link" in line


@pytest.mark.parametrize("where", list(WHERE))
def test_run_refuses_links_and_writes_nothing_outside(built, study, where):
    key, rewrite = WHERE[where]
    if rewrite:
        Study.open(study, mode="a").mark_incomplete(UNIT)
    plant(study, key)
    outside, inside = snapshot(study.parent / "outside"), snapshot(study)
    result = invoke(*run_args(built, study))
    one_sentence(result, "symbolic link", "remove the link")
    assert snapshot(study.parent / "outside") == outside and snapshot(study) == inside


METRICS_WHERE = {
    **{k: v for k, v in WHERE.items() if not v[1]},
    "geometry folder": (f"{UNIT.key()}/geometry", False),
    "geometry zarr.json": (f"{UNIT.key()}/geometry/zarr.json", False),
    "geometry chunk": (f"{UNIT.key()}/geometry/margin/c.0", False),
}


def test_metrics_refuses_a_link_in_a_geometry_it_would_rewrite(study):
    Study.open(study, mode="a").mark_incomplete(UNIT, "geometry")
    plant(study, f"{UNIT.key()}/geometry/cos")
    outside, inside = snapshot(study.parent / "outside"), snapshot(study)
    one_sentence(invoke("metrics", study), "symbolic link", "cos")
    assert snapshot(study.parent / "outside") == outside and snapshot(study) == inside


COMPARE_WHERE = {
    **METRICS_WHERE,
    "comparison folder": ("comparison", False),
    "comparison zarr.json": ("comparison/zarr.json", False),
    "comparison array": ("comparison/distance", False),
}


@pytest.mark.parametrize(
    ("command", "where"), [("metrics", w) for w in METRICS_WHERE] + [("compare", w) for w in COMPARE_WHERE]
)
def test_metrics_and_compare_refuse_links_and_write_nothing_outside(study, command, where):
    key, _ = (METRICS_WHERE if command == "metrics" else COMPARE_WHERE)[where]
    plant(study, key)
    outside, inside = snapshot(study.parent / "outside"), snapshot(study)
    one_sentence(invoke(command, study), "symbolic link", "remove the link")
    assert snapshot(study.parent / "outside") == outside and snapshot(study) == inside


def test_a_link_to_an_empty_folder_outside_is_not_filled(built, study):
    """A unit the run has to create, planted as a link to an empty folder: nothing appears there."""
    shutil.rmtree(study / "models" / "dense" / "fog")
    (study / "models" / "dense" / "fog").symlink_to(study.parent / "outside" / "empty")
    one_sentence(invoke(*run_args(built, study)), "symbolic link", "models/dense/fog")
    assert list((study.parent / "outside" / "empty").iterdir()) == []


@pytest.mark.parametrize("special", ["fifo", "dev-zero"])
def test_special_files_are_never_read(study, special):
    """A FIFO (which would block a reader for ever) or a link to /dev/zero (which never ends) as metadata or a
    chunk: one sentence, at once."""
    targets = [study / "zarr.json", study / "models/dense/clean/0/features/c.0.0"]
    for target in targets:
        saved = target.read_bytes()
        target.unlink()
        if special == "fifo":
            os.mkfifo(target)
        else:
            target.symlink_to("/dev/zero")
        result = invoke("info", study) if target.name == "zarr.json" else invoke("compare", study)
        line = one_sentence(result)
        assert ("FIFO" in line) if special == "fifo" else ("symbolic link" in line)
        target.unlink()
        target.write_bytes(saved)


def test_the_store_reads_and_writes_only_through_the_guard():
    """One mechanism: no module of the store but _guard opens, lists, creates or removes files (the root module
    builds a new study beside its place, and _files' atomic writes go through _guard.replace_file)."""
    import inspect
    import re

    from onnx_geom import store
    from onnx_geom.store import _beacon, _check, _comparison, _layout, _schema, _study, _units, _zarrarray, _zarrio

    banned = re.compile(
        r"(?<![\w.])(?<!def )open\(|\.iterdir\(|os\.scandir|\.mkdir\(|os\.makedirs|shutil\.|os\.unlink|\.unlink\(|os\.stat\(|\.is_file\(|\.exists\("
    )
    for module in (store, _beacon, _check, _comparison, _layout, _schema, _study, _units, _zarrarray, _zarrio):
        source = inspect.getsource(module)
        if module is _study:  # Study.create looks at the place of a new study: the user's folder, not the study
            source = source.replace("not any(target.iterdir())", "")
        hits = [
            line.strip()
            for line in source.splitlines()
            if banned.search(line) and not line.strip().startswith((">>>", "#"))
        ]
        assert hits == [], (module.__name__, hits)


def test_a_study_reached_through_the_users_own_link_is_fine(built, tmp_path):
    """The root may be a link the user made; links *inside* the study are what is refused."""
    shutil.copytree(built / "study", tmp_path / "real")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    result = invoke("metrics", tmp_path / "alias")
    assert result.exit_code == 0, result.output
    assert Study.open(tmp_path / "alias").units() == Study.open(tmp_path / "real").units()


def test_a_link_is_refused_by_the_library_too(study):
    plant(study, UNIT.key())
    with pytest.raises(StudyError, match=r"fog/1 is a symbolic link inside the study"):
        Study.open(study).units()


@pytest.mark.parametrize("where", list(COMPARE_WHERE))
def test_check_repair_refuses_links_and_repairs_nothing_through_them(study, where):
    key, _ = COMPARE_WHERE[where]
    plant(study, key)
    outside, inside = snapshot(study.parent / "outside"), snapshot(study)
    one_sentence(invoke("check", study, "--repair"), "symbolic link", "remove the link")
    assert snapshot(study.parent / "outside") == outside and snapshot(study) == inside
