"""Ops that only move values around (Slice, Gather, Pad, Tile, Expand, DepthToSpace, nearest Resize, ...).

Each output element is a copy of one input element or a constant, so the op is the matrix of an *index map*.
The map is found once, at build time, by running the node itself under onnxruntime on the numbers
1..n (its other inputs must be constants; 0 marks a constant fill such as Pad's). The transpose is a gather
through the inverse map when no input element is copied twice, else a scatter-add.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_geom.linearize._graph import CONST, Site, refuse
from onnx_geom.linearize._rules import Classified, linear, rule

OPS = (
    "Slice", "Gather", "GatherElements", "GatherND", "Pad", "Tile", "Expand", "DepthToSpace", "SpaceToDepth",
    "Resize", "Upsample", "Compress", "ReverseSequence",
)  # fmt: skip


def _classify(site: Site, an: Any) -> Classified:
    if site.op in ("Resize", "Upsample") and site.attr("mode", "nearest") != "nearest":
        refuse(site, f"interpolates with mode '{site.attr('mode')}', and linearize supports nearest resizing only")
    for i, name in enumerate(site.ins[1:], start=1):
        if name and an.kind(name) != CONST:
            refuse(
                site, f"selects with the input-dependent tensor '{name}' (input {i}), which linearize does not support"
            )
    return linear(0)(site, an)


def index_map(site: Site, bw: Any) -> np.ndarray:
    """(n_out,) int64: 1 + the flat input index each output element copies, or 0 for a constant fill."""
    shape = bw.shape(site.ins[0])
    n_in = int(np.prod(shape))
    for dtype, elem in ((np.float64, TensorProto.DOUBLE), (np.float32, TensorProto.FLOAT)):
        if dtype == np.float32 and n_in >= 2**24:
            break
        try:
            out = _run(site, bw, (np.arange(n_in, dtype=dtype) + 1).reshape(shape), elem)
        except Exception:  # onnxruntime has no double kernel for this op: try float32
            continue
        return np.rint(out).astype(np.int64).reshape(-1)
    refuse(site, "could not be run on an index tensor to find which input values it copies")


def _run(site: Site, bw: Any, data: np.ndarray, elem: int) -> np.ndarray:
    import onnxruntime as ort

    node = onnx.NodeProto()
    node.CopyFrom(site.node)
    del node.output[1:]
    inits, inputs = [], ["data"]
    for i, name in enumerate(site.ins[1:], start=1):
        if not name:
            inputs.append("")
            continue
        value = bw.const(name)
        if site.op == "Pad" and i == 2:  # the fill value: 0 marks "no input element"
            value = np.zeros_like(data, shape=())
        inits.append(numpy_helper.from_array(np.asarray(value), f"c{i}"))
        inputs.append(f"c{i}")
    node.input[:] = inputs
    node.output[:] = ["out"]
    for attr in node.attribute:
        if site.op == "Pad" and attr.name == "value":
            attr.f = 0.0
    graph = helper.make_graph(
        [node],
        "index_map",
        [helper.make_tensor_value_info("data", elem, data.shape)],
        [helper.make_tensor_value_info("out", elem, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", bw.model_opset)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"data": data})[0])


def _vjp(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    mapping = index_map(site, bw)
    n_in, n_out = int(np.prod(bw.shape(site.ins[0]))), mapping.size
    b = bw.b
    flat = b.reshape(g[0], (bw.R, n_out))
    valid = mapping > 0
    source = mapping[valid] - 1
    if source.size == 0:
        return [bw.zeros(bw.shape(site.ins[0]))] + [None] * (len(site.ins) - 1)
    if np.bincount(source, minlength=n_in).max() <= 1:  # a permutation-like map: gather back
        inverse = np.full(n_in, n_out, np.int64)
        inverse[source] = np.flatnonzero(valid)
        padded = b.op("Concat", [flat, bw.zeros((1,))], axis=1)
        gathered = b.op("Gather", [padded, b.const(inverse, np.int64, "inverse")], axis=1)
    else:  # some input element is copied several times (Tile, Expand, reflect Pad): add them up
        if not valid.all():
            flat = b.op("Gather", [flat, b.const(np.flatnonzero(valid), np.int64, "positions")], axis=1)
        indices = b.expand(b.const(source[None, :], np.int64, "sources"), (bw.R, source.size))
        gathered = b.op("ScatterElements", [bw.zeros((n_in,)), indices, flat], axis=1, reduction="add")
    reshaped = b.reshape(gathered, (bw.R, *bw.shape(site.ins[0])))
    return [reshaped] + [None] * (len(site.ins) - 1)


rule(*OPS, classify=_classify, vjp=_vjp)
