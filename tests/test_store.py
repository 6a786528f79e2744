"""The study store: layout readable with plain zarr, atomic units, locks, clear errors."""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import zarr
from _child import Child

from onnx_geom.errors import StudyError, StudyLockedError, StudyNotFoundError
from onnx_geom.probe_info import ProbeInfo
from onnx_geom.store import Study, Unit, UnitAlreadyComplete

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(10, 4, 4, 3), dtype=np.uint8)
LABELS = np.arange(10) % 3
INFO = ProbeInfo(
    W=RNG.normal(size=(3, 5)).astype(np.float32),
    b=RNG.normal(size=3).astype(np.float32),
    input_shape=(4, 4, 3),
    layout="NCHW",
    mean=(0.0,) * 3,
    std=(1.0,) * 3,
    tags={"sparsity": 0.5},
)


def make(tmp_path, **kw):
    study = Study.create(
        tmp_path / "s",
        images=IMAGES,
        labels=LABELS,
        dataset_name="toy",
        class_names=["a", "b", "c"],
        corruptions=["clean", "fog"],
        severities=[0, 1],
        seed=3,
        **kw,
    )
    study.add_model("m", INFO, probe_path="m.onnx")
    return study


def in_study(path, tmp_path):
    """``path``'s key in the study ``tmp_path/s`` (a new study is built in ``.s.creating-...`` beside it)."""
    return re.sub(r"^\.s\.creating-[^/]+/|^s/", "", path.relative_to(tmp_path).as_posix())


def arrays(seed=1):
    rng = np.random.default_rng(seed)
    return {
        "features": rng.normal(size=(10, 5)).astype(np.float32),
        "logits": rng.normal(size=(10, 3)).astype(np.float32),
    }


def test_layout_is_plain_zarr(tmp_path):
    study = make(tmp_path)
    data = arrays()
    study.write_unit(Unit("m", "fog", 1), data)
    margin = np.linspace(-1, 1, 10).astype(np.float32)
    cos = np.random.default_rng(2).uniform(-1, 1, (10, 3)).astype(np.float32)
    study.write_group(Unit("m", "fog", 1), "geometry", {"margin": margin, "cos": cos, "correct": margin > 0})
    root = zarr.open_group(str(tmp_path / "s"), mode="r")  # no onnx-geom involved
    assert root.attrs["dataset"]["n"] == 10 and root.attrs["dataset"]["image_shape"] == [4, 4, 3]
    assert root.attrs["seed"] == 3 and root.attrs["corruptions"] == ["clean", "fog"]
    np.testing.assert_array_equal(root["images"][:], IMAGES)
    np.testing.assert_array_equal(root["labels"][:], LABELS)
    assert root["labels"].dtype == np.int64
    np.testing.assert_array_equal(root["models/m/W"][:], INFO.W)
    np.testing.assert_array_equal(root["models/m/b"][:], INFO.b)
    assert root["models/m"].attrs["tags"] == {"sparsity": 0.5}
    assert list(root["models"].group_keys()) == ["m"]
    assert root["models/m/fog/1"].attrs["complete"] is True
    np.testing.assert_array_equal(root["models/m/fog/1/features"][:], data["features"])
    np.testing.assert_array_equal(root["models/m/fog/1/logits"][:], data["logits"])
    geometry = root["models/m/fog/1/geometry"]
    assert geometry.attrs["complete"] is True
    np.testing.assert_array_equal(geometry["margin"][:], margin)
    np.testing.assert_array_equal(geometry["cos"][:], cos)
    assert geometry["correct"].dtype == bool and list(geometry["correct"][:]) == list(margin > 0)
    dims = {
        "labels": ("sample",),
        "images": ("sample", "height", "width", "channel"),
        "models/m/W": ("class", "feature"),
        "models/m/b": ("class",),
        "models/m/fog/1/features": ("sample", "feature"),
        "models/m/fog/1/logits": ("sample", "class"),
        "models/m/fog/1/geometry/margin": ("sample",),
        "models/m/fog/1/geometry/cos": ("sample", "class"),
        "models/m/fog/1/geometry/correct": ("sample",),
    }
    for key, names in dims.items():
        assert root[key].metadata.dimension_names == names, key


