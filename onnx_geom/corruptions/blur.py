"""Blur corruptions: defocus, glass, motion, zoom and gaussian blur, each over a whole batch at once.

Every function maps uint8 ``images: (N, H, W, C)`` to a uint8 batch of the same shape.

>>> import numpy as np
>>> x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
>>> [f(x, 3, rng=0).shape for f in (defocus_blur, glass_blur, motion_blur, zoom_blur, gaussian_blur)][0]
(4, 32, 32, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnx_geom.corruptions import _filters
from onnx_geom.corruptions._common import check_images, check_severity, resolve_profile, sample_streams, to_float, to_uint8
from onnx_geom.corruptions._params import PARAMS, zoom_factors


def _setup(images, severity, profile, name):
    images = check_images(images)
    severity = check_severity(severity)
    profile = resolve_profile(profile, images)
    return images, severity, profile, PARAMS[profile][name][severity - 1]


def gaussian_blur(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: Sequence[int] | None = None
) -> np.ndarray:
    """Gaussian blur with the profile's sigma (border: nearest; ``rng`` is unused, the blur is deterministic).

    >>> import numpy as np
    >>> x = np.zeros((1, 16, 16, 1), np.uint8); x[0, 8, 8] = 255
    >>> int(gaussian_blur(x, 1, profile="imagenet")[0, 8, 8, 0]) < 255
    True
    """
    images, _, _, sigma = _setup(images, severity, profile, "gaussian_blur")
    return to_uint8(_filters.gaussian(to_float(images), sigma))


def defocus_blur(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: Sequence[int] | None = None
) -> np.ndarray:
    """Convolve with the reference's anti-aliased disk (radius, alias blur); border reflect-101; deterministic.

    >>> import numpy as np
    >>> defocus_blur(np.zeros((2, 16, 16, 3), np.uint8), 5).shape
    (2, 16, 16, 3)
    """
    images, _, _, (radius, alias) = _setup(images, severity, profile, "defocus_blur")
    kernel = _filters.disk_kernel(radius, alias)
    return to_uint8(_filters.correlate_reflect101(to_float(images), kernel))


def glass_blur(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: Sequence[int] | None = None
) -> np.ndarray:
    """Blur, locally scramble pixels, blur again (sigma, max_delta, iterations from the profile).

    The scramble visits pixels bottom-right to top-left and copies into each the pixel at a random offset in
    ``[-max_delta, max_delta - 1]``. Both references *copy* rather than swap (their tuple swap of array views
    writes the same pixel twice), so we copy too. The visit order is sequential; it runs over the whole batch at
    once, each sample with its own offsets.

    >>> import numpy as np
    >>> glass_blur(np.zeros((1, 16, 16, 1), np.uint8), 1, rng=0).shape
    (1, 16, 16, 1)
    """
    images, severity, _, (sigma, delta, iterations) = _setup(images, severity, profile, "glass_blur")
    n, h, w = images.shape[:3]
    streams = sample_streams(rng, "glass_blur", severity, indices, n)
    x = to_uint8(_filters.gaussian(to_float(images), sigma))
    hs, ws = np.arange(h - delta, delta, -1), np.arange(w - delta, delta, -1)
    if n and len(hs) and len(ws):
        offsets = np.stack([g.integers(-delta, delta, size=(iterations, len(hs), len(ws), 2)) for g in streams])
        rows = np.arange(n)
        for it in range(iterations):
            for i, row in enumerate(hs):
                for j, col in enumerate(ws):
                    dx, dy = offsets[:, it, i, j, 0], offsets[:, it, i, j, 1]
                    x[rows, row, col] = x[rows, row + dy, col + dx]
    return to_uint8(_filters.gaussian(to_float(x), sigma))


def motion_blur(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: Sequence[int] | None = None
) -> np.ndarray:
    """Blur along a line at a random angle in [-45, 45] degrees per sample, with our own line kernel.

    Differs from the CIFAR-10-C generator by design: it called ImageMagick (Wand); we build the same kernel
    ourselves (:func:`onnx_geom.corruptions._filters.motion_offsets`, ImageMagick's taps and Gaussian weights, as
    ``imagecorruptions`` re-implements them) and replicate edge pixels. In the cifar profile the result is rounded
    to 8 bits (ImageMagick wrote a PNG), in the imagenet profile truncated (``imagecorruptions``).

    >>> import numpy as np
    >>> motion_blur(np.zeros((2, 32, 32, 3), np.uint8), 5, rng=0).shape
    (2, 32, 32, 3)
    """
    images, severity, profile, (radius, sigma) = _setup(images, severity, profile, "motion_blur")
    streams = sample_streams(rng, "motion_blur", severity, indices, len(images))
    angles = np.array([g.uniform(-45, 45) for g in streams])
    blurred = _filters.motion_blur(to_float(images), radius, sigma, angles)
    return to_uint8(blurred, rounding=profile == "cifar")


def zoom_blur(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: Sequence[int] | None = None
) -> np.ndarray:
    """Average the image with bilinear zooms of its centre by the profile's factors; deterministic.

    The zoomed image is cropped back at the top left in the imagenet profile (``imagecorruptions``) and at the
    centre in the cifar profile (the CIFAR-10-C generator).

    >>> import numpy as np
    >>> zoom_blur(np.zeros((2, 16, 16, 1), np.uint8), 5).shape
    (2, 16, 16, 1)
    """
    images, _, profile, row = _setup(images, severity, profile, "zoom_blur")
    factors = zoom_factors(row)
    x = to_float(images, np.float32)
    out = np.zeros_like(x)
    for factor in factors:
        out += _filters.clipped_zoom(x, factor, centre=profile == "cifar")
    return to_uint8((x + out) / (len(factors) + 1))
