"""Procedural frost textures: generated from fixed seeds, so no image files are read (the reference ships six).

Each of the six textures mixes a multi-scale haze with thin branching ice needles and is then given, channel by
channel, the mean and standard deviation of the matching reference photograph (measured once from
``imagecorruptions/frost/frost{1..6}``; the numbers are below). The pattern itself differs by design.

>>> t = textures("cifar", 32, 32)
>>> len(t), t[0].dtype, t[0].shape[2]
(6, dtype('uint8'), 3)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage

NATIVE_SHAPE = (400, 600)
_SEED = 20190328  # fixed: the textures are constants of the package, like the reference's files
# Per reference photograph: (mean R, G, B), (std R, G, B) at its native size.
REFERENCE_STATS = (
    ((77.7, 149.1, 165.7), (26.9, 16.5, 15.3)),
    ((200.8, 205.4, 214.5), (21.4, 22.1, 22.6)),
    ((200.8, 205.4, 214.5), (21.4, 22.1, 22.6)),
    ((137.6, 152.8, 165.2), (28.5, 28.5, 29.9)),
    ((112.4, 123.4, 134.8), (44.4, 43.3, 41.7)),
    ((71.4, 95.4, 104.5), (35.2, 42.7, 47.4)),
)
CIFAR_SCALE = 0.2  # the CIFAR-10-C generator shrinks the photographs to a fifth before cropping


def _standard(a: np.ndarray) -> np.ndarray:
    return (a - a.mean()) / a.std()


def _needles(rng: np.random.Generator, shape: tuple[int, int], density: np.ndarray) -> np.ndarray:
    """Thin bright branching segments, more of them where ``density`` is high."""
    h, w = shape
    count = 900
    p = density.ravel() / density.sum()
    starts = rng.choice(h * w, size=count, p=p)
    y0, x0 = (starts // w).astype(np.float64), (starts % w).astype(np.float64)
    angle = rng.uniform(0, np.pi, count)
    length = rng.exponential(18.0, count) + 3
    # every needle grows two side branches at +-60 degrees from a random point along it
    at = rng.uniform(0.2, 0.8, count)
    by, bx = y0 + at * length * np.sin(angle), x0 + at * length * np.cos(angle)
    side = np.concatenate([angle + np.pi / 3, angle - np.pi / 3])
    ys = np.concatenate([y0, by, by])
    xs = np.concatenate([x0, bx, bx])
    angles = np.concatenate([angle, side])
    lengths = np.concatenate([length, 0.4 * length, 0.4 * length])
    t = np.linspace(0, 1, 64)[None, :]
    py = (ys[:, None] + t * lengths[:, None] * np.sin(angles)[:, None]).ravel()
    px = (xs[:, None] + t * lengths[:, None] * np.cos(angles)[:, None]).ravel()
    keep = (py >= 0) & (py < h) & (px >= 0) & (px < w)
    canvas = np.zeros(shape)
    np.add.at(canvas, (py[keep].astype(np.int64), px[keep].astype(np.int64)), 1.0)
    return np.sqrt(ndimage.gaussian_filter(canvas, 0.8))


def _smooth_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Standardised Gaussian-smoothed white noise at native size (smoothed coarsely, then enlarged, for speed)."""
    f = max(1, int(sigma // 3))
    small = rng.standard_normal((-(-NATIVE_SHAPE[0] // f), -(-NATIVE_SHAPE[1] // f)))
    big = ndimage.zoom(ndimage.gaussian_filter(small, sigma / f, mode="wrap"), f, order=1)
    return _standard(big[: NATIVE_SHAPE[0], : NATIVE_SHAPE[1]])


def _pattern(k: int) -> np.ndarray:
    """Standardised frost pattern ``(H, W)`` number ``k`` (0..5) at native size."""
    rng = np.random.default_rng(np.random.SeedSequence(_SEED, spawn_key=(k,)))
    haze = _standard(np.sum([s**0.6 * _smooth_noise(rng, s) for s in (48, 24, 12, 6, 3, 1.5)], axis=0))
    needles = _standard(_needles(rng, NATIVE_SHAPE, np.exp(haze)))
    return _standard(0.7 * haze + needles)


@lru_cache(maxsize=1)
def native_textures() -> tuple[np.ndarray, ...]:
    """The six uint8 RGB textures ``(400, 600, 3)`` at native size (built once per process, ~0.2 s)."""
    out = []
    for k, (mean, std) in enumerate(REFERENCE_STATS):
        z = _pattern(k)[..., None]
        out.append(np.clip(np.asarray(mean) + np.asarray(std) * z, 0, 255).astype(np.uint8))
    return tuple(out)


@lru_cache(maxsize=8)
def textures(profile: str, h: int, w: int) -> tuple[np.ndarray, ...]:
    """The textures ready to crop ``h x w`` patches from, scaled as the profile's reference scales its photographs.

    cifar: a fifth of native size (enlarged if still smaller than the image). imagenet: enlarged so that both
    sides cover the image, then by another 10 % (``imagecorruptions``).
    """
    out = []
    for tex in native_textures():
        th, tw = tex.shape[:2]
        scale = max(CIFAR_SCALE, (h + 1) / th, (w + 1) / tw) if profile == "cifar" else max(1.0, h / th, w / tw) * 1.1
        size = (int(np.ceil(tw * scale)), int(np.ceil(th * scale)))
        method = Image.Resampling.BILINEAR if scale < 1 else Image.Resampling.BICUBIC
        out.append(np.asarray(Image.fromarray(tex).resize(size, method)))
    return tuple(out)
