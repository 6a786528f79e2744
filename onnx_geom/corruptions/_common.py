"""Shared plumbing of the corruptions: input checks, the profile, per-sample random streams, uint8 output.

Per-sample reproducibility: with an integer seed, sample ``i`` of a batch draws its randomness from
``np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(k, severity, index)))`` where ``k`` is the
position of the corruption in :data:`CORRUPTIONS` and ``index`` is ``indices[i]`` (default: ``i``). So a sample's
result depends only on (seed, corruption, severity, its global index, its pixels), never on the batch.

>>> streams = sample_streams(0, "fog", 3, None, 2)
>>> len(streams), float(streams[0].random()) == float(sample_streams(0, "fog", 3, [0], 1)[0].random())
(2, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnx_geom.errors import DataError

CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)  # fmt: skip
BENCHMARK_CORRUPTIONS: tuple[str, ...] = CORRUPTIONS[:15]
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
PROFILES: tuple[str, ...] = ("cifar", "imagenet")
MIN_SIZE = 16
CIFAR_MAX_SIZE = 64



def check_images(images: np.ndarray) -> np.ndarray:
    """Return ``images`` if it is a uint8 ``(N, H, W, C)`` batch with C in (1, 3) and H, W >= 16, else DataError."""
    if not isinstance(images, np.ndarray):
        raise DataError(f"images must be a numpy array, not {type(images).__name__}; pass np.asarray(images).")
    if images.dtype != np.uint8:
        raise DataError(f"images must be uint8 (0..255), not {images.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8).")
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        raise DataError(
            f"images must have shape (N, H, W, C) with C = 1 or 3, not {images.shape}; add a batch axis with images[None]."
        )
    if min(images.shape[1:3]) < MIN_SIZE:
        raise DataError(f"images must be at least {MIN_SIZE}x{MIN_SIZE} pixels, not {images.shape[1]}x{images.shape[2]}.")
    return images


def check_severity(severity: int) -> int:
    """Return ``severity`` as an int if it is one of 1..5, else DataError."""
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or int(severity) not in SEVERITIES:
        raise DataError(f"severity must be an integer from 1 to 5, not {severity!r}.")
    return int(severity)


def resolve_profile(profile: str | None, images: np.ndarray) -> str:
    """``None`` -> ``cifar`` for images up to 64 px on their longer side, else ``imagenet``."""
    if profile is None:
        return "cifar" if max(images.shape[1:3]) <= CIFAR_MAX_SIZE else "imagenet"
    if profile not in PROFILES:
        raise DataError(f"profile must be one of {', '.join(PROFILES)} (or None for automatic), not {profile!r}.")
    return profile


def sample_streams(
    rng: None | int | np.random.Generator, name: str, severity: int, indices: Sequence[int] | None, n: int
) -> list[np.random.Generator]:
    """One independent random stream per sample of a batch of ``n`` (see the module docstring).

    ``rng`` None draws fresh entropy; an int is a seed (per-sample reproducible with ``indices``); a Generator
    spawns ``n`` children (reproducible for the same sequence of batches, but not per sample).
    """
    if isinstance(rng, np.random.Generator):
        if indices is not None:
            raise DataError("indices needs an integer seed as rng (a Generator cannot be keyed per sample); pass rng=<int>.")
        return rng.spawn(n)
    if rng is not None and (isinstance(rng, bool) or not isinstance(rng, (int, np.integer)) or rng < 0):
        raise DataError(f"rng must be None, a non-negative integer seed or a numpy Generator, not {rng!r}.")
    if indices is None:
        indices = range(n)
    idx = np.asarray(indices)
    if idx.shape != (n,) or (n and (idx.dtype.kind not in "iu" or idx.min() < 0)):
        raise DataError(f"indices must be {n} non-negative integers (one global index per image), not shape {idx.shape}.")
    entropy = np.random.SeedSequence().entropy if rng is None else int(rng)
    key = CORRUPTIONS.index(name)
    return [np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(key, severity, int(i)))) for i in idx]


def to_float(images: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """uint8 ``(N, H, W, C)`` -> floats in [0, 1] (``x / 255``, as the reference does)."""
    return images.astype(dtype) / dtype(255)


def to_uint8(x: np.ndarray, *, rounding: bool = False) -> np.ndarray:
    """Floats in [0, 1] -> uint8 by clipping, scaling by 255 and truncating (the reference's ``np.uint8``).

    ``rounding=True`` rounds to nearest instead (where the reference went through an 8-bit file format).
    """
    y = np.clip(x, 0, 1) * 255
    if rounding:
        y = np.rint(y)
    return y.astype(np.uint8, order="C")
