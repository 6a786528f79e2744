"""The rule table: one small rule per ONNX op type (onnx-graphsurgeon style), in the dict :data:`RULES`.

A rule says, for a node that has an input-dependent (affine or bilinear) input:

- ``classify(site, an) -> (output kinds, source)``: the kind of every output, and ``"smooth"`` / ``"piecewise"``
  when the node is where a gate / an activation pattern is frozen (for the report); it raises the
  one-sentence InvalidModelError when the node cannot be linearized;
- ``state(site, fw) -> {key: tensor}`` (optional): forward nodes that compute the frozen pattern at x (a ReLU
  mask, max-pool indices, a LayerNorm's 1/sigma), emitted into the forward graph at the model's opset;
- ``twin(site, fw)`` (optional): the frozen affine copy of the node for the zero-input pass that gives b(x);
  without one the node is copied verbatim (it is affine already);
- ``vjp(site, bw, cotangents of the outputs) -> cotangents of the inputs``: the transposed map, emitted into
  the backward graph (opset 18). A cotangent of a forward tensor of static shape ``s`` has shape (R, *s).

This module holds the linear ops; :mod:`._frozen` the piecewise-linear ops and the frozen gates,
:mod:`._select` the ops that move values around (Slice, Gather, Pad, ...), :mod:`._conv` convolutions and pools.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from onnx_geom.linearize._graph import AFFINE, BILINEAR, GATE, VARIABLE, Site, lead_reshape, refuse, unbroadcast

Classified = tuple[list[str], str | None]


@dataclass(frozen=True)
class Rule:
    classify: Callable[[Site, Any], Classified]
    vjp: Callable[[Site, Any, list[str | None]], list[str | None]] | None = None
    twin: Callable[[Site, Any], None] | None = None
    state: Callable[[Site, Any], dict[str, str]] | None = None


RULES: dict[str, Rule] = {}


def rule(*ops: str, **parts: Any) -> None:
    for op in ops:
        RULES[op] = Rule(**parts)


# ------------------------------------------------------------------------------------------------ classification


def refuse_mixed(site: Site, origin: str) -> NoReturn:
    """Refuse a sum of a bilinear tensor (the product formed at ``origin``) and an affine one."""
    refuse(
        site,
        f"adds the product of two input-dependent tensors formed at the {origin} to a tensor affine in the images, which is not affine in them",
    )


def refuse_others(site: Site, an: Any, allowed: Sequence[int]) -> None:
    """Refuse an input-dependent input at a position other than ``allowed`` (the ones the op is linear in)."""
    for i, name in enumerate(site.ins):
        if name and i not in allowed and an.kind(name) in VARIABLE:
            refuse(
                site, f"takes the input-dependent tensor '{name}' as its input {i}, which it does not treat linearly"
            )


def combined(site: Site, an: Any, positions: list[int]) -> str:
    """AFFINE or BILINEAR: the kind of a linear combination of the inputs at ``positions``."""
    kinds = {an.kind(site.ins[i]) for i in positions if i < len(site.ins) and site.ins[i]}
    if AFFINE in kinds and BILINEAR in kinds:
        refuse_mixed(site, next(an.origin(site.ins[i]) for i in positions if an.kind(site.ins[i]) == BILINEAR))
    return BILINEAR if BILINEAR in kinds else AFFINE


def linear(*positions: int, gates: tuple[int, ...] = ()) -> Callable[[Site, Any], Classified]:
    """Linear in the inputs at ``positions`` (all when empty); the outputs at ``gates`` are frozen gates."""

    def classify(site: Site, an: Any) -> Classified:
        allowed = list(positions) or list(range(len(site.ins)))
        refuse_others(site, an, allowed)
        kind = combined(site, an, allowed)
        return [GATE if i in gates else kind for i in range(len(site.outs))], None

    return classify


def product(a: int = 0, b: int = 1) -> Callable[[Site, Any], Classified]:
    """A product of inputs ``a`` and ``b``: affine when one of them is a constant or a gate, bilinear when both
    are affine (allowed only if the product feeds gates alone: the analysis checks where it goes)."""

    def classify(site: Site, an: Any) -> Classified:
        ka, kb = an.kind(site.ins[a]), an.kind(site.ins[b])
        refuse_others(site, an, (a, b))
        if ka in VARIABLE and kb in VARIABLE:
            if ka == kb == AFFINE:
                return [BILINEAR] * len(site.outs), None
            refuse(
                site,
                "multiplies a product of two input-dependent tensors by a third, which no frozen gate makes affine",
            )
        return [ka if ka in VARIABLE else kb] * len(site.outs), None

    return classify


def smooth_gate(site: Site, an: Any) -> Classified:
    return [GATE] * len(site.outs), "smooth"


def step_gate(site: Site, an: Any) -> Classified:
    return [GATE] * len(site.outs), "piecewise"


# ------------------------------------------------------------------------------------------------ cotangent helpers


def affine(bw: Any, site: Site, i: int) -> bool:
    return i < len(site.ins) and bool(site.ins[i]) and bw.kind(site.ins[i]) == AFFINE


def only_first(bw: Any, site: Site, grad: str | None) -> list[str | None]:
    return [grad if affine(bw, site, 0) else None] + [None] * (len(site.ins) - 1)


def vjp_reshape(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    """Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, Cast to float: reshape back."""
    x = site.ins[0]
    same = bw.shape(x) == bw.shape(site.outs[0])
    return only_first(bw, site, g[0] if same else lead_reshape(bw.b, g[0], bw.shape(x)))


def vjp_transpose(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    rank = len(bw.shape(site.ins[0]))
    perm = site.attr("perm") or list(range(rank))[::-1]
    inverse = np.argsort(perm)
    return only_first(bw, site, bw.b.op("Transpose", [g[0]], perm=[0, *(int(i) + 1 for i in inverse)]))


def vjp_sum(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    """Add, Sub, Sum, Mean, Neg: each affine operand gets the (negated, scaled) cotangent, unbroadcast."""
    out = bw.shape(site.outs[0])
    grads: list[str | None] = []
    for i, name in enumerate(site.ins):
        if not affine(bw, site, i):
            grads.append(None)
            continue
        gi = g[0]
        if site.op == "Neg" or (site.op == "Sub" and i == 1):
            gi = bw.b.op("Neg", [gi])
        if site.op == "Mean":
            gi = bw.b.op("Mul", [gi, bw.b.const(1.0 / len(site.ins))])
        grads.append(unbroadcast(bw.b, gi, out, bw.shape(name)))
    return grads


def vjp_mul(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    """Mul by a constant or a frozen gate; Div by one (or by a frozen input-dependent denominator)."""
    out = bw.shape(site.outs[0])
    grads: list[str | None] = [None, None]
    for i in (0, 1) if site.op == "Mul" else (0,):
        if affine(bw, site, i):
            other = bw.value(site.ins[1 - i])
            grads[i] = unbroadcast(bw.b, bw.b.op(site.op, [g[0], other]), out, bw.shape(site.ins[i]))
    return grads


def _operand(bw: Any, name: str, *, swap: bool, scale: float = 1.0) -> str:
    """The forward value of ``name``, with its last two axes swapped when ``swap``, times ``scale``: a constant
    when it is one."""
    value = bw.const(name)
    if value is not None:
        return bw.b.const((np.swapaxes(value, -1, -2) if swap else value) * scale)
    out = bw.value(name)
    if swap:
        rank = len(bw.shape(name))
        out = bw.b.op("Transpose", [out], perm=[*range(rank - 2), rank - 1, rank - 2])
    return out if scale == 1.0 else bw.b.op("Mul", [out, bw.b.const(scale)])


def vjp_matmul(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    a, b_ = site.ins[0], site.ins[1]
    sa, sb = bw.shape(a), bw.shape(b_)
    grads: list[str | None] = [None, None]
    if affine(bw, site, 0):
        if len(sa) < 2:
            refuse(site, "multiplies a 1-D input-dependent vector (no batch axis), which linearize does not support")
        if len(sb) == 1:  # (..., K) @ (K,) -> (...): the cotangent times B along a new last axis
            gi = bw.b.op("Mul", [bw.b.op("Unsqueeze", [g[0], bw.b.const([-1], np.int64)]), bw.value(b_)])
            grads[0] = unbroadcast(bw.b, gi, (*bw.shape(site.outs[0]), sb[0]), sa)
        else:
            gi = bw.b.op("MatMul", [g[0], _operand(bw, b_, swap=True)])
            batch = np.broadcast_shapes(sa[:-2], sb[:-2])
            grads[0] = unbroadcast(bw.b, gi, (*batch, sa[-2], sa[-1]), sa)
    if affine(bw, site, 1):
        if len(sa) < 2:
            refuse(site, "multiplies a 1-D vector by an input-dependent matrix, which linearize does not support")
        if len(sb) == 1:
            gi = bw.b.op("MatMul", [bw.b.op("Unsqueeze", [g[0], bw.b.const([-2], np.int64)]), bw.value(a)])
            grads[1] = unbroadcast(bw.b, gi, (*sa[:-2], 1, sb[0]), sb)
        else:
            gi = bw.b.op("MatMul", [_operand(bw, a, swap=True), g[0]])
            batch = np.broadcast_shapes(sa[:-2], sb[:-2])
            grads[1] = unbroadcast(bw.b, gi, (*batch, sb[-2], sb[-1]), sb)
    return grads


def vjp_gemm(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    """Y = alpha * A' B' + beta * C with A' = A or A^T (transA), B' = B or B^T (transB)."""
    alpha, beta = float(site.attr("alpha", 1.0)), float(site.attr("beta", 1.0))
    trans_a, trans_b = int(site.attr("transA", 0)), int(site.attr("transB", 0))
    a, b_ = site.ins[0], site.ins[1]
    grads: list[str | None] = [None] * len(site.ins)
    if affine(bw, site, 0):  # dA' = alpha g B'^T; B'^T is B when transB, else B^T
        b_t = _operand(bw, b_, swap=not trans_b, scale=alpha)
        gi = bw.b.op("MatMul", [g[0], b_t])
        grads[0] = bw.b.op("Transpose", [gi], perm=[0, 2, 1]) if trans_a else gi
    if affine(bw, site, 1):  # dB' = alpha A'^T g; A'^T is A when transA, else A^T
        a_t = _operand(bw, a, swap=not trans_a, scale=alpha)
        gi = bw.b.op("MatMul", [a_t, g[0]])
        grads[1] = bw.b.op("Transpose", [gi], perm=[0, 2, 1]) if trans_b else gi
    if affine(bw, site, 2):
        gi = g[0] if beta == 1.0 else bw.b.op("Mul", [g[0], bw.b.const(beta)])
        grads[2] = unbroadcast(bw.b, gi, bw.shape(site.outs[0]), bw.shape(site.ins[2]))
    return grads


def vjp_where(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    cond, out = bw.value(site.ins[0]), bw.shape(site.outs[0])
    zero = bw.b.const(0.0)
    grads: list[str | None] = [None, None, None]
    for i in (1, 2):
        if affine(bw, site, i):
            picked = [g[0], zero] if i == 1 else [zero, g[0]]
            grads[i] = unbroadcast(bw.b, bw.b.op("Where", [cond, *picked]), out, bw.shape(site.ins[i]))
    return grads


def reduce_axes(site: Site, bw: Any) -> list[int] | None:
    """Normalised axes of a ReduceMean/ReduceSum (None: no reduction, the noop_with_empty_axes case)."""
    rank = len(bw.shape(site.ins[0]))
    axes = site.attr("axes")
    if axes is None and len(site.ins) > 1 and site.ins[1]:
        axes = bw.const(site.ins[1]).tolist()
    if not axes:
        return None if site.attr("noop_with_empty_axes", 0) else list(range(rank))
    return sorted(int(a) % rank for a in axes)


def vjp_reduce(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    shape = bw.shape(site.ins[0])
    axes = reduce_axes(site, bw)
    if axes is None:
        return only_first(bw, site, g[0])
    kept = tuple(1 if i in axes else d for i, d in enumerate(shape))
    gi = bw.b.expand(lead_reshape(bw.b, g[0], kept), (bw.R, *shape))
    if site.op == "ReduceMean":
        gi = bw.b.op("Mul", [gi, bw.b.const(1.0 / int(np.prod([shape[i] for i in axes])))])
    return only_first(bw, site, gi)


def vjp_global_pool(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    shape = bw.shape(site.ins[0])
    scaled = bw.b.op("Mul", [g[0], bw.b.const(1.0 / int(np.prod(shape[2:])))])
    return only_first(bw, site, bw.b.expand(scaled, (bw.R, *shape)))


def vjp_batchnorm(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    scale, _, _, var = (bw.const(name) for name in site.ins[1:5])
    if scale is None or var is None:
        refuse(site, "has input-dependent statistics or scale (linearize needs inference-mode batch norm)")
    rank = len(bw.shape(site.ins[0]))
    factor = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + float(site.attr("epsilon", 1e-5)))
    return only_first(bw, site, bw.b.op("Mul", [g[0], bw.b.const(factor.reshape(-1, *([1] * (rank - 2))))]))


def vjp_concat(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    rank = len(bw.shape(site.outs[0]))
    axis = int(site.attr("axis")) % rank
    sizes = [bw.shape(name)[axis] if name else 0 for name in site.ins]
    parts = bw.b.op("Split", [g[0], bw.b.const(sizes, np.int64)], n_out=len(sizes), axis=axis + 1)
    parts = parts if isinstance(parts, list) else [parts]
    return [part if affine(bw, site, i) else None for i, part in enumerate(parts)]


def vjp_split(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    rank = len(bw.shape(site.ins[0]))
    axis = int(site.attr("axis", 0)) % rank
    parts = [gi if gi is not None else bw.zeros(bw.shape(out)) for gi, out in zip(g, site.outs, strict=True)]
    return only_first(bw, site, bw.b.op("Concat", parts, axis=axis + 1))


def classify_cast(site: Site, an: Any) -> Classified:
    to = int(site.attr("to"))
    if to == 1:  # FLOAT
        return linear(0)(site, an)
    if to in (10, 11, 16):  # FLOAT16, DOUBLE, BFLOAT16
        refuse(site, "casts to a float type other than float32, and linearize works on float32 graphs")
    return [GATE], "piecewise"  # to an integer or bool: piecewise constant, frozen


def classify_batchnorm(site: Site, an: Any) -> Classified:
    if int(site.attr("training_mode", 0)):
        refuse(site, "runs in training mode (batch statistics); export the model in eval mode")
    return linear(0, gates=(1, 2))(site, an)


rule("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", classify=linear(0), vjp=vjp_reshape)
rule("Dropout", classify=linear(0, gates=(1,)), vjp=vjp_reshape)
rule("Cast", classify=classify_cast, vjp=vjp_reshape)
rule("Transpose", classify=linear(0), vjp=vjp_transpose)
rule("Add", "Sub", "Sum", "Mean", "Neg", classify=linear(), vjp=vjp_sum)
rule("Mul", classify=product(), vjp=vjp_mul)
rule("MatMul", classify=product(), vjp=vjp_matmul)
rule("Where", classify=linear(1, 2), vjp=vjp_where)
rule("ReduceMean", "ReduceSum", classify=linear(0), vjp=vjp_reduce)
rule("GlobalAveragePool", classify=linear(0), vjp=vjp_global_pool)
rule("BatchNormalization", classify=classify_batchnorm, vjp=vjp_batchnorm)
rule("Concat", classify=linear(), vjp=vjp_concat)
rule("Split", classify=linear(0), vjp=vjp_split)


def classify_gemm(site: Site, an: Any) -> Classified:
    kinds, _ = product(0, 1)(site, an)
    if len(site.ins) > 2 and site.ins[2] and an.kind(site.ins[2]) in VARIABLE:
        if kinds[0] == BILINEAR or an.kind(site.ins[2]) == BILINEAR:
            refuse_mixed(site, f"Gemm node '{site.label}'" if kinds[0] == BILINEAR else an.origin(site.ins[2]))
        if an.kind(site.ins[0]) not in VARIABLE and an.kind(site.ins[1]) not in VARIABLE:
            kinds = [AFFINE]
    return kinds, None


def classify_div(site: Site, an: Any) -> Classified:
    """x / d: linear in x with d frozen; a variable d is a frozen gate (the 'Div' source)."""
    kx, kd = an.kind(site.ins[0]), an.kind(site.ins[1])
    if kd not in VARIABLE:
        return [kx], None
    return [kx if kx in VARIABLE else GATE], "smooth"


def twin_div(site: Site, fw: Any) -> None:
    """The twin divides by the forward (frozen) denominator, never by its own zero-input copy."""
    fw.b.nodes.append(fw.copy(site, inputs=[fw.z(site.ins[0]), site.ins[1]]))


rule("Gemm", classify=classify_gemm, vjp=vjp_gemm)
rule("Div", classify=classify_div, vjp=vjp_mul, twin=twin_div)
