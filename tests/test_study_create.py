"""Creating a study is all or nothing: a full disk or SIGKILL at any step of the creation leaves nothing the same
command refuses, and the next run ends with the study an uninterrupted one has. Where the corrupted images came
from is recorded and compared on resume."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from _probes import make_probe
from _study_files import content, snapshot
from typer.testing import CliRunner

from onnx_geom.cli.app import app
from onnx_geom.errors import StudyError
from onnx_geom.store import Study
from onnx_geom.store import _zarrio as files

RUNNER = CliRunner()
IMAGES = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
LABELS = np.arange(10) % 3
KW = {"images": IMAGES, "labels": LABELS, "dataset_name": "toy", "class_names": ["a", "b", "c"], "seed": 3}


def creation_writes(tmp_path):
    """How many files a creation writes (each a step where it can fail)."""
    calls = []
    real = files.put

    def counting(path, data, **options):
        calls.append(path.name)
        return real(path, data, **options)

    files.put = counting
    try:
        Study.create(tmp_path / "count", corruptions=["clean", "fog"], severities=[0, 1], **KW)
    finally:
        files.put = real
    return len(calls)


def test_a_full_disk_at_each_step_of_creation_leaves_nothing(tmp_path, monkeypatch):
    steps = creation_writes(tmp_path)
    assert steps >= 5  # labels (chunk, metadata), images (chunk, metadata), models, root
    reference = content(tmp_path / "count")
    real = files.put
    for step in range(steps):
        calls = []

        def failing(path, data, step=step, calls=calls, **options):
            calls.append(path)
            if len(calls) - 1 == step:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, data, **options)

        monkeypatch.setattr(files, "put", failing)
        where = tmp_path / f"s{step}"
        with pytest.raises(StudyError, match="no space left on the device while creating the study") as info:
            Study.create(where, corruptions=["clean", "fog"], severities=[0, 1], exist_ok=True, **KW)
        assert "\n" not in str(info.value)
        assert not where.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
        monkeypatch.setattr(files, "put", real)
        Study.create(where, corruptions=["clean", "fog"], severities=[0, 1], exist_ok=True, **KW)
        assert content(where) == reference, step


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("create")
    shape = (16, 16, 3)
    onnx.save(make_probe(seed=1, shape=shape)[0], root / "dense.probe.onnx")
    rng = np.random.default_rng(4)
    np.savez(
        root / "data.npz", images=rng.integers(0, 256, (12, *shape), dtype=np.uint8), labels=rng.integers(0, 4, 12)
    )
    args = ["run", root / "dense.probe.onnx", "--data", root / "data.npz", "-c", "fog", "--severities", "1"]
    args += ["--device", "cpu", "--batch-size", "5"]
    reference = root / "reference"
    result = RUNNER.invoke(app, [*map(str, args), "-o", str(reference)])
    assert result.exit_code == 0, result.output
    return root, [str(a) for a in args], content(reference)


KILLED = textwrap.dedent("""
    import os, signal, sys
    from onnx_geom.store import _zarrio
    step, real, calls = int(sys.argv[1]), _zarrio.put, []
    def put(path, data, **options):
        calls.append(path)
        if len(calls) - 1 == step:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, data, **options)
    _zarrio.put = put
    sys.argv = ["onnx-geom", *sys.argv[2:]]
    from onnx_geom.cli.app import main
    main()
