"""Rules that freeze something at x: activation patterns (ReLU masks, max-pool argmax) and smooth gates.

Piecewise-linear ops (Relu, LeakyRelu, PRelu, Clip, Abs, HardSigmoid, Max, Min, MaxPool) become a multiply by a
frozen factor (plus a frozen offset where the op clips to a constant): exact, and W(x) is the Jacobian. Smooth
gates are frozen too: Gelu = x * Phi(x) and HardSwish = x * hardsigmoid(x) freeze their second factor,
LayerNormalization and InstanceNormalization freeze 1/sigma (the mean subtraction stays linear). Ops such as
Softmax, Erf, Sigmoid, Exp, Sqrt or Pow on an input-dependent tensor produce a gate: frozen at x, used by the
ops downstream (Mul, MatMul, Div) as a constant.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from onnx_geom.linearize._graph import BILINEAR, GATE, Site, refuse, unbroadcast
from onnx_geom.linearize._rules import Classified, linear, reduce_axes, rule, smooth_gate, step_gate

FLOAT = 1


def piecewise(positions: tuple[int, ...] = (0,), gates: tuple[int, ...] = (), source: str = "piecewise") -> Any:
    """Classification of an op that is affine through a frozen pattern: never applied to a bilinear tensor."""
    inner = linear(*positions, gates=gates)

    def classify(site: Site, an: Any) -> Classified:
        kinds, _ = inner(site, an)
        if BILINEAR in kinds:
            origin = next(an.origin(t) for t in site.ins if t and an.kind(t) == BILINEAR)
            refuse(
                site,
                f"applies a non-linear op to the product of two input-dependent tensors formed at the {origin}, which only a smooth gate (Softmax, Sigmoid, ...) may consume",
            )
        return kinds, source

    return classify


def factor_rule(
    ops: tuple[str, ...], factor: Callable[[Site, Any], str], *, offset: bool = False, source: str = "piecewise"
) -> None:
    """out = factor * in (+ offset), with factor (and offset = out - factor * in) frozen at x."""

    def state(site: Site, fw: Any) -> dict[str, str]:
        f = factor(site, fw)
        result = {"factor": f}
        if offset:
            result["offset"] = fw.b.op("Sub", [site.outs[0], fw.b.op("Mul", [f, site.ins[0]])])
        return result

    def twin(site: Site, fw: Any) -> None:
        scaled = fw.b.op("Mul", [fw.z(site.ins[0]), fw.state(site, "factor")])
        if offset:
            scaled = fw.b.op("Add", [scaled, fw.state(site, "offset")])
        fw.b.nodes.append(_identity(fw, scaled, fw.out(site)))

    def vjp(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
        return [bw.b.op("Mul", [g[0], bw.state(site, "factor")])] + [None] * (len(site.ins) - 1)

    rule(*ops, classify=piecewise(source=source), state=state, twin=twin, vjp=vjp)


def _identity(fw: Any, source: str, target: str) -> Any:
    from onnx import helper

    return helper.make_node("Identity", [source], [target], name=fw.b.fresh("Identity"))


def _f(fw: Any, value: float) -> str:
    return fw.b.const(value, np.float32)


def _positive(fw: Any, name: str) -> str:
    return fw.b.op("Greater", [name, _f(fw, 0.0)])


factor_rule(("Relu",), lambda s, fw: fw.b.op("Cast", [_positive(fw, s.outs[0])], to=FLOAT))
factor_rule(
    ("LeakyRelu",),
    lambda s, fw: fw.b.op("Where", [_positive(fw, s.ins[0]), _f(fw, 1.0), _f(fw, float(s.attr("alpha", 0.01)))]),
)
factor_rule(("Abs",), lambda s, fw: fw.b.op("Sign", [s.ins[0]]))
factor_rule(("Clip",), lambda s, fw: fw.b.op("Cast", [fw.b.op("Equal", [s.outs[0], s.ins[0]])], to=FLOAT), offset=True)


def _prelu(site: Site, fw: Any) -> str:
    return fw.b.op("Where", [_positive(fw, site.ins[0]), _f(fw, 1.0), site.ins[1]])


def _hard_sigmoid(site: Site, fw: Any) -> str:
    y = site.outs[0]
    inside = fw.b.op("And", [_positive(fw, y), fw.b.op("Less", [y, _f(fw, 1.0)])])
    return fw.b.op("Mul", [fw.b.op("Cast", [inside], to=FLOAT), _f(fw, float(site.attr("alpha", 0.2)))])


def _phi(site: Site, fw: Any) -> str:
    """Gelu's gate Phi(x): 0.5 (1 + erf(x / sqrt 2)), or its tanh approximation."""
    x, b = site.ins[0], fw.b
    if site.attr("approximate", "none") == "tanh":
        cube = b.op("Mul", [x, b.op("Mul", [x, x])])
        inner = b.op("Mul", [b.op("Add", [x, b.op("Mul", [cube, _f(fw, 0.044715)])]), _f(fw, math.sqrt(2.0 / math.pi))])
        core = b.op("Tanh", [inner])
    else:
        core = b.op("Erf", [b.op("Mul", [x, _f(fw, 1.0 / math.sqrt(2.0))])])
    return b.op("Mul", [b.op("Add", [core, _f(fw, 1.0)]), _f(fw, 0.5)])


