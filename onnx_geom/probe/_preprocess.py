"""The probe's front: uint8 ``(N, H, W, C)`` images -> what the model's input wants.

Cast to float, scale to [0, 1], normalise per channel, then lay out as NCHW, NHWC or flat ``N x (H*W*C)``
(row-major over H, W, C). :func:`preprocess_numpy` is the same computation in numpy, used to feed the source
model when checking a probe.

>>> spec = image_spec(model.graph.input[0])              # doctest: +SKIP
>>> spec.layout, spec.hwc                                # doctest: +SKIP
('NCHW', (32, 32, 3))
>>> mean, std = normalisation("cifar10", None, None, channels=3)
>>> [round(m, 4) for m in mean]
[0.4914, 0.4822, 0.4465]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from onnx import NodeProto, TensorProto, ValueInfoProto, helper, numpy_helper

from onnx_geom.errors import InvalidModelError
from onnx_geom.probe_info import LAYOUTS

__all__ = ["PRESETS", "ImageSpec", "image_spec", "normalisation", "preprocess_nodes", "preprocess_numpy"]

#: Per-channel (mean, std) after scaling to [0, 1]. CIFAR values are the training sets' own statistics.
PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "none": None,
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
_FLOATS = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16, TensorProto.DOUBLE: np.float64}


@dataclass(frozen=True)
class ImageSpec:
    """How the model takes images: ``layout`` in LAYOUTS, ``hwc`` = (H, W, C), ``dtype`` its float type."""

    layout: str
    hwc: tuple[int, int, int]
    elem_type: int = TensorProto.FLOAT
    batch: int | None = None  # the input's static batch size, None when dynamic


def image_spec(
    value: ValueInfoProto, *, layout: str | None = None, image_size: tuple[int, int] | None = None
) -> ImageSpec:
    """Detect layout and image size from the model input ``value``; ``layout``/``image_size`` override."""
    name = value.name
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        raise InvalidModelError(f"the model input '{name}' is not a tensor, so it cannot take images.")
    if tensor.elem_type not in _FLOATS:
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "untyped"
        raise InvalidModelError(
            f"the model input '{name}' takes {dtype} values, not floats, so it cannot take images "
            "(a token-sequence or quantized model?); probe a float image classifier."
        )
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    batch = dims[0] if dims else None
    if layout is not None and layout not in LAYOUTS:
        raise InvalidModelError(f"layout '{layout}' is unknown; use one of {', '.join(LAYOUTS)}.")
    if len(dims) == 4:
        layout = layout or _guess_4d(name, dims)
        if layout == "flat":
            raise InvalidModelError(
                f"the model input '{name}' has rank 4, so it cannot take flat vectors; use NCHW or NHWC."
            )
        h, w, c = (dims[2], dims[3], dims[1]) if layout == "NCHW" else (dims[1], dims[2], dims[3])
        if image_size:
            h, w = image_size
        if h is None or w is None or c is None:
            raise InvalidModelError(
                f"the model input '{name}' has no fixed image size ({_shape(dims)}); pass --size WIDTHxHEIGHT "
                "(image_size=(H, W) in Python)."
            )
        return ImageSpec(layout, _checked(name, (h, w, c)), tensor.elem_type, batch)
    if len(dims) == 2:
        if layout not in (None, "flat"):
            raise InvalidModelError(
                f"the model input '{name}' has rank 2 ({_shape(dims)}), so it takes flat vectors, not {layout}."
            )
        return ImageSpec("flat", _checked(name, _flat_hwc(name, dims[1], image_size)), tensor.elem_type, batch)
    raise InvalidModelError(
        f"the model input '{name}' has shape {_shape(dims)}, which cannot take images "
        "(expected N x C x H x W, N x H x W x C or N x features)."
    )


#: The largest images a probe takes: a side of 16,384 pixels, 2**28 values (a 256 MiB uint8 image).
MAX_SIDE, MAX_VALUES = 16_384, 2**28


def _checked(name: str, hwc: tuple[int, int, int]) -> tuple[int, int, int]:
    """``hwc`` when every size is positive and the image is not absurdly large (checked before any image is
    allocated: a model file can declare any size)."""
    h, w, c = (int(v) for v in hwc)
    if min(h, w, c) < 1:
        raise InvalidModelError(
            f"the model input '{name}' declares images of {w}x{h} pixels x {c} channels; sizes must be positive."
        )
    if max(h, w) > MAX_SIDE or h * w * c > MAX_VALUES:
        raise InvalidModelError(
            f"the model input '{name}' takes {w}x{h}x{c} images, larger than onnx-geom handles "
            f"(sides up to {MAX_SIDE:,} pixels, {MAX_VALUES:,} values); probe a model for smaller images."
        )
    return h, w, c


def _shape(dims: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _guess_4d(name: str, dims: list[int | None]) -> str:
    first, last = dims[1] in (1, 3), dims[3] in (1, 3)
    if first != last:
        return "NCHW" if first else "NHWC"
    raise InvalidModelError(
        f"cannot tell where the channels are in the model input '{name}' {_shape(dims)}; pass --layout NCHW or NHWC."
    )


def _flat_hwc(name: str, size: int | None, image_size: tuple[int, int] | None) -> tuple[int, int, int]:
    if size is None:
        raise InvalidModelError(f"the model input '{name}' takes vectors of unknown length; it cannot take images.")
    if image_size:
        h, w = image_size
        if size % (h * w):
            raise InvalidModelError(f"the model input '{name}' takes {size} values, not a multiple of {w}x{h} pixels.")
        return h, w, size // (h * w)
    for c in (1, 3):
        side = round((size / c) ** 0.5)
        if side * side * c == size:
            return side, side, c
    raise InvalidModelError(
        f"the model input '{name}' takes {size} values, which is not a square image of 1 or 3 channels; "
        "pass --size WIDTHxHEIGHT (image_size=(H, W) in Python)."
    )


def normalisation(
    preset: str, mean: Sequence[float] | None, std: Sequence[float] | None, *, channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std), each of length ``channels``: explicit values win over the preset."""
    if preset not in PRESETS:
        raise InvalidModelError(f"preset '{preset}' is unknown; use one of {', '.join(PRESETS)}.")
    base = PRESETS[preset] or ((0.0,) * channels, (1.0,) * channels)
    result = []
    for label, given, default in (("mean", mean, base[0]), ("std", std, base[1])):
        values = tuple(float(v) for v in (given if given is not None else default))
        if len(values) == 1:
            values = values * channels
        if len(values) != channels:
            raise InvalidModelError(
                f"{label} has {len(values)} values but the images have {channels} channel(s); give one per channel."
            )
        if not np.all(np.isfinite(values)) or (label == "std" and min(values) <= 0):
            raise InvalidModelError(f"{label} {list(values)} is not usable; give finite values (std > 0).")
        result.append(values)
    return result[0], result[1]


