"""The demo zoo: the builder is deterministic, and the shipped zoo is what its manifest says.

Every check recomputes its number independently of the builder: sparsity from the ONNX initializers (not the
torch weights), accuracy with onnxruntime + numpy, the test images with a numpy bilinear resize (not Pillow).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from onnx_geom.demo import load_manifest, load_test_split, zoo_dir, zoo_models
from onnx_geom.errors import DataError, DataNotFoundError

METHODS = {"dense", "magnitude", "random", "l1_channel", "lth_rewind", "gmp", "snip"}


@pytest.fixture(scope="module")
def small_zoos(tmp_path_factory: pytest.TempPathFactory, torch, skl2onnx) -> tuple[Path, Path]:
    """Two reduced builds into separate folders, one through the function, one through the command line."""
    from onnx_geom.demo.build_zoo import build_zoo, main

    a, b = tmp_path_factory.mktemp("zoo_a"), tmp_path_factory.mktemp("zoo_b")
    build_zoo(a, small=True)
    main(["-o", str(b / "nested"), "--small"])
    return a, b / "nested"


def _weights(model: onnx.ModelProto) -> list[np.ndarray]:
    """Every float initializer of rank >= 2 (conv kernels, Gemm/MatMul matrices; biases are rank 1)."""
    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer]
    return [a for a in arrays if a.ndim >= 2 and a.dtype.kind == "f"]


def _tags(model: onnx.ModelProto) -> dict:
    return json.loads({p.key: p.value for p in model.metadata_props}["onnx_geom.tags"])


def _accuracy(path: Path, images: np.ndarray, labels: np.ndarray, layout: str) -> float:
    x = images.astype(np.float32) / 255.0
    x = x.reshape(len(x), 32 * 32) if layout == "flat" else np.ascontiguousarray(np.moveaxis(x, -1, 1))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores = [o for o in session.run(None, {session.get_inputs()[0].name: x}) if o.ndim == 2]
    assert len(scores) == 1 and scores[0].shape == (len(labels), 10)
    return float(np.count_nonzero(scores[0].argmax(axis=1) == labels)) / len(labels)


def test_reduced_build_is_deterministic(small_zoos):
    a, b = small_zoos
    assert (a / "manifest.json").read_text() == (b / "manifest.json").read_text()
    entries = load_manifest(a)
    assert {e["method"] for e in entries} == METHODS
    for entry in entries:
        ma, mb = onnx.load(str(a / entry["file"])), onnx.load(str(b / entry["file"]))
        init_a = {t.name: numpy_helper.to_array(t) for t in ma.graph.initializer}
        init_b = {t.name: numpy_helper.to_array(t) for t in mb.graph.initializer}
        assert init_a.keys() == init_b.keys() and init_a
        assert all(np.array_equal(init_a[k], init_b[k]) for k in init_a), entry["name"]
        assert (a / entry["file"]).read_bytes() == (b / entry["file"]).read_bytes(), entry["name"]
    for array_a, array_b in zip(load_test_split(a), load_test_split(b), strict=True):
        assert np.array_equal(array_a, array_b)


@pytest.mark.parametrize("which", ["small", "shipped"])
def test_sparsity_and_tags_match_the_onnx_initializers(small_zoos, which):
    folder = small_zoos[0] if which == "small" else zoo_dir()
    for entry in load_manifest(folder):
        model = onnx.load(str(Path(folder) / entry["file"]))
        weights = _weights(model)
        zeros, total = sum(int((w == 0).sum()) for w in weights), sum(w.size for w in weights)
        assert entry["sparsity"] == pytest.approx(zeros / total, abs=1e-12), entry["name"]
        if entry["method"] != "dense":
            assert entry["sparsity"] == pytest.approx(entry["target_sparsity"], abs=0.01), entry["name"]
        all_params = [
            numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT
        ]
        assert entry["params"] == sum(a.size for a in all_params), entry["name"]
        assert entry["nonzero_params"] == sum(int(np.count_nonzero(a)) for a in all_params), entry["name"]
        tags = _tags(model)
        assert tags == {
            "method": entry["method"],
            "sparsity": entry["sparsity"],
            "framework": entry["framework"],
            "clean_accuracy": entry["accuracy"],
        }


def test_shipped_zoo_is_complete_and_small():
    entries = load_manifest()
    names = [e["name"] for e in entries]
    assert len(set(names)) == len(names) and "dense" in names and "mlp_sklearn" in names
    assert {e["method"] for e in entries} == METHODS
    pruned = [e for e in entries if e["method"] != "dense"]
    assert {round(e["target_sparsity"], 2) for e in pruned} == {0.8, 0.95}
    assert all(e["framework"] == "pytorch" for e in entries if e["name"] != "mlp_sklearn")
    assert sum(p.stat().st_size for p in zoo_dir().iterdir()) < 5_000_000
    for entry in entries:
        assert hashlib.sha256((zoo_dir() / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]


def test_shipped_models_run_and_match_their_accuracy():
    images, labels = load_test_split()
    entries = {e["name"]: e for e in load_manifest()}
    accuracies = {}
    for name, path in zoo_models().items():
        accuracies[name] = _accuracy(path, images, labels, entries[name]["layout"])
        assert accuracies[name] == pytest.approx(entries[name]["accuracy"], abs=0.1 / len(labels)), name
    assert 0.97 <= accuracies["dense"] <= 0.995  # the reference model is good
    assert accuracies["mlp_sklearn"] > 0.9


def _head(graph: onnx.GraphProto) -> tuple[str, np.ndarray, np.ndarray, bool]:
    """(features tensor, W (K, D), b (K,), softmax after?) read by hand from the graph's last Gemm or MatMul+Add."""
    producer = {out: node for node in graph.node for out in node.output}
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    node, softmax = producer[next(o.name for o in graph.output if o.name in ("logits", "probabilities"))], False
    while node.op_type in ("Identity", "Softmax"):
        softmax |= node.op_type == "Softmax"
        node = producer[node.input[0]]
    if node.op_type == "Gemm":
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs.get("transB") == 1 and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
        return node.input[0], inits[node.input[1]], inits[node.input[2]], softmax
    assert node.op_type == "Add"
    matmul = producer[node.input[0]]
    assert matmul.op_type == "MatMul"
    return matmul.input[0], inits[matmul.input[1]].T, inits[node.input[1]].reshape(-1), softmax  # Add broadcasts (1, K)


