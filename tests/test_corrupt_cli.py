"""``onnx-geom corrupt``: CIFAR-10-C layout readable back, resumable, batch-independent, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from onnx_geom.cli.app import app
from onnx_geom.corruptions import corrupt
from onnx_geom.datasets import CorruptedFolder, Dataset, load, save_npz, write_corrupted
from tests._corruption_data import smooth_images


@pytest.fixture()
def data(tmp_path):
    ds = Dataset(smooth_images(5), np.arange(5) % 3, "toy")
    save_npz(ds, tmp_path / "toy.npz")
    return ds, tmp_path / "toy.npz"


def test_writes_the_cifar10c_layout_that_reads_back(tmp_path, data):
    ds, path = data
    out = tmp_path / "c"
    result = CliRunner().invoke(
        app,
        [
            "corrupt",
            str(path),
            "-o",
            str(out),
            "-c",
            "fog,shot_noise",
            "--severities",
            "2-3",
            "--seed",
            "4",
            "--batch-size",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    folder = CorruptedFolder(out)
    assert folder.corruptions == ("shot_noise", "fog") and folder.severities == (2, 3) and folder.n == 5
    for name in folder.corruptions:
        for severity in (2, 3):
            assert (folder.read(name, severity) == corrupt(ds.images, name, severity, rng=4)).all()
            assert folder.read_labels(severity).tolist() == ds.labels.tolist()
    assert (load(out, corruption="fog", severity=3).images == folder.read("fog", 3)).all()


def test_batch_size_does_not_change_the_bytes(tmp_path, data):
    ds, _ = data
    for b in (1, 3):
        write_corrupted(
            ds, tmp_path / f"b{b}", corruptions=["glass_blur", "spatter"], severities=[4], seed=1, batch_size=b
        )
    for name in ("glass_blur", "spatter"):
        assert (np.load(tmp_path / "b1" / f"{name}.npy") == np.load(tmp_path / "b3" / f"{name}.npy")).all()


def test_a_killed_run_leaves_no_file_that_looks_complete_and_resumes(tmp_path, data, monkeypatch):
    ds, _ = data
    out = tmp_path / "c"
    import onnx_geom.corruptions as corruptions

    real = corruptions.corrupt
    calls = []

    def dying(images, name, *args, **kwargs):
        calls.append(name)
        if name == "fog" and len(calls) > 3:
            raise KeyboardInterrupt
        return real(images, name, *args, **kwargs)

    monkeypatch.setattr(corruptions, "corrupt", dying)
    with pytest.raises(KeyboardInterrupt):
        write_corrupted(ds, out, corruptions=["contrast", "fog"], batch_size=2)
    assert (out / "contrast.npy").is_file() and not (out / "fog.npy").exists()
    assert not list(out.glob(".*part"))  # the half-written temporary file is gone
    stamp = (out / "contrast.npy").stat().st_mtime_ns
    monkeypatch.setattr(corruptions, "corrupt", real)
    written = write_corrupted(ds, out, corruptions=["contrast", "fog"], batch_size=2)
    assert written == ["fog"] and (out / "contrast.npy").stat().st_mtime_ns == stamp
    assert (CorruptedFolder(out).read("fog", 5) == corrupt(ds.images, "fog", 5, rng=0)).all()


def test_other_settings_in_the_same_folder_are_refused(tmp_path, data):
    _ds, path = data
    out = tmp_path / "c"
    assert CliRunner().invoke(app, ["corrupt", str(path), "-o", str(out), "-c", "contrast"]).exit_code == 0
    result = CliRunner().invoke(app, ["corrupt", str(path), "-o", str(out), "-c", "contrast", "--seed", "9"])
    assert result.exit_code == 1 and "other settings (seed)" in result.output
    result = CliRunner().invoke(app, ["corrupt", str(path), "-o", str(out), "-c", "contrast", "--json"])
    assert result.exit_code == 0 and '"skipped": [\n    "contrast"' in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-c", "blur"], "unknown corruption(s) blur"),
        (["--severities", "0-2"], "between 1 and 5"),
        (["--severities", "x"], "look like 1-5"),
        (["--profile", "mnist"], "'mnist' is not one of 'cifar', 'imagenet'"),
    ],
)
def test_bad_options_get_one_sentence_and_exit_1(tmp_path, data, args, message):
    _, path = data
    result = CliRunner().invoke(app, ["corrupt", str(path), "-o", str(tmp_path / "c"), *args])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_missing_data_says_where_to_put_cifar(tmp_path):
    result = CliRunner().invoke(app, ["corrupt", str(tmp_path / "nothing"), "-o", str(tmp_path / "c")])
    assert result.exit_code == 1 and "nothing is downloaded" in result.output


def test_a_folder_begun_under_the_old_random_streams_is_not_resumed(tmp_path, data):
    import json

    _ds, path = data
    out = tmp_path / "c"
    assert CliRunner().invoke(app, ["corrupt", str(path), "-o", str(out), "-c", "contrast"]).exit_code == 0
    meta = json.loads((out / "corruptions.json").read_text())
    del meta["streams"]  # as written before the counter-based streams
    (out / "corruptions.json").write_text(json.dumps(meta))
    result = CliRunner().invoke(app, ["corrupt", str(path), "-o", str(out), "-c", "fog"])
    assert result.exit_code == 1 and "other settings (streams)" in result.output and not (out / "fog.npy").exists()
