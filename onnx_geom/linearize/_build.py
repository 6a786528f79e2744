"""The two graphs of a linearization, built from an :class:`~._analyze.Analysis` by the rules.

*forward* (the model's opset): the probe's own nodes on the way to the targets, plus the nodes that compute the
frozen pattern at x (masks, argmax indices, 1/sigma, gate factors), plus the *twin*: the frozen affine copy of
every affine node, fed with zero images, whose targets are b(x). Inputs: ``images`` and the zero images;
outputs: the targets F(x), their twins b(x), and the *taps* (the frozen values the backward graph needs).

*backward* (opset 18): the transpose of the frozen map, node by node in reverse, on R cotangent directions at
once: the cotangent of a forward tensor of static shape ``s`` has shape (R, *s). Inputs: one seed (R, *s) per
target and the taps; output: the cotangent of the images (R, S, H, W, C), i.e. R rows of W(x).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import ModelProto, NodeProto, ValueInfoProto, helper

from onnx_geom.linearize._analyze import Analysis
from onnx_geom.linearize._graph import AFFINE, Builder, Site
from onnx_geom.linearize._rules import RULES
from onnx_geom.probe._graph import all_tensor_names
from onnx_geom.probe_info import PROBE_INPUT

BACKWARD_OPSET = 18
PREFIX = "onnx_geom_lin/"
GRAD = "onnx_geom_lin/grad_images"


@dataclass
class Plan:
    forward: ModelProto
    backward: ModelProto
    zero_input: str
    twins: dict[str, str]  # target -> forward output holding b(x)
    taps: list[tuple[str, str]]  # (forward output, backward input)
    seeds: dict[str, str]  # target -> backward input
    directions: int


class Forward:
    """What the rules' ``state`` and ``twin`` functions see: the forward graph under construction."""

    def __init__(self, an: Analysis) -> None:
        self.an = an
        self.b = Builder(PREFIX, all_tensor_names(an.model.graph), an.opset)
        self.zero_input = self.b.fresh("zero_images")
        self.twins: dict[str, str] = {PROBE_INPUT: self.zero_input}
        self.states: dict[tuple[int, str], str] = {}
        self.copies: dict[int, NodeProto] = {}

    def kind(self, name: str) -> str | None:
        return self.an.kind(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.an.shapes[name]

    def value(self, name: str) -> str:
        return name

    def const(self, name: str) -> np.ndarray | None:
        return self.an.consts.get(name)

    def z(self, name: str) -> str:
        """The twin of an affine tensor; a constant or a gate is its own (frozen) value."""
        return self.twins[name] if self.an.kind(name) == AFFINE else name

    def out(self, site: Site, i: int = 0) -> str:
        name = site.outs[i]
        if name not in self.twins:
            self.twins[name] = self.b.fresh(f"twin/{name}")
        return self.twins[name]

    def copy(self, site: Site, inputs: list[str] | None = None) -> NodeProto:
        node = NodeProto()
        node.CopyFrom(site.node)
        node.name = self.b.fresh(f"twin/{site.label}")
        node.input[:] = inputs if inputs is not None else [self.z(t) if t else "" for t in site.ins]
        node.output[:] = [
            self.out(site, i) if self.an.kind(o) == AFFINE else (self.b.fresh("unused") if o else "")
            for i, o in enumerate(site.outs)
        ]
        return node

    def node(self, site: Site) -> NodeProto:
        return self.copies[site.position]

    def state(self, site: Site, key: str) -> str:
        return self.states[(site.position, key)]


class Backward:
    """What the rules' ``vjp`` functions see: the backward graph under construction, R directions wide."""

    def __init__(self, an: Analysis, fw: Forward, directions: int) -> None:
        self.an, self.fw, self.R = an, fw, directions
        self.b = Builder(PREFIX, set(), BACKWARD_OPSET)
        self.taps: dict[str, str] = {}
        self.model_opset = an.opset

    def kind(self, name: str) -> str | None:
        return self.an.kind(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self.an.shapes[name])

    def const(self, name: str) -> np.ndarray | None:
        return self.an.consts.get(name)

    def value(self, name: str) -> str:
        """The forward value of ``name`` in this graph: a constant, or a tap fed from the forward graph."""
        value = self.an.consts.get(name)
        if value is not None:
            return self.b.const(value, np.float32 if value.dtype.kind == "f" else value.dtype, "value")
        if name not in self.taps:
            self.taps[name] = self.b.fresh("tap")
        return self.taps[name]

    def state(self, site: Site, key: str) -> str:
        return self.value(self.fw.state(site, key))

    def zeros(self, shape: tuple[int, ...]) -> str:
        return self.b.expand(self.b.const(0.0), (self.R, *shape))


def build(an: Analysis, directions: int) -> Plan:
    fw = Forward(an)
    forward_nodes = []
    for site in an.sites:
        copy = NodeProto()
        copy.CopyFrom(site.node)
        fw.copies[site.position] = copy
        forward_nodes.append(copy)
    path = an.path
    for site in path:
        state = RULES[site.op].state
        if state is not None:
            fw.states.update({(site.position, key): name for key, name in state(site, fw).items()})
    for site in path:
        twin = RULES[site.op].twin
        if twin is not None:
            twin(site, fw)
        else:
            fw.b.nodes.append(fw.copy(site))
    bw = Backward(an, fw, directions)
    seeds = _backward(an, bw, path)
    targets = list(an.targets)
    twins = {t: fw.twins[t] for t in targets}
    taps = list(bw.taps.items())
    outputs = list(dict.fromkeys([*targets, *twins.values(), *(t for t, _ in taps)]))
    image = next(v for v in an.model.graph.input if v.name == PROBE_INPUT)
    zero = ValueInfoProto()
    zero.CopyFrom(image)
    zero.name = fw.zero_input
    graph = helper.make_graph(
        forward_nodes + fw.b.nodes,
        "onnx_geom_linearize_forward",
        [image, zero],
        [helper.make_empty_tensor_value_info(name) for name in outputs],
        [*an.model.graph.initializer, *fw.b.inits],
    )
    forward = helper.make_model(graph, opset_imports=list(an.model.opset_import))
    forward.ir_version = an.model.ir_version
    inputs = [_typed(seed, np.dtype(np.float32), (directions, *an.shapes[t])) for t, seed in seeds.items()]
    state_types = {name: np.int64 if key == "indices" else np.float32 for (_, key), name in fw.states.items()}
    inputs += [
        _typed(tap, an.dtypes[t], an.shapes[t]) if t in an.dtypes else _typed(tap, state_types[t], None)
        for t, tap in taps
    ]
    graph = helper.make_graph(
        bw.b.nodes,
        "onnx_geom_linearize_backward",
        inputs,
        [_typed(GRAD, np.dtype(np.float32), (directions, *an.shapes[PROBE_INPUT]))],
        bw.b.inits,
    )
    backward = helper.make_model(graph, opset_imports=[helper.make_opsetid("", BACKWARD_OPSET)])
    backward.ir_version = 8
    return Plan(forward, backward, fw.zero_input, twins, [(t, tap) for t, tap in taps], seeds, directions)


def _backward(an: Analysis, bw: Backward, path: list[Site]) -> dict[str, str]:
    """Emit the transposed nodes, last node first, accumulating cotangents where a tensor fans out."""
    grads: dict[str, list[str]] = defaultdict(list)
    seeds = {}
    for target in an.targets:
        seeds[target] = bw.b.fresh("seed")
        grads[target].append(seeds[target])

    def total(name: str) -> str | None:
        parts = grads.pop(name, [])
        if not parts:
            return None
        total = parts[0]
        for part in parts[1:]:  # a chain of Add: onnxruntime threads Add, not Sum
            total = bw.b.op("Add", [total, part])
        return total

    for site in reversed(path):
        g = [total(o) if o and an.kind(o) == AFFINE else None for o in site.outs]
        if all(x is None for x in g):
            continue
        if g[0] is None and site.op != "Split":
            g[0] = bw.zeros(bw.shape(site.outs[0]))
        for name, gi in zip(site.ins, RULES[site.op].vjp(site, bw, g), strict=False):  # type: ignore[misc]
            if gi is not None and name:
                grads[name].append(gi)
    image = total(PROBE_INPUT)
    assert image is not None  # the analysis checked that every target is affine in the images
    bw.b.nodes.append(helper.make_node("Identity", [image], [GRAD], name=bw.b.fresh("grad_images")))
    return seeds


def _typed(name: str, dtype: Any, shape: tuple[int, ...] | None) -> ValueInfoProto:
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    return helper.make_tensor_value_info(name, elem, None if shape is None else [int(d) for d in shape])