factor_rule(("PRelu",), _prelu)
factor_rule(("HardSigmoid",), _hard_sigmoid, offset=True)
factor_rule(("Gelu",), _phi, source="smooth")
factor_rule(
    ("HardSwish",), lambda s, fw: fw.b.op("HardSigmoid", [s.ins[0]], alpha=1.0 / 6.0, beta=0.5), source="smooth"
)


# ------------------------------------------------------------------------------------------------ Max, Min


def _select_state(site: Site, fw: Any) -> dict[str, str]:
    if len(site.ins) != 2:
        refuse(site, f"takes {len(site.ins)} inputs, and linearize supports Max and Min of two")
    a, b_ = site.ins
    if fw.b.opset >= 12:
        first = fw.b.op("GreaterOrEqual" if site.op == "Max" else "LessOrEqual", [a, b_])
    else:
        first = fw.b.op("Not", [fw.b.op("Less" if site.op == "Max" else "Greater", [a, b_])])
    f0 = fw.b.op("Cast", [first], to=FLOAT)
    return {"f0": f0, "f1": fw.b.op("Sub", [_f(fw, 1.0), f0])}


def _select_twin(site: Site, fw: Any) -> None:
    parts = [fw.b.op("Mul", [fw.z(site.ins[i]), fw.state(site, f"f{i}")]) for i in (0, 1)]
    fw.b.nodes.append(_identity(fw, fw.b.op("Add", parts), fw.out(site)))


