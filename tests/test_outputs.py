"""Output paths (issue 12, classes 1-3): no command writes into a study or over its own input, an output path that
cannot be written is one sentence and exit code 1, and a folder of corrupted sets is never fed from other data.

Every refusal is checked through the command line (typer's CliRunner): exit code 1, one line starting with
``error:``, no traceback, and every file of the study and of the inputs byte-identical afterwards.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from _probe_models import gemm_trans_b0
from geometry_study import make_study
from typer.testing import CliRunner

from onnx_geom import _files
from onnx_geom.cli.app import app
from onnx_geom.datasets import CorruptedFolder, Dataset, save_npz, write_corrupted
from onnx_geom.errors import DataError, OutputError
from tests._corruption_data import smooth_images

# ----------------------------------------------------------------------------------------------- helpers


def hashes(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (hidden ones included), by path: what "byte-identical" compares."""
    found = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def invoke(args):
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(args, *, contains: str, keep=(), absent=()) -> str:
    """Run ``onnx-geom ARGS``; assert exit 1, one sentence, no traceback, ``contains`` in it, every file under
    ``keep`` byte-identical and nothing at ``absent``. Returns the message."""
    keep = [Path(p) for p in keep]
    before = hashes(*keep)
    result = CliRunner().invoke(app, [str(a) for a in args])
    text = result.output.strip()
    assert result.exit_code == 1, text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in text and "\n" not in text and text.startswith("error:"), text
    assert contains in text, text
    assert hashes(*keep) == before, "a refused command changed a file"
    for path in absent:
        assert not os.path.lexists(path), f"{path} was written"
    return text


@pytest.fixture
def study(tmp_path):
    """A study with geometry (metrics, compare and view can all run on it)."""
    path = tmp_path / "study"
    make_study(path, geometry=True)
    return path


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(gemm_trans_b0(np.random.default_rng(0))[0], path)
    return path


@pytest.fixture
def data(tmp_path):
    """A clean data set as .npz (5 images, 3 classes)."""
    path = tmp_path / "toy.npz"
    save_npz(Dataset(smooth_images(5), np.arange(5) % 3, "toy"), path)
    return path


@pytest.fixture
def zarr_store(tmp_path):
    """A Zarr v3 group that is not an onnx-geom study (someone else's data)."""
    path = tmp_path / "other.zarr"
    path.mkdir()
    (path / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"x": 1}}))
    return path


# Every command with an output option, as (name, arguments before the output option, the option, its kind).
def _commands(study: Path, model: Path, data: Path) -> list[tuple[str, list, str, str]]:
    return [
        ("probe", ["probe", model], "-o", "file"),
        ("metrics --csv", ["metrics", study], "--csv", "file"),
        ("metrics --parquet", ["metrics", study], "--parquet", "file"),
        ("compare -o", ["compare", study], "-o", "folder"),
        ("view --screenshot", ["view", study], "--screenshot", "file"),
        ("report -o", ["report", study, "--no-figures"], "-o", "file"),
        ("corrupt -o", ["corrupt", data, "-c", "contrast", "--severities", "1"], "-o", "folder"),
        ("demo -o", ["demo", "--headless", "--models", "dense", "-c", "contrast", "--severities", "1"], "-o", "folder"),
    ]


COMMANDS = ["probe", "metrics --csv", "metrics --parquet", "compare -o", "view --screenshot", "report -o", "corrupt -o",
            "demo -o"]  # fmt: skip


def command(name, study, model, data):
    return next(c for c in _commands(study, model, data) if c[0] == name)


# ------------------------------------------------------------------- class 1: never into a study, never over an input


@pytest.mark.parametrize("name", COMMANDS)
def test_no_command_writes_into_a_study(name, study, model, data, tmp_path):
    _, args, option, kind = command(name, study, model, data)
    inside = study / ("zarr.json" if kind == "file" else "models")
    refused([*args, option, inside], contains=f"lies inside the onnx-geom study {study}", keep=[study, model, data])
    deeper = study / "models" / "dense" / ("x.png" if kind == "file" else "new")
    refused([*args, option, deeper], contains="which only onnx-geom's own commands change", keep=[study],
            absent=[deeper])  # fmt: skip
    refused([*args, option, study], contains=f"{study} is the onnx-geom study", keep=[study, model, data])


@pytest.mark.parametrize("name", COMMANDS)
def test_no_command_writes_into_another_zarr_store(name, study, model, data, zarr_store):
    _, args, option, kind = command(name, study, model, data)
    target = zarr_store / ("t.csv" if kind == "file" else "t")
    refused([*args, option, target], contains=f"lies inside the Zarr store {zarr_store}", keep=[zarr_store, study],
            absent=[target])  # fmt: skip


