"""``onnx-geom explain`` through the CLI, on a real study of the demo zoo (probes, a sweep, stored geometry): every
number of the file against an independent computation (the study's stored logits, features and geometry; the
source ONNX model run by onnxruntime itself; W x + b)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _explain_study import N, demo_study
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from onnx_geom.cli.app import app
from onnx_geom.datasets import Dataset, save_npz, write_corrupted
from onnx_geom.demo import load_test_split, zoo_models
from onnx_geom.store import Study, Unit

runner = CliRunner()


@pytest.fixture(scope="module")
def demo():
    """Two zoo models (dense and magnitude_95) over 40 test images, clean and fog/3, with geometry."""
    return demo_study()


def _invoke(*args):
    return runner.invoke(app, ["explain", *map(str, args)])


def _read(path):
    """Every array of an .npz (no pickles), the file closed."""
    with np.load(path, allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def _identity(z, key="logits"):
    """W x + b from the file's own arrays, in float64."""
    x = z["images"].astype(np.float64).reshape(len(z["images"]), -1)
    W = z["W"].astype(np.float64).reshape(len(x), z["W"].shape[1], -1)
    return np.einsum("skp,sp->sk", W, x) + z["b"], z[key]


@pytest.mark.parametrize("model, condition", [("dense", "clean"), ("magnitude_95", "fog/3")])
def test_a_study_unit_is_explained_with_the_numbers_the_study_stored(demo, tmp_path, model, condition):
    out = tmp_path / "e.npz"
    result = _invoke(demo.study, "--model", model, "--condition", condition, "--samples", "0,7,3-5,39", "-o", out)
    assert result.exit_code == 0, result.output
    z = _read(out)
    samples = [0, 7, 3, 4, 5, 39]
    study = Study.open(demo.study)
    corruption, _, severity = condition.partition("/")
    unit = Unit(model, corruption, int(severity or 0))
    stored = study.read_many(unit, ["logits", "geometry/margin", "geometry/cos", "geometry/length"])
    assert z["samples"].tolist() == samples and z["labels"].tolist() == study.labels[samples].tolist()
    assert z["images"].dtype == np.uint8 and z["images"].shape == (6, 32, 32, 1)
    assert z["W"].dtype == np.float32 and z["W"].shape == (6, 10, 32, 32, 1) and z["b"].shape == (6, 10)
    if condition == "clean":
        np.testing.assert_array_equal(z["images"], study.images[np.sort(samples)][np.argsort(np.argsort(samples))])
    # the probe's logits on these images are the ones the sweep stored: the images are the ones the model saw
    np.testing.assert_allclose(z["logits"], stored["logits"][samples], rtol=1e-5, atol=1e-5)
    recon, logits = _identity(z)
    assert np.abs(recon - logits).max() <= 1e-4 * np.abs(logits).max()
    labels = z["labels"]
    for name, expected in (
        ("margin", stored["geometry/margin"][samples]),
        ("cos", stored["geometry/cos"][samples, labels]),
        ("length", stored["geometry/length"][samples]),
    ):
        np.testing.assert_allclose(z[name], expected, rtol=1e-5, atol=1e-5, err_msg=name)
        assert z[f"{name}_map"].shape == (6, 32, 32, 1) and z[f"{name}_bias"].shape == (6,)
        total = z[f"{name}_map"].reshape(6, -1).sum(axis=1, dtype=np.float64) + z[f"{name}_bias"]
        scale = np.abs(z[f"{name}_map"]).reshape(6, -1).sum(axis=1) + np.abs(z[f"{name}_bias"])
        assert (np.abs(total - z[name]) <= 1e-5 * scale).all(), name
    assert z["predicted"].tolist() == stored["logits"][samples].argmax(1).tolist()
    # the table: one row per sample with its margin = contributions + bias
    for s, i in enumerate(samples):
        cells = [
            i,
            z["labels"][s],
            z["predicted"][s],
            *(f"{v:.4f}" for v in (z["margin"][s], z["margin_map"][s].sum(dtype=np.float64), z["margin_bias"][s])),
        ]
        assert re.search(r"│ +" + r" +│ +".join(re.escape(str(c)) for c in cells) + r" +│", result.output), i
    assert "exact local linear map" in result.output and str(out) in result.output.replace("\n", "")


