"""The viewer on a real study (the store API, geometry written by compute_metrics, a probe file on disk)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

from onnx_geom.cli.app import app
from onnx_geom.errors import StudyError
from onnx_geom.metrics import compute_metrics
from onnx_geom.probe_info import ProbeInfo, write_probe_info
from onnx_geom.store import Study, Unit
from onnx_geom.viewers import ViewerData
from onnx_geom.viewers.services import Services

N, H, K, D = 90, 8, 3, 6


def _probe(path, A, W, b):
    """A minimal probe: uint8 NHWC images -> features = (images / 255) @ A; logits = features @ W.T + b."""
    nodes = [
        helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("Mul", ["flat", "scale"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "A"], ["features"]),
        helper.make_node("Gemm", ["features", "W", "b"], ["logits"], transB=1),
    ]
    inits = [
        numpy_helper.from_array(np.array([-1, H * H * 3], np.int64), "shape"),
        numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"),
        numpy_helper.from_array(A, "A"),
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(b, "b"),
    ]
    graph = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", H, H, 3])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", K]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", D]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    write_probe_info(model, ProbeInfo(W=W, b=b, input_shape=(H, H, 3), layout="NHWC", mean=(0.0,) * 3, std=(1.0,) * 3))
    onnx.save(model, path)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N, H, H, 3), dtype=np.uint8)
    labels = rng.integers(0, K, N)
    study = Study.create(
        root / "s",
        images=images,
        labels=labels,
        dataset_name="toy",
        class_names=["cat", "dog", "ship"],
        corruptions=["clean", "fog", "snow"],
        severities=[0, 1, 2],
    )  # as the sweep plans
    A = rng.standard_normal((H * H * 3, D)).astype(np.float32) * 0.1
    for i, name in enumerate(["dense", "mag-50", "mag-90"]):
        W = rng.standard_normal((K, D)).astype(np.float32)
        b = rng.standard_normal(K).astype(np.float32) * 0.1
        probe = root / f"{name}.onnx"
        if name != "mag-90":  # the last model's probe file is "lost"
            _probe(probe, A, W, b)
        info = ProbeInfo(W=W, b=b, input_shape=(H, H, 3), layout="NHWC", mean=(0.0,) * 3, std=(1.0,) * 3)
        study.add_model(
            name,
            info,
            probe_path=str(probe),
            tags={"method": "dense" if i == 0 else "magnitude", "sparsity": [0.0, 0.5, 0.9][i]},
        )
        clean = ((images.reshape(N, -1) / 255.0) @ A).astype(np.float32)
        study.write_unit(Unit(name, "clean", 0), {"features": clean, "logits": clean @ W.T + b})
        for c in ("fog", "snow"):
            for s in (1, 2):
                f = (clean + rng.normal(0, 0.3 * s * (i + 1), clean.shape)).astype(np.float32)
                study.write_unit(Unit(name, c, s), {"features": f, "logits": f @ W.T + b})
    compute_metrics(Study.open(root / "s", mode="a"))
    return root / "s"


def test_from_study_reads_what_the_study_holds(study_dir):
    data = ViewerData.from_study(study_dir)
    study = Study.open(study_dir)
    assert data.models == ["dense", "mag-50", "mag-90"] and data.class_names == ["cat", "dog", "ship"]
    assert data.corruptions == ["fog", "snow"] and data.severities == [1, 2]
    labels = study.labels
    for i, m in enumerate(data.models):
        W, b = study.head(m)
        for j, c in enumerate(data.corruptions):
            for k, s in enumerate(data.severities):
                f = study.read(Unit(m, c, s), "features")
                expected = np.mean(np.argmax(f @ W.T + b, axis=1) == labels)  # independent of geometry
                assert data.accuracy[i, j, k] == pytest.approx(expected)
        f = study.read(Unit(m, "clean", 0), "features")
        assert data.clean_accuracy[i] == pytest.approx(np.mean(np.argmax(f @ W.T + b, 1) == labels))
        np.testing.assert_allclose(data.geometry(m, "clean", 0)["length"], np.linalg.norm(f, axis=1), rtol=1e-5)
    assert data.embedding.shape == (3, 2) and len(data.mst) == 2
    assert 0 < data.embedding_quality["kept"] <= 1  # the similarity panel's subtitle says it
    from onnx_geom.viewers.views.similarity import map_subtitle

    assert map_subtitle(data.embedding_quality).startswith("MDS map keeps ")
    assert data.tags["mag-90"]["sparsity"] == 0.9
    np.testing.assert_array_equal(data.thumbnails([4, 2]), study.images[[4, 2]][[0, 1]])
    # the probe file drives attribution: its features equal the stored clean features
    images = np.asarray(study.images[[0, 1, 2]])
    features = Services.for_data(data).features
    np.testing.assert_allclose(
        features("dense", images), study.read(Unit("dense", "clean", 0), "features")[:3], rtol=1e-4, atol=1e-5
    )
    assert "mag-90" not in data.probe_paths and "not available" in features.unavailable("mag-90")


def test_a_study_without_geometry_is_refused_with_a_sentence(tmp_path):
    Study.create(tmp_path / "empty", images=np.zeros((2, 4, 4, 3), np.uint8), labels=[0, 1], dataset_name="x")
    with pytest.raises(StudyError, match="onnx-geom metrics"):
        ViewerData.from_study(tmp_path / "empty")
    result = CliRunner().invoke(app, ["view", str(tmp_path / "empty"), "--screenshot", str(tmp_path / "o.png")])
    assert result.exit_code == 1 and "onnx-geom metrics" in result.output and "Traceback" not in result.output


@pytest.mark.gui
# (local, table and attribution panels are screenshot-tested one by one in test_viewer_render.py)
@pytest.mark.parametrize(
    "panel", [pytest.param(None, marks=pytest.mark.slow), "similarity", "samples", "global"]
)  # None: the whole window, every shader compiled on the CPU: about 4 s
def test_cli_screenshot_of_a_study(study_dir, tmp_path, panel):
    out = tmp_path / f"{panel or 'all'}.png"
    args = ["view", str(study_dir), "--screenshot", str(out), "--size", "640x400"]
    result = CliRunner().invoke(app, args + (["--panel", panel] if panel else []))
    assert result.exit_code == 0, result.output
    img = np.asarray(Image.open(out))
    assert img.shape == (400, 640, 4)
    assert (img[..., :3] < 200).any(axis=-1).mean() > 0.005  # not blank
    assert len(np.unique(img[..., :3].reshape(-1, 3), axis=0)) > 20
    if panel is None:  # 2 x 3 panels, each drew something
        for r in range(2):
            for c in range(3):
                cell = img[r * 200 + 30 : (r + 1) * 200 - 10, c * 213 + 10 : (c + 1) * 213 - 10, :3]
                assert (cell < 200).any(axis=-1).mean() > 0.01, (r, c)


def test_cli_refuses_bad_panel_and_size(study_dir, tmp_path):
    for extra, message in ((["--panel", "nope"], "'nope' is not one of 'table'"), (["--size", "big"], "WIDTHxHEIGHT")):
        result = CliRunner().invoke(app, ["view", str(study_dir), "--screenshot", str(tmp_path / "x.png"), *extra])
        assert result.exit_code == 1 and message in result.output
    assert not (tmp_path / "x.png").exists()


def test_cli_reference_is_the_model_the_views_compare_with(study_dir, tmp_path, monkeypatch):
    import onnx_geom.viewers as viewers

    taken = []
    monkeypatch.setattr(viewers, "screenshot", lambda source, out, **kw: taken.append((source, kw)) or out)
    for extra, expected in (([], "dense"), (["--reference", "mag-50"], "mag-50"), (["-r", "mag-90"], "mag-90")):
        result = CliRunner().invoke(app, ["view", str(study_dir), "--screenshot", str(tmp_path / "x.png"), *extra])
        assert result.exit_code == 0, result.output
        source, kw = taken[-1]
        assert ViewerData.of(source, reference=kw["reference"]).reference == expected
    result = CliRunner().invoke(app, ["view", str(study_dir), "--screenshot", str(tmp_path / "y.png"), "-r", "nope"])
    text = " ".join(result.output.split())
    assert (
        result.exit_code == 1
        and "reference model 'nope' is not in the study; choose one of dense, mag-50, mag-90" in text
    )
    assert "Traceback" not in result.output and len(taken) == 3 and not (tmp_path / "y.png").exists()


@pytest.mark.gui
def test_cli_screenshot_with_another_reference(study_dir, tmp_path):
    out = tmp_path / "attribution.png"
    args = [
        "view",
        str(study_dir),
        "--screenshot",
        str(out),
        "--size",
        "640x400",
        "--panel",
        "attribution",
        "-r",
        "mag-50",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    img = np.asarray(Image.open(out))
    assert img.shape == (400, 640, 4) and len(np.unique(img[..., :3].reshape(-1, 3), axis=0)) > 20


def test_window_without_a_display_is_a_sentence_not_a_crash(study_dir, monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["view", str(study_dir)])
    assert result.exit_code == 1 and "no display" in result.output and "--screenshot" in result.output


def test_a_display_where_no_x_server_answers_is_a_sentence_not_an_abort(study_dir, monkeypatch):
    for name in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISPLAY", ":987")  # nothing listens there
    result = CliRunner().invoke(app, ["view", str(study_dir)])
    assert result.exit_code == 1 and "no X server answers on DISPLAY=:987" in result.output
    assert "Traceback" not in result.output


def test_a_damaged_probe_file_is_one_sentence_when_attribution_asks(tmp_path):
    from onnx_geom.errors import OnnxGeomError
    from onnx_geom.viewers._study import _probe
    from onnx_geom.viewers.services import ProbeFeatures

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an onnx model")
    path, note = _probe(None, {"probe_path": str(bad)})
    assert path == bad and note == ""  # the file exists: loaded only when a sample is picked
    with pytest.raises(OnnxGeomError) as info:
        ProbeFeatures({"m": path})("m", np.zeros((1, H, H, 3), np.uint8))
    assert "\n" not in str(info.value).strip() and "bad.onnx" in str(info.value)
    assert _probe(None, {})[1] == "the study does not name this model's probe file"


def test_geometry_arrays_are_read_only_when_asked_for(study_dir):
    data = ViewerData.from_study(study_dir)
    geom = data.geometry("mag-50", "snow", 2)
    assert geom._arrays == {}  # nothing read yet
    np.testing.assert_array_equal(
        geom["margin"], Study.open(study_dir).read(Unit("mag-50", "snow", 2), "geometry/margin")
    )
    assert set(geom._arrays) == {"margin"} and set(geom) == {
        "length",
        "angle_true",
        "angle_pred",
        "margin",
        "cos",
        "pred",
        "correct",
    }


def test_a_band_of_cosine_columns_is_streamed_from_the_study_when_the_unit_is_large(study_dir, monkeypatch):
    from onnx_geom.viewers import _study

    whole = np.asarray(Study.open(study_dir).read(Unit("dense", "fog", 2), "geometry/cos"))
    for limit in (0, 1 << 30):  # streamed a chunk of rows at a time, or read whole and kept
        monkeypatch.setattr(_study, "WHOLE_COS_BYTES", limit)
        data = ViewerData.from_study(study_dir)
        cols = np.array([2, 0])
        np.testing.assert_array_equal(data.cos_columns("dense", "fog", 2, cols), whole[:, cols])
        geom = data.geometry("dense", "fog", 2)
        assert ("cos" in geom._arrays) == (limit > 0)  # streamed: the whole array was never kept


def test_heads_are_read_when_a_view_asks_for_them(study_dir, monkeypatch):
    calls = []
    real = Study.head
    monkeypatch.setattr(Study, "head", lambda self, m: (calls.append(m), real(self, m))[1])
    data = ViewerData.from_study(study_dir)
    assert calls == ["dense"]  # the number of classes; the others wait
    assert data.heads["mag-50"][0].shape == (K, D) and calls == ["dense", "mag-50"]
    _ = data.heads["mag-50"]
    assert calls == ["dense", "mag-50"] and len(data.heads) == 3
