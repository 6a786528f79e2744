"""The probe on real exporters' output: logits, features and original outputs against independent numpy."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import onnx
import pytest
from _probe_models import CIFAR10, assert_close, gemm_trans_b0, keras_style, preprocess, softmax
from _probe_models import random_images as images_for
from _probe_models import run_probe as run

from onnx_geom.probe import find_heads, probe, save_probe
from onnx_geom.probe_info import FEATURES, LOGITS, PROBE_INPUT, TAGS_KEY, read_probe_info

PRESET_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def assert_matches(model, reference, layout, *, n=3, mean=(0, 0, 0), std=(1, 1, 1)):
    """The probe's features, logits and original outputs on n random images against the numpy ``reference``."""
    images = images_for(model, n)
    features, logits, outputs = reference(preprocess(images, mean, std, layout))
    out = run(model, images)
    assert_close(out[FEATURES], features, "features")
    assert_close(out[LOGITS], logits, "logits")
    for name, value in outputs.items():
        assert_close(out[name], value, f"original output {name}")
    return out


# ---------------------------------------------------------------------------------------------- torch


def conv_net(torch, view: bool = False):
    """1x1 conv -> ReLU -> global pool -> flatten (Flatten op, or a view: Reshape) -> Linear."""

    class ConvNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 6, 1)
            self.pool = torch.nn.AdaptiveAvgPool2d(1)
            self.fc = torch.nn.Linear(6, 5)

        def forward(self, x):
            pooled = self.pool(torch.relu(self.conv(x)))
            flat = pooled.view(pooled.shape[0], -1) if view else torch.flatten(pooled, 1)
            return torch.softmax(self.fc(flat), dim=1)

    return ConvNet()


def torch_reference(net, x):
    """The same network in numpy from its weights: einsum for the 1x1 conv, mean for the pool."""
    conv_w = net.conv.weight.detach().double().numpy()[:, :, 0, 0]
    conv_b = net.conv.bias.detach().double().numpy()
    hidden = np.maximum(np.einsum("nchw,oc->nohw", x, conv_w) + conv_b[None, :, None, None], 0.0)
    features = hidden.mean(axis=(2, 3))
    logits = features @ net.fc.weight.detach().double().numpy().T + net.fc.bias.detach().double().numpy()
    return features, logits


@pytest.fixture(scope="module", params=["legacy", "dynamo"])
def torch_export(request, tmp_path_factory, torch):
    from onnx_geom.export import torch_to_onnx

    net = conv_net(torch, view=request.param == "dynamo")
    model = torch_to_onnx(net, torch.rand(2, 3, 4, 4), dynamo=request.param == "dynamo")
    path = tmp_path_factory.mktemp(request.param) / "net.onnx"
    onnx.save(model, path)
    return request.param, net, path


def test_torch_exports_probe_to_the_numpy_forward_pass(torch_export):
    kind, net, path = torch_export
    model = probe(path, preset="cifar10")
    info = read_probe_info(model)
    heads = [c for c in find_heads(onnx.load(path)) if c.chosen]
    assert [c.spelling for c in heads] == ["Gemm(transB=1)"], kind
    assert (info.layout, info.input_shape, info.num_classes, info.feature_dim) == ("NCHW", (4, 4, 3), 5, 6)
    np.testing.assert_array_equal(info.W, net.fc.weight.detach().numpy())
    np.testing.assert_array_equal(info.b, net.fc.bias.detach().numpy())
    assert info.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.producer.startswith("pytorch") and info.opset >= 17

    for n in (1, 5):  # the batch stays dynamic
        images = images_for(model, n)
        out = run(model, images)
        features, logits = torch_reference(net, preprocess(images, *CIFAR10, "NCHW"))
        assert_close(out[FEATURES], features, "features")
        assert_close(out[LOGITS], logits, "logits")
        assert_close(out["output"], softmax(logits), "original softmax output")


def test_graph_without_value_info_is_probed_alike(torch_export):
    _, net, path = torch_export
    source = onnx.load(path)
    del source.graph.value_info[:]
    model = probe(source)
    images = images_for(model, 3)
    _features, logits = torch_reference(net, preprocess(images, (0, 0, 0), (1, 1, 1), "NCHW"))
    assert_close(run(model, images)[LOGITS], logits, "logits")


# ---------------------------------------------------------------------------------------------- scikit-learn