def test_json_summary_and_the_features_output(demo, tmp_path):
    out = tmp_path / "f.npz"
    result = _invoke(demo.study, "-m", "dense", "--samples", "2,11", "--output", "features", "-o", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kind"] == "exact local linear map" and summary["exact"] and summary["gates"] == []
    assert summary["file"] == str(out) and summary["output"] == "features" and summary["outputs"] == 64
    assert 0 <= summary["largest_residual"] < 1e-5 and summary["seconds_per_sample"] > 0
    assert [row["sample"] for row in summary["samples"]] == [2, 11]
    z = _read(out)
    features = Study.open(demo.study).read(Unit("dense", "clean", 0), "features")[[2, 11]]
    np.testing.assert_allclose(z["values"], features, rtol=1e-5, atol=1e-5)
    recon, values = _identity(z, "values")
    assert np.abs(recon - values).max() <= 1e-4 * np.abs(values).max()
    assert str(z["output"]) == "features" and "margin" not in z and "logits" not in z
    assert summary["largest_residual"] == pytest.approx(z["residual"].max())


def test_a_plain_onnx_classifier_with_data_is_probed_on_the_fly(tmp_path):
    images, labels = load_test_split()
    data = save_npz(Dataset(images, labels, "digits"), tmp_path / "digits.npz")
    out = tmp_path / "plain.npz"
    source = zoo_models()["dense"]
    result = _invoke(source, "--data", data, "--samples", "10,300", "-o", out, "--json")
    assert result.exit_code == 0, result.output
    z = _read(out)
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    x = images[[10, 300]].transpose(0, 3, 1, 2).astype(np.float32) / 255  # the zoo's own input: NCHW in [0, 1]
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(z["logits"], logits, rtol=1e-4, atol=1e-4)
    recon, _ = _identity(z)
    np.testing.assert_allclose(recon, logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(z["labels"], labels[[10, 300]])
    np.testing.assert_array_equal(z["images"], images[[10, 300]])
    # the margin from the logits, computed here: (z_y - z_j) / ||W_y - W_j|| over the head's rows
    head = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(source)).graph.initializer}
    W = next(v for k, v in head.items() if v.shape == (10, 64))
    for s, y in enumerate(labels[[10, 300]]):
        margin = min(
            (logits[s, y] - logits[s, j]) / np.linalg.norm(W[y].astype(np.float64) - W[j]) for j in range(10) if j != y
        )
        assert z["margin"][s] == pytest.approx(margin, rel=1e-4, abs=1e-4)


@pytest.fixture(scope="module")
def folder_study(tmp_path_factory, demo):
    """A study whose fog/3 images were read from a CIFAR-10-C style folder."""
    from onnx_geom.metrics import compute_metrics
    from onnx_geom.sweep import sweep

    root = tmp_path_factory.mktemp("folder")
    images, labels = load_test_split()
    data = Dataset(images[:N], labels[:N], "digits")
    write_corrupted(data, root / "c", corruptions=["fog"], severities=[3], seed=5)
    write_corrupted(data, root / "other", corruptions=["fog"], severities=[3], seed=6)
    sweep(
        {"dense": demo.probes["dense"]}, data, root / "s", corruptions=["fog"], severities=[3], corrupted_dir=root / "c"
    )
    compute_metrics(Study.open(root / "s", mode="a"))
    return root


def test_a_study_whose_corrupted_images_came_from_a_folder_needs_that_folder(folder_study, tmp_path):
    out = tmp_path / "o.npz"
    args = [folder_study / "s", "-m", "dense", "--condition", "fog/3", "-s", "1,2", "-o", out]
    refused = _invoke(*args)
    assert refused.exit_code == 1 and "--corrupted DIR" in refused.output and not out.exists()
    assert f"its sweep read {folder_study / 'c'}" in refused.output.replace("\n", "")
    assert "Traceback" not in refused.output and len(refused.output.strip().splitlines()) == 1
    other = _invoke(*args, "--corrupted", folder_study / "other")  # the same labels, other fog
    assert other.exit_code == 1 and "not the folder the study's sweep read" in other.output and not out.exists()
    result = _invoke(*args, "--corrupted", folder_study / "c")
    assert result.exit_code == 0, result.output
    stored = Study.open(folder_study / "s").read(Unit("dense", "fog", 3), "logits")[[1, 2]]
    np.testing.assert_allclose(_read(out)["logits"], stored, rtol=1e-5, atol=1e-5)


