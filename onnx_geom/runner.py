"""Run probes with onnxruntime: one session per probe, on the CPU, CUDA (with IO binding) or TensorRT.

>>> session = ProbeSession.open("probe.onnx", device="auto")          # doctest: +SKIP
>>> session.device, session.batch_size                                # doctest: +SKIP
('cpu', 256)
>>> features, logits = session.run(images)     # images uint8 (N, H, W, C) -> (N, D), (N, K) float32  # doctest: +SKIP

``device="auto"`` creates a CUDA session when onnxruntime offers one and keeps it only if the session really got
the CUDA provider (a missing CUDA library makes onnxruntime fall back silently); otherwise the CPU. An explicit
``"cuda"`` or ``"tensorrt"`` that does not work is a :class:`DeviceError`. TensorRT is never chosen by ``auto``
(it builds an engine per probe, minutes each); ask for it. ``fp16=True`` runs a float16 copy of the probe whose
inputs and outputs stay as they were (uint8 in, float32 out); GPU only.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom.errors import DataError, DeviceError, InvalidModelError
from onnx_geom.probe_info import FEATURES, LOGITS, PROBE_INPUT, ProbeInfo

__all__ = ["DEVICES", "ProbeSession", "check_data", "default_batch_size", "run_batches", "to_fp16"]

DEVICES = ("auto", "cpu", "cuda", "tensorrt")
_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def default_batch_size(device: str, image_shape: tuple[int, ...]) -> int:
    """A batch that suits the device: 256 (CPU) or 2048 (GPU) images of 32x32x3, fewer for larger images."""
    pixels = int(np.prod(image_shape))
    if device == "cpu":
        return int(max(8, min(256, (1 << 21) // pixels)))
    return int(max(16, min(2048, (1 << 25) // pixels)))


def _load(source: Any, *, weights: bool) -> tuple[Any, ProbeInfo, bool]:
    """``(model, info, is_the_file)``: with ``weights=False`` a probe file's external data is left on disk."""
    from onnx_geom.probe import probe
    from onnx_geom.probe._load import load_external_data, read_model

    path = Path(source) if isinstance(source, (str, os.PathLike)) else None
    model = read_model(path) if path is not None else source
    props = {p.key: p.value for p in model.metadata_props}
    if "onnx_geom.probe" in props:
        if weights and path is not None:
            load_external_data(model, path.parent)
        return model, ProbeInfo.from_metadata(props), path is not None
    probed = probe(path if path is not None else model)
    return probed, ProbeInfo.from_metadata({p.key: p.value for p in probed.metadata_props}), False


def to_fp16(model: Any) -> Any:
    """A float16 copy of a probe whose inputs and outputs keep their types (uint8 in, float32 out)."""
    # onnxruntime's converter retargets Cast-to-float nodes (the probe's uint8 front); onnxconverter-common's does not.
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True)


