"""Find the final linear classifier of an ONNX graph, whatever the exporter's spelling.

A *candidate* is every ``Gemm`` and every ``MatMul`` (with the ``Add`` of its bias, if any). It is *viable*
when its weight is a floating-point 2-D constant, its input holds one vector per image ((N, D), or (N, 1, D)
and the like: extra dimensions of size 1, as a class token sliced with 0:1 or tokens mean-pooled with keepdims
leave; a MatMul applied per token, (N, T, D) with T > 1, is not) and its output reaches a graph output through
only shape-preserving or monotone ops (Softmax, LogSoftmax, Identity, Reshape, Flatten, Squeeze, Cast, ArgMax,
skl2onnx's ZipMap, the legacy torch exporter's If-wrapped Squeeze...). ``W`` (K, D) and ``b`` (K,) are
normalised to ``logits = features @ W.T + b``; a head on (N, 1, D) is marked ``reshape`` so that the probe
exposes its input and output as (N, D) and (N, K).

>>> [(c.node, c.spelling, c.K, c.D, c.chosen) for c in find_heads(model)]      # doctest: +SKIP
[('/fc/Gemm', 'Gemm(transB=1)', 10, 512, True)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import GraphProto, ModelProto, NodeProto, helper

from onnx_geom.errors import HeadNotFoundError
from onnx_geom.probe._graph import GraphIndex, subgraphs

__all__ = ["PASS_THROUGH", "HeadCandidate", "choose_head", "find_heads"]

#: Ops through which the logits may reach a graph output (shape-preserving, monotone, or class lookups).
PASS_THROUGH = frozenset(
    {
        "Identity",
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Cast",
        "Softmax",
        "LogSoftmax",
        "Sigmoid",
        "ArgMax",
        "TopK",
        "ZipMap",
        "ArrayFeatureExtractor",
        "Normalizer",
    }
)
#: Linear ops a walk back from an output may pass when explaining why no head was found.
_LINEAR_POOLING = frozenset({"GlobalAveragePool", "AveragePool", "ReduceMean", "ReduceSum"})
#: Ops that read only a tensor's shape, not its values (the legacy torch exporter's Squeeze tests its size).
_SHAPE_READERS = frozenset({"Shape", "Size"})

#: One inferred dimension: a size, a symbolic name, or None (unknown).
Dim = int | str | None


@dataclass
class HeadCandidate:
    """One linear layer that could be the classifier head.

    ``features``/``logits``: tensor names of its input and (pre-softmax) output; ``W``: (K, D) and ``b``: (K,)
    float32 when the weights are usable; ``reason`` says why it was chosen or rejected. ``input_shape``: the
    input's shape as inferred ("(N, 1, 16)"; "" when unknown); ``reshape``: the input may have more than two
    dimensions (e.g. (N, 1, D)), so the probe exposes ``features``/``logits`` through Reshape to (N, D)/(N, K).
    """

    node: str
    spelling: str
    features: str
    logits: str
    K: int = 0
    D: int = 0
    W: np.ndarray | None = None
    b: np.ndarray | None = None
    viable: bool = False
    chosen: bool = False
    reason: str = ""
    dtype: str = "float32"
    input_shape: str = ""
    reshape: bool = False

    def describe(self) -> dict[str, Any]:
        """JSON-able summary (no weights): what ``--inspect`` shows."""
        return {
            "node": self.node,
            "spelling": self.spelling,
            "features": self.features,
            "logits": self.logits,
            "K": self.K,
            "D": self.D,
            "chosen": self.chosen,
            "reason": self.reason,
            "input_shape": self.input_shape,
        }


def find_heads(model: ModelProto) -> list[HeadCandidate]:
    """Every Gemm/MatMul of ``model``'s main graph as a :class:`HeadCandidate`, at most one ``chosen``.

    The chosen one is the single viable candidate; when there are none or several, every candidate says why
    it was not chosen, and :func:`choose_head` raises with that list.
    """
    index = GraphIndex(model.graph)
    shapes = _known_shapes(model)
    candidates = [
        _candidate(index, position, shapes)
        for position, node in enumerate(index.nodes)
        if node.op_type in ("Gemm", "MatMul") and node.domain in ("", "ai.onnx")
    ]
    viable = [c for c in candidates if c.viable]
    if len(viable) == 1:
        viable[0].chosen = True
        viable[0].reason = "the only linear layer whose output reaches a model output through shape/monotone ops"
    elif len(viable) > 1:
        for c in viable:
            c.reason = f"one of {len(viable)} equally good candidates; choose with --features/--logits"
    return candidates


def choose_head(
    model: ModelProto, candidates: list[HeadCandidate], *, features: str | None = None, logits: str | None = None
) -> HeadCandidate:
    """The head to probe: the chosen candidate, or the one whose tensors match ``features``/``logits``."""
    if features or logits:
        matches = [
            c for c in candidates if c.W is not None and features in (None, c.features) and logits in (None, c.logits)
        ]
        if len(matches) == 1:
            return matches[0]
        asked = ", ".join(f"{k} '{v}'" for k, v in (("features", features), ("logits", logits)) if v)
        problem = (
            "no linear layer (Gemm or MatMul with constant weights) joins"
            if not matches
            else "several linear layers match"
        )
        raise HeadNotFoundError(
            f"{problem} {asked}; {_listing([c for c in candidates if c.W is not None], reasons=False)}"
        )
    chosen = [c for c in candidates if c.chosen]
    if chosen:
        return chosen[0]
    viable = [c for c in candidates if c.viable]
    if viable:
        listed = _listing(viable, reasons=False, prefix="")
        raise HeadNotFoundError(
            f"found {len(viable)} equally good head candidates ({listed}); "
            "pick one with --features TENSOR --logits TENSOR."
        )
    hint = (
        "; if one of them is the head, name its tensors with --features TENSOR --logits TENSOR"
        if any(c.W is not None for c in candidates)
        else ""
    )
    raise HeadNotFoundError(f"{_explain_no_head(GraphIndex(model.graph))}; {_listing(candidates)}{hint}")


def _listing(candidates: list[HeadCandidate], *, reasons: bool = True, prefix: str = "candidates: ") -> str:
    if not candidates:
        return "the graph has no usable Gemm or MatMul at all (--features/--logits can only name such a layer)"
    shown = [
        f"{c.node} [{c.spelling}] features '{c.features}' -> logits '{c.logits}'" + (f": {c.reason}" if reasons else "")
        for c in candidates[-6:]
    ]
    more = f" (and {len(candidates) - 6} earlier)" if len(candidates) > 6 else ""
    return prefix + "; ".join(shown) + more


def _candidate(index: GraphIndex, position: int, shapes: dict[str, tuple[Dim, ...]]) -> HeadCandidate:
    node = index.nodes[position]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    cand = HeadCandidate(
        node=index.label(position), spelling=node.op_type, features=node.input[0], logits=node.output[0]
    )
    weight = index.constant(node.input[1])
    gemm = node.op_type == "Gemm"
    if gemm:
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        trans_a, trans_b = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
        extras = [f"transB={trans_b}"] + [f"{k}={v:g}" for k, v in (("alpha", alpha), ("beta", beta)) if v != 1.0]
        cand.spelling = f"Gemm({', '.join(extras)})"
        if trans_a:
            return _reject(cand, "transA=1, so its features would be the transpose of its input")
    problem = _weight_problem(weight, index.constant(node.input[0]))
    if problem or weight is None:
        return _reject(cand, problem)
    if gemm:
        W = alpha * (weight if trans_b else weight.T).astype(np.float64)
        bias_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        bias = _bias_value(index, bias_name, W.shape[0]) if bias_name else np.zeros(W.shape[0])
        bias = None if bias is None else beta * bias
    else:
        W, bias = weight.T.astype(np.float64), np.zeros(weight.shape[1])
    add = _bias_add(index, node.output[0], W.shape[0]) if bias is not None else None
    if add is not None:  # a bias added after the layer (MatMul + Add; Gemm without C + Add)
        cand.logits, bias = add[0], bias + add[1]
        cand.spelling += "+Add"
    if bias is None:
        return _reject(cand, "its bias is not a constant of K values (it depends on the batch or is computed)")
    broken = int(np.size(W) - np.isfinite(W).sum() + np.size(bias) - np.isfinite(bias).sum())
    if broken:
        return _reject(cand, f"{broken} of its weights and biases are NaN or infinite (the model itself is broken)")
    cand.dtype = str(weight.dtype)
    cand.W, cand.b = np.asarray(W, np.float32), np.asarray(bias, np.float32).reshape(-1)
    cand.K, cand.D = cand.W.shape
    shape = shapes.get(cand.features)
    if shape is not None:
        cand.input_shape = _shape_text(shape, _batch_axis(shape))
    cand.reshape = not gemm and (shape is None or len(shape) != 2)  # Gemm's input is 2-D by definition
    problem = _per_image_problem(shape, cand.D) if shape is not None else ""
    if problem:
        return _reject(cand, problem)
    blocker = _blocker(index, cand.logits)
    if blocker:
        return _reject(cand, f"its output does not reach a model output through shape/monotone ops only ({blocker})")
    cand.viable = True
    return cand


def _reject(cand: HeadCandidate, reason: str) -> HeadCandidate:
    cand.reason = reason
    return cand


def _weight_problem(weight: np.ndarray | None, left: np.ndarray | None) -> str:
    if weight is None:
        return (
            "its left operand is the constant, so it is not a layer applied to features"
            if left is not None
            else "its weight is computed at run time, not a constant"
        )
    if weight.ndim != 2:
        return f"its weight has shape {tuple(weight.shape)}, not (D, K)"
    if not np.issubdtype(weight.dtype, np.floating):
        return f"its weight is {weight.dtype}, not floating point (quantized heads are not supported)"
    return ""


def _per_image_problem(shape: tuple[Dim, ...], D: int) -> str:
    """'' when a layer's input of inferred ``shape`` holds one D-vector per image: (N, D), or (N, 1, D) and
    other extra dimensions of size 1 (the batch may sit on any axis but the last); else why not."""
    if len(shape) < 2:
        return f"its input has rank {len(shape)}, not (N, D): it is not a per-sample feature vector"
    batch = _batch_axis(shape)
    extra = [d for axis, d in enumerate(shape[:-1]) if axis != batch and d != 1]
    if not extra:
        return ""
    text = _shape_text(shape, batch, last="D")
    if all(isinstance(d, int) for d in extra):
        return f"applied per token: its input is {text} with D = {D}, not one vector per image"
    return (
        f"its input is {text} with D = {D}, and the graph does not say whether ? is 1 (one vector per image) "
        "or a number of tokens; if it is the head and ? is 1, name its tensors with --features/--logits"
    )


def _batch_axis(shape: tuple[Dim, ...]) -> int:
    """The batch axis of an inferred shape: the first dimension not fixed in the graph (the batch is dynamic),
    else axis 0 (a model exported with a fixed batch)."""
    return next((axis for axis, d in enumerate(shape[:-1]) if not isinstance(d, int)), 0)


def _shape_text(shape: tuple[Dim, ...], batch: int, last: str | None = None) -> str:
    """'(N, 16, D)'-style text: the batch axis as N, unknown sizes as ?, the last axis as ``last`` if given."""
    names = ["N" if axis == batch else (str(d) if isinstance(d, int) else "?") for axis, d in enumerate(shape)]
    if last is not None and len(names) > 1:
        names[-1] = last
    return f"({', '.join(names)})"


def _bias_value(index: GraphIndex, name: str, K: int) -> np.ndarray | None:
    value = index.constant(name)
    if value is None or not np.issubdtype(value.dtype, np.floating):
        return None
    if value.size == 1:
        return np.full(K, float(value.reshape(())), dtype=np.float64)
    if value.ndim >= 1 and value.shape[-1] == K and value.size == K:  # (K,), (1, K), (1, 1, K)...
        return value.astype(np.float64).reshape(K)
    return None


def _bias_add(index: GraphIndex, tensor: str, K: int) -> tuple[str, np.ndarray] | None:
    """(output, bias) of the ``Add`` of a constant bias that is the only consumer of ``tensor``."""
    users = index.consumers.get(tensor, [])
    if len(users) != 1 or tensor in index.outputs or index.captures.get(tensor):
        return None
    add = index.nodes[users[0]]
    if add.op_type != "Add" or len(add.input) != 2:
        return None
    other = add.input[1] if add.input[0] == tensor else add.input[0]
    bias = _bias_value(index, other, K)
    return None if bias is None else (add.output[0], bias)


def _blocker(index: GraphIndex, tensor: str) -> str:
    """'' when ``tensor`` reaches a graph output through PASS_THROUGH ops only, else what stops it."""
    seen, frontier, stops = set(), [tensor], []
    while frontier:
        name = frontier.pop()
        if name in index.outputs:
            return ""
        if name in seen:
            continue
        seen.add(name)
        for position in index.consumers.get(name, []):
            node: NodeProto = index.nodes[position]
            if node.op_type in PASS_THROUGH:
                frontier.extend(n for n in node.output if n)
            elif node.op_type not in _SHAPE_READERS:  # reading the shape passes no values on
                stops.append(f"next: {node.op_type} '{index.label(position)}'")
        for position in index.captures.get(name, []):  # read inside an If branch (or a loop body)
            node = index.nodes[position]
            passed = _passed_through_branches(node, name)
            frontier.extend(passed)
            if not passed:
                stops.append(f"next: {node.op_type} '{index.label(position)}', which reads it in a subgraph")
    return ", ".join(dict.fromkeys(stops)) or "nothing uses it"


def _passed_through_branches(node: NodeProto, name: str) -> list[str]:
    """The outputs of the If ``node`` that are ``name`` through PASS_THROUGH ops in every branch (the legacy
    torch exporter's ``If(size == 1, Squeeze(x), Identity(x))``); [] for other ops."""
    branches = subgraphs(node)
    if node.op_type != "If" or len(branches) != 2:
        return []
    return [
        out
        for j, out in enumerate(node.output)
        if out and all(j < len(g.output) and _branch_passes(g, g.output[j].name, name) for g in branches)
    ]


def _branch_passes(graph: GraphProto, tensor: str, name: str) -> bool:
    """Whether ``tensor`` of ``graph`` is the outer tensor ``name`` through PASS_THROUGH ops (first inputs)."""
    producer = {out: node for node in graph.node for out in node.output if out}
    for _ in range(len(graph.node) + 1):
        if tensor == name:
            return True
        node = producer.get(tensor)
        if node is None or node.op_type not in PASS_THROUGH or not node.input:
            return False
        tensor = node.input[0]
    return False


def _explain_no_head(index: GraphIndex) -> str:
    """Why the scores are not linear in any feature vector: walk back from the first output."""
    output = index.outputs[0]
    name, path = output, []
    while name in index.producer:
        position = index.producer[name]
        node = index.nodes[position]
        path.append(node.op_type)
        chain = " -> ".join(reversed(path))
        if node.op_type in ("Gemm", "MatMul"):
            return f"no usable final linear layer: output '{output}' comes from {chain}"
        linear = _biased_layer_output(index, node)
        if linear:  # the bias Add of a linear layer
            name = linear
            continue
        if node.op_type not in PASS_THROUGH | _LINEAR_POOLING or not node.input:
            return (
                f"no final linear layer found: output '{output}' comes from {chain}, and {node.op_type} "
                f"'{index.label(position)}' is not a linear layer with constant weights, so the scores are "
                "not linear in any feature vector"
            )
        name = node.input[0]
    return f"no final linear layer found: output '{output}' is not computed from a Gemm or MatMul"


def _biased_layer_output(index: GraphIndex, node: NodeProto) -> str:
    """The Gemm/MatMul output that ``node`` adds a constant bias to, or '' when it is no such Add."""
    if node.op_type != "Add" or len(node.input) != 2:
        return ""
    for mine, other in (node.input, reversed(node.input)):
        producer = index.producer.get(mine)
        linear = producer is not None and index.nodes[producer].op_type in ("Gemm", "MatMul")
        if linear and index.constant(other) is not None:
            return mine
    return ""


def _known_shapes(model: ModelProto) -> dict[str, tuple[Dim, ...]]:
    """Tensor shapes from onnx shape inference, where it works (best effort; many graphs defeat it): each
    dimension a size, a symbolic name (the dynamic batch) or None."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:
        return {}
    shapes = {}
    for value in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            shapes[value.name] = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in value.type.tensor_type.shape.dim
            )
    return shapes
