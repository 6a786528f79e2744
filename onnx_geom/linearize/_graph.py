"""Small graph-building helpers shared by the rules: a node list with fresh names, constants, and the node view.

Every tensor of the analysed graph has a *kind*: ``const`` (no dependence on the images' values: initializers,
Constant nodes, shapes), ``gate`` (depends on the images but is frozen at x: the output of a non-linear smooth
op, a comparison, ...), ``affine`` (affine in the images once the gates and the piecewise-linear patterns are
frozen) or ``bilinear`` (a product of two affine tensors; allowed only when it feeds gates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from onnx_geom.errors import InvalidModelError
from onnx_geom.probe._graph import node_label, unique_name

CONST, GATE, AFFINE, BILINEAR = "const", "gate", "affine", "bilinear"
VARIABLE = (AFFINE, BILINEAR)


@dataclass
class Site:
    """One node of the analysed graph: its proto, a readable label and its attributes as Python values."""

    node: NodeProto
    label: str
    position: int
    attrs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, node: NodeProto, position: int) -> Site:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return cls(node, node_label(node, position), position, attrs)

    @property
    def op(self) -> str:
        return self.node.op_type

    @property
    def ins(self) -> list[str]:
        return list(self.node.input)

    @property
    def outs(self) -> list[str]:
        return list(self.node.output)

    def attr(self, name: str, default: Any = None) -> Any:
        value = self.attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else value


def refuse(site: Site, why: str) -> NoReturn:
    """Raise the one-sentence InvalidModelError that names the op and the node."""
    raise InvalidModelError(f"cannot linearize the model: the {site.op} node '{site.label}' {why}.")


class Builder:
    """Nodes and initializers of a graph under construction, at opset ``opset``, with collision-free names."""

    def __init__(self, prefix: str, taken: set[str], opset: int) -> None:
        self.prefix, self.taken, self.opset = prefix, taken, opset
        self.nodes: list[NodeProto] = []
        self.inits: list[TensorProto] = []
        self._consts: dict[tuple[str, bytes, tuple[int, ...]], str] = {}

    def fresh(self, base: str) -> str:
        return unique_name(f"{self.prefix}{base}", self.taken)

    def const(self, value: Any, dtype: Any = np.float32, base: str = "c") -> str:
        array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        key = (array.dtype.str, array.tobytes(), array.shape)
        if key not in self._consts:
            name = self.fresh(base)
            self.inits.append(numpy_helper.from_array(array, name))
            self._consts[key] = name
        return self._consts[key]

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs: Any) -> Any:
        """Append one node; returns its output name (or the list of names when ``n_out > 1``)."""
        outs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.fresh(op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def reshape(self, x: str, shape: tuple[int, ...]) -> str:
        return self.op("Reshape", [x, self.const(shape, np.int64, "shape")])

    def reduce(self, op_type: str, x: str, axes: list[int], keepdims: int = 1) -> str:
        """ReduceMean/ReduceSum over ``axes`` in this graph's opset (axes an attribute before 18/13, an input after)."""
        as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if as_input:
            return self.op(op_type, [x, self.const(axes, np.int64, "axes")], keepdims=keepdims)
        return self.op(op_type, [x], axes=list(axes), keepdims=keepdims)

    def expand(self, x: str, shape: tuple[int, ...]) -> str:
        return self.op("Expand", [x, self.const(shape, np.int64, "shape")])


def unbroadcast(b: Builder, g: str, g_shape: tuple[int, ...], in_shape: tuple[int, ...]) -> str:
    """The adjoint of numpy broadcasting ``in_shape`` -> ``g_shape``: sum the cotangent ``g`` (R, *g_shape)
    over the broadcast axes and reshape it to (R, *in_shape)."""
    g_shape, in_shape = tuple(g_shape), tuple(in_shape)
    if g_shape == in_shape:
        return g
    padded = (1,) * (len(g_shape) - len(in_shape)) + in_shape
    axes = [i + 1 for i, (o, s) in enumerate(zip(g_shape, padded, strict=True)) if s == 1 and o != 1]
    if axes:
        g = b.reduce("ReduceSum", g, axes, keepdims=1)
    return lead_reshape(b, g, in_shape)


def lead_reshape(b: Builder, g: str, shape: tuple[int, ...]) -> str:
    """Reshape a cotangent (R, ...) to (R, *shape)."""
    return b.reshape(g, (-1, *shape))
