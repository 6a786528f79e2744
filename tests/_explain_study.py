"""A small real study of the demo zoo for the explain tests (probe files, a sweep with fog made on the fly, stored
geometry and comparison), built once per test session; and an ONNX probe of a synthetic viewer study's models."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_geom.probe_info import ProbeInfo, write_probe_info

N = 40  # test images in the demo study
_CACHE: dict[str, object] = {}


def demo_study():
    """The :class:`onnx_geom.demo.pipeline.DemoResult` of dense and magnitude_95 over the first 40 test images,
    clean and fog/3 (built on first use, removed at exit; treat it as read-only)."""
    if "demo" not in _CACHE:
        from onnx_geom.demo.pipeline import run_demo

        root = Path(tempfile.mkdtemp(prefix="onnx-geom-explain-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _CACHE["demo"] = run_demo(
            root / "demo", models=["dense", "magnitude_95"], corruptions=["fog"], severities=[3], limit=N
        )
    return _CACHE["demo"]


def synthetic_probe(data, model: str) -> onnx.ModelProto:
    """The ONNX probe of a synthetic study's model: uint8 NHWC -> (x / 255 - 0.5) @ mix -> features -> W f + b,
    written here as a graph, apart from the viewer's numpy version of the same map."""
    mix = np.asarray(data.images.probe, np.float32)
    W, b = data.heads[model]
    h, w, c = data.images.shape[1:]
    nodes = [
        helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("Div", ["flat", "scale"], ["unit"]),
        helper.make_node("Sub", ["unit", "half"], ["centred"]),
        helper.make_node("MatMul", ["centred", "mix"], ["features"]),
        helper.make_node("Gemm", ["features", "W", "b"], ["logits"], transB=1),
    ]
    inits = {"shape": np.array([-1, h * w * c], np.int64), "scale": np.float32(255.0), "half": np.float32(0.5),
             "mix": mix, "W": np.asarray(W, np.float32), "b": np.asarray(b, np.float32)}  # fmt: skip
    graph = helper.make_graph(
        nodes, "synthetic", [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", h, w, c])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(b)]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", mix.shape[1]])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )  # fmt: skip
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model_proto.ir_version = 8
    info = ProbeInfo(W=np.asarray(W, np.float32), b=np.asarray(b, np.float32), input_shape=(h, w, c),
                     layout="NHWC", mean=(0.0,) * c, std=(1.0,) * c)  # fmt: skip
    write_probe_info(model_proto, info)
    onnx.checker.check_model(model_proto)
    return model_proto
