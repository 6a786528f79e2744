"""`onnx-geom run` and `onnx-geom info`: JSON and tables, clear one-line errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _probes import make_probe
from typer.testing import CliRunner

from onnx_geom import corruptions
from onnx_geom.cli.app import app

RUNNER = CliRunner()


@pytest.fixture
def files(tmp_path):
    shape = (16, 16, 3)  # the smallest size the corruptions accept
    onnx.save(make_probe(seed=1, shape=shape)[0], tmp_path / "dense.probe.onnx")
    onnx.save(make_probe(seed=2, shape=shape, features=5)[0], tmp_path / "other.onnx")
    rng = np.random.default_rng(4)
    np.savez(
        tmp_path / "data.npz", images=rng.integers(0, 256, (25, *shape), dtype=np.uint8), labels=rng.integers(0, 4, 25)
    )
    return tmp_path


def direct_accuracy(model_path, data_path):
    with np.load(data_path) as data:
        images, labels = data["images"], data["labels"]
    logits = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).run(
        ["logits"], {"images": images}
    )[0]
    return float(np.mean(logits.argmax(1) == labels))


def invoke(*args):
    result = RUNNER.invoke(app, [str(a) for a in args])
    return result, result.stdout


def test_run_json_then_info(files):
    result, stdout = invoke(
        "run",
        files / "dense.probe.onnx",
        f"pruned={files / 'other.onnx'}",
        "--data",
        files / "data.npz",
        "-o",
        files / "study",
        "--corruptions",
        "none",
        "--device",
        "cpu",
        "--batch-size",
        "10",
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(stdout)
    assert summary["accuracy"]["dense"]["clean"] == pytest.approx(
        direct_accuracy(files / "dense.probe.onnx", files / "data.npz")
    )
    assert summary["accuracy"]["pruned"]["clean"] == pytest.approx(
        direct_accuracy(files / "other.onnx", files / "data.npz")
    )
    result, stdout = invoke("info", files / "study", "--json")
    info = json.loads(stdout)
    assert (
        info["models"]["dense"]["complete"] == 1
        and info["models"]["pruned"]["missing"] == []
        and info["dataset"]["n"] == 25
    )
    result, stdout = invoke("info", files / "study")
    assert result.exit_code == 0 and "dense" in stdout and "pruned" in stdout and "25 images" in stdout


def test_run_table(files):
    result, stdout = invoke(
        "run",
        files / "other.onnx",
        "--data",
        files / "data.npz",
        "-o",
        files / "study",
        "--corruptions",
        "none",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    acc = 100 * direct_accuracy(files / "other.onnx", files / "data.npz")
    assert "other" in stdout and f"{acc:.2f}" in stdout and "1 units computed" in stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["--device", "cuda"], "cuda was asked for", marks=pytest.mark.gpu),  # skips where CUDA works
        (["--severities", "0-7"], "severities must be between 1 and 5"),
        (["--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_run_errors_are_one_sentence(files, extra, message):
    result, _ = invoke(
        "run",
        files / "other.onnx",
        "--data",
        files / "data.npz",
        "-o",
        files / "study",
        "--corruptions",
        "none",
        *extra,
    )
    if "cuda" in extra and ort.get_device() == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
        from onnx_geom.runner import _auto_device

        if _auto_device(False) == "cuda":
            pytest.skip("CUDA works here")
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_duplicate_names_and_missing_study(files):
    result, _ = invoke(
        "run",
        files / "other.onnx",
        f"other={files / 'dense.probe.onnx'}",
        "--data",
        files / "data.npz",
        "-o",
        files / "s",
    )
    assert result.exit_code == 1 and "two models are named 'other'" in result.output
    result, _ = invoke("info", files / "nowhere")
    assert result.exit_code == 1 and "no study at" in result.output and "Traceback" not in result.output


def test_run_with_real_corruptions(files):
    result, stdout = invoke(
        "run",
        files / "other.onnx",
        "--data",
        files / "data.npz",
        "-o",
        files / "study",
        "--corruptions",
        "gaussian_noise",
        "--severities",
        "2",
        "--device",
        "cpu",
        "--seed",
        "3",
        "--batch-size",
        "7",
        "--json",
    )
    assert result.exit_code == 0, result.output
    with np.load(files / "data.npz") as data:
        data = dict(data)
    images = corruptions.corrupt(data["images"], "gaussian_noise", 2, rng=3, indices=np.arange(25))
    logits = ort.InferenceSession(str(files / "other.onnx"), providers=["CPUExecutionProvider"]).run(
        ["logits"], {"images": images}
    )[0]
    assert json.loads(stdout)["accuracy"]["other"]["gaussian_noise"] == pytest.approx(
        np.mean(logits.argmax(1) == data["labels"])
    )


def test_info_shows_incomplete_and_missing_units(files):
    from onnx_geom.store import Study, Unit

    result, _ = invoke(
        "run",
        files / "other.onnx",
        "--data",
        files / "data.npz",
        "-o",
        files / "study",
        "--corruptions",
        "none",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    study = Study.open(files / "study", mode="a")
    study._grow_plan(["fog"], [1])  # as if a run with --corruptions fog --severities 1 had been stopped
    with pytest.raises(RuntimeError), study.writing(Unit("other", "fog", 1), {"features": ((25, 5), "float32")}):
        raise RuntimeError("stopped")
    result, stdout = invoke("info", files / "study")
    assert result.exit_code == 0
    assert "incomplete: other/fog/1 (process" in stdout and "fog/1" in stdout.split("incomplete:")[0]
    info = json.loads(invoke("info", files / "study", "--json")[1])
    assert info["models"]["other"]["missing"] == ["other/fog/1"] and info["incomplete"][0]["unit"] == "other/fog/1"


def test_progress_bar_counts_units_and_images():
    import io

    from rich.console import Console
    from rich.progress import Progress, TextColumn

    from onnx_geom.cli.run import _Bar, _Speed

    buffer = io.StringIO()
    with Progress(TextColumn("units {task.fields[units]}"), TextColumn("{task.completed}/{task.total}"), _Speed(),
                  console=Console(file=buffer, force_terminal=True, width=100)) as progress:  # fmt: skip
        bar = _Bar(progress)
        for event, count in [
            ("plan", 3),
            ("plan_images", 90),
            ("images", 30),
            ("unit", 0),
            ("skip", 0),
            ("images", 30),
            ("unit", 0),
        ]:
            bar(event, None, count)
        task = progress.tasks[0]
        assert (task.completed, task.total, task.fields["units"]) == (60, 90, "3/3")
    assert "units 3/3" in buffer.getvalue() and "images/s" in buffer.getvalue()


def test_a_probe_whose_stored_head_disagrees_with_its_graph_is_refused(files):
    from onnx_geom.probe_info import read_probe_info, write_probe_info

    model = onnx.load(files / "dense.probe.onnx")
    info = read_probe_info(model)
    info.W[0, 0] += 1.0  # the metadata says one thing, the graph computes another
    write_probe_info(model, info)
    onnx.save(model, files / "edited.probe.onnx")
    invoke("run", files / "dense.probe.onnx", "--data", files / "data.npz", "-o", files / "study", "-c", "none")
    before = {p: p.read_bytes() for p in sorted((files / "study").rglob("*")) if p.is_file()}
    result, _ = invoke("run", files / "edited.probe.onnx", "--data", files / "data.npz", "-o", files / "study")
    text = result.output.strip()
    assert result.exit_code == 1 and "\n" not in text and "Traceback" not in text
    assert "the head (W, b) stored in 'edited' does not give its logits" in text and "onnx-geom probe" in text
    assert {p: p.read_bytes() for p in sorted((files / "study").rglob("*")) if p.is_file()} == before


def test_a_model_that_gives_nan_is_said_and_its_broken_samples_count_as_wrong(tmp_path):
    model, weights = make_probe(seed=3, shape=(16, 16, 3), activation="Log")
    onnx.save(model, tmp_path / "log.onnx")
    images = np.random.default_rng(5).integers(1, 256, (12, 16, 16, 3), dtype=np.uint8)
    images[[2, 7, 9]] = 0  # log(0): the model gives -inf features for these three
    labels = np.arange(12) % 4
    np.savez(tmp_path / "data.npz", images=images, labels=labels)
    result, stdout = invoke("run", tmp_path / "log.onnx", "--data", tmp_path / "data.npz", "-o", tmp_path / "s",
                            "-c", "none", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(stdout)
    assert summary["nonfinite"] == {"log/clean/0": 3}
    x = np.moveaxis(images.astype(np.float64) / 255.0, -1, 1).reshape(12, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        logits = np.log(x @ weights["A"].astype(np.float64)) @ weights["W"].T.astype(np.float64) + weights["b"]
    expected = np.mean((logits.argmax(1) == labels) & np.isfinite(logits).all(1))
    assert summary["accuracy"]["log"]["clean"] == pytest.approx(expected)
    assert "warning: model log gave NaN or infinite outputs for some images under clean/0 (3 of 12)" in " ".join(
        result.output.split()
    )
    result, stdout = invoke("metrics", tmp_path / "s", "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(stdout)
    assert row["nonfinite"] == 3 and row["accuracy"] == pytest.approx(expected)
    finite = np.isfinite(logits).all(1)
    f = np.log(x[finite] @ weights["A"].astype(np.float64))
    assert row["mean_length"] == pytest.approx(np.linalg.norm(f, axis=1).mean(), rel=1e-5)
    assert "3 of 12" in " ".join(result.output.split())


def test_a_corrupted_folder_made_from_other_images_with_the_same_labels_is_refused(files, tmp_path):
    with np.load(files / "data.npz") as data:
        images, labels = data["images"], data["labels"]
    other = np.random.default_rng(9).integers(0, 256, images.shape, dtype=np.uint8)  # other images, same labels
    np.savez(tmp_path / "other.npz", images=other, labels=labels)
    for source, folder in ((tmp_path / "other.npz", tmp_path / "from_other"), (files / "data.npz", tmp_path / "own")):
        result, _ = invoke("corrupt", source, "-o", folder, "-c", "fog,gaussian_noise")  # all 5, as published
        assert result.exit_code == 0, result.output
    result, _ = invoke("run", files / "dense.probe.onnx", "--data", files / "data.npz", "--corrupted",
                       tmp_path / "from_other", "-o", tmp_path / "s1", "--severities", "1,2")  # fmt: skip
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "was made by `onnx-geom corrupt` from other data than this clean data" in text
    (tmp_path / "from_other" / "corruptions.json").unlink()  # now like a published folder: nothing says its source
    result, _ = invoke("run", files / "dense.probe.onnx", "--data", files / "data.npz", "--corrupted",
                       tmp_path / "from_other", "-o", tmp_path / "s1", "--severities", "1,2")  # fmt: skip
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "are not corrupted copies of this clean data" in text
    assert not (tmp_path / "s1").exists()  # refused before the study was made
    result, _ = invoke("run", files / "dense.probe.onnx", "--data", files / "data.npz", "--corrupted",
                       tmp_path / "own", "-o", tmp_path / "s2", "--severities", "1,2")  # fmt: skip
    assert result.exit_code == 0, result.output


def test_resuming_a_study_from_another_corrupted_folder_is_refused(files, tmp_path):
    for seed, folder in ((0, tmp_path / "a"), (1, tmp_path / "b")):  # same data, other seeds: other images
        result, _ = invoke(
            "corrupt", files / "data.npz", "-o", folder, "-c", "fog", "--severities", "1", "--seed", seed
        )
        assert result.exit_code == 0, result.output
    common = (
        "run",
        files / "dense.probe.onnx",
        "--data",
        files / "data.npz",
        "--severities",
        "1",
        "-o",
        tmp_path / "s",
    )
    result, _ = invoke(*common, "--corrupted", tmp_path / "a")
    assert result.exit_code == 0, result.output
    before = {p: p.read_bytes() for p in sorted((tmp_path / "s").rglob("*")) if p.is_file()}
    result, _ = invoke(*common, "--corrupted", tmp_path / "b")
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in text and str(tmp_path / "a") in text, text
    assert {p: p.read_bytes() for p in sorted((tmp_path / "s").rglob("*")) if p.is_file()} == before
    result, _ = invoke(*common, "--corrupted", tmp_path / "a")  # the same folder again: nothing to do
    assert result.exit_code == 0, result.output


def test_run_with_batch_size_zero_is_one_sentence_and_writes_nothing(files):
    result, _ = invoke("run", files / "other.onnx", "--data", files / "data.npz", "-o", files / "z", "--batch-size", 0)
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in text and "Invalid value for '--batch-size'" in text
    assert not (files / "z").exists()


def test_without_severities_a_corrupted_folder_gives_its_own(files, tmp_path):
    """A folder that holds severities 2 and 4 is run at 2 and 4 (not refused for lacking 1, 3 and 5); the
    accuracies are those of the folder's images through the probe, computed here directly."""
    result, _ = invoke("corrupt", files / "data.npz", "-o", tmp_path / "c", "-c", "fog", "--severities", "2,4")
    assert result.exit_code == 0, result.output
    result, stdout = invoke("run", files / "dense.probe.onnx", "--data", files / "data.npz", "--corrupted",
                            tmp_path / "c", "-o", tmp_path / "s", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(stdout)
    assert sorted(summary["units"]["computed"]) == ["dense/clean/0", "dense/fog/2", "dense/fog/4"]
    images = np.load(tmp_path / "c" / "fog.npy")  # the two severities' blocks, 25 images each
    labels = np.load(tmp_path / "c" / "labels.npy")
    np.savez(tmp_path / "fog.npz", images=images, labels=labels)
    assert summary["accuracy"]["dense"]["fog"] == pytest.approx(direct_accuracy(files / "dense.probe.onnx",
                                                                               tmp_path / "fog.npz"))  # fmt: skip
    result, _ = invoke("run", files / "dense.probe.onnx", "--data", files / "data.npz", "--corrupted", tmp_path / "c",
                       "-o", tmp_path / "t", "--severities", "1-5")  # fmt: skip
    assert result.exit_code == 1 and "severity 1 is not in" in " ".join(result.output.split()), result.output