def test_skl2onnx_mlp_with_zipmap_and_label_outputs(tmp_path, skl2onnx):
    to_onnx = skl2onnx.to_onnx
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    X = rng.random((90, 48)).astype(np.float32)  # 4 x 4 x 3 images, flattened H, W, C
    y = rng.integers(0, 3, 90)
    clf = MLPClassifier(hidden_layer_sizes=(7,), max_iter=30, random_state=0)
    with warnings.catch_warnings():  # not converged in 30 iterations: fine for a test model
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    source = to_onnx(clf, X[:1], target_opset=17)
    source.metadata_props.add(key=TAGS_KEY, value='{"method": "dense", "sparsity": 0.0}')
    onnx.save(source, tmp_path / "mlp.onnx")

    model = probe(tmp_path / "mlp.onnx", mean=[0.5], std=[0.25])
    info = read_probe_info(model)
    assert (info.layout, info.input_shape, info.producer.split()[0]) == ("flat", (4, 4, 3), "skl2onnx")
    assert info.tags == {"method": "dense", "sparsity": 0.0}
    assert {o.name for o in model.graph.output} >= {"output_label", "output_probability", LOGITS, FEATURES}

    images = images_for(model, 6)
    x = preprocess(images, (0.5,) * 3, (0.25,) * 3, "flat")
    features = np.maximum(x @ clf.coefs_[0] + clf.intercepts_[0], 0.0)
    logits = features @ clf.coefs_[1] + clf.intercepts_[1]
    out = run(model, images)
    assert_close(out[FEATURES], features, "features")
    assert_close(out[LOGITS], logits, "logits")
    np.testing.assert_array_equal(out["output_label"], clf.classes_[logits.argmax(1)])
    probabilities = np.array([[row[c] for c in clf.classes_] for row in out["output_probability"]])
    assert_close(probabilities, softmax(logits), "ZipMap probabilities")
    np.testing.assert_allclose(probabilities, clf.predict_proba(x.astype(np.float32)), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------- hand-built spellings


def test_keras_spelling_nhwc_matmul_add_softmax():
    source, reference = keras_style(np.random.default_rng(2))
    model = probe(source, preset="imagenet")
    info = read_probe_info(model)
    assert (info.layout, info.input_shape, info.head["spelling"]) == ("NHWC", (4, 4, 3), "MatMul+Add")
    assert info.head["node"] == "dense_1/MatMul" and info.mean == (0.485, 0.456, 0.406)
    assert_matches(model, reference, "NHWC", n=4, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@pytest.mark.parametrize("reshape", [True, False], ids=["reshape", "flatten"])
def test_gemm_trans_b0_with_alpha_beta_after_global_pool(reshape):
    source, reference = gemm_trans_b0(np.random.default_rng(3), alpha=0.5, beta=2.0, reshape=reshape)
    model = probe(source)
    info = read_probe_info(model)
    B = onnx.numpy_helper.to_array(source.graph.initializer[0])
    C = onnx.numpy_helper.to_array(source.graph.initializer[1])
    np.testing.assert_allclose(info.W, 0.5 * B.T, rtol=1e-7)
    np.testing.assert_allclose(info.b, 2.0 * C[0], rtol=1e-7)
    assert info.head["spelling"] == "Gemm(transB=0, alpha=0.5, beta=2)"
    assert_matches(model, reference, "NCHW")


def test_clashing_names_are_renamed_and_the_probe_keeps_working(tmp_path):
    source, reference = keras_style(np.random.default_rng(4))
    mapping = {"input_1": PROBE_INPUT, "dense_1": LOGITS, "gap": FEATURES}  # input 'images', softmax named 'logits'
    from onnx_geom.probe._graph import rename_tensors

    rename_tensors(source.graph, mapping)
    model = probe(source)
    renamed = read_probe_info(model).head["renamed"]
    assert set(renamed) == {PROBE_INPUT, LOGITS, FEATURES}
    save_probe(model, tmp_path / "p.onnx")
    images = images_for(model, 2)
    _features, logits, outputs = reference(preprocess(images, (0, 0, 0), (1, 1, 1), "NHWC"))
    out = run(onnx.load(tmp_path / "p.onnx"), images)
    assert_close(out[LOGITS], logits, "logits")
    assert_close(out[renamed[LOGITS]], outputs["dense_1"], "the original output under its new name")


def _weights_as_constant_nodes(model):
    """paddle2onnx / some tf2onnx spellings: weights in Constant nodes, not initializers."""
    from onnx import helper

    constants = [helper.make_node("Constant", [], [t.name], value=t) for t in model.graph.initializer]
    del model.graph.initializer[:]
    nodes = constants + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _weight_through_transpose(model):
    """The dynamo spelling of a Linear on 3-D input: MatMul(x, Transpose(W (K, D)))."""
    from onnx import helper, numpy_helper

    kernel = next(t for t in model.graph.initializer if t.name == "dense_1/kernel")
    kernel.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(kernel).T.copy(), "fc.weight"))
    model.graph.node.insert(0, helper.make_node("Transpose", ["fc.weight"], ["dense_1/kernel"], perm=[1, 0]))


