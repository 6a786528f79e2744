"""Blur corruptions: defocus, glass, motion, zoom and gaussian blur, each over a whole batch at once.

Every function maps uint8 ``images: (N, H, W, C)`` to a uint8 batch of the same shape.

>>> import numpy as np
>>> x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
>>> [f(x, 3, rng=0).shape for f in (defocus_blur, glass_blur, motion_blur, zoom_blur, gaussian_blur)][0]
(4, 32, 32, 3)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike

from onnx_geom.corruptions import _filters, _linear
from onnx_geom.corruptions._common import draw_uniforms, sample_draws, to_float, to_uint8
from onnx_geom.corruptions._params import checked, zoom_factors


def _filtered(images: np.ndarray, operator) -> np.ndarray:
    """uint8 ``images`` through a linear blur ``operator`` (exact sums in 0..255 units), back to uint8."""
    return to_uint8(_linear.apply(images, operator) / 255)


def gaussian_blur(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Gaussian blur with the profile's sigma (border: nearest; ``rng`` is unused, the blur is deterministic).

    >>> import numpy as np
    >>> x = np.zeros((1, 16, 16, 1), np.uint8); x[0, 8, 8] = 255
    >>> int(gaussian_blur(x, 1, profile="imagenet")[0, 8, 8, 0]) < 255
    True
    """
    images, _, _, sigma = checked(images, severity, profile, "gaussian_blur")
    return _filtered(images, _linear.gaussian_operator(*images.shape[1:3], sigma))


def defocus_blur(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Convolve with the reference's anti-aliased disk (radius, alias blur); border reflect-101; deterministic.

    >>> import numpy as np
    >>> defocus_blur(np.zeros((2, 16, 16, 3), np.uint8), 5).shape
    (2, 16, 16, 3)
    """
    images, _, _, (radius, alias) = checked(images, severity, profile, "defocus_blur")
    return _filtered(images, _disk_operator(*images.shape[1:3], radius, alias))


@lru_cache(maxsize=32)
def _disk_operator(h: int, w: int, radius: float, alias: float):
    return _linear.disk_terms(_filters.disk_kernel(radius, alias), h, w, "mirror")


def glass_blur(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
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
    images, severity, _, (sigma, delta, iterations) = checked(images, severity, profile, "glass_blur")
    n, h, w = images.shape[:3]
    hs, ws = np.arange(h - delta, delta, -1), np.arange(w - delta, delta, -1)
    count = iterations * len(hs) * len(ws) * 2
    words = sample_draws(rng, "glass_blur", severity, indices, n, -(-count // 4))
    blur = _linear.gaussian_operator(h, w, sigma)
    x = _filtered(images, blur)
    if n and len(hs) and len(ws):
        # integers in [-delta, delta) from 16 random bits each, four per word: (bits * 2 delta) >> 16 (the
        # probabilities are uniform to within 2**-16 of their own size)
        bits = np.ascontiguousarray(words).view("<u2")[:, :count].astype(np.int64)
        offsets = ((bits * (2 * delta)) >> 16).reshape(n, iterations, len(hs), len(ws), 2) - delta
        for it in range(iterations):
            x = _scramble(x, hs, ws, offsets[:, it, ..., 1], offsets[:, it, ..., 0])
    return _filtered(x, blur)


def motion_blur(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
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
    images, severity, profile, (radius, sigma) = checked(images, severity, profile, "motion_blur")
    angles = draw_uniforms(rng, "motion_blur", severity, indices, len(images), 1)[:, 0] * 90 - 45
    blurred = _filters.motion_blur(to_float(images, np.float32), radius, sigma, angles)  # the taps sum in float32
    return to_uint8(blurred, rounding=profile == "cifar")


def zoom_blur(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Average the image with bilinear zooms of its centre by the profile's factors; deterministic.

    The zoomed image is cropped back at the top left in the imagenet profile (``imagecorruptions``) and at the
    centre in the cifar profile (the CIFAR-10-C generator).

    >>> import numpy as np
    >>> zoom_blur(np.zeros((2, 16, 16, 1), np.uint8), 5).shape
    (2, 16, 16, 1)
    """
    images, _, profile, row = checked(images, severity, profile, "zoom_blur")
    factors = tuple(float(f) for f in zoom_factors(row))
    operator = _linear.zoom_blur_operator(*images.shape[1:3], factors, profile == "cifar")
    return _filtered(images, operator)


def _scramble(x: np.ndarray, hs: np.ndarray, ws: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """One sequential sweep ``for h in hs: for w in ws: x[h, w] = x[h + dy, w + dx]`` for every sample at once.

    ``x: (N, H, W, C)``; ``dy, dx: (N, len(hs), len(ws))``. A pixel reads the *new* value of its source if the
    sweep wrote the source before, else the old one; following these links (pointer jumping, O(log) passes)
    gives every pixel the old pixel it finally copies, so the sweep becomes one gather.
    """
    n, h, w = x.shape[:3]
    grid_h, grid_w = np.meshgrid(hs, ws, indexing="ij")
    target = (grid_h * w + grid_w).ravel()  # flat positions in visiting order
    order = np.full(h * w, -1)
    order[target] = np.arange(target.size)
    source = ((grid_h + dy) * w + (grid_w + dx)).reshape(n, -1)  # (N, P) in visiting order
    src_order = order[source]
    follow = (src_order >= 0) & (src_order < np.arange(target.size))  # source written earlier in the sweep
    # Over the whole batch, flat: terminal[q] is the old pixel (index into the batch's pixels) that visit q reads
    # if its chain stops there; link[q] the earlier visit whose new value it copies, or -1. Jump the links of
    # the visits that still have one, reading each (terminal, link) pair before writing any.
    offsets = np.arange(n)[:, None]
    terminal = (source + offsets * (h * w)).ravel()
    link = np.where(follow, src_order + offsets * target.size, -1).ravel()
    active = np.flatnonzero(link >= 0)
    while active.size:
        hop = link[active]
        terminal[active], link[active] = terminal[hop], link[hop]
        active = active[link[active] >= 0]
    flat = x.reshape(n * h * w, -1)
    out = flat.copy()
    out[(target + offsets * (h * w)).ravel()] = flat[terminal]
    return out.reshape(x.shape)
