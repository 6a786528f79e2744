"""Tiny hand-made probes (Cast/Div/Transpose front, Flatten, MatMul+Relu features, Gemm head) and a numpy reference."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_geom.probe_info import ProbeInfo, write_probe_info


def make_probe(
    *, seed: int = 0, shape=(6, 6, 3), features: int = 8, classes: int = 4, activation: str = "Relu"
) -> tuple[onnx.ModelProto, dict]:
    """A probe and its weights ``{"A": (H*W*C, D), "W": (K, D), "b": (K,)}`` for :func:`reference`.

    ``activation="Log"`` makes a model that breaks on black images: its features are ``log(x @ |A|)``, -inf there.
    """
    rng = np.random.default_rng(seed)
    h, w, c = shape
    weights = {
        "A": rng.normal(scale=0.2, size=(h * w * c, features)).astype(np.float32),
        "W": rng.normal(size=(classes, features)).astype(np.float32),
        "b": rng.normal(size=classes).astype(np.float32),
    }
    nodes = [
        helper.make_node("Cast", ["images"], ["x_float"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["x_float", "scale"], ["x_unit"]),
        helper.make_node("Transpose", ["x_unit"], ["x_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Flatten", ["x_nchw"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "A"], ["hidden"]),
        helper.make_node(activation, ["hidden"], ["features"]),
        helper.make_node("Gemm", ["features", "W", "b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    if activation == "Log":
        weights["A"] = np.abs(weights["A"])
    inits = [numpy_helper.from_array(np.array(255.0, np.float32), "scale")]
    inits += [numpy_helper.from_array(v, k) for k, v in weights.items()]
    graph = helper.make_graph(
        nodes,
        "tiny_probe",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", h, w, c])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", features]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    info = ProbeInfo(
        W=weights["W"],
        b=weights["b"],
        input_shape=shape,
        layout="NCHW",
        mean=(0.0,) * c,
        std=(1.0,) * c,
        tags={"seed": seed},
    )
    write_probe_info(model, info)
    return model, weights


def reference(images: np.ndarray, weights: dict) -> tuple[np.ndarray, np.ndarray]:
    """features, logits computed in float64 numpy, written independently of the graph."""
    x = np.moveaxis(images.astype(np.float64) / 255.0, -1, 1).reshape(len(images), -1)
    feats = np.maximum(x @ weights["A"].astype(np.float64), 0.0)
    return feats, feats @ weights["W"].T.astype(np.float64) + weights["b"]


def toy_corrupt(images: np.ndarray, name: str, severity: int, *, profile=None, rng=0, indices=None) -> np.ndarray:
    """Test-only corruption, reproducible per sample: noise seeded by (rng, name, severity, sample index)."""
    out = np.empty_like(images)
    for row, index in enumerate(indices):
        gen = np.random.default_rng([int(rng), sum(map(ord, name)), int(severity), int(index)])
        noise = gen.integers(-12 * severity, 12 * severity + 1, size=images.shape[1:])
        out[row] = np.clip(images[row].astype(np.int64) + noise, 0, 255).astype(np.uint8)
    return out
