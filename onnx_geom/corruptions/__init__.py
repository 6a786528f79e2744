"""The 19 common corruptions of Hendrycks & Dietterich, batched and seeded, in two parameter profiles.

>>> import numpy as np
>>> from onnx_geom.corruptions import corrupt, CORRUPTIONS
>>> x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
>>> corrupt(x, "fog", 3, rng=0).shape
(8, 32, 32, 3)
>>> a = corrupt(x, "shot_noise", 5, rng=7)
>>> b = corrupt(x[5:], "shot_noise", 5, rng=7, indices=range(5, 8))   # same samples, another batch
>>> bool((a[5:] == b).all())
True

Reproducibility: ``rng`` an int seeds one stream per sample, keyed by (seed, corruption, severity, index) where
``index`` is the sample's global index from ``indices`` (default: its position in the batch): see
:func:`onnx_geom.corruptions._common.sample_draws`. So a runner that corrupts consecutive batches passes
``indices=range(start, start + len(batch))`` and gets the same bytes whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from onnx_geom.corruptions._common import BENCHMARK_CORRUPTIONS, CORRUPTIONS, PROFILES, SEVERITIES
from onnx_geom.corruptions.blur import defocus_blur, gaussian_blur, glass_blur, motion_blur, zoom_blur
from onnx_geom.corruptions.digital import brightness, contrast, elastic_transform, jpeg_compression, pixelate, saturate
from onnx_geom.corruptions.noise import gaussian_noise, impulse_noise, shot_noise, speckle_noise
from onnx_geom.corruptions.weather import fog, frost, snow, spatter
from onnx_geom.errors import DataError

__all__ = [
    "BENCHMARK_CORRUPTIONS",
    "CORRUPTIONS",
    "FUNCTIONS",
    "PROFILES",
    "SEVERITIES",
    "brightness",
    "contrast",
    "corrupt",
    "defocus_blur",
    "elastic_transform",
    "fog",
    "frost",
    "gaussian_blur",
    "gaussian_noise",
    "glass_blur",
    "impulse_noise",
    "jpeg_compression",
    "motion_blur",
    "pixelate",
    "saturate",
    "shot_noise",
    "snow",
    "spatter",
    "speckle_noise",
    "zoom_blur",
]  # fmt: skip

FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur, "glass_blur": glass_blur, "motion_blur": motion_blur, "zoom_blur": zoom_blur,
    "snow": snow, "frost": frost, "fog": fog, "brightness": brightness, "contrast": contrast,
    "elastic_transform": elastic_transform, "pixelate": pixelate, "jpeg_compression": jpeg_compression,
    "speckle_noise": speckle_noise, "gaussian_blur": gaussian_blur, "spatter": spatter, "saturate": saturate,
}  # fmt: skip


#: pixels per pass (64 images of 32x32): keeps each corruption's float working set in the CPU caches; a batch of
#: 256 CIFAR images runs 1.7x faster in chunks of 64 than in one pass (2-core x86_64, 2026-11-21)
CHUNK_PIXELS = 64 * 32 * 32


def corrupt(
    images: np.ndarray,
    name: str,
    severity: int,
    *,
    profile: str | None = None,
    rng: int | np.random.Generator | None = None,
    indices: ArrayLike | None = None,
) -> np.ndarray:
    """Corrupt a batch: uint8 ``images: (N, H, W, C)`` (C = 1 or 3, H and W >= 16) -> uint8, same shape.

    Parameters
    ----------
    name : one of :data:`CORRUPTIONS`.
    severity : 1..5.
    profile : ``"cifar"`` (CIFAR-10-C constants), ``"imagenet"`` (ImageNet-C constants, as ``imagecorruptions``),
        or None: cifar for images up to 64 px on their longer side, else imagenet.
    rng : None (fresh entropy), an int seed (reproducible per sample, see the module docstring) or a numpy
        Generator (reproducible for the same sequence of batches; ``indices`` not allowed).
    indices : the global index of each image, ``(N,)``; default ``range(N)``.
    """
    try:
        function = FUNCTIONS[name]
    except (KeyError, TypeError):
        raise DataError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}.") from None
    n = len(images) if isinstance(images, np.ndarray) and images.ndim == 4 else 0
    step = max(1, CHUNK_PIXELS // max(1, images.shape[1] * images.shape[2])) if n else 0
    idx = np.arange(n) if indices is None else np.asarray(indices)
    if n <= step or isinstance(rng, np.random.Generator) or idx.shape != (n,):
        return function(images, severity, profile=profile, rng=rng, indices=indices)
    # per-sample streams make the split invisible in the bytes: the same seed for every chunk
    seed = np.random.SeedSequence().entropy if rng is None else rng
    return np.concatenate([function(images[a : a + step], severity, profile=profile, rng=seed, indices=idx[a : a + step])
                           for a in range(0, n, step)])  # fmt: skip
