"""The sweep: outputs equal a direct onnxruntime run, resume after SIGKILL, concurrent runs, bad input."""

from __future__ import annotations

import errno
import json
import signal
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _child import Child
from _probes import make_probe, toy_corrupt

from onnx_geom import datasets
from onnx_geom.errors import DataError, StudyError, StudyLockedError
from onnx_geom.store import Study, Unit
from onnx_geom.sweep import sweep

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
    images, _labels = load_data(work)
    out = {}
    for model in ("a", "b"):
        session = ort.InferenceSession(str(work / f"{model}.onnx"), providers=["CPUExecutionProvider"])
        for corruption, severity in PLAN:
            corrupted = (
                images
                if corruption == "clean"
                else toy_corrupt(images, corruption, severity, rng=SEED, indices=range(30))
            )
            feats, logits = session.run(["features", "logits"], {"images": corrupted})
            out[Unit(model, corruption, severity)] = {"features": feats, "logits": logits}
    return out


def load_data(work):
    """The test images and labels (the file closed again)."""
    with np.load(work / "data.npz") as data:
        return data["images"], data["labels"]


def run(work, study, **kw):
    images, labels = load_data(work)
    options = {
        "corruptions": CORRUPTIONS,
        "severities": SEVERITIES,
        "batch_size": 8,
        "device": "cpu",
        "seed": SEED,
        "corrupt": toy_corrupt,
    }
    return sweep({"a": work / "a.onnx", "b": work / "b.onnx"}, (images, labels), study, **{**options, **kw})


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
    _images, labels = load_data(work)
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


def test_sigkill_mid_unit_then_rerun_recomputes_only_what_was_missing(work, expected, tmp_path):
    with Child("sweep", work, tmp_path / "s") as child:
        done = []
        while (line := child.read()) != "batch n1 2 16":  # the third batch of the fifth condition, n1/2
            kind, what = line.split(maxsplit=1)
            assert kind in ("holding", "batch", "unit"), line
            if kind == "unit":
                done.append(what)
            else:
                child.send("go")
        # the child is now making that batch: the two n1/2 units are claimed, their first batch written
        assert child.kill() == -signal.SIGKILL
    assert done == ["a/clean/0", "b/clean/0", "a/n1/1", "b/n1/1"]
    study = Study.open(tmp_path / "s")
    assert [str(u) for u in study.units()] == sorted(done)
    killed = study.incomplete_units()
    assert [str(u) for u, _ in killed] == ["a/n1/2", "b/n1/2"] and {w["pid"] for _, w in killed} == {child.pid}
    summary = run(work, tmp_path / "s")
    assert sorted(summary["units"]["computed"]) == sorted({str(u) for u in expected} - set(done))
    assert summary["units"]["already_complete"] == len(done) and summary["units"]["locked"] == []
    assert_study_equals(tmp_path / "s", expected)
    run(work, tmp_path / "uninterrupted")  # same options as the child: the arrays must be bit for bit the same
    resumed, whole = Study.open(tmp_path / "s"), Study.open(tmp_path / "uninterrupted")
    assert resumed.units() == whole.units()
    for unit in whole.units():
        for name in ("features", "logits"):
            np.testing.assert_array_equal(resumed.read(unit, name), whole.read(unit, name))


def _until_holding(child: Child) -> str:
    """Let ``child`` go on until it holds a unit; returns that unit (the child waits, holding it)."""
    while True:
        line = child.read()
        if line.startswith("holding "):
            return line.split()[1]
        assert line.startswith(("batch ", "skip ")), line
        if line.startswith("batch "):
            child.send("go")


def test_two_concurrent_runs_overlap_and_do_not_corrupt_the_study(work, expected, tmp_path):
    path = tmp_path / "s"
    with Child("sweep", work, path) as first:
        assert _until_holding(first) == "a/clean/0"  # it waits, holding the plan's first unit
        with Child("sweep", work, path) as second:
            assert _until_holding(second) == "b/clean/0"  # found a/clean/0 locked, took the next one
            # both hold a unit at once; each lock is visible to a third writer and names its holder
            study = Study.open(path, mode="a")
            for child, model in ((first, "a"), (second, "b")):
                unit = Unit(model, "clean", 0)
                with pytest.raises(StudyLockedError, match=f"{unit} is being written by process {child.pid} "):
                    study.write_unit(unit, expected[unit])
            for child in (first, second):
                child.send("free")
            outputs = [child.finish() for child in (first, second)]
    summaries = [json.loads(next(x for x in out if x.startswith("summary "))[8:]) for out in outputs]
    assert f"a/clean/0 is being written by process {first.pid}" in " ".join(summaries[1]["locked"])
    computed = [u for s in summaries for u in s["computed"]]
    assert len(computed) == len(set(computed)) == 14  # every unit written once, by one of them
    assert_study_equals(path, expected)


def test_unit_held_by_another_process_is_skipped_and_reported(work, expected, tmp_path):
    run(work, tmp_path / "s", corruptions=[])  # clean only: creates the study
    with Child("hold", tmp_path / "s", "a", "n2", 1, 30, 8) as holder:
        assert holder.read() == "holding a/n2/1"
        summary = run(work, tmp_path / "s")
        holder.kill()
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
        self.source_fingerprint, self.meta = None, {}  # like a published CIFAR-10-C folder: nobody recorded its source

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
    folder = FakeFolder(*load_data(work), CORRUPTIONS, SEED)
    monkeypatch.setattr("onnx_geom.sweep.CorruptedFolder", lambda path: folder)
    summary = run(work, tmp_path / "s", corrupted_dir="fake", corruptions=None, corrupt=None)
    assert len(summary["units"]["computed"]) == 14 and Study.open(tmp_path / "s").attrs["profile"] == "folder"
    assert_study_equals(tmp_path / "s", expected)
    folder.labels = folder.labels[::-1].copy()
    with pytest.raises(DataError, match="made from other data"):
        run(work, tmp_path / "t", corrupted_dir="fake", corruptions=None, corrupt=None)


def test_real_corruptions_on_the_fly_equal_a_written_folder(tmp_path):
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
