"""Noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper), speckle.

Each takes a uint8 batch ``images: (N, H, W, C)`` and returns a uint8 batch of the same shape; the random numbers
of sample ``i`` come from its own stream (see :func:`onnx_geom.corruptions.corrupt` for ``rng`` and ``indices``).

>>> import numpy as np
>>> x = np.full((2, 32, 32, 3), 128, np.uint8)
>>> gaussian_noise(x, 3, rng=0).shape
(2, 32, 32, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnx_geom.corruptions._common import check_images, check_severity, resolve_profile, sample_streams, to_float, to_uint8
from onnx_geom.corruptions._params import PARAMS


def _setup(images, severity, profile, rng, indices, name, dtype=np.float64):
    images = check_images(images)
    severity = check_severity(severity)
    c = PARAMS[resolve_profile(profile, images)][name][severity - 1]
    streams = sample_streams(rng, name, severity, indices, len(images))
    return to_float(images, dtype), c, streams


def gaussian_noise(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: Sequence[int] | None = None
) -> np.ndarray:
    """Add N(0, c^2) noise to every value of ``images: (N, H, W, C)`` in [0, 1] units.

    >>> import numpy as np
    >>> bool(gaussian_noise(np.zeros((1, 16, 16, 1), np.uint8), 5, rng=1).max() > 0)
    True
    """
    x, c, streams = _setup(images, severity, profile, rng, indices, "gaussian_noise", np.float32)
    noise = np.stack([g.standard_normal(x.shape[1:], dtype=np.float32) for g in streams]) if len(x) else 0.0
    return to_uint8(x + np.float32(c) * noise)


def shot_noise(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: Sequence[int] | None = None
) -> np.ndarray:
    """Poisson noise: each value becomes ``Poisson(x * c) / c`` (fewer photons ``c`` = more noise).

    >>> import numpy as np
    >>> bool(shot_noise(np.full((1, 16, 16, 3), 200, np.uint8), 5, rng=1).std() > 0)
    True
    """
    x, c, streams = _setup(images, severity, profile, rng, indices, "shot_noise")
    if not len(x):
        return to_uint8(x)
    counts = np.stack([g.poisson(xi * c) for g, xi in zip(streams, x)])
    return to_uint8(counts / float(c))


def impulse_noise(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: Sequence[int] | None = None
) -> np.ndarray:
    """Salt and pepper: a fraction ``c`` of the values is replaced, half by 0 and half by 1 (each value on its own).

    Statistically the same as scikit-image's ``random_noise(mode="s&p", amount=c)`` that the reference calls.

    >>> import numpy as np
    >>> y = impulse_noise(np.full((1, 64, 64, 3), 128, np.uint8), 5, profile="imagenet", rng=0)
    >>> bool(((y == 0) | (y == 255)).mean() > 0.2)
    True
    """
    x, c, streams = _setup(images, severity, profile, rng, indices, "impulse_noise")
    if not len(x):
        return to_uint8(x)
    u = np.stack([g.random(size=x.shape[1:]) for g in streams])
    x = np.where(u < c / 2, 0.0, x)
    x = np.where((u >= c / 2) & (u < c), 1.0, x)
    return to_uint8(x)


def speckle_noise(
    images: np.ndarray, severity: int, *, profile: str | None = None, rng=None, indices: Sequence[int] | None = None
) -> np.ndarray:
    """Multiplicative noise: ``x + x * N(0, c^2)``.

    >>> import numpy as np
    >>> int(speckle_noise(np.zeros((1, 16, 16, 3), np.uint8), 5, rng=0).max())   # black stays black
    0
    """
    x, c, streams = _setup(images, severity, profile, rng, indices, "speckle_noise", np.float32)
    noise = np.stack([g.standard_normal(x.shape[1:], dtype=np.float32) for g in streams]) if len(x) else 0.0
    return to_uint8(x + x * (np.float32(c) * noise))