def test_heads_are_linear_in_nonzero_features():
    """What the probe will rely on: scores = f @ W.T + b (then maybe softmax), and no sample has f = 0."""
    images, _ = load_test_split()
    for entry in load_manifest():
        model = onnx.load(str(zoo_dir() / entry["file"]))
        if entry["framework"] == "pytorch":
            assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]] == [1, 32, 32]
        features, W, b, softmax = _head(model.graph)
        assert W.shape == (10, 64) and b.shape == (10,), entry["name"]
        model.graph.output.append(onnx.helper.make_tensor_value_info(features, onnx.TensorProto.FLOAT, None))
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        x = images.astype(np.float32) / 255.0
        x = x.reshape(len(x), -1) if entry["layout"] == "flat" else np.ascontiguousarray(np.moveaxis(x, -1, 1))
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": x}), strict=True))
        f = outputs[features].astype(np.float64)
        z = f @ W.T.astype(np.float64) + b
        if softmax:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            expected = e / e.sum(axis=1, keepdims=True)
        else:
            expected = z
        got = outputs["probabilities" if softmax else "logits"]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(), err_msg=entry["name"])
        assert np.linalg.norm(f, axis=1).min() > 0, entry["name"]


def _bilinear_up(image: np.ndarray, size: int) -> np.ndarray:
    """Half-pixel-centre bilinear upsampling with edge clamping, separable, in float64. (h, w) -> (size, size)."""

    def axis_weights(n: int) -> np.ndarray:
        src = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        m = np.zeros((size, n))
        np.add.at(m, (np.arange(size), lo), 1 - (src - lo))
        np.add.at(m, (np.arange(size), hi), src - lo)
        return m

    return axis_weights(image.shape[0]) @ image @ axis_weights(image.shape[1]).T


def test_test_split_is_sklearn_digits_resized():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = load_test_split()
    with np.load(zoo_dir() / "digits_test.npz") as data:
        indices = data["indices"]
    assert images.shape == (len(labels), 32, 32, 1) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert len(np.unique(indices)) == len(indices) == 359
    assert np.array_equal(labels, digits.target[indices])
    # Stratified: 20% of each class, rounded.
    assert np.array_equal(np.bincount(labels), np.rint(0.2 * np.bincount(digits.target)).astype(int))
    expected = np.stack([_bilinear_up(np.rint(digits.images[i] * 255 / 16), 32) for i in indices])
    diff = np.abs(images[..., 0].astype(float) - expected)
    assert diff.max() <= 1.0 and diff.mean() < 0.5  # Pillow rounds to uint8 between its two passes


def test_loaders_refuse_bad_zoo_folders(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"no .*manifest.json"):
        load_manifest(tmp_path)
    np.savez(tmp_path / "digits_test.npz", images=np.array([{"a": 1}], dtype=object), labels=np.zeros(1))
    with pytest.raises(DataError):
        load_test_split(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [{"name": "x", "file": "../evil.onnx"}]}))
    with pytest.raises(DataError, match="not a plain file name"):
        zoo_models(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="not a zoo manifest"):
        load_manifest(tmp_path)


def test_reading_the_zoo_needs_neither_torch_nor_sklearn():
    import subprocess
    import sys

    code = (
        "import sys; from onnx_geom.demo import load_manifest, load_test_split, zoo_models;"
        "load_manifest(); load_test_split(); zoo_models();"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn', 'skl2onnx', 'onnx', 'onnxruntime')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