def test_every_geometry_array_has_dimension_names_of_its_rank():
    from onnx_geom.geometry import GEOMETRY_ARRAYS, sample_geometry
    from onnx_geom.store._layout import DIMENSIONS

    geom = sample_geometry(arrays()["features"], INFO.W, INFO.b, LABELS)
    assert set(geom) == set(GEOMETRY_ARRAYS)
    for name, value in geom.items():
        assert len(DIMENSIONS[f"geometry/{name}"]) == value.ndim and DIMENSIONS[f"geometry/{name}"][0] == "sample"


def test_xarray_opens_the_root_a_unit_and_its_geometry(tmp_path, xarray):
    from onnx_geom.geometry import sample_geometry

    study, unit, data = make(tmp_path), Unit("m", "fog", 1), arrays()
    study.write_unit(unit, data)
    study.write_group(unit, "geometry", sample_geometry(data["features"], INFO.W, INFO.b, LABELS))
    opened = Study.open(tmp_path / "s")
    kw = {"consolidated": False, "zarr_format": 3}
    root = xarray.open_zarr(tmp_path / "s", **kw)
    assert dict(root.sizes) == {"sample": 10, "height": 4, "width": 4, "channel": 3}
    np.testing.assert_array_equal(root["labels"].values, opened.labels)
    np.testing.assert_array_equal(root["images"].values, IMAGES)
    assert root.attrs["dataset"]["name"] == "toy"
    model = xarray.open_zarr(tmp_path / "s", group="models/m", **kw)
    np.testing.assert_array_equal(model["W"].values, opened.head("m")[0])
    assert model["W"].dims == ("class", "feature") and model.attrs["tags"] == {"sparsity": 0.5}
    ds = xarray.open_zarr(tmp_path / "s", group="models/m/fog/1", **kw)
    assert ds["features"].dims == ("sample", "feature") and ds["logits"].dims == ("sample", "class")
    assert ds.attrs["complete"] is True
    for name in ("features", "logits"):
        np.testing.assert_array_equal(ds[name].values, opened.read(unit, name))
    geometry = xarray.open_zarr(tmp_path / "s", group="models/m/fog/1/geometry", **kw)
    assert dict(geometry.sizes) == {"sample": 10, "class": 3}
    for name in ("length", "angle_true", "angle_pred", "margin", "cos", "pred", "correct"):
        np.testing.assert_array_equal(geometry[name].values, opened.read(unit, f"geometry/{name}"))


def test_arrays_zarr_writes_with_its_defaults_are_read(tmp_path):
    study, unit = make(tmp_path), Unit("m", "fog", 1)
    study.write_unit(unit, arrays())
    features = np.random.default_rng(7).normal(size=(10, 5)).astype(np.float32)
    group = zarr.open_group(str(tmp_path / "s" / unit.key()), mode="a")
    del group["features"]
    group.create_array("features", data=features)  # zarr-python's defaults: "/" chunk keys, zstd level 0
    assert (tmp_path / "s" / unit.key() / "features" / "c").is_dir()
    np.testing.assert_array_equal(Study.open(tmp_path / "s").read(unit, "features"), features)


def test_a_study_written_by_zarr_python_with_its_defaults_is_read(tmp_path):
    """As the store wrote the root, labels, images and models before it wrote every file itself."""
    root = zarr.open_group(str(tmp_path / "s"), mode="w")
    root.create_array("labels", data=LABELS.astype(np.int64))
    root.create_array("images", data=IMAGES, chunks=(3, 4, 4, 3))
    model = root.create_group("models").create_group("m")
    model.attrs.update({"probe": INFO.to_json(), "probe_path": "m.onnx", "tags": {"sparsity": 0.5}})
    model.create_array("b", data=INFO.b)
    model.create_array("W", data=INFO.W)
    unit = model.create_group("clean").create_group("0")
    for name, value in arrays().items():
        unit.create_array(name, data=value)
    unit.attrs["complete"] = True
    root.attrs.update({"onnx_geom_version": "0.1.0", "format": 1, "dataset": {"name": "toy", "n": 10}})
    study = Study.open(tmp_path / "s")
    assert study.models == ["m"] and study.units() == [Unit("m", "clean", 0)]
    np.testing.assert_array_equal(study.labels, LABELS)
    np.testing.assert_array_equal(study.images[[7, 2]], IMAGES[[7, 2]])
    np.testing.assert_array_equal(study.head("m")[0], INFO.W)
    np.testing.assert_array_equal(study.read(Unit("m", "clean", 0), "logits"), arrays()["logits"])