def _bias_as_row_and_initializers_as_inputs(model):
    """Old exporters list initializers among the graph inputs; biases of shape (1, K)."""
    from onnx import helper, numpy_helper

    bias = next(t for t in model.graph.initializer if t.name == "dense_1/bias")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias)[None, :], "dense_1/bias"))
    model.graph.input.extend(
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in model.graph.initializer
    )


@pytest.mark.parametrize(
    "respell",
    [_weights_as_constant_nodes, _weight_through_transpose, _bias_as_row_and_initializers_as_inputs],
    ids=lambda f: f.__name__.strip("_"),
)
def test_equivalent_spellings_of_the_same_head(respell):
    source, reference = keras_style(np.random.default_rng(6))
    respell(source)
    onnx.checker.check_model(source)
    assert_matches(probe(source), reference, "NHWC")


def test_float16_model_gives_float32_outputs():
    from onnx import TensorProto, numpy_helper

    source, _ = keras_style(np.random.default_rng(7), hidden=32)
    weights = {}
    for tensor in source.graph.initializer:
        value = numpy_helper.to_array(tensor)
        if value.dtype == np.float32:
            weights[tensor.name] = value.astype(np.float16).astype(np.float64)
            tensor.CopyFrom(numpy_helper.from_array(value.astype(np.float16), tensor.name))
    for value in (*source.graph.input, *source.graph.output):
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
    model = probe(source, preset="imagenet")
    assert read_probe_info(model).head["weight_dtype"] == "float16"
    images = images_for(model, 4)
    x = preprocess(images, *PRESET_IMAGENET, "NHWC").astype(np.float16).astype(np.float64)
    features = np.maximum(x.mean(axis=(1, 2)) @ weights["dense/kernel"] + weights["dense/bias"], 0.0)
    logits = features @ weights["dense_1/kernel"] + weights["dense_1/bias"]
    out = run(model, images)
    assert out[LOGITS].dtype == np.float32 and out[FEATURES].dtype == np.float32
    np.testing.assert_allclose(out[LOGITS], logits, rtol=2e-2, atol=2e-2 * np.abs(logits).max())
    assert out["dense_1"].dtype == np.float16  # the original output keeps its type


def test_gemm_without_bias_followed_by_add():
    from onnx import helper

    source, reference = gemm_trans_b0(np.random.default_rng(8), alpha=1.0, beta=1.0)
    gemm = next(n for n in source.graph.node if n.op_type == "Gemm")
    gemm.input.pop()  # drop C ...
    gemm.output[0] = "unbiased"
    source.graph.node.insert(3, helper.make_node("Add", ["unbiased", "C"], ["scores"]))  # ... and add it after
    [head] = [c for c in find_heads(source) if c.chosen]
    assert (head.spelling, head.logits) == ("Gemm(transB=0)+Add", "scores")
    assert_matches(probe(source), reference, "NCHW")


def test_head_tensors_already_named_logits_and_features_are_used_as_they_are():
    from onnx_geom.probe._graph import rename_tensors

    source, reference = keras_style(np.random.default_rng(9))
    rename_tensors(source.graph, {"d2b": LOGITS, "dense/Relu": FEATURES})
    model = probe(source)
    assert "renamed" not in read_probe_info(model).head
    assert [o.name for o in model.graph.output] == ["dense_1", LOGITS, FEATURES]
    assert not [n for n in model.graph.node if n.op_type == "Identity" and n.output[0] in (LOGITS, FEATURES)]
    assert_matches(model, reference, "NHWC", n=2)
