"""Shared plumbing of the corruptions: input checks, the profile, per-sample random streams, uint8 output.

Per-sample reproducibility: with an integer seed, sample ``i`` of a batch takes its random words from a
counter-based stream: numpy's ``Philox`` keyed by ``SeedSequence(seed, spawn_key=(k, severity))`` (``k`` the
position of the corruption in :data:`CORRUPTIONS`), at the counter offset ``index * B`` where ``index`` is
``indices[i]`` (default: ``i``) and ``B`` the fixed number of counter blocks one sample uses. Each corruption
turns a FIXED number of words per sample into its random numbers (uniforms, Box-Muller normals, inverse-CDF
Poisson counts), so a sample's result depends only on (seed, corruption, severity, its global index, its
pixels), never on the batch; and a run of consecutive indices is drawn in one vectorised call.

>>> words = sample_draws(0, "fog", 3, None, 2, 5)
>>> words.shape, bool((words[1] == sample_draws(0, "fog", 3, [1], 1, 5)[0]).all())
((2, 5), True)
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import ArrayLike

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
# The random-stream scheme (see the module docstring); recorded with the sets we write, so that a folder begun
# under another scheme (the per-sample SeedSequence generators before) is not resumed with different bytes.
STREAMS = "philox-counter-1"


def check_images(images: np.ndarray) -> np.ndarray:
    """Return ``images`` if it is a uint8 ``(N, H, W, C)`` batch with C in (1, 3) and H, W >= 16, else DataError."""
    if not isinstance(images, np.ndarray):
        raise DataError(f"images must be a numpy array, not {type(images).__name__}; pass np.asarray(images).")
    if images.dtype != np.uint8:
        raise DataError(
            f"images must be uint8 (0..255), not {images.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8)."
        )
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        raise DataError(
            f"images must have shape (N, H, W, C) with C = 1 or 3, not {images.shape}; add a batch axis with images[None]."
        )
    if min(images.shape[1:3]) < MIN_SIZE:
        raise DataError(
            f"images must be at least {MIN_SIZE}x{MIN_SIZE} pixels, not {images.shape[1]}x{images.shape[2]}."
        )
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


def sample_draws(
    rng: int | np.random.Generator | None, name: str, severity: int, indices: ArrayLike | None, n: int, count: int
) -> np.ndarray:
    """``count`` random 64-bit words per sample, ``(n, count)`` uint64, keyed as in the module docstring.

    Sample ``index`` reads the Philox counter blocks ``index * B + 1 .. index * B + B`` (``B = ceil(count / 4)``,
    four words a block) under the key of (seed, corruption, severity); a run of consecutive indices is one
    ``random_raw`` call. ``rng`` None draws fresh entropy; an int is a seed (per-sample reproducible with
    ``indices``); a Generator supplies the key (reproducible for the same sequence of batches, not per sample).
    """
    if isinstance(rng, np.random.Generator):
        if indices is not None:
            raise DataError(
                "indices needs an integer seed as rng (a Generator cannot be keyed per sample); pass rng=<int>."
            )
        key = int.from_bytes(rng.bytes(16), "little")
    elif rng is not None and (isinstance(rng, bool) or not isinstance(rng, (int, np.integer)) or rng < 0):
        raise DataError(f"rng must be None, a non-negative integer seed or a numpy Generator, not {rng!r}.")
    else:
        entropy = np.random.SeedSequence().entropy if rng is None else int(rng)
        words = np.random.SeedSequence(entropy, spawn_key=(CORRUPTIONS.index(name), severity)).generate_state(
            2, np.uint64
        )
        key = int(words[0]) | int(words[1]) << 64
    idx = np.arange(n) if indices is None else np.asarray(indices)
    if idx.shape != (n,) or (n and (idx.dtype.kind not in "iu" or idx.min() < 0)):
        raise DataError(
            f"indices must be {n} non-negative integers (one global index per image), not shape {idx.shape}."
        )
    blocks = -(-count // 4)
    starts = [0, *(np.flatnonzero(np.diff(idx) != 1) + 1).tolist()] if n else []
    runs = [
        np.random.Philox(counter=int(idx[a]) * blocks, key=key)
        .random_raw((b - a) * 4 * blocks)
        .reshape(b - a, 4 * blocks)
        for a, b in itertools.pairwise([*starts, n])
    ]
    out = runs[0] if len(runs) == 1 else np.concatenate(runs) if runs else np.empty((0, 4 * blocks), np.uint64)
    return out[:, :count]


def uniforms(words: np.ndarray) -> np.ndarray:
    """uint64 words -> float64 uniforms in [0, 1) (the top 53 bits, as numpy's ``random()``), same shape."""
    return (words >> np.uint64(11)) * 2.0**-53


def normals(words: np.ndarray, size: int, dtype: type = np.float64) -> np.ndarray:
    """Standard normals ``(N, size)`` from ``words: (N, ceil(size / 2))``, two per word (Box-Muller).

    The high 32 bits give the radius ``sqrt(-2 ln u)``, ``u`` in (0, 1] (so ``|z| <= 6.66``), the low 32 bits
    the angle; the cosine branch fills the first half of each row, the sine branch the second.
    """
    half = words.shape[1]
    pairs = np.ascontiguousarray(words).view(np.uint32).reshape(len(words), half, 2)  # (low, high) little-endian
    radius: np.ndarray = np.ascontiguousarray(pairs[..., 1]).astype(dtype)
    radius += 1
    radius *= dtype(2.0**-32)  # (high + 1) / 2**32 in (0, 1], rounded to dtype
    np.log(radius, out=radius)
    radius *= -2
    np.sqrt(radius, out=radius)
    angle: np.ndarray = np.ascontiguousarray(pairs[..., 0]).astype(dtype)
    angle *= dtype(2 * np.pi * 2.0**-32)
    out = np.empty((len(words), 2 * half), dtype)
    np.multiply(radius, np.cos(angle), out=out[:, :half])
    np.sin(angle, out=angle)
    np.multiply(radius, angle, out=out[:, half:])
    return out[:, :size]


def draw_uniforms(rng, name: str, severity: int, indices, n: int, count: int) -> np.ndarray:
    """Shortcut: ``uniforms(sample_draws(...))``, float64 ``(n, count)`` in [0, 1)."""
    return uniforms(sample_draws(rng, name, severity, indices, n, count))


def to_float(images: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """uint8 ``(N, H, W, C)`` -> floats in [0, 1] (``x / 255``, as the reference does)."""
    return np.divide(images, dtype(255), dtype=dtype)  # the same numbers as images.astype(dtype) / 255, one pass


def to_uint8(x: np.ndarray, *, rounding: bool = False) -> np.ndarray:
    """Floats in [0, 1] -> uint8 by clipping, scaling by 255 and truncating (the reference's ``np.uint8``).

    ``rounding=True`` rounds to nearest instead (where the reference went through an 8-bit file format).
    """
    y = np.clip(x, 0, 1)  # a new array: scale and round it in place
    y *= 255
    if rounding:
        np.rint(y, out=y)
    return y.astype(np.uint8, order="C")