def _topk_classifier(path):
    """A classifier whose features pass a TopK (no linearization rule) before a Gemm head."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], name="flatten"),
        helper.make_node("TopK", ["flat", "k"], ["feat", "idx"], name="top5"),
        helper.make_node("Gemm", ["feat", "W", "C"], ["scores"], transB=1, name="head"),
    ]
    inits = {"k": np.array([5], np.int64), "W": rng.standard_normal((10, 5)).astype(np.float32),
             "C": np.zeros(10, np.float32)}  # fmt: skip
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 32, 32])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _headless_classifier(path):
    """An ONNX model whose output comes from a Tanh: there is no linear head to probe."""
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("Tanh", ["flat"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1024])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(
    "case, needles",
    [
        ("malformed", ["--samples takes indices and ranges", "'1,x'"]),
        ("out_of_range", ["sample 40 is out of range", "40 images"]),
        ("no_model", ["no model 'nope'", "dense"]),
        ("no_condition", ["no condition snow/2", "fog/3"]),
        ("bad_condition", ["CORRUPTION/SEVERITY"]),
        ("unsupported_op", ["TopK", "'top5'", "no linearization rule"]),
        ("no_head", ["no final linear layer"]),
        ("no_data", ["--data DATA"]),
        ("no_model_option", ["--model NAME"]),
        ("lost_probe", ["not on this machine"]),
        ("no_output", ["no output named 'nope'"]),
        ("tensorrt", ["tensorrt", "auto, cpu, cuda"]),
        ("into_study", ["study"]),
    ],
)
def test_bad_input_is_one_sentence_and_writes_nothing(demo, tmp_path, case, needles):
    images, labels = load_test_split()
    data = save_npz(Dataset(images[:5], labels[:5], "digits"), tmp_path / "d.npz")
    out = tmp_path / "o.npz"
    study = demo.study
    if case == "lost_probe":  # a copy of the study whose probe file is gone
        import shutil

        study = tmp_path / "copy"
        shutil.copytree(demo.study, study)
        attrs_file = study / "models" / "dense" / "zarr.json"
        meta = json.loads(attrs_file.read_text())
        meta["attributes"]["probe_path"] = str(tmp_path / "gone.probe.onnx")
        attrs_file.write_text(json.dumps(meta))
    args = {
        "malformed": [study, "-m", "dense", "-s", "1,x"],
        "out_of_range": [study, "-m", "dense", "-s", "3,40"],
        "no_model": [study, "-m", "nope", "-s", "1"],
        "no_condition": [study, "-m", "dense", "--condition", "snow/2", "-s", "1"],
        "bad_condition": [study, "-m", "dense", "--condition", "fog", "-s", "1"],
        "unsupported_op": [_topk_classifier(tmp_path / "topk.onnx"), "--data", data, "-s", "1"],
        "no_head": [_headless_classifier(tmp_path / "tanh.onnx"), "--data", data, "-s", "1"],
        "no_data": [zoo_models()["dense"], "-s", "1"],
        "no_model_option": [study, "-s", "1"],
        "lost_probe": [study, "-m", "dense", "-s", "1"],
        "no_output": [study, "-m", "dense", "-s", "1", "--output", "nope"],
        "tensorrt": [study, "-m", "dense", "-s", "1", "--device", "tensorrt"],
        "into_study": [study, "-m", "dense", "-s", "1"],
    }[case]
    if case == "into_study":
        out = Path(study) / "explain.npz"
    result = _invoke(*args, "-o", out)
    assert result.exit_code == 1, result.output
    text = result.output.strip()
    assert text.startswith("error:") and len(text.splitlines()) == 1 and "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))