@pytest.mark.parametrize("name", COMMANDS)
def test_no_command_writes_into_a_study_through_a_symbolic_link(name, study, model, data, tmp_path):
    _, args, option, kind = command(name, study, model, data)
    (tmp_path / "link").symlink_to(study / "models")  # a folder outside that leads into the study
    target = tmp_path / "link" / ("t.png" if kind == "file" else "t")
    refused([*args, option, target], contains="(through a symbolic link)", keep=[study], absent=[target])
    if kind == "file":  # a file outside that links to one of the study's files
        (tmp_path / "meta.lnk").symlink_to(study / "zarr.json")
        refused([*args, option, tmp_path / "meta.lnk"], contains=f"inside the onnx-geom study {study} (through",
                keep=[study])  # fmt: skip


def test_no_command_writes_over_its_own_input(study, model, data, tmp_path):
    refused(["probe", model, "-o", model], contains=f"{model} is the input file itself", keep=[model])
    (tmp_path / "same.onnx").symlink_to(model)
    refused(["probe", model, "-o", tmp_path / "same.onnx"], contains="is the input file", keep=[model])
    folder = tmp_path / "cifar"  # a folder of clean data, corrupted into itself or into a folder inside it
    folder.mkdir()
    shutil.copy(data, folder / "toy.npz")
    refused(["corrupt", data, "-o", data], contains=f"{data} is the input file itself", keep=[data])
    image_folder = tmp_path / "images"
    for label in ("a", "b"):
        (image_folder / label).mkdir(parents=True)
        from PIL import Image

        Image.fromarray(smooth_images(1, 8, 8)[0]).save(image_folder / label / "0.png")
    for target in (image_folder, image_folder / "corrupted"):
        refused(["corrupt", image_folder, "-c", "contrast", "-o", target], contains="input folder",
                keep=[image_folder], absent=[image_folder / "labels.npy", image_folder / "corrupted"])  # fmt: skip
    # metrics --csv onto the study's own files, compare -o onto the study: refused as writes into a study
    refused(["metrics", study, "--csv", study / "labels" / "zarr.json"], contains="inside the onnx-geom study",
            keep=[study])  # fmt: skip
    refused(["compare", study, "-o", study], contains="is the onnx-geom study", keep=[study])


def test_a_probe_never_overwrites_its_source_external_data(tmp_path):
    source, _ = gemm_trans_b0(np.random.default_rng(0))
    onnx.save(source, tmp_path / "big.onnx", save_as_external_data=True, location="big.onnx.data",
              size_threshold=0)  # fmt: skip
    keep = [tmp_path / "big.onnx", tmp_path / "big.onnx.data"]
    refused(["probe", tmp_path / "big.onnx", "-o", tmp_path / "big.onnx.data"], contains="is the input file",
            keep=keep)  # fmt: skip


def test_demo_refuses_a_folder_whose_study_is_not_the_demo_s(tmp_path):
    folder = tmp_path / "mine"
    make_study(folder / "study")  # the user's own study, where the demo would write its own
    refused(["demo", "--headless", "-o", folder], contains="is another study or Zarr store than the demo's own",
            keep=[folder], absent=[folder / "probes", folder / "compare"])  # fmt: skip


def test_the_library_writers_refuse_too(study, tmp_path):
    from onnx_geom.probe import probe, save_probe
    from onnx_geom.records import write_csv, write_json
    from onnx_geom.viewers import screenshot

    before = hashes(study)
    with pytest.raises(OutputError, match="inside the onnx-geom study"):
        write_csv(study / "zarr.json", [{"a": 1}])
    with pytest.raises(OutputError, match="inside the onnx-geom study"):
        write_json(study / "models" / "x.json", {})
    with pytest.raises(OutputError, match="inside the onnx-geom study"):
        save_npz(Dataset(np.zeros((1, 2, 2, 3), np.uint8), np.zeros(1, int), "x"), study / "x.npz")
    with pytest.raises(OutputError, match="inside the onnx-geom study"):
        screenshot(study, study / "shot.png")  # refused before anything is rendered
    onnx.save(gemm_trans_b0(np.random.default_rng(0))[0], tmp_path / "m.onnx")
    with pytest.raises(OutputError, match="inside the onnx-geom study"):
        save_probe(probe(tmp_path / "m.onnx"), study / "zarr.json")
    with pytest.raises(OutputError, match="is the input file"):
        save_probe(probe(tmp_path / "m.onnx"), tmp_path / "m.onnx", inputs=[tmp_path / "m.onnx"])
    assert hashes(study) == before


