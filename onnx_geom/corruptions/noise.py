"""Noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper), speckle.

Each takes a uint8 batch ``images: (N, H, W, C)`` and returns a uint8 batch of the same shape; the random numbers
of sample ``i`` come from its own stream (see :func:`onnx_geom.corruptions.corrupt` for ``rng`` and ``indices``),
a fixed number of 64-bit words per sample: one per value (uniforms, Poisson by inverse CDF) or one per two values
(Box-Muller normals), so a whole batch is drawn and transformed in a few vectorised calls.

>>> import numpy as np
>>> x = np.full((2, 32, 32, 3), 128, np.uint8)
>>> gaussian_noise(x, 3, rng=0).shape
(2, 32, 32, 3)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from onnx_geom.corruptions._common import (
    normals,
    sample_draws,
    to_float,
    to_uint8,
    uniforms,
)  # fmt: skip
from onnx_geom.corruptions._params import checked

GUIDE_BINS = 4096  # guide-table resolution of the Poisson inverse CDF


def _setup(images, severity, profile, rng, indices, name, words_per_value=1.0):
    """Checked images, the constant, and ``(N, ceil(words_per_value * H W C))`` random words."""
    images, severity, _, c = checked(images, severity, profile, name)
    size = int(np.prod(images.shape[1:]))
    words = sample_draws(rng, name, severity, indices, len(images), int(np.ceil(size * words_per_value)))
    return images, c, words, size


def _normal_noise(images, words, size) -> np.ndarray:
    """float32 standard normals shaped like ``images``, two per word."""
    return normals(words, size, np.float32).reshape(images.shape)


@lru_cache(maxsize=16)
def poisson_table(c: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-CDF tables of ``Poisson(level / 255 * c)`` for the 256 grey levels.

    ``cdf: (256, K)`` float64 (the last column set to 1: the tail beyond ``K - 1``, under 1e-20, is folded into
    it) and ``guide: (256, GUIDE_BINS)``: ``guide[l, j]`` is the count drawn for ``u = j / GUIDE_BINS``.
    """
    lam = (np.arange(256) / 255.0) * c
    top = int(np.ceil(lam.max() + 12 * np.sqrt(lam.max()) + 20))
    cdf = stats.poisson.cdf(np.arange(top + 1)[None, :], lam[:, None])
    cdf[:, -1] = 1.0
    grid = np.arange(GUIDE_BINS) / GUIDE_BINS
    guide = np.stack([np.searchsorted(row, grid, side="right") for row in cdf]).astype(np.intp)
    return cdf, guide


def poisson_counts(levels: np.ndarray, c: float, u: np.ndarray) -> np.ndarray:
    """``Poisson(levels / 255 * c)`` by inversion: the least k with ``u < CDF(k)``; uint8 ``levels``, ``u`` in [0, 1).

    Exact inversion (up to float64 CDF rounding), one uniform per value; the guide table starts the search
    at most a step or two below the answer.
    """
    cdf, guide = poisson_table(float(c))
    width = cdf.shape[1]
    level = levels.ravel().astype(np.intp)
    uu = u.ravel()
    k = guide.ravel()[level * GUIDE_BINS + (uu * GUIDE_BINS).astype(np.intp)]
    base = level * width
    flat = cdf.ravel()
    todo = np.flatnonzero(flat[base + k] <= uu)
    for _ in range(2):  # a step or two up covers all but the far tail, where a guide bin spans many counts
        k[todo] += 1
        todo = todo[flat[base[todo] + k[todo]] <= uu[todo]]
    if todo.size:  # bisect: CDF(low) <= u < CDF(high), the last column being 1
        low, high, b, v = k[todo], np.full(todo.size, width - 1), base[todo], uu[todo]
        while (high - low > 1).any():
            mid = (low + high) // 2
            below = flat[b + mid] <= v
            low, high = np.where(below, mid, low), np.where(below, high, mid)
        k[todo] = high
    return k.reshape(levels.shape)


def gaussian_noise(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Add N(0, c^2) noise to every value of ``images: (N, H, W, C)`` in [0, 1] units.

    >>> import numpy as np
    >>> bool(gaussian_noise(np.zeros((1, 16, 16, 1), np.uint8), 5, rng=1).max() > 0)
    True
    """
    images, c, words, size = _setup(images, severity, profile, rng, indices, "gaussian_noise", 0.5)
    return to_uint8(to_float(images, np.float32) + np.float32(c) * _normal_noise(images, words, size))


def shot_noise(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Poisson noise: each value becomes ``Poisson(x * c) / c`` (fewer photons ``c`` = more noise).

    >>> import numpy as np
    >>> bool(shot_noise(np.full((1, 16, 16, 3), 200, np.uint8), 5, rng=1).std() > 0)
    True
    """
    images, c, words, _ = _setup(images, severity, profile, rng, indices, "shot_noise")
    counts = poisson_counts(images, c, uniforms(words).reshape(images.shape))
    return to_uint8(counts / float(c))


def impulse_noise(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Salt and pepper: a fraction ``c`` of the values is replaced, half by 0 and half by 1 (each value on its own).

    Statistically the same as scikit-image's ``random_noise(mode="s&p", amount=c)`` that the reference calls.

    >>> import numpy as np
    >>> y = impulse_noise(np.full((1, 64, 64, 3), 128, np.uint8), 5, profile="imagenet", rng=0)
    >>> bool(((y == 0) | (y == 255)).mean() > 0.2)
    True
    """
    images, c, words, _ = _setup(images, severity, profile, rng, indices, "impulse_noise")
    x = to_float(images)
    u = uniforms(words).reshape(x.shape)
    x = np.where(u < c / 2, 0.0, x)
    x = np.where((u >= c / 2) & (u < c), 1.0, x)
    return to_uint8(x)


def speckle_noise(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: ArrayLike | None = None
) -> np.ndarray:
    """Multiplicative noise: ``x + x * N(0, c^2)``.

    >>> import numpy as np
    >>> int(speckle_noise(np.zeros((1, 16, 16, 3), np.uint8), 5, rng=0).max())   # black stays black
    0
    """
    images, c, words, size = _setup(images, severity, profile, rng, indices, "speckle_noise", 0.5)
    x = to_float(images, np.float32)
    return to_uint8(x + x * (np.float32(c) * _normal_noise(images, words, size)))
