"""What a probe is: its fixed interface and the head metadata it carries.

A *probe* is an ONNX model with one input and two extra outputs, whatever framework the classifier came from:

- input ``images``: uint8, ``(N, H, W, C)``, batch dynamic (preprocessing is baked into the graph);
- output ``logits``: float32 ``(N, K)``, the pre-softmax output of the final linear layer;
- output ``features``: float32 ``(N, D)``, that layer's input;
- the original outputs, unchanged.

Its ``metadata_props`` hold a :class:`ProbeInfo` under the key ``onnx_geom.probe`` (JSON; the head ``W``,
``b`` as base64 float32 so they round-trip exactly), so any tool can read the head without running the model:

>>> import numpy as np
>>> info = ProbeInfo(W=np.eye(2, 3, dtype=np.float32), b=np.zeros(2, np.float32), input_shape=(8, 8, 1),
...                  layout="NCHW", mean=(0.0,), std=(1.0,))
>>> ProbeInfo.from_metadata(info.to_metadata()).W.shape
(2, 3)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np

from onnx_geom.errors import InvalidModelError

__all__ = [
    "FEATURES",
    "LAYOUTS",
    "LOGITS",
    "METADATA_KEY",
    "PROBE_INPUT",
    "TAGS_KEY",
    "ProbeInfo",
    "read_probe_info",
    "set_metadata",
    "write_probe_info",
]

PROBE_INPUT = "images"
LOGITS = "logits"
FEATURES = "features"
METADATA_KEY = "onnx_geom.probe"
#: Free-form tags a model may carry in its own metadata_props (e.g. {"method": "magnitude", "sparsity": 0.9});
#: the probe copies them into ProbeInfo.tags and the store into the model's attributes.
TAGS_KEY = "onnx_geom.tags"
LAYOUTS = ("NCHW", "NHWC", "flat")


def _encode(array: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(array.shape), "float32_base64": base64.b64encode(array.tobytes()).decode("ascii")}


def _decode(blob: Mapping[str, Any]) -> np.ndarray:
    raw = base64.b64decode(blob["float32_base64"])
    return np.frombuffer(raw, dtype="<f4").reshape(blob["shape"]).astype(np.float32)


@dataclass(frozen=True)
class ProbeInfo:
    """The head and interface of a probe.

    ``W``: (K, D) float32 and ``b``: (K,) float32 in the ``logits = features @ W.T + b`` convention.
    ``input_shape`` is ``(H, W, C)`` of the uint8 images the probe takes; ``layout`` is how the *source* model
    wanted them (``NCHW``, ``NHWC`` or ``flat``); ``mean``/``std`` the per-channel normalisation applied after
    scaling to [0, 1]. ``head`` describes where the head was found (node name, op spelling, source tensors);
    ``tags`` are free-form labels of the model (pruning method, sparsity, ...).
    """

    W: np.ndarray
    b: np.ndarray
    input_shape: tuple[int, int, int]
    layout: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source_sha256: str = ""
    producer: str = ""
    opset: int = 0
    head: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.W.shape[0])

    @property
    def feature_dim(self) -> int:
        return int(self.W.shape[1])

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict of everything but ``W`` and ``b``."""
        return {
            "input_shape": list(self.input_shape),
            "layout": self.layout,
            "mean": list(self.mean),
            "std": list(self.std),
            "source_sha256": self.source_sha256,
            "producer": self.producer,
            "opset": self.opset,
            "head": dict(self.head),
            "tags": dict(self.tags),
            "num_classes": self.num_classes,
            "feature_dim": self.feature_dim,
        }

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` entries that carry this info in a probe."""
        payload = {"version": 1, **self.to_json(), "W": _encode(self.W), "b": _encode(self.b)}
        return {METADATA_KEY: json.dumps(payload)}

    @classmethod
    def from_metadata(cls, props: Mapping[str, str]) -> ProbeInfo:
        """Read the info back from ``metadata_props`` (as a dict, e.g. onnxruntime's custom_metadata_map)."""
        if METADATA_KEY not in props:
            raise InvalidModelError(
                "this model is not an onnx-geom probe (no 'onnx_geom.probe' metadata); "
                "make one with `onnx-geom probe MODEL.onnx -o PROBE.onnx`."
            )
        try:
            data = json.loads(props[METADATA_KEY])
            return cls(
                W=_decode(data["W"]),
                b=_decode(data["b"]),
                input_shape=_shape3(data["input_shape"]),
                layout=str(data["layout"]),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                source_sha256=str(data.get("source_sha256", "")),
                producer=str(data.get("producer", "")),
                opset=int(data.get("opset", 0)),
                head=dict(data.get("head", {})),
                tags=dict(data.get("tags", {})),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise InvalidModelError(
                f"the probe's 'onnx_geom.probe' metadata is damaged ({err}); re-create the probe."
            ) from None


def read_probe_info(model: str | PathLike[str] | Any) -> ProbeInfo:
    """Read the :class:`ProbeInfo` of a probe given as a path or an ``onnx.ModelProto``."""
    import onnx

    if isinstance(model, (str, PathLike)):
        model = onnx.load(str(model), load_external_data=False)
    return ProbeInfo.from_metadata({p.key: p.value for p in model.metadata_props})


def write_probe_info(model: Any, info: ProbeInfo) -> None:
    """Store ``info`` in ``model.metadata_props`` (an ``onnx.ModelProto``), replacing an older one."""
    set_metadata(model, info.to_metadata())


def set_metadata(model: Any, entries: dict[str, str]) -> None:
    """Set ``entries`` in ``model.metadata_props`` (an ``onnx.ModelProto``), replacing older ones of those keys."""
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


def _shape3(values: Any) -> tuple[int, int, int]:
    h, w, c = (int(v) for v in values)
    return h, w, c