# --------------------------------------------------------------------- class 2: output paths that cannot be written


@pytest.mark.parametrize("name", COMMANDS)
def test_the_wrong_kind_of_path_is_one_sentence(name, study, model, data, tmp_path):
    _, args, option, kind = command(name, study, model, data)
    a_file, a_folder = tmp_path / "a_file", tmp_path / "a_folder"
    a_file.write_text("keep me")
    a_folder.mkdir()
    if kind == "file":  # a folder where a file belongs (Click says "directory" for an option it checks itself)
        text = refused([*args, option, a_folder], contains=str(a_folder), keep=[a_folder, study])
        assert "is a folder" in text or "is a directory" in text
    else:  # a file where a folder belongs
        text = refused([*args, option, a_file], contains=str(a_file), keep=[a_file, study])
        assert "is a file" in text
    below = a_file / "sub" / ("x.csv" if kind == "file" else "out")  # a file on the way
    refused([*args, option, below], contains=f"{a_file} is a file, not a folder", keep=[a_file, study])


@pytest.mark.parametrize("name", COMMANDS)
def test_a_read_only_folder_is_one_sentence(name, study, model, data, tmp_path, monkeypatch):
    """The message path, for every command: the tests may run as root, whom a read-only mode does not stop, so
    the folder is read-only as far as os.access can tell (the real case: the next test)."""
    _, args, option, kind = command(name, study, model, data)
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(
        _files.os, "access", lambda p, mode, **kw: False if Path(p) == locked and mode & os.W_OK else real(p, mode)
    )
    target = locked / ("out.png" if kind == "file" else "out")
    refused([*args, option, target], contains=f"the folder {locked} is not writable", keep=[study, model, data],
            absent=[target])  # fmt: skip


def _obey_file_modes() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so that
    root's process obeys file modes like any user's (PR_CAPBSET_DROP; needs CAP_SETPCAP, which root has)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed: root's override cannot be dropped")