def preprocess_nodes(
    source: str, target: str, spec: ImageSpec, mean: Sequence[float], std: Sequence[float], taken: set[str]
) -> tuple[list[NodeProto], list[TensorProto]]:
    """Nodes (and their constants) that turn uint8 images ``source`` (N, H, W, C) into the model input ``target``."""
    from onnx_geom.probe._graph import unique_name

    def fresh(base: str) -> str:
        return unique_name(f"onnx_geom_pre/{base}", taken)

    # Lay out first, on uint8 (4x less memory traffic), then one multiply-add: x * 1/(255 std) - mean/std.
    channel_shape = (-1, 1, 1) if spec.layout == "NCHW" else (-1,)
    std64, mean64 = np.asarray(std, np.float64), np.asarray(mean, np.float64)
    scale = (1.0 / (255.0 * std64)).reshape(channel_shape)
    shift = (-mean64 / std64).reshape(channel_shape)
    names = {key: fresh(key) for key in ("scale", "shift", "cast", "scaled")}
    inits = [
        numpy_helper.from_array(scale.astype(np.float32), names["scale"]),
        numpy_helper.from_array(shift.astype(np.float32), names["shift"]),
    ]
    nodes, laid_out = [], source
    if spec.layout == "NCHW":
        laid_out = fresh("nchw")
        nodes.append(helper.make_node("Transpose", [source], [laid_out], perm=[0, 3, 1, 2], name=fresh("ToNCHW")))
    final_cast = spec.elem_type != TensorProto.FLOAT
    normalised = fresh("normalised")
    nodes += [
        helper.make_node("Cast", [laid_out], [names["cast"]], to=TensorProto.FLOAT, name=fresh("Cast")),
        helper.make_node("Mul", [names["cast"], names["scale"]], [names["scaled"]], name=fresh("Scale")),
        helper.make_node("Add", [names["scaled"], names["shift"]], [normalised], name=fresh("Shift")),
    ]
    last = normalised
    if spec.layout == "flat":  # normalised per channel as NHWC, then flattened row-major over H, W, C
        shape, flat = fresh("flat_shape"), fresh("flat")
        inits.append(numpy_helper.from_array(np.array([0, -1], np.int64), shape))
        nodes.append(helper.make_node("Reshape", [last, shape], [flat], name=fresh("Flatten")))
        last = flat
    if final_cast:
        nodes.append(helper.make_node("Cast", [last], [target], to=spec.elem_type, name=fresh("CastToModel")))
    else:
        nodes[-1].output[0] = target
    return nodes, inits


def preprocess_numpy(images: np.ndarray, *, layout: str, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``images``: uint8 (N, H, W, C) -> float32 model input in ``layout`` (NCHW, NHWC or flat (N, H*W*C))."""
    x = (images.astype(np.float64) / 255.0 - np.asarray(mean, np.float64)) / np.asarray(std, np.float64)
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    elif layout == "flat":
        x = x.reshape(len(x), -1)
    return np.ascontiguousarray(x, dtype=np.float32)
