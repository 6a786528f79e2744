"""Read-only index over an ONNX graph: who produces and consumes each tensor, which tensors are constant.

>>> index = GraphIndex(model.graph)                       # doctest: +SKIP
>>> index.constant("fc.weight").shape                      # doctest: +SKIP
(10, 512)
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, helper, numpy_helper

from onnx_geom.errors import InvalidModelError

__all__ = [
    "GraphIndex",
    "all_tensor_names",
    "node_label",
    "outer_references",
    "rename_tensors",
    "source_input",
    "unique_name",
]


def node_label(node: NodeProto, position: int) -> str:
    """The node's name, or ``OpType#position`` for unnamed nodes."""
    return node.name or f"{node.op_type}#{position}"


class GraphIndex:
    """Producers, consumers and constant values of one graph (the top level; subgraphs are opaque, except that
    ``captures`` lists, for each top-level tensor, the nodes whose subgraphs (If branches, Loop bodies) read it)."""

    def __init__(self, graph: GraphProto) -> None:
        self.graph = graph
        self.nodes = list(graph.node)
        self.initializers = {tensor.name: tensor for tensor in graph.initializer}
        self.outputs = [out.name for out in graph.output]
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = defaultdict(list)
        for position, node in enumerate(self.nodes):
            for name in node.output:
                if name:
                    self.producer[name] = position
            for name in node.input:
                if name:
                    self.consumers[name].append(position)
        self.captures: dict[str, list[int]] = defaultdict(list)
        for position, node in enumerate(self.nodes):
            for name in sorted(set().union(*map(outer_references, subgraphs(node)))):
                self.captures[name].append(position)
        self._cache: dict[str, np.ndarray | None] = {}

    def label(self, position: int) -> str:
        return node_label(self.nodes[position], position)

    def constant(self, name: str, depth: int = 0) -> np.ndarray | None:
        """The value of ``name`` if it is a constant (initializer, Constant node, or Identity/Transpose/Cast
        of one); None when it is computed at run time."""
        if name in self._cache:
            return self._cache[name]
        value: np.ndarray | None = None
        if name in self.initializers:
            value = numpy_helper.to_array(self.initializers[name])
        elif name in self.producer and depth < 8:
            node = self.nodes[self.producer[name]]
            attrs = {a.name: a for a in node.attribute}
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                value = _constant_attribute(attrs)
            elif node.op_type in ("Identity", "Transpose", "Cast") and node.input:
                source = self.constant(node.input[0], depth + 1)
                if source is not None:
                    value = _fold(node.op_type, source, attrs)
        self._cache[name] = value
        return value


def _constant_attribute(attrs: dict[str, AttributeProto]) -> np.ndarray | None:
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"].t)
    for key, dtype in (
        ("value_float", np.float32),
        ("value_floats", np.float32),
        ("value_int", np.int64),
        ("value_ints", np.int64),
    ):
        if key in attrs:
            return np.asarray(helper.get_attribute_value(attrs[key]), dtype=dtype)
    return None


def _fold(op_type: str, value: np.ndarray, attrs: dict[str, AttributeProto]) -> np.ndarray:
    if op_type == "Transpose":
        perm = helper.get_attribute_value(attrs["perm"]) if "perm" in attrs else None
        return np.transpose(value, perm)
    if op_type == "Cast":
        return value.astype(helper.tensor_dtype_to_np_dtype(helper.get_attribute_value(attrs["to"])))
    return value


def subgraphs(node) -> list[GraphProto]:
    """The graphs held by ``node``'s attributes (If branches, Loop and Scan bodies)."""
    return [
        g for attr in node.attribute for g in ([attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs))
    ]


def outer_references(graph: GraphProto) -> set[str]:
    """Tensors that ``graph`` (a subgraph) or its own subgraphs read from the enclosing scopes."""
    local = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    used: set[str] = set()
    for node in graph.node:
        used.update(node.input)
        for sub in subgraphs(node):
            used |= outer_references(sub)
        local.update(node.output)
    used.update(v.name for v in graph.output)
    used.discard("")
    return used - local


def all_tensor_names(graph: GraphProto) -> set[str]:
    """Every tensor name used in ``graph`` and its subgraphs (inputs, outputs, initializers, node edges)."""
    names = {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    names.update(t.name for t in graph.initializer)
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        for sub in subgraphs(node):
            names |= all_tensor_names(sub)
    names.discard("")
    return names


def unique_name(base: str, taken: set[str]) -> str:
    """``base`` itself, or ``base_1``, ``base_2``... whichever is not in ``taken`` (which it is added to)."""
    name, count = base, 0
    while name in taken:
        count += 1
        name = f"{base}_{count}"
    taken.add(name)
    return name


def rename_tensors(graph: GraphProto, mapping: dict[str, str]) -> None:
    """Rename tensors everywhere in ``graph`` (node edges, inputs, outputs, value_info, initializers, and
    outer-scope references inside subgraphs)."""
    if not mapping:
        return
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        if value.name in mapping:
            value.name = mapping[value.name]
    for node in graph.node:
        node.input[:] = [mapping.get(name, name) for name in node.input]
        node.output[:] = [mapping.get(name, name) for name in node.output]
        for sub in subgraphs(node):
            rename_tensors(sub, mapping)


def source_input(model: ModelProto) -> onnx.ValueInfoProto:
    """The model's single real input (initializers listed as inputs by old exporters do not count)."""
    constants = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in constants]
    if len(inputs) != 1:
        names = ", ".join(f"'{v.name}'" for v in inputs) or "none"
        raise InvalidModelError(f"the model has {len(inputs)} inputs ({names}); a probe needs exactly one image input.")
    return inputs[0]