def _select_vjp(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    out = bw.shape(site.outs[0])
    grads: list[str | None] = [None, None]
    for i in (0, 1):
        if bw.kind(site.ins[i]) == "affine":
            scaled = bw.b.op("Mul", [g[0], bw.state(site, f"f{i}")])
            grads[i] = unbroadcast(bw.b, scaled, out, bw.shape(site.ins[i]))
    return grads


rule("Max", "Min", classify=piecewise(()), state=_select_state, twin=_select_twin, vjp=_select_vjp)


# ------------------------------------------------------------------------------------------------ MaxPool


def _maxpool_classify(site: Site, an: Any) -> Classified:
    if int(site.attr("storage_order", 0)):
        refuse(site, "stores its indices column-major (storage_order=1), which linearize does not support")
    return piecewise(gates=(1,))(site, an)


def _maxpool_state(site: Site, fw: Any) -> dict[str, str]:
    node = fw.node(site)
    if len(node.output) < 2 or not node.output[1]:
        del node.output[1:]
        node.output.append(fw.b.fresh("maxpool_indices"))
    return {"indices": node.output[1]}


def _maxpool_twin(site: Site, fw: Any) -> None:
    flat = fw.b.reshape(fw.z(site.ins[0]), (-1,))
    fw.b.nodes.append(_identity(fw, fw.b.op("Gather", [flat, fw.state(site, "indices")], axis=0), fw.out(site)))


def _maxpool_vjp(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    """Scatter-add every output cotangent to the input position its frozen argmax picked (flat N*C*H*W index)."""
    n_in, n_out = int(np.prod(bw.shape(site.ins[0]))), int(np.prod(bw.shape(site.outs[0])))
    b = bw.b
    indices = b.expand(b.reshape(bw.state(site, "indices"), (1, n_out)), (bw.R, n_out))
    flat = b.reshape(g[0], (bw.R, n_out))
    scattered = b.op("ScatterElements", [bw.zeros((n_in,)), indices, flat], axis=1, reduction="add")
    return [b.reshape(scattered, (bw.R, *bw.shape(site.ins[0])))]


rule("MaxPool", classify=_maxpool_classify, state=_maxpool_state, twin=_maxpool_twin, vjp=_maxpool_vjp)


# ------------------------------------------------------------------------------------------------ ReduceMax, ReduceMin, GlobalMaxPool


def _extreme_axes(site: Site, ctx: Any) -> tuple[list[int], int]:
    if site.op == "GlobalMaxPool":
        return list(range(2, len(ctx.shape(site.ins[0])))), 1
    axes = reduce_axes(site, ctx)
    return (axes if axes is not None else []), int(site.attr("keepdims", 1))


def _extreme_state(site: Site, fw: Any) -> dict[str, str]:
    """factor = [x == max] / (number of ties): the frozen argmax (ties share the cotangent equally)."""
    x, b = site.ins[0], fw.b
    axes, _ = _extreme_axes(site, fw)
    op = "ReduceMin" if site.op == "ReduceMin" else "ReduceMax"
    hit = b.op("Cast", [b.op("Equal", [x, b.reduce(op, x, axes)])], to=FLOAT)
    return {"factor": b.op("Div", [hit, b.reduce("ReduceSum", hit, axes)])}


def _extreme_twin(site: Site, fw: Any) -> None:
    axes, keep = _extreme_axes(site, fw)
    picked = fw.b.op("Mul", [fw.z(site.ins[0]), fw.state(site, "factor")])
    fw.b.nodes.append(_identity(fw, fw.b.reduce("ReduceSum", picked, axes, keepdims=keep), fw.out(site)))


def _extreme_vjp(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    shape = bw.shape(site.ins[0])
    axes, _ = _extreme_axes(site, bw)
    kept = tuple(1 if i in axes else d for i, d in enumerate(shape))
    spread = bw.b.reshape(g[0], (bw.R, *kept))
    return [bw.b.op("Mul", [spread, bw.state(site, "factor")])] + [None] * (len(site.ins) - 1)


rule(
    "ReduceMax",
    "ReduceMin",
    "GlobalMaxPool",
    classify=piecewise(),
    state=_extreme_state,
    twin=_extreme_twin,
    vjp=_extreme_vjp,
)


# ------------------------------------------------------------------------------------------------ normalisations


def _norm_axes(site: Site, rank: int) -> list[int]:
    if site.op == "LayerNormalization":
        return list(range(int(site.attr("axis", -1)) % rank, rank))
    return list(range(2, rank))  # InstanceNormalization: every spatial axis


def _norm_state(site: Site, fw: Any) -> dict[str, str]:
    if site.op == "LayerNormalization":  # its own optional third output is 1/sigma
        node = fw.node(site)
        while len(node.output) < 3:
            node.output.append("")
        if not node.output[2]:
            node.output[2] = fw.b.fresh("inv_std")
        return {"inv_std": node.output[2]}
    x, b = site.ins[0], fw.b
    axes = _norm_axes(site, len(fw.shape(x)))
    centred = b.op("Sub", [x, b.reduce("ReduceMean", x, axes)])
    var = b.reduce("ReduceMean", b.op("Mul", [centred, centred]), axes)
    std = b.op("Sqrt", [b.op("Add", [var, _f(fw, float(site.attr("epsilon", 1e-5)))])])
    return {"inv_std": b.op("Reciprocal", [std])}


def _channel(site: Site, rank: int, fw_or_bw: Any, name: str) -> str:
    """InstanceNormalization's per-channel (C,) scale/bias reshaped to broadcast over (N, C, *spatial)."""
    if site.op == "LayerNormalization":
        return fw_or_bw.value(name)
    return fw_or_bw.b.reshape(fw_or_bw.value(name), (-1, *[1] * (rank - 2)))


def _norm_twin(site: Site, fw: Any) -> None:
    z, b = fw.z(site.ins[0]), fw.b
    rank = len(fw.shape(site.ins[0]))
    centred = b.op("Sub", [z, b.reduce("ReduceMean", z, _norm_axes(site, rank))])
    out = b.op("Mul", [b.op("Mul", [centred, fw.state(site, "inv_std")]), _channel(site, rank, fw, site.ins[1])])
    if len(site.ins) > 2 and site.ins[2]:
        out = b.op("Add", [out, _channel(site, rank, fw, site.ins[2])])
    b.nodes.append(_identity(fw, out, fw.out(site)))


def _norm_vjp(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    """The adjoint of (x - mean x) * s * scale is centre(g * s * scale): the centring projection is symmetric."""
    if len(g) > 1 and g[1] is not None:
        refuse(site, "has its Mean output used on the path to the output, which linearize does not support")
    b, rank = bw.b, len(bw.shape(site.ins[0]))
    h = b.op("Mul", [b.op("Mul", [g[0], bw.state(site, "inv_std")]), _channel(site, rank, bw, site.ins[1])])
    mean = b.reduce("ReduceMean", h, [a + 1 for a in _norm_axes(site, rank)])
    return [b.op("Sub", [h, mean])] + [None] * (len(site.ins) - 1)


def _norm_classify(site: Site, an: Any) -> Classified:
    kinds, _ = piecewise(source="smooth")(site, an)
    return [kinds[0], kinds[0], GATE][: len(site.outs)], "smooth"


rule(
    "LayerNormalization",
    "InstanceNormalization",
    classify=_norm_classify,
    state=_norm_state,
    twin=_norm_twin,
    vjp=_norm_vjp,
)


# ------------------------------------------------------------------------------------------------ gates

_SMOOTH = (
    "Softmax LogSoftmax Exp Log Sigmoid Tanh Erf Sqrt Reciprocal Pow Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh "
    "Acosh Atanh Softplus Softsign Elu Selu Celu Mish ReduceL2 ReduceLogSumExp ReduceLogSum"
)
_STEPS = "Greater Less Equal GreaterOrEqual LessOrEqual Sign Floor Ceil Round IsNaN IsInf Not And Or Xor"
rule(*_SMOOTH.split(), classify=smooth_gate)
rule(*_STEPS.split(), classify=step_gate)


def _square_classify(site: Site, an: Any) -> Classified:
    if an.kind(site.ins[0]) == BILINEAR:
        refuse(site, "squares a product of two input-dependent tensors, which no frozen gate makes affine")
    return [BILINEAR], None


rule("ReduceSumSquare", classify=_square_classify)