def test_an_array_in_another_codec_is_one_sentence(tmp_path):
    study, unit = make(tmp_path), Unit("m", "fog", 1)
    study.write_unit(unit, arrays())
    group = zarr.open_group(str(tmp_path / "s" / unit.key()), mode="a")
    del group["logits"]
    group.create_array("logits", data=arrays()["logits"], compressors=zarr.codecs.GzipCodec())
    with pytest.raises(
        StudyError, match=r"logits is stored with the codecs \['bytes', 'gzip'\], which onnx-geom does not read"
    ):
        study.read(unit, "logits")
    np.testing.assert_array_equal(study.read(unit, "features"), arrays()["features"])


def test_images_are_read_lazily_by_row_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr("onnx_geom.store._layout.CHUNK_BYTES", 3 * 4 * 4 * 3)  # 3 images a chunk
    make(tmp_path)
    folder = tmp_path / "s" / "images"
    assert sorted(p.name for p in folder.glob("c.*")) == [f"c.{i}.0.0.0" for i in range(4)]
    for chunk in folder.glob("c.*"):
        if chunk.name != "c.1.0.0.0":  # images 3, 4, 5
            chunk.write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 8)
    images = Study.open(tmp_path / "s").images
    assert images.shape == IMAGES.shape and images.dtype == np.uint8
    np.testing.assert_array_equal(images[[5, 3]], IMAGES[[5, 3]])
    np.testing.assert_array_equal(images[4], IMAGES[4])
    with pytest.raises(StudyError, match="it may be damaged"):
        images[[0]]


def test_the_root_metadata_is_written_once_and_last(tmp_path, monkeypatch):
    import onnx_geom.store._zarrio as files

    real_put, written = files.put, []

    def put(path, value, **options):
        written.append((in_study(path, tmp_path), options))
        return real_put(path, value, **options)

    monkeypatch.setattr(files, "put", put)
    make(tmp_path)
    root = [(i, options) for i, (key, options) in enumerate(written) if key == "zarr.json"]
    assert len(root) == 1 and root[0][1].get("durable") is True
    assert root[0][0] == max(i for i, (key, _) in enumerate(written) if not key.startswith("models/m"))
    written.clear()  # a re-run that grows the plan: the root's metadata again, in one write
    kw = {"images": IMAGES, "labels": LABELS, "dataset_name": "toy", "seed": 3, "exist_ok": True}
    study = Study.create(tmp_path / "s", corruptions=["snow"], severities=[4], **kw)
    assert [key for key, _ in written] == ["zarr.json"] and study.attrs["corruptions"] == ["clean", "fog", "snow"]


def test_what_is_synced_to_the_disk(tmp_path, monkeypatch):
    """Marks of completeness and what is written once per study or model are synced; per-unit data is not."""
    import onnx_geom.store._zarrio as files

    real_put, written = files.put, []

    def put(path, value, **options):
        durable = options.get("durable") or options.get("sync")
        written.append((in_study(path, tmp_path), bool(durable)))
        return real_put(path, value, **options)

    monkeypatch.setattr(files, "put", put)
    study = make(tmp_path)
    assert all(durable for _, durable in written)  # root, labels, images, models, the model's group and head
    written.clear()
    study.write_unit(Unit("m", "fog", 1), arrays())
    synced = [key for key, durable in written if durable]
    assert synced == ["models/m/fog/zarr.json", "models/m/fog/1/zarr.json"]  # the new corruption group, the mark
    assert ("models/m/fog/1/zarr.json", False) in written  # the claim
    written.clear()
    study.write_group(Unit("m", "fog", 1), "geometry", {"margin": np.zeros(10, np.float32)})
    assert [key for key, durable in written if durable] == ["models/m/fog/1/geometry/zarr.json"]
    assert len(written) == 4  # claim, chunk, array metadata, mark


