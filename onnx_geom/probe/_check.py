"""Self-check of a probe: on random images, ``logits == features @ W.T + b`` and the original outputs are those
of the source model, under onnxruntime with graph optimisation enabled and disabled.

>>> report = check_probe("classifier.probe.onnx", source="classifier.onnx")    # doctest: +SKIP
>>> report.max_logit_error <= report.logit_tolerance                           # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from onnx import ModelProto, helper

from onnx_geom.errors import ProbeCheckError
from onnx_geom.probe._graph import source_input
from onnx_geom.probe._load import first_line, load_model
from onnx_geom.probe._preprocess import preprocess_numpy
from onnx_geom.probe_info import FEATURES, LOGITS, PROBE_INPUT, ProbeInfo, read_probe_info

__all__ = ["ProbeReport", "check_probe", "head_tolerance"]

_LEVELS = ("ORT_ENABLE_ALL", "ORT_DISABLE_ALL")
RTOL = 1e-4  # of the scale of each logit (sum of |f_d W_kd| + |b_k|): float32 summation-order slack
RTOL_HALF = 1e-2  # the same for float16 / bfloat16 models (10 bits of mantissa)


def _rtol(dtype: object) -> float:
    return RTOL_HALF if str(dtype) in ("float16", "bfloat16") else RTOL


@dataclass
class ProbeReport:
    """What :func:`check_probe` verified. Errors are absolute; tolerances are what they were held to."""

    n: int
    num_classes: int
    feature_dim: int
    levels: tuple[str, ...] = _LEVELS
    max_logit_error: float = 0.0
    logit_tolerance: float = 0.0
    max_level_difference: float = 0.0
    outputs_compared: list[str] = field(default_factory=list)
    max_output_difference: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "levels": list(self.levels), "ok": True}


def head_tolerance(features: np.ndarray, W: np.ndarray, b: np.ndarray, *, rtol: float = RTOL) -> np.ndarray:
    """Per-logit tolerance (N, K): ``rtol`` times the logit's scale ``|f| @ |W|.T + |b|``, plus a floor."""
    scale = np.abs(features.astype(np.float64)) @ np.abs(W.astype(np.float64)).T + np.abs(b.astype(np.float64))
    return rtol * scale + 1e-2 * rtol * max(float(scale.max(initial=0.0)), 1.0)


def check_probe(
    probe: str | PathLike[str] | ModelProto,
    *,
    source: str | PathLike[str] | ModelProto | None = None,
    n: int = 8,
    seed: int = 0,
) -> ProbeReport:
    """Run ``n`` random uint8 images (seeded) through ``probe`` and verify it; raise ProbeCheckError if wrong.

    Checks, with onnxruntime graph optimisation ORT_ENABLE_ALL and ORT_DISABLE_ALL: ``logits`` (n, K) and
    ``features`` (n, D) are float32 with the head's sizes, ``logits == features @ W.T + b`` within
    :func:`head_tolerance`, both levels agree, and, when ``source`` (the original model) is given, every
    original output equals the source's on the same images preprocessed in numpy.
    """
    model = probe if isinstance(probe, ModelProto) else load_model(Path(probe))
    info = read_probe_info(model)
    images = np.random.default_rng(seed).integers(0, 256, size=(n, *info.input_shape), dtype=np.uint8)
    data = model.SerializeToString()
    runs = [_run(data, {PROBE_INPUT: images}, level) for level in _LEVELS]
    report = ProbeReport(n=n, num_classes=info.num_classes, feature_dim=info.feature_dim)
    for level, outputs in zip(_LEVELS, runs, strict=True):
        _check_head(outputs, info, level, report)
    reference = runs[1]
    for name, value in runs[0].items():
        difference = _difference(value, reference[name])
        if difference is None:
            raise ProbeCheckError(
                f"output '{name}' differs between onnxruntime optimisation on and off; the graph is "
                "fragile under onnxruntime's fusions, please report it with the model."
            )
        report.max_level_difference = max(report.max_level_difference, difference)
    if source is not None:
        _compare_source(source, info, images, reference, report)
    return report


