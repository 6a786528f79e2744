"""Tiny classifiers in the spellings real exporters produce, each with an independent numpy forward pass.

Every builder returns ``(model, reference)`` where ``reference(x) -> (features, logits, outputs)`` computes,
in plain numpy from the original weights, the head's input (N, D), its pre-softmax output (N, K) and the
model's original outputs, for the *model input* ``x`` (already preprocessed and laid out).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def preprocess(images: np.ndarray, mean, std, layout: str) -> np.ndarray:
    """Written apart from onnx_geom.probe.preprocess_numpy: per-pixel loops over channels."""
    x = np.empty(images.shape, np.float64)
    for c in range(images.shape[-1]):
        x[..., c] = (images[..., c] / 255.0 - mean[c]) / std[c]
    if layout == "NCHW":
        x = np.moveaxis(x, -1, 1)
    elif layout == "flat":
        x = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))
    return x


def _model(nodes, inputs, outputs, inits, *, opset=17, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def keras_style(rng, *, n_classes=4, hidden=6, size=4):
    """tf2onnx spelling: NHWC input, ReduceMean as global pooling, MatMul + Add (bias first), Softmax, Identity."""
    w1 = rng.standard_normal((3, hidden)).astype(np.float32)
    b1 = rng.standard_normal(hidden).astype(np.float32)
    w2 = rng.standard_normal((hidden, n_classes)).astype(np.float32)
    b2 = rng.standard_normal(n_classes).astype(np.float32)
    axes = np.array([1, 2], np.int64)
    nodes = [
        helper.make_node("ReduceMean", ["input_1", "axes"], ["gap"], keepdims=0, name="global_average_pooling2d/Mean"),
        helper.make_node("MatMul", ["gap", "dense/kernel"], ["d1"], name="dense/MatMul"),
        helper.make_node("Add", ["dense/bias", "d1"], ["d1b"], name="dense/BiasAdd"),
        helper.make_node("Relu", ["d1b"], ["dense/Relu"], name="dense/Relu"),
        helper.make_node("MatMul", ["dense/Relu", "dense_1/kernel"], ["d2"], name="dense_1/MatMul"),
        helper.make_node("Add", ["d2", "dense_1/bias"], ["d2b"], name="dense_1/BiasAdd"),
        helper.make_node("Softmax", ["d2b"], ["sm"], axis=-1, name="dense_1/Softmax"),
        helper.make_node("Identity", ["sm"], ["dense_1"], name="Identity"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["unk__6", size, size, 3])],
        [helper.make_tensor_value_info("dense_1", TensorProto.FLOAT, ["unk__7", n_classes])],
        {"axes": axes, "dense/kernel": w1, "dense/bias": b1, "dense_1/kernel": w2, "dense_1/bias": b2},
        opset=18,
    )
    model.producer_name = "tf2onnx"

    def reference(x):
        features = np.maximum(x.mean(axis=(1, 2)) @ w1.astype(np.float64) + b1, 0.0)
        logits = features @ w2.astype(np.float64) + b2
        return features, logits, {"dense_1": softmax(logits)}

    return model, reference


def gemm_trans_b0(rng, *, n_classes=5, alpha=0.5, beta=2.0, size=4, reshape=True):
    """NCHW input -> GlobalAveragePool -> Reshape (or Flatten) -> Gemm(transB=0, alpha, beta, C of shape (1, K)) -> LogSoftmax."""
    B = rng.standard_normal((3, n_classes)).astype(np.float32)
    C = rng.standard_normal((1, n_classes)).astype(np.float32)
    to_2d = (
        helper.make_node("Reshape", ["pooled", "shape"], ["flat"], name="reshape")
        if reshape
        else helper.make_node("Flatten", ["pooled"], ["flat"], axis=1, name="flatten")
    )
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"], name="gap"),
        to_2d,
        helper.make_node("Gemm", ["flat", "B", "C"], ["scores"], alpha=alpha, beta=beta, transB=0, name="head"),
        helper.make_node("LogSoftmax", ["scores"], ["log_probs"], axis=1, name="logsoftmax"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["batch", n_classes])],
        {"B": B, "C": C, **({"shape": np.array([0, -1], np.int64)} if reshape else {})},
    )

    def reference(x):
        features = x.mean(axis=(2, 3))
        logits = alpha * features @ B.astype(np.float64) + beta * C[0]
        return features, logits, {"log_probs": np.log(softmax(logits))}

    return model, reference


def squeezenet_tail(rng, *, n_classes=4, size=4):
    """SqueezeNet's classifier: 1x1 conv -> ReLU -> global pool -> Flatten -> Softmax (not linear in features)."""
    w = rng.standard_normal((n_classes, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"], name="final_conv"),
        helper.make_node("Relu", ["conv"], ["relu"], name="final_relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Softmax", ["flat"], ["probs"], axis=1, name="softmax"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", n_classes])],
        {"w": w},
    )


def two_heads(rng, *, size=4):
    """Two linear heads on the same pooled features, each to its own output (e.g. an auxiliary classifier)."""
    W1 = rng.standard_normal((4, 3)).astype(np.float32)
    W2 = rng.standard_normal((6, 3)).astype(np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"], name="gap"),
        helper.make_node("Flatten", ["pooled"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "W1"], ["main"], transB=1, name="main_head"),
        helper.make_node("Gemm", ["f", "W2"], ["aux"], transB=1, name="aux_head"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info("main", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("aux", TensorProto.FLOAT, ["N", 6]),
        ],
        {"W1": W1, "W2": W2},
    )

    def reference(x):
        f = x.mean(axis=(2, 3))
        return f, {"main": f @ W1.T.astype(np.float64), "aux": f @ W2.T.astype(np.float64)}

    return model, reference


def typed_input(elem_type, shape, *, embed=False):
    """A small model whose input is ``elem_type`` with ``shape`` (token ids, integer images, sequences)."""
    rng = np.random.default_rng(5)
    W = rng.standard_normal((3, 4)).astype(np.float32)
    if embed:  # token ids -> embedding lookup -> mean over the sequence -> Gemm
        table = rng.standard_normal((10, 4)).astype(np.float32)
        nodes = [
            helper.make_node("Gather", ["table", "ids"], ["emb"]),
            helper.make_node("ReduceMean", ["emb", "axes"], ["pooled"], keepdims=0),
            helper.make_node("Gemm", ["pooled", "W"], ["y"], transB=1),
        ]
        inits = {"table": table, "axes": np.array([1], np.int64), "W": W}
        name = "ids"
    else:
        nodes = [
            helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["xf", "axes"], ["pooled"], keepdims=0),
            helper.make_node("Gemm", ["pooled", "W"], ["y"], transB=1),
        ]
        inits = {"axes": np.array(list(range(1, len(shape) - 1)), np.int64), "W": W}
        name = "x"
    return _model(
        nodes,
        [helper.make_tensor_value_info(name, elem_type, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [shape[0], 3])],
        inits,
        opset=18,
    )