def test_the_store_needs_neither_zarr_nor_xarray(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        sys.modules["zarr"] = sys.modules["xarray"] = None  # `import zarr` fails
        import numpy as np
        from onnx_geom.store import Study, Unit
        from onnx_geom.probe_info import ProbeInfo
        s = Study.create({str(tmp_path / "s")!r}, images=np.zeros((2, 1, 1, 1), np.uint8), labels=[0, 1],
                         dataset_name="toy")
        s.add_model("m", ProbeInfo(W=np.ones((2, 3), np.float32), b=np.zeros(2, np.float32), input_shape=(1, 1, 1),
                                   layout="NCHW", mean=(0.0,), std=(1.0,)))
        s.write_unit(Unit("m", "clean", 0), {{"features": np.ones((2, 3), np.float32)}})
        study = Study.open({str(tmp_path / "s")!r})
        print(study.read(Unit("m", "clean", 0), "features").sum(), study.images[1].shape, study.labels)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["6.0", "(1,", "1,", "1)", "[0", "1]"]


def test_the_store_imports_and_writes_without_fcntl(tmp_path):
    code = textwrap.dedent(f"""
        import sys, warnings
        sys.modules["fcntl"] = None  # as on Windows: `import fcntl` fails
        import numpy as np
        from onnx_geom.store import Study, Unit, _locks
        from onnx_geom.probe_info import ProbeInfo
        assert not _locks.LOCKS
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            s = Study.create({str(tmp_path / "s")!r}, images=np.zeros((2, 1, 1, 1), np.uint8), labels=[0, 1],
                             dataset_name="toy")
            s.add_model("m", ProbeInfo(W=np.ones((2, 3), np.float32), b=np.zeros(2, np.float32), input_shape=(1, 1, 1),
                                       layout="NCHW", mean=(0.0,), std=(1.0,)))
            s.write_unit(Unit("m", "clean", 0), {{"features": np.ones((2, 3), np.float32)}})
        print(Study.open({str(tmp_path / "s")!r}).units(), [str(w.message) for w in caught])
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert "[Unit(model='m', corruption='clean', severity=0)]" in result.stdout
    assert result.stdout.count("file locks are not available on this platform") == 1


def test_reader_api(tmp_path):
    make(tmp_path).write_unit(Unit("m", "clean", 0), arrays())
    study = Study.open(tmp_path / "s")
    assert study.models == ["m"] and study.units() == [Unit("m", "clean", 0)]
    W, _b = study.head("m")
    np.testing.assert_array_equal(W, INFO.W)
    assert study.model_attrs("m")["probe"]["num_classes"] == 3
    np.testing.assert_array_equal(study.images[[1, 3]], IMAGES[[1, 3]])
    np.testing.assert_array_equal(study.read(Unit("m", "clean", 0), "logits"), arrays()["logits"])
    both = study.read_many(Unit("m", "clean", 0), ["logits", "features"])
    assert list(both) == ["logits", "features"]
    for name, expected in arrays().items():
        np.testing.assert_array_equal(both[name], expected)
    with pytest.raises(StudyNotFoundError, match="not complete"):
        study.read_many(Unit("m", "clean", 0), ["features", "geometry/margin"])
    with pytest.raises(StudyNotFoundError, match="no array 'nope'"):
        study.read_many(Unit("m", "clean", 0), ["nope"])
    with pytest.raises(StudyError, match="read-only"):
        study.write_unit(Unit("m", "fog", 1), arrays())


def test_streamed_rows_with_uneven_batches(tmp_path, monkeypatch):
    monkeypatch.setattr("onnx_geom.store._layout.CHUNK_BYTES", 3 * 5 * 4)  # 3 rows a chunk
    study, data = make(tmp_path), arrays()
    with study.writing(Unit("m", "fog", 1), {"features": ((10, 5), "float32")}) as writer:
        for lo, hi in [(0, 2), (2, 7), (7, 8), (8, 10)]:
            writer.append(features=data["features"][lo:hi])
    assert zarr.open_array(str(tmp_path / "s/models/m/fog/1/features"), mode="r").chunks == (3, 5)
    np.testing.assert_array_equal(study.read(Unit("m", "fog", 1), "features"), data["features"])


def test_incomplete_unit_is_invisible_and_rewritten(tmp_path):
    study = make(tmp_path)
    unit = Unit("m", "fog", 1)
    with pytest.raises(RuntimeError), study.writing(unit, {"features": ((10, 5), "float32")}) as writer:
        writer.append(features=arrays()["features"][:4])
        raise RuntimeError("killed")
    assert not study.is_complete(unit) and study.units() == []
    assert [u for u, _ in study.incomplete_units()] == [unit]
    with pytest.raises(StudyNotFoundError, match="not complete"):
        study.read(unit, "features")
    with (
        pytest.raises(StudyError, match="only 4 of 10 rows"),
        study.writing(unit, {"features": ((10, 5), "float32")}) as writer,
    ):
        writer.append(features=arrays()["features"][:4])
    assert not study.is_complete(unit)
    study.write_unit(unit, arrays(2))
    np.testing.assert_array_equal(study.read(unit, "features"), arrays(2)["features"])
    with pytest.raises(UnitAlreadyComplete):
        study.write_unit(unit, arrays(3))
    np.testing.assert_array_equal(study.read(unit, "features"), arrays(2)["features"])


def test_geometry_group(tmp_path):
    study = make(tmp_path)
    unit = Unit("m", "clean", 0)
    with pytest.raises(StudyNotFoundError, match="not complete"):
        study.write_group(unit, "geometry", {"margin": np.zeros(10, np.float32)})
    study.write_unit(unit, arrays())
    assert study.units(group="geometry") == []
    margin = np.linspace(-1, 1, 10).astype(np.float32)
    study.write_group(unit, "geometry", {"margin": margin, "correct": margin > 0})
    assert study.units(group="geometry") == [unit] and study.is_complete(unit, "geometry")
    np.testing.assert_array_equal(study.read(unit, "geometry/margin"), margin)
    assert study.read(unit, "geometry/correct").dtype == bool


def test_second_writer_is_told_who_holds_the_unit(tmp_path):
    study = make(tmp_path)
    other = Study.open(tmp_path / "s", mode="a")
    unit = Unit("m", "fog", 1)
    with study.writing(unit, {"features": ((10, 5), "float32")}) as writer:
        with pytest.raises(StudyLockedError, match=r"being written by process \d+ on"):
            other.write_unit(unit, arrays())
        writer.append(features=arrays()["features"])
    assert study.is_complete(unit)


def test_lock_from_another_process_released_on_kill(tmp_path):
    make(tmp_path)
    with Child("hold", tmp_path / "s", "m", "fog", 1, 10, 5) as holder:  # claims the unit, keeps it until killed
        assert holder.read() == "holding m/fog/1"
        study = Study.open(tmp_path / "s", mode="a")
        with pytest.raises(StudyLockedError, match=f"process {holder.pid}"):
            study.write_unit(Unit("m", "fog", 1), arrays())
        holder.kill()
    study.write_unit(Unit("m", "fog", 1), arrays())  # the kernel released the dead writer's lock
    assert study.units() == [Unit("m", "fog", 1)]


def test_open_errors(tmp_path):
    with pytest.raises(StudyNotFoundError, match="no study") as info:
        Study.open(tmp_path / "missing")
    assert isinstance(info.value, FileNotFoundError)
    (tmp_path / "plain").mkdir()
    with pytest.raises(StudyError, match="not an onnx-geom study"):
        Study.open(tmp_path / "plain")
    zarr.open_group(str(tmp_path / "other"), mode="w")
    with pytest.raises(StudyError, match="not an onnx-geom study"):
        Study.open(tmp_path / "other")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "zarr.json").write_text("{not json")
    with pytest.raises(StudyError, match="unreadable"):
        Study.open(tmp_path / "broken")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    with pytest.raises(StudyError, match="not empty"):
        Study.create(tmp_path / "full", images=IMAGES, labels=LABELS, dataset_name="toy")


def test_reopen_checks_data_and_grows_plan(tmp_path):
    make(tmp_path)
    kw = {"images": IMAGES, "labels": LABELS, "dataset_name": "toy", "seed": 3, "exist_ok": True}
    study = Study.create(tmp_path / "s", corruptions=["snow"], severities=[5], **kw)
    assert study.attrs["corruptions"] == ["clean", "fog", "snow"] and study.attrs["severities"] == [0, 1, 5]
    with pytest.raises(StudyError, match="other data"):
        Study.create(tmp_path / "s", **{**kw, "labels": LABELS[::-1].copy()})
    with pytest.raises(StudyError, match="seed 3"):
        Study.create(tmp_path / "s", **{**kw, "seed": 4})
    with pytest.raises(StudyError, match="already exists"):
        Study.create(tmp_path / "s", **{**kw, "exist_ok": False})
    other = ProbeInfo(W=INFO.W + 1, b=INFO.b, input_shape=(4, 4, 3), layout="NCHW", mean=(0.0,), std=(1.0,))
    study.add_model("m", INFO)  # same model again: fine
    with pytest.raises(StudyError, match="different model named 'm'"):
        study.add_model("m", other)


def test_disk_full_keeps_complete_units(tmp_path, monkeypatch):
    study = make(tmp_path)
    study.write_unit(Unit("m", "clean", 0), arrays())
    import onnx_geom.store._zarrio as files

    real_put, calls = files.put, {"n": 0}

    def put(path, value, **options):
        calls["n"] += 1
        if path.name != "zarr.json" and calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_put(path, value, **options)

    monkeypatch.setattr(files, "put", put)
    monkeypatch.setattr("onnx_geom.store._layout.CHUNK_BYTES", 2 * 5 * 4)
    with pytest.raises(StudyError, match="no space left on the device while writing unit m/fog/1"):
        study.write_unit(Unit("m", "fog", 1), arrays(5))
    monkeypatch.setattr(files, "put", real_put)
    again = Study.open(tmp_path / "s")
    assert again.units() == [Unit("m", "clean", 0)]
    np.testing.assert_array_equal(again.read(Unit("m", "clean", 0), "features"), arrays()["features"])
    meta = json.loads((tmp_path / "s/models/m/fog/1/zarr.json").read_text())
    assert meta["attributes"]["complete"] is False


def test_a_damaged_chunk_is_one_sentence_not_a_codec_error(tmp_path):
    study = Study.create(tmp_path / "s", images=IMAGES, labels=LABELS, dataset_name="toy")
    study.add_model("m", INFO)
    study.write_unit(Unit("m", "clean", 0), arrays())
    chunk = next(
        p for p in (tmp_path / "s" / Unit("m", "clean", 0).key() / "features").iterdir() if p.name != "zarr.json"
    )
    chunk.write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 8)  # zstd magic, then nonsense
    with pytest.raises(StudyError, match=r"unreadable .* it may be damaged"):
        study.read(Unit("m", "clean", 0), "features")


def test_an_array_the_store_cannot_hold_is_refused_before_the_unit_is_claimed(tmp_path):
    study = Study.create(tmp_path / "s", images=IMAGES, labels=LABELS, dataset_name="toy")
    study.add_model("m", INFO)
    with pytest.raises(StudyError, match="holds numbers or booleans"):
        study.write_unit(Unit("m", "clean", 0), {"features": np.array(["a", "b"]), "logits": np.zeros((2, 3))})
    assert study.incomplete_units() == [] and study.units() == []
