"""The sweep: outputs equal a direct onnxruntime run, resume after SIGKILL, concurrent runs, bad input."""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _probes import make_probe, toy_corrupt

from onnx_geom.errors import DataError, StudyError
from onnx_geom.store import Study, Unit
from onnx_geom.sweep import sweep

CHILD = Path(__file__).parent / "_sweep_child.py"
CORRUPTIONS, SEVERITIES, SEED = ["n1", "n2", "n3"], [1, 2], 5
PLAN = [("clean", 0)] + [(c, s) for c in CORRUPTIONS for s in SEVERITIES]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Two small probes with different heads (4 and 4 classes, D 8 and 5) and 30 labelled images on disk."""
    work = tmp_path_factory.mktemp("sweep")
    onnx.save(make_probe(seed=1)[0], work / "a.onnx")
    onnx.save(make_probe(seed=2, features=5)[0], work / "b.onnx")
    rng = np.random.default_rng(3)
    np.savez(
        work / "data.npz", images=rng.integers(0, 256, (30, 6, 6, 3), dtype=np.uint8), labels=rng.integers(0, 4, 30)
    )
    return work


@pytest.fixture(scope="module")
def expected(work):
    """Every unit computed directly: corrupt the whole set at once, one plain onnxruntime call per model."""
    data = np.load(work / "data.npz")
    out = {}
    for model in ("a", "b"):
        session = ort.InferenceSession(str(work / f"{model}.onnx"), providers=["CPUExecutionProvider"])
        for corruption, severity in PLAN:
            images = (
                data["images"]
                if corruption == "clean"
                else toy_corrupt(data["images"], corruption, severity, rng=SEED, indices=range(30))
            )
            feats, logits = session.run(["features", "logits"], {"images": images})
            out[Unit(model, corruption, severity)] = {"features": feats, "logits": logits}
    return out


def run(work, study, **kw):
    data = np.load(work / "data.npz")
    options = {
        "corruptions": CORRUPTIONS,
        "severities": SEVERITIES,
        "batch_size": 8,
        "device": "cpu",
        "seed": SEED,
        "corrupt": toy_corrupt,
    }
    return sweep(
        {"a": work / "a.onnx", "b": work / "b.onnx"}, (data["images"], data["labels"]), study, **{**options, **kw}
    )


def assert_study_equals(path, expected):
    study = Study.open(path)
    assert set(study.units()) == set(expected)
    for unit, arrays in expected.items():
        for name, value in arrays.items():
            np.testing.assert_allclose(study.read(unit, name), value, rtol=1e-6, atol=1e-6, err_msg=f"{unit} {name}")


def test_sweep_equals_direct_onnxruntime(work, expected, tmp_path):
    events = []
    summary = run(work, tmp_path / "s", batch_size=7, progress=lambda e, u, c: events.append((e, u, c)))
    assert_study_equals(tmp_path / "s", expected)
    labels = np.load(work / "data.npz")["labels"]
    for model in ("a", "b"):
        for corruption in ["clean", *CORRUPTIONS]:
            sevs = [s for c, s in PLAN if c == corruption]
            acc = np.mean([np.mean(expected[Unit(model, corruption, s)]["logits"].argmax(1) == labels) for s in sevs])
            assert summary["accuracy"][model][corruption] == pytest.approx(acc)
    assert (
        events[:2] == [("plan", None, 14), ("plan_images", None, 14 * 30)]
        and sum(c for e, _, c in events if e == "images") == 14 * 30
    )
    assert summary["units"]["already_complete"] == 0 and len(summary["units"]["computed"]) == 14
    assert summary["device"] == "cpu" and summary["images"] == 30
    study = Study.open(tmp_path / "s")
    assert study.attrs["corruptions"] == ["clean", *CORRUPTIONS] and study.attrs["severities"] == [0, 1, 2]
    np.testing.assert_array_equal(study.head("b")[0], make_probe(seed=2, features=5)[1]["W"])
    # a second run finds everything complete and computes nothing
    again = run(work, tmp_path / "s")
    assert again["units"]["computed"] == [] and again["units"]["already_complete"] == 14


def test_sigkill_then_rerun_recomputes_only_what_was_missing(work, expected, tmp_path):
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(work), str(tmp_path / "s"), "0.03"], stdout=subprocess.PIPE, text=True
    )
    done = []
    for line in child.stdout:
        done.append(line.split()[1])
        if len(done) == 5:
            child.send_signal(signal.SIGKILL)
            break
    child.wait()
    assert child.returncode == -signal.SIGKILL
    study = Study.open(tmp_path / "s")
    complete = {str(u) for u in study.units()}
    assert set(done) <= complete and len(complete) < 14
    summary = run(work, tmp_path / "s")
    assert sorted(summary["units"]["computed"]) == sorted({str(u) for u in expected} - complete)
    assert summary["units"]["already_complete"] == len(complete)
    assert_study_equals(tmp_path / "s", expected)
    run(work, tmp_path / "uninterrupted")  # same options as the child: the arrays must be bit for bit the same
    resumed, whole = Study.open(tmp_path / "s"), Study.open(tmp_path / "uninterrupted")
    assert resumed.units() == whole.units()
    for unit in whole.units():
        for name in ("features", "logits"):
            np.testing.assert_array_equal(resumed.read(unit, name), whole.read(unit, name))


def test_two_concurrent_runs_do_not_corrupt_the_study(work, expected, tmp_path):
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), str(work), str(tmp_path / "s"), "0.01"], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [c.communicate(timeout=120)[0] for c in children]
    assert [c.returncode for c in children] == [0, 0], outputs
    summaries = [
        json.loads(next(line for line in out.splitlines() if line.startswith("summary"))[8:]) for out in outputs
    ]
    computed = [u for s in summaries for u in s["computed"]]
    assert len(computed) == len(set(computed))  # no unit was written twice
    assert_study_equals(tmp_path / "s", expected)


def test_unit_held_by_another_process_is_skipped_and_reported(work, expected, tmp_path):
    run(work, tmp_path / "s", corruptions=[])  # clean only: creates the study
    code = (
        "import sys, time; from onnx_geom.store import Study, Unit\n"
        f"s = Study.open({str(tmp_path / 's')!r}, mode='a')\n"
        "with s.writing(Unit('a', 'n2', 1), {'features': ((30, 8), 'float32')}):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        summary = run(work, tmp_path / "s")
    finally:
        holder.kill()
        holder.wait()
    assert len(summary["units"]["locked"]) == 1
    assert f"a/n2/1 is being written by process {holder.pid}" in summary["units"]["locked"][0]
    assert "a/n2/1" not in summary["units"]["computed"] and len(summary["units"]["computed"]) == 11
    assert run(work, tmp_path / "s")["units"]["computed"] == ["a/n2/1"]
    assert_study_equals(tmp_path / "s", expected)


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, int), "different size"),
        (np.zeros((4, 6, 6, 1), np.uint8), np.zeros(4, int), "different channels"),
        (np.zeros((4, 6, 6, 3), np.uint8), np.array([0, 1, 2, 7]), "4 classes"),
        (np.zeros((4, 6, 6, 3), np.float32), np.zeros(4, int), "must be uint8"),
        (np.zeros((4, 6, 6, 3), np.uint8), np.zeros(3, int), "one label per image"),
    ],
)
def test_data_that_does_not_fit_the_probe(work, tmp_path, images, labels, message):
    with pytest.raises(DataError, match=message):
        sweep({"a": work / "a.onnx"}, (images, labels), tmp_path / "s", corruptions=[], device="cpu")
    assert not (tmp_path / "s").exists()  # refused before anything was written


def test_unknown_corruption_is_refused_before_writing(work, tmp_path):
    with pytest.raises(DataError, match="unknown corruption"):
        run(work, tmp_path / "s", corruptions=["fgo"], corrupt=None)
    assert not (tmp_path / "s").exists()


def test_unreadable_or_foreign_study(work, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "zarr.json").write_text("garbage")
    with pytest.raises(StudyError, match="unreadable"):
        run(work, tmp_path / "s", corruptions=[])
    run(work, tmp_path / "t", corruptions=[], limit=20)
    with pytest.raises(StudyError, match="other data"):
        run(work, tmp_path / "t", corruptions=[])  # without --limit: other data, refused


def test_disk_full_mid_sweep_keeps_complete_units(work, expected, tmp_path, monkeypatch):
    import onnx_geom.store._zarrio as files

    real_put, writes = files.put, {"n": 0}

    def put(path, value, **options):
        if "/n2/" in str(path) and path.name != "zarr.json":
            writes["n"] += 1
            if writes["n"] > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_put(path, value, **options)

    monkeypatch.setattr(files, "put", put)
    with pytest.raises(StudyError, match=r"no space left on the device while writing unit ./n2/1"):
        run(work, tmp_path / "s")
    monkeypatch.setattr(files, "put", real_put)
    study = Study.open(tmp_path / "s")
    assert set(study.units()) == {Unit(m, c, s) for m in "ab" for c, s in PLAN[:3]}
    for unit in study.units():
        np.testing.assert_allclose(study.read(unit, "logits"), expected[unit]["logits"], rtol=1e-6, atol=1e-6)
    assert len(run(work, tmp_path / "s")["units"]["computed"]) == 8
    assert_study_equals(tmp_path / "s", expected)


class FakeFolder:
    """The CorruptedFolder interface (CIFAR-10-C layout) over arrays in memory."""

    def __init__(self, images, labels, corruptions, seed):
        self.path, self.n, self.corruptions, self.severities = (
            Path("fake"),
            len(labels),
            tuple(corruptions),
            (1, 2, 3, 4, 5),
        )
        self.blocks = {
            c: np.concatenate(
                [toy_corrupt(images, c, s, rng=seed, indices=range(len(images))) for s in self.severities]
            )
            for c in corruptions
        }
        self.labels = np.tile(labels, 5)

    def array(self, corruption):
        return self.blocks[corruption]

    def read(self, corruption, severity, start=0, stop=None):
        base = (severity - 1) * self.n
        return self.blocks[corruption][base + start : base + (self.n if stop is None else stop)]

    def read_labels(self, severity, start=0, stop=None):
        return self.labels[
            (severity - 1) * self.n + start : (severity - 1) * self.n + (self.n if stop is None else stop)
        ]


def test_corrupted_folder_gives_the_same_units(work, expected, tmp_path, monkeypatch):
    data = np.load(work / "data.npz")
    folder = FakeFolder(data["images"], data["labels"], CORRUPTIONS, SEED)
    monkeypatch.setattr("onnx_geom.sweep.CorruptedFolder", lambda path: folder)
    summary = run(work, tmp_path / "s", corrupted_dir="fake", corruptions=None, corrupt=None)
    assert len(summary["units"]["computed"]) == 14 and Study.open(tmp_path / "s").attrs["profile"] == "folder"
    assert_study_equals(tmp_path / "s", expected)
    folder.labels = folder.labels[::-1].copy()
    with pytest.raises(DataError, match="made from other data"):
        run(work, tmp_path / "t", corrupted_dir="fake", corruptions=None, corrupt=None)


def test_real_corruptions_on_the_fly_equal_a_written_folder(tmp_path):
    """Needs onnx_geom.datasets and onnx_geom.corruptions (the corrupt branch); skipped until they are installed."""
    datasets = pytest.importorskip("onnx_geom.datasets")
    pytest.importorskip("onnx_geom.corruptions")
    onnx.save(make_probe(shape=(32, 32, 3))[0], tmp_path / "p.onnx")
    rng = np.random.default_rng(0)
    data = datasets.Dataset(rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), rng.integers(0, 4, 12), "toy")
    datasets.write_corrupted(
        data, tmp_path / "C", corruptions=["fog", "shot_noise"], severities=(1, 2, 3, 4, 5), seed=0
    )
    sweep(
        {"p": tmp_path / "p.onnx"},
        data,
        tmp_path / "fly",
        corruptions=["fog", "shot_noise"],
        severities=[2, 4],
        device="cpu",
        batch_size=5,
    )
    sweep(
        {"p": tmp_path / "p.onnx"},
        data,
        tmp_path / "disk",
        corrupted_dir=tmp_path / "C",
        severities=[2, 4],
        device="cpu",
    )
    fly, disk = Study.open(tmp_path / "fly"), Study.open(tmp_path / "disk")
    assert fly.units() == disk.units() and len(fly.units()) == 5
    for unit in fly.units():
        np.testing.assert_array_equal(fly.read(unit, "features"), disk.read(unit, "features"))


def test_plain_model_is_probed_on_the_fly(tmp_path):
    """Needs onnx_geom.probe (the probe branch); skipped until it is installed."""
    pytest.importorskip("onnx_geom.probe")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(6 * 6 * 3, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("Gemm", ["flat", "W", "b"], ["y"])], "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")],
    )  # fmt: skip
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "plain.onnx"
    )
    images, labels = rng.integers(0, 256, (9, 6, 6, 3), dtype=np.uint8), rng.integers(0, 5, 9)
    sweep({"plain": tmp_path / "plain.onnx"}, (images, labels), tmp_path / "s", corruptions=[], device="cpu")
    study = Study.open(tmp_path / "s")
    x = np.moveaxis(images / 255.0, -1, 1).reshape(9, -1)  # the probe's default preset: scale to [0, 1] only
    np.testing.assert_allclose(study.read(Unit("plain", "clean", 0), "logits"), x @ W + b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(study.head("plain")[0], W.T)