def _session(model_bytes: bytes, level: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise ProbeCheckError(
            f"onnxruntime cannot load the probe ({first_line(err)}); the model may use ops onnxruntime lacks."
        ) from None


def _run(model_bytes: bytes, feeds: dict[str, np.ndarray], level: str = "ORT_DISABLE_ALL") -> dict[str, Any]:
    session = _session(model_bytes, level)
    names = [out.name for out in session.get_outputs()]
    try:
        values = session.run(names, feeds)
    except Exception as err:
        hint = (
            " (does the model have a fixed batch size? re-export it with a dynamic batch axis)"
            if len(next(iter(feeds.values()))) > 1
            else ""
        )
        raise ProbeCheckError(
            f"onnxruntime fails to run the model on {len(next(iter(feeds.values())))} images: {first_line(err)}{hint}."
        ) from None
    return dict(zip(names, values, strict=True))


def _check_head(outputs: dict[str, Any], info: ProbeInfo, level: str, report: ProbeReport) -> None:
    n = report.n
    for name, width in ((LOGITS, info.num_classes), (FEATURES, info.feature_dim)):
        value = outputs.get(name)
        if not isinstance(value, np.ndarray) or value.dtype != np.float32 or value.shape != (n, width):
            got = (
                "missing"
                if value is None
                else f"{getattr(value, 'dtype', type(value).__name__)} {getattr(value, 'shape', '')}"
            )
            raise ProbeCheckError(
                f"under {level} the probe's '{name}' output is {got}, not float32 ({n}, {width}); "
                "the chosen head is not a per-sample linear layer, pick another with --features/--logits."
            )
    features, logits = outputs[FEATURES].astype(np.float64), outputs[LOGITS].astype(np.float64)
    expected = features @ info.W.astype(np.float64).T + info.b.astype(np.float64)
    tolerance = head_tolerance(features, info.W, info.b, rtol=_rtol(info.head.get("weight_dtype")))
    error = np.abs(logits - expected)
    if not np.all(np.isfinite(logits)) or np.any(error > tolerance):
        raise ProbeCheckError(
            f"under {level} the probe's logits differ from features @ W.T + b by up to "
            f"{np.nanmax(error):.3g} (tolerance {tolerance.max():.3g}); the head's weights were not "
            "read correctly, please report it with the model."
        )
    report.max_logit_error = max(report.max_logit_error, float(error.max(initial=0.0)))
    report.logit_tolerance = max(report.logit_tolerance, float(tolerance.max(initial=0.0)))


def _compare_source(
    source: str | PathLike[str] | ModelProto,
    info: ProbeInfo,
    images: np.ndarray,
    probed: dict[str, Any],
    report: ProbeReport,
) -> None:
    model = source if isinstance(source, ModelProto) else load_model(Path(source))
    value = source_input(model)
    dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    x = preprocess_numpy(images, layout=info.layout, mean=info.mean, std=info.std).astype(dtype)
    dims = value.type.tensor_type.shape.dim
    step = dims[0].dim_value if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else len(x)
    model_bytes = model.SerializeToString()
    chunks = [_run(model_bytes, {value.name: x[i : i + step]}) for i in range(0, len(x), step)]
    renamed = info.head.get("renamed", {})
    for name in chunks[0]:
        expected = _concat([chunk[name] for chunk in chunks])
        got = probed.get(renamed.get(name, name))
        difference = None if got is None else _difference(got, expected)
        if difference is None:
            raise ProbeCheckError(
                f"the probe's original output '{name}' differs from the source model's on the same "
                "images; the surgery changed the model, please report it with the model."
            )
        report.outputs_compared.append(name)
        report.max_output_difference = max(report.max_output_difference, difference)


def _concat(values: list[Any]) -> Any:
    if isinstance(values[0], np.ndarray):
        return np.concatenate(values) if values[0].ndim else values[0]
    return [item for value in values for item in value]


def _difference(a: Any, b: Any) -> float | None:
    """Largest absolute difference of two run results (arrays, or lists of dicts as ZipMap gives);
    None when they differ beyond float32 noise (or in shape, type, keys or exact values)."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        if a.shape != b.shape or a.dtype != b.dtype:
            return None
        if not np.issubdtype(a.dtype, np.floating):
            return 0.0 if np.array_equal(a, b) else None
        a64, b64, rtol = a.astype(np.float64), b.astype(np.float64), _rtol(a.dtype)
        scale = max(float(np.abs(b64).max(initial=0.0)), 1e-6)
        if not np.allclose(a64, b64, rtol=rtol, atol=0.1 * rtol * scale, equal_nan=True):
            return None
        return float(np.abs(a64 - b64).max(initial=0.0))
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return None
        return _largest([_difference(np.asarray(a[k]), np.asarray(b[k])) for k in a])
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return _largest([_difference(x, y) for x, y in zip(a, b, strict=True)])
    return None


def _largest(parts: list[float | None]) -> float | None:
    """The largest difference, or None when any part differs beyond tolerance (None)."""
    found = [p for p in parts if p is not None]
    return max(found, default=0.0) if len(found) == len(parts) else None
