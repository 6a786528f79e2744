"""Which tensors are constant, frozen gates, affine or bilinear; shapes; where the gates sit.

One run of the graph on ``batch`` zero images (every tensor exposed) gives the static shapes at that batch and
the values of the tensors that are constant (weights, shapes); then every node on the way to the targets is
classified by its rule, in graph order. A node that depends on the images and has no rule, a product of two
image-dependent tensors that reaches a target without a gate, or a target that is not affine is refused with one
sentence that names the op and the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import ModelProto, numpy_helper

from onnx_geom.errors import InvalidModelError
from onnx_geom.linearize import _conv, _frozen, _select  # noqa: F401  (they fill the rule table)
from onnx_geom.linearize._graph import AFFINE, BILINEAR, CONST, GATE, VARIABLE, Site, refuse
from onnx_geom.linearize._rules import RULES
from onnx_geom.probe._graph import GraphIndex
from onnx_geom.probe._surgery import _default_opset
from onnx_geom.probe_info import PROBE_INPUT

_ALWAYS_CONST = ("Shape", "Size", "ConstantOfShape", "Constant")


@dataclass
class Analysis:
    model: ModelProto
    opset: int
    batch: int
    targets: list[str]
    sites: list[Site] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dtypes: dict[str, np.dtype] = field(default_factory=dict)
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    sources: list[tuple[str, str, str]] = field(default_factory=list)  # (op, node, "smooth" | "piecewise")

    def kind(self, name: str) -> str | None:
        return self.kinds.get(name) if name else None

    def origin(self, name: str) -> str:
        return self.origins.get(name, "?")

    @property
    def path(self) -> list[Site]:
        """The nodes with an affine output, in graph order: the frozen map's own nodes."""
        return [s for s in self.sites if any(self.kinds.get(o) == AFFINE for o in s.outs if o)]


def upgrade(model: ModelProto) -> ModelProto:
    """The model itself at opset 11 or later (the frozen-pattern nodes need it), converted when older."""
    if _default_opset(model) >= 11:
        return model
    try:
        from onnx import version_converter

        return version_converter.convert_version(model, 13)
    except Exception as err:
        raise InvalidModelError(
            f"the model uses opset {_default_opset(model)} and could not be converted to 13 ({str(err).splitlines()[0][:160]}); re-export it with opset 13 or later."
        ) from None


def analyze(model: ModelProto, targets: list[str], image_shape: tuple[int, ...], batch: int) -> Analysis:
    """Classify every tensor on the way from the probe input to ``targets`` at a static batch of ``batch``."""
    model = upgrade(model)
    an = Analysis(model, _default_opset(model), batch, list(targets))
    produced = GraphIndex(model.graph).producer
    known = {v.name for v in model.graph.output}
    for name in targets:
        if name not in produced and name not in known:
            outputs = ", ".join(v.name for v in model.graph.output)
            raise InvalidModelError(f"the model has no output named '{name}'; choose one of {outputs}.")
    needed, stack = set(), list(targets)
    while stack:
        name = stack.pop()
        if name in produced and produced[name] not in needed:
            needed.add(produced[name])
            stack.extend(t for t in model.graph.node[produced[name]].input if t)
    an.sites = [Site.of(node, i) for i, node in enumerate(model.graph.node) if i in needed]
    _classify(an, _explore(an, image_shape))
    return an


def _explore(an: Analysis, image_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Run the needed nodes once on zero images with every tensor exposed: shapes, dtypes, constant values."""
    import onnxruntime as ort

    graph = an.model.graph
    names = list(dict.fromkeys(o for s in an.sites for o in s.outs if o))
    probe = ModelProto()
    probe.CopyFrom(an.model)
    del probe.graph.output[:]
    del probe.graph.value_info[:]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        images = np.zeros((an.batch, *image_shape), np.uint8)
        values = session.run(names, {PROBE_INPUT: images})
    except Exception as err:
        raise InvalidModelError(f"onnxruntime cannot run the model ({str(err).splitlines()[0][:200]}).") from None
    for init in graph.initializer:
        value = numpy_helper.to_array(init)
        an.consts[init.name], an.shapes[init.name], an.dtypes[init.name] = value, value.shape, value.dtype
    an.shapes[PROBE_INPUT], an.dtypes[PROBE_INPUT] = (an.batch, *image_shape), np.dtype(np.uint8)
    found = {name: np.asarray(value) for name, value in zip(names, values, strict=True)}
    for name, value in found.items():
        an.shapes[name], an.dtypes[name] = value.shape, value.dtype
    return found


def _classify(an: Analysis, values: dict[str, np.ndarray]) -> None:
    an.kinds = dict.fromkeys(an.consts, CONST)
    an.kinds[PROBE_INPUT] = AFFINE
    for site in an.sites:
        kinds = [an.kind(t) for t in site.ins if t]
        if any(k is None for k in kinds):
            missing = next(t for t in site.ins if t and an.kind(t) is None)
            refuse(site, f"reads the graph input '{missing}', and a probe has only the input '{PROBE_INPUT}'")
        if site.op in _ALWAYS_CONST or all(k == CONST for k in kinds):
            out, source = [CONST] * len(site.outs), None
        elif not any(k in VARIABLE for k in kinds):
            out, source = [GATE] * len(site.outs), None
        else:
            found = RULES.get(site.op) if site.node.domain in ("", "ai.onnx") else None
            if found is None:
                domain = f" (domain '{site.node.domain}')" if site.node.domain not in ("", "ai.onnx") else ""
                refuse(
                    site,
                    f"{domain} depends on the images and has no linearization rule (docs/linearize.md lists the supported ops)".lstrip(),
                )
            out, source = found.classify(site, an)
        if source:
            an.sources.append((site.op, site.label, source))
        inherited = next(
            (an.origins[t] for t in site.ins if t and an.kind(t) == BILINEAR), f"{site.op} node '{site.label}'"
        )
        for name, kind in zip(site.outs, out, strict=True):
            if not name:
                continue
            an.kinds[name] = kind
            if kind == BILINEAR:
                an.origins[name] = inherited
            if kind == CONST:
                an.consts[name] = np.asarray(values[name])
            if kind == AFFINE and an.dtypes[name] not in (np.float32, np.uint8):
                refuse(site, f"computes '{name}' in {an.dtypes[name]}, and linearize works on float32 graphs")
    producers = {o: s for s in an.sites for o in s.outs if o}
    for name in an.targets:
        target_kind, producer = an.kinds.get(name), producers.get(name)
        what = f"the {producer.op} node '{producer.label}'" if producer else "the graph"
        if target_kind == BILINEAR:
            raise InvalidModelError(
                f"cannot linearize the output '{name}': it holds the product of two input-dependent tensors formed at the {an.origins[name]}, which reaches it without passing through a gate (Softmax, Sigmoid, ...)."
            )
        if target_kind != AFFINE:
            raise InvalidModelError(
                f"cannot linearize the output '{name}' (computed by {what}): it depends on the images only through non-linear gates or not at all, so it has no linear part; choose an output such as 'logits'."
            )
