"""linearize on probes from other exporters (skl2onnx, tf2onnx-style and hand-built graphs), the refusals, and
bad input. The oracle here is the source model itself in numpy: directional finite differences in float64 at
points away from kinks, and the identity W x + b == F(x)."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from _probe_models import gemm_trans_b0, keras_style, preprocess
from onnx import TensorProto, helper, numpy_helper

from onnx_geom.errors import DataError, InvalidModelError
from onnx_geom.linearize import EXACT, Linearizer
from onnx_geom.probe import probe
from onnx_geom.probe_info import read_probe_info


def directional_check(res, logits_of, imgs, *, step=1e-3, seed=0):
    """W(x) . v against (F(x + h v) - F(x - h v)) / 2h of the numpy source model, for random directions v."""
    rng = np.random.default_rng(seed)
    for s, im in enumerate(imgs):
        x = im.astype(np.float64)
        for _ in range(3):
            v = rng.standard_normal(x.shape)
            fd = (logits_of(x + step * v) - logits_of(x - step * v)) / (2 * step)
            lin = np.einsum("khwc,hwc->k", res.W[s].astype(np.float64), v)
            assert np.abs(fd - lin).max() <= 1e-4 * max(1.0, np.abs(fd).max()), (s, fd, lin)


def identity_check(res, imgs):
    recon = np.einsum("skhwc,shwc->sk", res.W.astype(np.float64), imgs.astype(np.float64)) + res.b
    assert np.abs(recon - res.value).max() <= 1e-4 * np.abs(res.value).max()
    assert res.residual.max() < 1e-4


def test_skl2onnx_mlp(skl2onnx):
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    X = rng.random((90, 48)).astype(np.float32)  # 4 x 4 x 3 images, flattened H, W, C
    clf = MLPClassifier(hidden_layer_sizes=(7,), max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, rng.integers(0, 3, 90))
    model = probe(skl2onnx.to_onnx(clf, X[:1], target_opset=17), mean=[0.5], std=[0.25])
    imgs = np.random.default_rng(1).integers(0, 256, (4, 4, 4, 3), dtype=np.uint8)
    res = Linearizer(model, device="cpu")(imgs)

    def logits_of(x):  # the scikit-learn model on the probe's preprocessing, float64
        z = preprocess(x[None], (0.5,) * 3, (0.25,) * 3, "flat")
        return (np.maximum(z @ clf.coefs_[0] + clf.intercepts_[0], 0.0) @ clf.coefs_[1] + clf.intercepts_[1])[0]

    identity_check(res, imgs)
    np.testing.assert_allclose(
        res.value, np.stack([logits_of(im.astype(np.float64)) for im in imgs]), rtol=1e-5, atol=1e-5
    )
    directional_check(res, logits_of, imgs)
    assert res.report.kind == EXACT


@pytest.mark.parametrize("build", ["keras", "gemm"])
def test_hand_built_spellings(build):
    if build == "keras":
        source, reference = keras_style(np.random.default_rng(2))
        model, layout, norm = probe(source, preset="imagenet"), "NHWC", ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    else:
        source, reference = gemm_trans_b0(np.random.default_rng(3), alpha=0.5, beta=2.0)
        model, layout, norm = probe(source), "NCHW", ((0, 0, 0), (1, 1, 1))
    imgs = np.random.default_rng(4).integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    res = Linearizer(model, device="cpu")(imgs, np.array([0, 1, 2]))
    logits_of = lambda x: reference(preprocess(x[None], *norm, layout))[1][0]
    identity_check(res, imgs)
    directional_check(res, logits_of, imgs)
    info = read_probe_info(model)
    f = np.stack([reference(preprocess(im[None].astype(np.float64), *norm, layout))[0][0] for im in imgs])
    np.testing.assert_allclose(res.length.value, np.linalg.norm(f, axis=1), rtol=1e-5)
    cos = (f * info.W[[0, 1, 2]]).sum(1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(info.W[[0, 1, 2]], axis=1))
    np.testing.assert_allclose(res.cos.value, cos, rtol=1e-5, atol=1e-6)


def _source(middle, *, inits=None, width=12, extra_out=None, opset=17):
    """x (N, 3, 2, 2) -> Flatten -> ``middle`` nodes (reading 'flat', writing 'feat') -> Gemm head (W, C) -> 'scores'."""
    rng = np.random.default_rng(9)
    inits = dict(inits or {})
    inits["W"] = rng.standard_normal((4, width)).astype(np.float32)
    inits["C"] = rng.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], name="flatten"), *middle]
    nodes.append(helper.make_node("Gemm", ["feat", "W", "C"], ["scores"], transB=1, name="head"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 2, 2])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4]), *(extra_out or [])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return probe(model)


def _refused(model, *needles, output="logits"):
    with pytest.raises(InvalidModelError) as err:
        Linearizer(model, device="cpu", output=output)
    message = str(err.value)
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0, message
    for needle in needles:
        assert needle in message, message
    return message


def test_an_old_opset_graph_is_converted_first():
    """Opset 9 (Clip with attributes, no GreaterOrEqual): converted to 13, then linearized exactly."""
    nodes = [
        helper.make_node("Clip", ["flat"], ["clipped"], min=-0.5, max=0.7, name="clip"),
        helper.make_node("LeakyRelu", ["clipped"], ["feat"], alpha=0.2, name="leaky"),
    ]
    model = _source(nodes, opset=9)
    info = read_probe_info(model)
    W1, c1 = info.W.astype(np.float64), info.b.astype(np.float64)
    imgs = np.random.default_rng(6).integers(0, 256, (3, 2, 2, 3), dtype=np.uint8)
    lin = Linearizer(model, device="cpu")
    assert read_probe_info(model).opset == 9
    assert next(op.version for op in lin.plan.forward.opset_import if op.domain == "") == 13
    res = lin(imgs)

    def logits_of(x):
        z = np.clip(preprocess(x[None], (0, 0, 0), (1, 1, 1), "NCHW").reshape(1, -1), -0.5, 0.7)
        return (np.where(z > 0, z, 0.2 * z) @ W1.T + c1)[0]

    identity_check(res, imgs)
    directional_check(res, logits_of, imgs, step=1e-4)
    assert {op for op, _ in res.report.patterns} == {"Clip", "LeakyRelu"}


def test_unsupported_ops_on_the_output_path_are_refused_by_op_and_node():
    hardmax = _source([helper.make_node("Hardmax", ["flat"], ["feat"], axis=-1, name="the_hardmax")])
    _refused(hardmax, "Hardmax", "'the_hardmax'", "no linearization rule")
    topk = _source(
        [helper.make_node("TopK", ["flat", "k"], ["feat", "idx"], name="top5")],
        inits={"k": np.array([5], np.int64)},
        width=5,
    )
    _refused(topk, "TopK", "'top5'")
    square = _source([helper.make_node("Mul", ["flat", "flat"], ["feat"], name="square")])
    _refused(square, "Mul", "'square'", "product of two input-dependent tensors")
    mixed = _source(
        [
            helper.make_node("Unsqueeze", ["flat", "last"], ["col"], name="col"),
            helper.make_node("Unsqueeze", ["flat", "mid"], ["row"], name="row"),
            helper.make_node("MatMul", ["col", "row"], ["outer"], name="outer"),  # (N, 12, 12): x_i x_j
            helper.make_node("ReduceSum", ["outer", "last"], ["quad"], keepdims=0, name="rowsum"),
            helper.make_node("Add", ["quad", "flat"], ["feat"], name="mix"),
        ],
        inits={"last": np.array([2], np.int64), "mid": np.array([1], np.int64)},
    )
    _refused(mixed, "Add node 'mix'", "MatMul node 'outer'", "product of two input-dependent tensors")


def test_a_product_that_feeds_a_gate_is_allowed_and_erf_pow_gates_are_named():
    """softmax(x x^T) x (attention without weights), a decomposed LayerNorm (Pow, Sqrt, Div) and GELU via Erf."""
    nodes = [
        helper.make_node("Reshape", ["flat", "shape"], ["tok"], name="tokens"),  # (N, 4, 3)
        helper.make_node("Transpose", ["tok"], ["tokT"], perm=[0, 2, 1], name="tT"),
        helper.make_node("MatMul", ["tok", "tokT"], ["qk"], name="qk"),
        helper.make_node("Softmax", ["qk"], ["attn"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["attn", "tok"], ["mixed"], name="av"),
        helper.make_node("ReduceMean", ["mixed"], ["mu"], axes=[-1], name="mean"),
        helper.make_node("Sub", ["mixed", "mu"], ["centred"], name="centre"),
        helper.make_node("Pow", ["centred", "two"], ["sq"], name="square"),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1], name="var"),
        helper.make_node("Add", ["var", "eps"], ["var_eps"], name="eps"),
        helper.make_node("Sqrt", ["var_eps"], ["sigma"], name="sigma"),
        helper.make_node("Div", ["centred", "sigma"], ["normed"], name="normalise"),
        helper.make_node("Div", ["normed", "root2"], ["scaled"], name="gelu_scale"),
        helper.make_node("Erf", ["scaled"], ["erf"], name="gelu_erf"),
        helper.make_node("Add", ["erf", "one"], ["erf1"], name="gelu_add"),
        helper.make_node("Mul", ["normed", "erf1"], ["g2"], name="gelu_mul"),
        helper.make_node("Mul", ["g2", "half"], ["act"], name="gelu_half"),
        helper.make_node("Reshape", ["act", "back"], ["feat"], name="flat_again"),
    ]
    inits = {
        "shape": np.array([0, 4, 3], np.int64), "back": np.array([0, 12], np.int64), "two": np.float32(2.0),
        "eps": np.float32(1e-5), "root2": np.float32(np.sqrt(2.0)), "one": np.float32(1.0), "half": np.float32(0.5),
    }  # fmt: skip
    model = _source(nodes, inits=inits, opset=13)
    imgs = np.random.default_rng(5).integers(0, 256, (3, 2, 2, 3), dtype=np.uint8)
    res = Linearizer(model, device="cpu")(imgs)
    identity_check(res, imgs)
    ops = {op for op, _ in res.report.gates}
    assert {"Softmax", "Pow", "Erf"} <= ops, ops
    assert "'softmax'" in res.report.kind and "'gelu_erf'" in res.report.kind


def test_outputs_that_are_not_affine_or_do_not_exist_are_refused():
    source, _ = keras_style(np.random.default_rng(2))
    model = probe(source)
    _refused(model, "'dense_1'", "non-linear", output="dense_1")  # the softmax probabilities
    _refused(model, "no output named 'nope'", "logits", output="nope")


def test_bad_images_and_labels_are_data_errors():
    source, _ = keras_style(np.random.default_rng(2))
    lin = Linearizer(probe(source), device="cpu")
    good = np.zeros((2, 4, 4, 3), np.uint8)
    for bad, needle in (
        (good.astype(np.float32), "uint8"),
        (np.zeros((2, 4, 5, 3), np.uint8), "shape"),
        (np.zeros((0, 4, 4, 3), np.uint8), "no images"),
    ):
        with pytest.raises(DataError, match=needle):
            lin(bad)
    with pytest.raises(DataError, match="labels run from"):
        lin(good, np.array([0, 4]))
    with pytest.raises(DataError, match="one per image"):
        lin(good, np.array([0]))
