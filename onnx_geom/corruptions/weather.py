"""Weather corruptions: snow, frost, fog, spatter; each over a whole batch, randomness per sample.

Every function maps uint8 ``images: (N, H, W, C)`` to a uint8 batch of the same shape.

>>> import numpy as np
>>> x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
>>> [f(x, 3, rng=0).shape for f in (snow, frost, fog, spatter)][-1]
(2, 32, 32, 3)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from onnx_geom.corruptions import _filters, _frost, _spatter
from onnx_geom.corruptions._common import normals, sample_draws, to_float, to_uint8, uniforms
from onnx_geom.corruptions._fractal import draws_needed, next_power_of_2, plasma_fractal
from onnx_geom.corruptions._params import checked

_GREY = (0.2989, 0.5870, 0.1140)  # the reference's rgb2gray
_CV_GREY = (0.299, 0.587, 0.114)  # OpenCV's RGB2GRAY


def _grey(rgb: np.ndarray, weights: tuple[float, float, float]) -> np.ndarray:
    """``(..., 3) -> (..., 1)`` weighted sum, element by element (a BLAS product could depend on the batch)."""
    return (rgb[..., 0] * weights[0] + rgb[..., 1] * weights[1] + rgb[..., 2] * weights[2])[..., None]


def _fog_size(h: int, w: int, profile: str) -> int:
    size = next_power_of_2(max(h, w))
    return max(size, 32) if profile == "cifar" else size


def fog(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Add a plasma-fractal haze of ``strength`` (roughness ``decay``) and rescale by the image's maximum.

    The map side is the next power of two of the longer image side (at least 32 in the cifar profile, which is
    CIFAR-10-C's map for 32 px images); the image takes its top-left corner.

    >>> import numpy as np
    >>> bool(fog(np.full((2, 16, 16, 1), 100, np.uint8), 5, rng=0).std() > 0)
    True
    """
    images, severity, profile, (strength, decay) = checked(images, severity, profile, "fog")
    n, h, w = images.shape[:3]
    size = _fog_size(h, w, profile)
    words = sample_draws(rng, "fog", severity, indices, n, draws_needed(size))
    if not n:
        return images.copy()
    uniform = uniforms(words) * 2 - 1
    haze = plasma_fractal(uniform, size, decay)[:, :h, :w, None]
    x = to_float(images)
    top = x.max(axis=(1, 2, 3), keepdims=True)
    return to_uint8((x + strength * haze) * top / (top + strength))


def frost(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Blend with a random crop of a frost texture: ``image_weight * x + frost_weight * texture`` (0..255 units).

    Differs from the references by design: the six textures are generated procedurally from fixed seeds
    (:mod:`onnx_geom.corruptions._frost`) with the colour statistics of the reference photographs, instead of
    being read from files. As in the references, the cifar profile draws from the first five textures scaled
    to a fifth, the imagenet profile from all six at full size; greyscale images get the texture's grey.

    >>> import numpy as np
    >>> bool(frost(np.zeros((2, 32, 32, 3), np.uint8), 5, rng=0).mean() > 20)
    True
    """
    images, severity, profile, (image_weight, frost_weight) = checked(images, severity, profile, "frost")
    n, h, w, c = images.shape
    words = sample_draws(rng, "frost", severity, indices, n, 3)
    tex = _frost.textures(profile, h, w)
    choices = 5 if profile == "cifar" else 6
    u = uniforms(words)
    crops = np.empty((n, h, w, 3), dtype=np.float64)
    for i in range(n):  # texture, then top and left of the crop, each uniform over its range
        t = tex[int(u[i, 0] * choices)]
        top, left = int(u[i, 1] * (t.shape[0] - h)), int(u[i, 2] * (t.shape[1] - w))
        crops[i] = t[top : top + h, left : left + w]
    if c == 1:
        crops = _grey(crops, _GREY)
    out = np.clip(image_weight * images.astype(np.float64) + frost_weight * crops, 0, 255)
    return out.astype(np.uint8)


def snow(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Falling snow: thresholded zoomed noise, motion-blurred at a random angle in [-135, -45] degrees.

    The image is first brightened towards ``1.5 grey + 0.5`` (weight ``1 - image_weight``), then the flakes and
    their 180-degree rotation are added. The flakes' motion blur uses our own line kernel (the CIFAR-10-C
    generator called ImageMagick); in the cifar profile the layer goes through 8 bits before and after the blur
    as it did through PNG files there.

    >>> import numpy as np
    >>> bool(snow(np.zeros((2, 32, 32, 3), np.uint8), 5, rng=0).mean() > 10)
    True
    """
    images, severity, profile, c = checked(images, severity, profile, "snow")
    loc, scale, zoom, threshold, radius, sigma, weight = c
    n, h, w, ch = images.shape
    words = sample_draws(rng, "snow", severity, indices, n, (h * w + 1) // 2 + 1)
    if not n:
        return images.copy()
    layer = (np.float32(loc) + np.float32(scale) * normals(words[:, :-1], h * w, np.float32)).reshape(n, h, w, 1)
    angles = uniforms(words[:, -1]) * 90 - 135
    cifar = profile == "cifar"
    layer = _filters.clipped_zoom(layer, zoom, centre=True, crop=cifar)
    layer[layer < threshold] = 0
    layer = np.clip(layer, 0, 1)
    if cifar:
        layer = (layer * 255).astype(np.uint8) / 255.0
    layer = _filters.motion_blur(layer, radius, sigma, angles)
    layer = (np.rint(layer * 255) / 255.0)[:, :h, :w]
    x = to_float(images, np.float32)
    grey = x if ch == 1 else _grey(x, _CV_GREY)
    x = weight * x + (1 - weight) * np.maximum(x, grey * 1.5 + 0.5)
    return to_uint8(x + layer + np.rot90(layer, k=2, axes=(1, 2)))


def spatter(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Water drops (severities 1-3: pale turquoise, embossed) or mud (4-5: brown blots) on the lens.

    A random liquid layer (normal noise, Gaussian-smoothed, thresholded) shapes the drops; see
    :mod:`onnx_geom.corruptions._spatter` for how the water branch follows the reference without OpenCV.

    >>> import numpy as np
    >>> spatter(np.full((2, 32, 32, 3), 128, np.uint8), 5, rng=0).shape
    (2, 32, 32, 3)
    """
    images, severity, profile, c = checked(images, severity, profile, "spatter")
    loc, scale, sigma, threshold, intensity, is_mud = c
    n, h, w, ch = images.shape
    words = sample_draws(rng, "spatter", severity, indices, n, (h * w + 1) // 2)
    if not n:
        return images.copy()
    liquid = loc + scale * normals(words, h * w, np.float32).reshape(n, h, w).astype(np.float64)
    liquid = _filters.gaussian(liquid, sigma)
    liquid[liquid < threshold] = 0
    x = to_float(images, np.float32)
    if is_mud:
        m = _spatter.mud(liquid, threshold, intensity)[..., None]
        colour = np.array([63, 42, 20]) / 255.0 * m
        return to_uint8(x * (1 - m) + (_grey(colour, _GREY) if ch == 1 else colour))
    m = _spatter.water(liquid)[..., None] * intensity
    colour = np.clip(m * (np.array([175, 238, 238]) / 255.0), 0, 1)
    return to_uint8(x + (_grey(colour, _GREY) if ch == 1 else colour))
