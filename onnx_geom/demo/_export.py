"""ONNX export of the zoo's models (torch legacy exporter, skl2onnx), their tags, and their accuracy in onnxruntime.

>>> from onnx_geom.demo._train import DigitNet
>>> proto = export_torch(DigitNet())
>>> set_tags(proto, {"method": "dense"})
>>> json.loads({p.key: p.value for p in proto.metadata_props}[TAGS_KEY])
{'method': 'dense'}
>>> onnx_logits(proto, np.zeros((3, 1, 32, 32), np.float32)).shape
(3, 10)
"""

from __future__ import annotations

import io
import json
import warnings
from typing import Any

import numpy as np

from onnx_geom.probe_info import TAGS_KEY, set_metadata

__all__ = ["OPSET", "export_sklearn", "export_torch", "onnx_logits", "set_tags"]

OPSET = 17


def set_tags(proto: Any, tags: dict[str, Any]) -> None:
    """Write ``tags`` as JSON under ``onnx_geom.tags`` in ``proto.metadata_props`` (replacing an older entry)."""
    set_metadata(proto, {TAGS_KEY: json.dumps(tags, sort_keys=True)})


def export_torch(model: Any, *, input_shape: tuple[int, ...] = (1, 1, 32, 32)) -> Any:
    """One-file ONNX (legacy TorchScript exporter, opset 17) of ``model``: input ``input`` float32
    ``(N, *input_shape[1:])``, output ``logits`` (N, K), batch dynamic."""
    import onnx
    import torch

    buffer = io.BytesIO()
    model.eval()
    with warnings.catch_warnings():  # the legacy exporter is deprecated, but one-file and fast for this graph
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(input_shape),),
            buffer,  # type: ignore[arg-type]  # the legacy exporter writes to any binary file object
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    for node in proto.graph.node:
        node.doc_string = ""
    onnx.checker.check_model(proto)
    return proto


def export_sklearn(classifier: Any, *, n_features: int) -> Any:
    """ONNX of a fitted scikit-learn classifier through skl2onnx: input ``input`` float32 (N, n_features),
    outputs ``label`` (N,) and ``probabilities`` (N, K) (no ZipMap)."""
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    proto = convert_sklearn(
        classifier,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        options={id(classifier): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    proto.graph.name = type(classifier).__name__  # skl2onnx picks a random one; the zoo must be reproducible
    onnx.checker.check_model(proto)
    return proto


def onnx_logits(proto: Any, inputs: np.ndarray) -> np.ndarray:
    """Run ``proto`` in onnxruntime (CPU) on float32 ``inputs`` and return its (N, K) float output."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: inputs.astype(np.float32)})
    return next(o for o in outputs if o.ndim == 2)