def test_a_really_read_only_folder_is_one_sentence(model, tmp_path):
    """A real read-only folder (mode 0o555) and a real command in a child process. Root ignores file modes, so as
    root the child runs without the capabilities that let it (it stays root: the interpreter under /root can still
    be read); any other user is stopped by the mode itself."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    target = locked / "p.onnx"
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    try:
        done = subprocess.run(
            [sys.executable, "-m", "onnx_geom", "probe", str(model), "-o", str(target)],
            capture_output=True, text=True, timeout=300, preexec_fn=_obey_file_modes if as_root else None,
        )  # fmt: skip
        text = done.stderr.strip()
        assert done.returncode == 1, (done.stdout, text)
        assert text.startswith("error:") and "\n" not in text and "Traceback" not in text, text
        assert f"the folder {locked} is not writable" in text, text
        assert not list(locked.iterdir())
    finally:
        locked.chmod(0o755)


def test_a_failed_write_is_one_sentence_and_leaves_no_file(study, model, tmp_path, monkeypatch):
    """Disk full (or any OSError) while writing: one sentence, and the target is not created or half-written."""
    import contextlib

    import onnx_geom.probe._surgery as surgery
    import onnx_geom.records as records

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    @contextlib.contextmanager
    def full_disk(path, **kwargs):
        full()
        yield

    monkeypatch.setattr(surgery, "write_bytes", full)
    refused(["probe", model, "-o", tmp_path / "p.onnx"], contains="(No space left on device); free some space",
            keep=[model], absent=[tmp_path / "p.onnx"])  # fmt: skip
    monkeypatch.setattr(records, "replacing", full_disk)
    refused(["metrics", study, "--csv", tmp_path / "s.csv"], contains="No space left on device",
            absent=[tmp_path / "s.csv"])  # fmt: skip
    refused(["compare", study, "-o", tmp_path / "cmp"], contains="No space left on device",
            absent=[tmp_path / "cmp" / "summary.csv"])  # fmt: skip


def test_missing_parent_folders_are_created(study, data, tmp_path):
    """The one rule for a missing parent folder, in every command: it is created (docs/guarantees.md)."""
    runs = [
        ["metrics", study, "--csv", tmp_path / "a" / "b" / "s.csv"],
        ["compare", study, "-o", tmp_path / "c" / "d"],
        ["corrupt", data, "-c", "contrast", "--severities", "1", "-o", tmp_path / "e" / "f"],
    ]
    for args in runs:
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "b" / "s.csv").is_file() and (tmp_path / "c" / "d" / "summary.csv").is_file()
    assert (tmp_path / "e" / "f" / "contrast.npy").is_file()


def test_check_output_rules(tmp_path, study):
    """The rules themselves, in the library: what passes, and the refusals not reached through a command."""
    assert _files.check_output(tmp_path / "new" / "x.csv") == tmp_path / "new" / "x.csv"
    assert not (tmp_path / "new").exists()  # the check creates nothing
    with pytest.raises(OutputError, match="not a regular file"):
        _files.check_output("/dev/null")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match="broken symbolic link"):
        _files.check_output(tmp_path / "dangling", kind="folder")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(OutputError, match="loop"):
        _files.check_output(tmp_path / "loop" / "x.csv")
    assert _files.check_output(study.parent / "beside-the-study.csv") == study.parent / "beside-the-study.csv"
    assert _files.check_output(study / ".." / "x.csv") == study / ".." / "x.csv"  # '..' out of a study is fine


# ------------------------------------------------------------------ class 3: corrupted folders know their source


def _write(path: Path, images: np.ndarray, labels: np.ndarray, name: str = "toy") -> Path:
    save_npz(Dataset(images, labels, name), path)
    return path


def test_a_corrupted_folder_records_its_source_fingerprint(tmp_path, data):
    import hashlib

    out = tmp_path / "c"
    assert invoke(["corrupt", data, "-o", out, "-c", "contrast"]).exit_code == 0
    # the sha256 of the fixture's own labels (as little-endian int64) followed by its images (uint8)
    expected = hashlib.sha256(np.asarray(np.arange(5) % 3, "<i8").tobytes() + smooth_images(5).tobytes()).hexdigest()
    assert CorruptedFolder(out).source_fingerprint == expected
    assert json.loads((out / "corruptions.json").read_text())["source_fingerprint"] == expected


def test_corrupt_refuses_a_folder_made_from_other_data(tmp_path):
    labels = np.arange(5) % 3
    first = _write(tmp_path / "a.npz", smooth_images(5, seed=1), labels)
    other = _write(tmp_path / "b" / "a.npz", smooth_images(5, seed=2), labels)  # same name, n and labels
    out = tmp_path / "c"
    assert invoke(["corrupt", first, "-o", out, "-c", "contrast"]).exit_code == 0
    text = refused(["corrupt", other, "-o", out, "-c", "fog"], contains=f"{out} was made from other data ('toy', 5",
                   keep=[out], absent=[out / "fog.npy"])  # fmt: skip
    assert "use a new folder" in text
    assert invoke(["corrupt", first, "-o", out, "-c", "fog"]).exit_code == 0  # same data: resumes


def test_corrupt_refuses_folders_whose_source_is_unknown(tmp_path, data):
    published = tmp_path / "CIFAR-10-C"  # no corruptions.json, as published
    published.mkdir()
    np.save(published / "labels.npy", np.tile(np.arange(5) % 3, 5))
    np.save(published / "fog.npy", np.zeros((25, 32, 32, 3), np.uint8))
    assert CorruptedFolder(published).source_fingerprint is None
    refused(["corrupt", data, "-o", published, "-c", "contrast"], contains="no corruptions.json", keep=[published],
            absent=[published / "contrast.npy", published / "corruptions.json"])  # fmt: skip
    older = tmp_path / "older"  # written before the fingerprint was recorded
    assert invoke(["corrupt", data, "-o", older, "-c", "contrast"]).exit_code == 0
    meta = json.loads((older / "corruptions.json").read_text())
    del meta["source_fingerprint"]
    (older / "corruptions.json").write_text(json.dumps(meta))
    assert CorruptedFolder(older).source_fingerprint is None
    refused(["corrupt", data, "-o", older, "-c", "fog"], contains="does not record which data", keep=[older])
    (older / "corruptions.json").write_text("{not json")
    refused(["corrupt", data, "-o", older, "-c", "fog"], contains="is not a valid JSON object", keep=[older])


def test_a_damaged_source_fingerprint_is_a_data_error(tmp_path, data):
    out = tmp_path / "c"
    write_corrupted(Dataset(smooth_images(5), np.arange(5) % 3, "toy"), out, corruptions=["contrast"])
    meta = json.loads((out / "corruptions.json").read_text())
    meta["source_fingerprint"] = 12
    (out / "corruptions.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="source_fingerprint 12 is not a sha256"):
        CorruptedFolder(out)