def _quiet(verbose: bool) -> Any:
    import onnxruntime as ort

    level = 0 if verbose else 4
    ort.set_default_logger_severity(level)
    options = ort.SessionOptions()
    options.log_severity_level = level
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle threads sleep instead of spinning: a sweep makes its corrupted images on the same cores (a thread, or
    # Ray's chunk tasks), and spinning threads took their CPU (bench_ray: 2 cores over 1, 1.49x -> 1.80x).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _session(model: bytes | str, device: str, verbose: bool) -> Any:
    import onnxruntime as ort

    wanted = _PROVIDERS[device]
    if wanted[0] not in ort.get_available_providers():
        raise DeviceError(
            f"{device} was asked for but this onnxruntime has no {wanted[0]}; install onnxruntime-gpu or use --device cpu."
        )
    chatter = io.StringIO()  # onnxruntime prints "EP Error ... Falling back" to stdout itself
    try:
        with contextlib.redirect_stdout(sys.stdout if verbose else chatter):
            session = ort.InferenceSession(model, _quiet(verbose), providers=wanted)
    except Exception as err:  # onnxruntime raises its own Fail / InvalidGraph classes
        if device == "cpu":
            raise InvalidModelError(f"onnxruntime cannot load the probe ({str(err).splitlines()[0][:300]}).") from None
        raise DeviceError(
            f"{device} was asked for but onnxruntime could not start it ({str(err).splitlines()[0][:200]}); use --device cpu."
        ) from None
    if session.get_providers()[0] != wanted[0]:
        raise DeviceError(
            f"{device} was asked for but onnxruntime fell back to {session.get_providers()[0]} (CUDA/cuDNN libraries missing?); use --device cpu or install the [cuda] extra."
        )
    return session


def _check_interface(session: Any, name: str) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if PROBE_INPUT not in inputs or inputs[PROBE_INPUT].type != "tensor(uint8)" or not {FEATURES, LOGITS} <= outputs:
        raise InvalidModelError(
            f"{name} does not have the probe interface (uint8 input 'images', outputs 'features' and 'logits'); re-create it with `onnx-geom probe`."
        )


@dataclass
class ProbeSession:
    """One onnxruntime session of one probe, with the device it really got. Make one with :meth:`open`."""

    session: Any
    info: ProbeInfo
    device: str
    name: str
    batch_size: int
    fp16: bool = False

    @classmethod
    def open(
        cls,
        source: str | os.PathLike[str] | Any,
        *,
        device: str = "auto",
        fp16: bool = False,
        batch_size: int | None = None,
        verbose: bool = False,
        name: str | None = None,
    ) -> ProbeSession:
        """Open ``source`` (a probe, or a plain classifier probed on the fly) on ``device`` (see the module doc)."""
        if device not in DEVICES:
            raise DeviceError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
        if batch_size is not None and batch_size < 1:
            raise DataError(f"the batch size must be at least 1, not {batch_size}; leave it out for the default.")
        label = name or (Path(source).name if isinstance(source, (str, os.PathLike)) else "the probe")
        model, info, is_file = _load(source, weights=fp16)
        chosen = device
        if device == "auto":
            chosen = _auto_device(verbose)
        if fp16:
            if chosen == "cpu":
                raise DeviceError(
                    "fp16 runs on a GPU only and this run is on the CPU; drop --fp16 or use --device cuda."
                )
            model = to_fp16(model)
        # a probe file goes to onnxruntime by path: its external data (models over 2 GB) is read from there
        session = _session(str(source) if is_file and not fp16 else model.SerializeToString(), chosen, verbose)
        _check_interface(session, label)
        size = batch_size if batch_size is not None else default_batch_size(chosen, info.input_shape)
        opened = cls(session, info, chosen, label, size, fp16)
        opened._check_head()
        return opened

    def _check_head(self, n: int = 2) -> None:
        """The stored head must give the graph's logits (``logits == features @ W.T + b``) on ``n`` random images: a
        probe whose metadata was edited or damaged is refused before anything is computed with it."""
        from onnx_geom.probe._check import RTOL_HALF, _rtol, head_tolerance

        rng = np.random.default_rng(0)
        features, logits = self.run(rng.integers(0, 256, (n, *self.info.input_shape), dtype=np.uint8))
        W, b = self.info.W, self.info.b
        if features.shape[1:] != (W.shape[1],) or logits.shape[1:] != (W.shape[0],):
            raise InvalidModelError(
                f"{self.name} outputs features {features.shape[1:]} and logits {logits.shape[1:]}, but its stored head "
                f"W is {W.shape}; the probe was edited or damaged: re-create it with `onnx-geom probe`."
            )
        finite = np.isfinite(features).all(axis=1) & np.isfinite(logits).all(axis=1)  # NaN rows are said elsewhere
        f, z = features[finite].astype(np.float64), logits[finite].astype(np.float64)
        error = np.abs(z - (f @ W.astype(np.float64).T + b.astype(np.float64)))
        tolerance = head_tolerance(f, W, b, rtol=RTOL_HALF if self.fp16 else _rtol(self.info.head.get("weight_dtype")))
        if np.any(error > tolerance):
            raise InvalidModelError(
                f"the head (W, b) stored in {self.name!r} does not give its logits (off by up to {error.max():.3g}); "
                "the probe was edited or damaged: re-create it with `onnx-geom probe`."
            )

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``images`` uint8 (B, H, W, C) -> ``(features (B, D), logits (B, K))`` float32, one call."""
        images = np.ascontiguousarray(images, dtype=np.uint8)
        if self.device == "cpu":
            features, logits = self.session.run([FEATURES, LOGITS], {PROBE_INPUT: images})
            return np.asarray(features, np.float32), np.asarray(logits, np.float32)
        return self._run_bound(images, "cuda")

    def _run_bound(self, images: np.ndarray, device_type: str) -> tuple[np.ndarray, np.ndarray]:
        """IO binding: the batch is copied to ``device_type`` once, each output fetched once."""
        binding = self.session.io_binding()
        binding.bind_cpu_input(PROBE_INPUT, images)
        binding.bind_output(FEATURES, device_type)
        binding.bind_output(LOGITS, device_type)
        self.session.run_with_iobinding(binding)
        features, logits = binding.copy_outputs_to_cpu()
        return np.asarray(features, np.float32), np.asarray(logits, np.float32)


_AUTO: dict[str, str] = {}


def _auto_device(verbose: bool) -> str:
    """ "cuda" when a CUDA session really gets the CUDA provider, else "cpu" (decided once per process)."""
    if "device" not in _AUTO:
        from onnx import TensorProto, helper

        x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "xy")
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "device_check", [x], [y])
        tiny = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        try:
            _session(tiny.SerializeToString(), "cuda", verbose)
            _AUTO["device"] = "cuda"
        except DeviceError:
            _AUTO["device"] = "cpu"
    return _AUTO["device"]


def check_data(info: ProbeInfo, image_shape: tuple[int, ...], labels: np.ndarray, name: str) -> None:
    """DataError when the images or labels do not fit the probe ``name``."""
    expected = tuple(int(s) for s in info.input_shape)
    if tuple(image_shape) != expected:
        (h, w, c), (eh, ew, ec) = image_shape, expected
        what = "channels" if (h, w) == (eh, ew) else "size"
        raise DataError(
            f"the images are {h}x{w}x{c} but probe {name!r} takes {eh}x{ew}x{ec} (different {what}); resize the data or use the matching model."
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise DataError(
            f"the labels run from {labels.min()} to {labels.max()} but probe {name!r} has {info.num_classes} classes; use the data the model was trained for."
        )


def run_batches(
    session: ProbeSession, read: Callable[[int, int], np.ndarray], n: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Stream ``n`` images read by ``read(start, stop)`` through ``session``: yields ``(start, features, logits)``."""
    for start in range(0, n, session.batch_size):
        stop = min(n, start + session.batch_size)
        features, logits = session.run(read(start, stop))
        yield start, features, logits
