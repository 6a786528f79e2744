"""Graph surgery: any ONNX classifier -> probe (uint8 images in; logits + features out; head in metadata).

The recipe: load -> find the head -> add the preprocessing prefix and the two outputs -> check -> save.

>>> model = probe("classifier.onnx", preset="cifar10")     # doctest: +SKIP
>>> save_probe(model, "classifier.probe.onnx")            # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import ModelProto, TensorProto, helper, numpy_helper

from onnx_geom._files import check_output, output_errors, write_bytes
from onnx_geom.errors import InvalidModelError
from onnx_geom.probe._check import check_probe
from onnx_geom.probe._graph import all_tensor_names, rename_tensors, source_input, unique_name
from onnx_geom.probe._heads import HeadCandidate, choose_head, find_heads
from onnx_geom.probe._load import first_line, load_model, model_sha256
from onnx_geom.probe._preprocess import ImageSpec, image_spec, normalisation, preprocess_nodes
from onnx_geom.probe_info import FEATURES, LOGITS, METADATA_KEY, PROBE_INPUT, TAGS_KEY, ProbeInfo, write_probe_info

__all__ = ["probe", "save_probe"]

_BATCH = "N"
_TWO_GB = 2**31


def probe(
    model: str | PathLike[str] | ModelProto,
    *,
    preset: str = "none",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    layout: str | None = None,
    features: str | None = None,
    logits: str | None = None,
    image_size: tuple[int, int] | None = None,
    check: bool = True,
) -> ModelProto:
    """Turn the ONNX classifier ``model`` (a path or a ModelProto) into a probe and return it.

    The probe takes uint8 ``images`` (N, H, W, C) and adds outputs ``logits`` (N, K) and ``features`` (N, D)
    to the original ones; its ``onnx_geom.probe`` metadata holds the head ``W`` (K, D), ``b`` (K). ``preset``
    (none|cifar10|cifar100|imagenet) or ``mean``/``std`` set the normalisation after scaling to [0, 1];
    ``layout`` (NCHW|NHWC|flat) and ``image_size`` (H, W) override what is detected from the input;
    ``features``/``logits`` name the head's tensors when detection cannot decide. With ``check`` the probe
    is run on random images first (:func:`check_probe`) and ProbeCheckError is raised if it is wrong.
    """
    path = None if isinstance(model, ModelProto) else Path(model)
    source = model if isinstance(model, ModelProto) else load_model(Path(model))
    if source.ByteSize() >= _TWO_GB:
        raise InvalidModelError(
            "the model is larger than 2 GB with its weights, and a probe is one self-contained "
            "file, which ONNX limits to 2 GB; probe a smaller (or float16) export of it."
        )
    if any(prop.key == METADATA_KEY for prop in source.metadata_props):
        raise InvalidModelError("this model is already an onnx-geom probe; probe its source model instead.")
    head = choose_head(source, find_heads(source), features=features, logits=logits)
    original = source_input(source)
    spec = image_spec(original, layout=layout, image_size=image_size)
    if 0 < _default_opset(source) < 7:
        raise InvalidModelError(
            f"the model uses opset {_default_opset(source)}, older than the 7 the probe's "
            "preprocessing needs; convert it with onnx.version_converter first."
        )
    mean_c, std_c = normalisation(preset, mean, std, channels=spec.hwc[2])

    result = ModelProto()
    result.CopyFrom(source)
    taken = all_tensor_names(result.graph)
    renamed = _rename_clashes(result.graph, head, taken)
    _splice_prefix(result.graph, renamed.get(original.name, original.name), spec, mean_c, std_c, taken)
    _free_batch(result.graph, spec.batch)
    _add_outputs(result.graph, head, renamed, taken)
    del result.graph.value_info[:]  # stale shapes (a static batch of 1) would clash with the dynamic batch
    if not any(op.domain in ("", "ai.onnx") for op in result.opset_import):
        result.opset_import.append(helper.make_opsetid("", 13))

    assert head.W is not None and head.b is not None  # choose_head returns an accepted head, whose W, b are set
    info = ProbeInfo(
        W=head.W,
        b=head.b,
        input_shape=spec.hwc,
        layout=spec.layout,
        mean=mean_c,
        std=std_c,
        source_sha256=model_sha256(path, source),
        producer=" ".join(filter(None, (source.producer_name, source.producer_version))),
        opset=_default_opset(source),
        head=_head_json(head, original.name, renamed),
        tags=_tags(source),
    )
    write_probe_info(result, info)
    try:
        onnx.checker.check_model(result)
    except Exception as err:
        raise InvalidModelError(
            f"the probe built from this model is not valid ONNX ({first_line(err)}); please report it with the model."
        ) from None
    if check:
        check_probe(result, source=source)
    return result


def _rename_clashes(graph: onnx.GraphProto, head: HeadCandidate, taken: set[str]) -> dict[str, str]:
    """Rename tensors that use the probe's fixed names (``images``, ``logits``, ``features``) to
    ``<name>_source``, except the head's own float32 (N, D)/(N, K) tensor already called so. Returns {old: new}."""
    keep = {head.features: FEATURES, head.logits: LOGITS} if head.dtype == "float32" and not head.reshape else {}
    clashes = sorted(name for name in (PROBE_INPUT, LOGITS, FEATURES) if name in taken and keep.get(name) != name)
    renamed = {name: unique_name(f"{name}_source", taken) for name in clashes}
    rename_tensors(graph, renamed)
    return renamed