""")


@pytest.mark.slow
@pytest.mark.parametrize("step", range(6))  # labels chunk and metadata, images chunk and metadata, models, root
def test_sigkill_at_each_step_of_creation_then_the_same_command_succeeds(inputs, tmp_path, step):
    _, args, reference = inputs
    study = tmp_path / "study"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED, str(step), *args, "-o", str(study)], capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -9, killed.stderr
    assert not study.exists()  # nothing at the study's place: a killed creation leaves only its temporary folder
    assert [p.name.startswith(".study.creating-") for p in tmp_path.iterdir()] == [True]
    result = RUNNER.invoke(app, [*args, "-o", str(study)])  # the same command
    assert result.exit_code == 0, result.output
    assert content(study) == reference
    assert [p.name for p in tmp_path.iterdir()] == ["study"]  # the leftover was cleaned up


def test_a_full_disk_while_run_creates_the_study_then_the_same_command_succeeds(inputs, tmp_path, monkeypatch):
    _, args, reference = inputs
    real = files.put

    def full(path, data, **options):
        if path.name == "zarr.json" and path.parent.name.startswith(".study.creating-"):  # the root, last
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, **options)

    monkeypatch.setattr(files, "put", full)
    result = RUNNER.invoke(app, [*args, "-o", str(tmp_path / "study")])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "no space left" in result.stderr
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(files, "put", real)
    result = RUNNER.invoke(app, [*args, "-o", str(tmp_path / "study")])
    assert result.exit_code == 0, result.output
    assert content(tmp_path / "study") == reference


def test_a_creator_that_loses_the_rename_opens_the_winners_study(tmp_path, monkeypatch):
    from onnx_geom.store import _root

    real, raced = _root.write_new, []

    def write_new(path, images, labels, attrs):
        real(path, images, labels, attrs)
        if not raced:  # another process creates the same study meanwhile, and wins
            raced.append(path)
            Study.create(tmp_path / "s", corruptions=["clean"], severities=[0], **KW)

    monkeypatch.setattr(_root, "write_new", write_new)
    study = Study.create(tmp_path / "s", corruptions=["clean", "fog"], severities=[0, 1], exist_ok=True, **KW)
    assert raced and study.attrs["corruptions"] == ["clean", "fog"]  # the winner's, grown by the loser's plan
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_an_empty_folder_is_replaced_and_a_leftover_is_ignored(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / ".s.creating-999999999-0123abcd").mkdir()  # left by a killed creation (no such process)
    Study.create(tmp_path / "s", **KW)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    assert Study.open(tmp_path / "s").attrs["dataset"]["n"] == 10


SOURCE = {"folder": "/data/CIFAR-10-C", "sha256": "ab" * 32}


@pytest.mark.parametrize(
    ("first", "again", "message"),
    [
        (
            SOURCE,
            None,
            "has corrupted images read from /data/CIFAR-10-C (sha256 abababababab...), this run's are made on the fly",
        ),
        (None, SOURCE, "has corrupted images made on the fly, this run's are read from /data/CIFAR-10-C"),
        (SOURCE, {**SOURCE, "sha256": "cd" * 32}, "this run's are read from /data/CIFAR-10-C (sha256 cdcdcdcdcdcd...)"),
    ],
)
def test_the_source_of_corrupted_images_is_stored_and_compared(tmp_path, first, again, message):
    Study.create(tmp_path / "s", corrupted=first, **KW)
    assert Study.open(tmp_path / "s").attrs["corrupted"] == first
    before = snapshot(tmp_path / "s")
    Study.create(tmp_path / "s", corrupted=json.loads(json.dumps(first)), exist_ok=True, **KW)  # the same: fine
    with pytest.raises(StudyError) as info:
        Study.create(tmp_path / "s", corrupted=again, exist_ok=True, **KW)
    assert message in str(info.value) and "use the same source of corrupted images, or a new study folder" in str(
        info.value
    )
    assert "\n" not in str(info.value) and snapshot(tmp_path / "s") == before


def test_a_study_from_before_the_source_was_recorded_resumes_on_the_fly(tmp_path):
    Study.create(tmp_path / "s", **KW)
    meta = json.loads((tmp_path / "s" / "zarr.json").read_text())
    del meta["attributes"]["corrupted"]
    (tmp_path / "s" / "zarr.json").write_text(json.dumps(meta))
    Study.create(tmp_path / "s", exist_ok=True, **KW)  # made on the fly then and now
    with pytest.raises(StudyError, match="made on the fly, this run's are read from"):
        Study.create(tmp_path / "s", corrupted=SOURCE, exist_ok=True, **KW)
