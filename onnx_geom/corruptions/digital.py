"""Digital corruptions: brightness, contrast, saturate, elastic transform, pixelate, JPEG compression.

Every function maps uint8 ``images: (N, H, W, C)`` to a uint8 batch of the same shape.

>>> import numpy as np
>>> x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
>>> bool(contrast(x, 5).std() < x.std())
True
"""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image

from onnx_geom.corruptions import _filters, _warp
from onnx_geom.corruptions._color import saturate_planes
from onnx_geom.corruptions._common import draw_uniforms, to_float, to_uint8
from onnx_geom.corruptions._params import checked
from onnx_geom.corruptions._resize import resize


def brightness(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Add ``c`` to the HSV value (greyscale: to the grey level); deterministic.

    >>> import numpy as np
    >>> int(brightness(np.zeros((1, 16, 16, 1), np.uint8), 5, profile="imagenet").max())
    127
    """
    images, _, _, c = checked(images, severity, profile, "brightness")
    x = to_float(images)
    if x.shape[3] == 1:
        return to_uint8(x + c)
    # With hue and saturation fixed every RGB component is proportional to the HSV value, and black (v = 0, so
    # s = 0) becomes grey: the reference's RGB -> HSV -> RGB round trip without the round trip (rounding aside).
    v = to_float(np.maximum(np.maximum(images[..., 0], images[..., 1]), images[..., 2])[..., None])  # = x.max(axis=3)
    brighter = np.minimum(v + c, 1.0)
    return to_uint8(np.where(v > 0, x / np.where(v > 0, v, 1.0), 1.0) * brighter)


def contrast(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Pull every value towards its image's channel mean: ``(x - mean) * c + mean``; deterministic.

    >>> import numpy as np
    >>> x = np.zeros((1, 16, 16, 1), np.uint8); x[0, :8] = 200
    >>> sorted(np.unique(contrast(x, 1, profile="cifar")).tolist())
    [25, 175]
    """
    images, _, _, c = checked(images, severity, profile, "contrast")
    x = to_float(images)
    means = x.mean(axis=(1, 2), keepdims=True)
    return to_uint8((x - means) * c + means)


def saturate(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Scale and shift the HSV saturation: ``s * c0 + c1``; severities 1-2 desaturate, 3-5 oversaturate.

    Greyscale images go through RGB and keep the red channel, as the reference does: grey stays grey.

    >>> import numpy as np
    >>> x = np.array([[[[200, 100, 100]]]], np.uint8).repeat(16, 1).repeat(16, 2)
    >>> saturate(x, 1, profile="cifar")[0, 0, 0].tolist()   # saturation 0.5 -> 0.15
    [200, 170, 170]
    """
    images, _, _, (scale, shift) = checked(images, severity, profile, "saturate")
    planes = to_float(np.ascontiguousarray(images.transpose(3, 0, 1, 2)))  # (C, N, H, W)
    grey = len(planes) == 1
    rgb = saturate_planes(np.repeat(planes, 3, axis=0) if grey else planes, scale, shift, channels=1 if grey else 3)
    return to_uint8(rgb.transpose(1, 2, 3, 0))


def jpeg_compression(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Encode and decode each image as JPEG (Pillow, the profile's quality); greyscale goes through RGB.

    >>> import numpy as np
    >>> jpeg_compression(np.zeros((2, 16, 16, 1), np.uint8), 5).shape
    (2, 16, 16, 1)
    """
    images, _, _, quality = checked(images, severity, profile, "jpeg_compression")
    out = np.empty_like(images)
    _n, h, w, c = images.shape
    mode = "RGB" if c == 3 else "L"
    for i, image in enumerate(images):  # Pillow's raw constructors and JPEG decoder: no file-format layer per image
        buffer = io.BytesIO()
        picture = Image.frombytes(mode, (w, h), image.tobytes())
        (picture if c == 3 else picture.convert("RGB")).save(buffer, "JPEG", quality=quality)
        decoded = Image.frombytes("RGB", (w, h), buffer.getvalue(), "jpeg", "RGB", "")
        out[i] = np.frombuffer((decoded if c == 3 else decoded.convert("L")).tobytes(), np.uint8).reshape(h, w, c)
    return out


def pixelate(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Box-downscale by ``c`` and scale back up (box in the cifar profile, nearest in imagenet's), with Pillow.

    >>> import numpy as np
    >>> pixelate(np.zeros((3, 32, 32, 3), np.uint8), 5).shape
    (3, 32, 32, 3)
    """
    images, _, profile, c = checked(images, severity, profile, "pixelate")
    h, w = images.shape[1:3]
    small = resize(images, (int(w * c), int(h * c)), Image.Resampling.BOX)
    up = Image.Resampling.BOX if profile == "cifar" else Image.Resampling.NEAREST
    return resize(small, (w, h), up)


def _displacement(noise: np.ndarray, sigma, alpha: float) -> np.ndarray:
    """Smooth raw noise ``(N, H, W)`` (reflect border, truncate 3) and scale it: one displacement component."""
    return (_filters.gaussian_2d(noise, sigma) * alpha).astype(np.float32)


def elastic_from_noise(x: np.ndarray, noise_dx: np.ndarray, noise_dy: np.ndarray, sigma, alpha: float) -> np.ndarray:
    """Displace ``x: (N, H, W, C)`` by smoothed noise fields ``(N, H, W)``: out(y, x) = in(y + dy, x + dx).

    Bilinear, border reflect (half-sample symmetric), as the reference's ``map_coordinates``.
    """
    _n, h, w = x.shape[:3]
    dx, dy = _displacement(noise_dx, sigma, alpha), _displacement(noise_dy, sigma, alpha)
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return _warp.sample(x, ys + dy, xs + dx, mode="reflect")


def elastic_transform(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Warp each image by a smooth random displacement field (plus a random affine in the cifar profile).

    imagenet (``imagecorruptions``): uniform noise of amplitude 0.5 % of the height, smoothed with sigma 1 % of
    the size, scaled by alpha. cifar (CIFAR-10-C): a random affine moving three points by up to ``affine * S``,
    then uniform noise in [-1, 1] smoothed with sigma ``sigma * S`` and scaled by ``alpha * S``, with S the
    shorter image side (32 for CIFAR).

    >>> import numpy as np
    >>> elastic_transform(np.zeros((2, 32, 32, 3), np.uint8), 3, rng=0).shape
    (2, 32, 32, 3)
    """
    images, severity, profile, c = checked(images, severity, profile, "elastic_transform")
    n, h, w = images.shape[:3]
    imagenet = profile == "imagenet"
    u = draw_uniforms(rng, "elastic_transform", severity, indices, n, 2 * h * w + (0 if imagenet else 6))
    x = to_float(images, np.float32)
    if not n:
        return images.copy()
    if imagenet:
        amplitude = h * 0.005
        noise = (u * (2 * amplitude) - amplitude).reshape(n, 2, h, w)
        return to_uint8(elastic_from_noise(x, noise[:, 0], noise[:, 1], np.array([h, w]) * 0.01, c))
    size = min(h, w)
    alpha, sigma, affine = (v * size for v in c)
    moved = _warp.affine_points(h, w)[None] + (u[:, :6] * (2 * affine) - affine).reshape(n, 3, 2).astype(np.float32)
    noise = (u[:, 6:] * 2 - 1).reshape(n, 2, h, w)
    x = _warp.affine_warp(x, moved).astype(np.float32)
    return to_uint8(elastic_from_noise(x, noise[:, 0], noise[:, 1], sigma, alpha))