def _splice_prefix(
    graph: onnx.GraphProto,
    model_input: str,
    spec: ImageSpec,
    mean: Sequence[float],
    std: Sequence[float],
    taken: set[str],
) -> None:
    """Replace the graph input ``model_input`` by uint8 ``images`` and the preprocessing nodes that feed it."""
    nodes, inits = preprocess_nodes(PROBE_INPUT, model_input, spec, mean, std, taken)
    inputs = [value for value in graph.input if value.name != model_input]
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info(PROBE_INPUT, TensorProto.UINT8, [_BATCH, *spec.hwc]), *inputs])
    graph.initializer.extend(inits)
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)


def _add_outputs(graph: onnx.GraphProto, head: HeadCandidate, renamed: dict[str, str], taken: set[str]) -> None:
    """Expose the head's input and output as float32 ``features`` (N, D) and ``logits`` (N, K), typed; a head
    on (N, 1, D) (``head.reshape``) gets a Reshape to (-1, D) and (-1, K) first (the original tensors and
    outputs stay as they are)."""
    outputs = {value.name for value in graph.output}
    for name, src, dim in ((LOGITS, head.logits, head.K), (FEATURES, head.features, head.D)):
        src = renamed.get(src, src)
        if head.reshape:
            shape = unique_name(f"onnx_geom/{name}_shape", taken)
            graph.initializer.append(numpy_helper.from_array(np.array([-1, dim], np.int64), shape))
            flat = name if head.dtype == "float32" else unique_name(f"onnx_geom/{name}_2d", taken)
            node = unique_name(f"onnx_geom/{name}_2d", taken)
            graph.node.append(helper.make_node("Reshape", [src, shape], [flat], name=node))
            src = flat
        if src != name:
            extra: dict[str, Any] = {} if head.dtype == "float32" else {"to": TensorProto.FLOAT}
            op = "Identity" if head.dtype == "float32" else "Cast"
            graph.node.append(
                helper.make_node(op, [src], [name], name=unique_name(f"onnx_geom/{name}", taken), **extra)
            )
        if name not in outputs:
            graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [_BATCH, dim]))


def save_probe(model: ModelProto, path: str | PathLike[str], *, inputs: Sequence[str | PathLike[str]] = ()) -> Path:
    """Write ``model`` to ``path`` as one self-contained file (atomically: a failure leaves no partial file).

    ``path`` is checked first (:func:`onnx_geom._files.check_output`): not inside a study, not one of ``inputs``
    (the source model and its external data), not a folder; missing parent folders are created.
    """
    path = check_output(path, inputs=inputs)
    if model.ByteSize() >= _TWO_GB:
        raise InvalidModelError(
            "the probe is larger than 2 GB, which one ONNX file cannot hold; prune or quantize the model."
        )
    with output_errors(path):
        return write_bytes(path, model.SerializeToString())


def _free_batch(graph: onnx.GraphProto, batch: int | None) -> None:
    """Make a static batch size in the original outputs dynamic (the probe's batch is dynamic)."""
    if batch is None:
        return
    for value in graph.output:
        dims = value.type.tensor_type.shape.dim if value.type.HasField("tensor_type") else []
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == batch:
            dims[0].dim_param = _BATCH


def _default_opset(model: ModelProto) -> int:
    return next((op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), 0)


def _head_json(head: HeadCandidate, source_input_name: str, renamed: dict[str, str]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "node": head.node,
        "spelling": head.spelling,
        "features": head.features,
        "logits": head.logits,
        "source_input": source_input_name,
        "weight_dtype": head.dtype,
    }
    if head.reshape:
        info["reshaped_from"] = head.input_shape or "unknown"  # the head's input, before the probe's Reshape
    if renamed:
        info["renamed"] = dict(renamed)
    return info


def _tags(model: ModelProto) -> dict[str, Any]:
    raw = next((p.value for p in model.metadata_props if p.key == TAGS_KEY), None)
    if raw is None:
        return {}
    try:
        tags = json.loads(raw)
    except ValueError:
        raise InvalidModelError(f"the model's '{TAGS_KEY}' metadata is not JSON; fix or remove it.") from None
    if not isinstance(tags, dict):
        raise InvalidModelError(
            f"the model's '{TAGS_KEY}' metadata is not a JSON object; write it as {{\"key\": value}}."
        )
    return tags
