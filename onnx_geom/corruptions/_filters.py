"""Batched filters the corruptions share: gaussian blur, disk kernel, motion-blur line kernel, clipped zoom.

All take float batches ``x: (N, H, W, C)`` (or ``(N, H, W)``) and work on the whole batch at once.

>>> import numpy as np
>>> gaussian(np.ones((2, 16, 16, 3)), 1.0).shape
(2, 16, 16, 3)
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def gaussian(x: np.ndarray, sigma: float, *, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """Gaussian blur over the two image axes of ``x: (N, H, W[, C])`` (scikit-image ``filters.gaussian`` defaults)."""
    sigmas = (0.0, sigma, sigma) + (0.0,) * (x.ndim - 3)
    return ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's anti-aliased disk: a normalised disk on a 17x17 grid (or (2r+1)^2 for r > 8), blurred.

    The blur is the reference's 3x3 (5x5 for r > 8) Gaussian with ``sigma = alias_blur``, border reflect-101.

    >>> k = disk_kernel(3, 0.1)
    >>> k.shape, round(float(k.sum()), 6)
    ((17, 17), 1.0)
    """
    half = 8 if radius <= 8 else int(radius)
    ksize = 3 if radius <= 8 else 5
    grid = np.arange(-half, half + 1)
    disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    taps = np.exp(-((np.arange(ksize) - (ksize - 1) / 2) ** 2) / (2 * alias_blur**2))
    taps /= taps.sum()
    out = ndimage.correlate1d(disk, taps, axis=0, mode="mirror")
    return ndimage.correlate1d(out, taps, axis=1, mode="mirror")


def motion_offsets(radius: int, sigma: float, angles: np.ndarray, shape: tuple[int, int]) -> tuple:
    """Taps of the motion-blur line kernel: weights ``(W,)`` and per-sample offsets ``dy, dx: (N, W)``.

    The kernel is ImageMagick's ``-motion-blur``, as ``imagecorruptions`` re-implements it: ``2 radius + 1`` taps
    along a line at ``angle`` degrees, Gaussian weights ``exp(-i^2 / 2 sigma^2)`` normalised to 1, tap ``i`` read
    ``round(i cos a), round(i sin a)`` pixels away (ceil(v - 0.5)). Taps from the first one that leaves the image
    on get weight 0 (the reference stops there), so ``weights: (N, W)``.
    """
    width = 2 * int(radius) + 1
    i = np.arange(width)
    weights = np.exp(-(i**2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
    weights = weights / weights.sum()
    a = np.deg2rad(np.asarray(angles, dtype=np.float64))[:, None]
    # The reference divides by hypot(width sin a, width cos a) = width (up to rounding); keep its arithmetic.
    p0, p1 = width * np.sin(a), width * np.cos(a)
    hyp = np.hypot(p0, p1)
    dy = np.ceil(i * p0 / hyp - 0.5).astype(np.int64)
    dx = np.ceil(i * p1 / hyp - 0.5).astype(np.int64)
    outside = (np.abs(dy) >= shape[0]) | (np.abs(dx) >= shape[1])
    inside = np.cumsum(outside, axis=1) == 0
    return np.where(inside, weights[None, :], 0.0), np.where(inside, dy, 0), np.where(inside, dx, 0)


def motion_blur(x: np.ndarray, radius: int, sigma: float, angles: np.ndarray) -> np.ndarray:
    """Blur every sample of ``x: (N, H, W, C)`` along its own line (``angles: (N,)`` degrees); edges replicate.

    Sums the taps in float32, in the same order for every image (elementwise, so batch-independent).
    """
    n, h, w = x.shape[:3]
    weights, dy, dx = motion_offsets(radius, sigma, angles, (h, w))
    # pad each side only as far as some tap reads (the angle range makes most lines one-sided)
    top, bottom = max(0, -int(dy.min(initial=0))), max(0, int(dy.max(initial=0)))
    left, right = max(0, -int(dx.min(initial=0))), max(0, int(dx.max(initial=0)))
    planar = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
    padded = _edge_pad(planar, top, bottom, left, right)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))  # (N, C, rows, cols, H, W)
    rows = np.arange(n)
    out = np.zeros(planar.shape, dtype=np.float32)
    weights = weights.astype(np.float32)
    for tap in range(weights.shape[1]):
        if not (weights[:, tap] > 0).any():
            break
        # Output pixel (r, c) reads input (r + dy, c + dx): the reference's edge-filling shift by (-dy, -dx).
        taps = windows[rows, :, top + dy[:, tap], left + dx[:, tap]]  # (N, C, H, W)
        taps *= weights[:, tap, None, None, None]  # the gather made a copy: weight it in place
        out += taps
    return out.transpose(0, 2, 3, 1)


def _edge_pad(x: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """``np.pad(x, mode="edge")`` over the last two axes of ``x: (..., H, W)``, by slice copies."""
    h, w = x.shape[-2:]
    out = np.empty((*x.shape[:-2], top + h + bottom, left + w + right), x.dtype)
    out[..., top : top + h, left : left + w] = x
    out[..., :top, left : left + w] = x[..., :1, :]
    out[..., top + h :, left : left + w] = x[..., -1:, :]
    out[..., :, :left] = out[..., :, left : left + 1]
    out[..., :, left + w :] = out[..., :, left + w - 1 : left + w]
    return out


def clipped_zoom(x: np.ndarray, factor: float, *, centre: bool, crop: bool = True) -> np.ndarray:
    """Zoom the centre of every sample of ``x: (N, H, W, C)`` by ``factor`` (bilinear) and crop back to H x W.

    ``centre=False`` keeps the top-left H x W of the zoomed crop (``imagecorruptions``); ``centre=True`` the middle
    (the CIFAR-10-C generator). The zoomed crop is returned uncropped when ``crop=False``.
    """
    h, w = x.shape[1:3]
    ch, cw = int(np.ceil(h / float(factor))), int(np.ceil(w / float(factor)))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop_ = x[:, top : top + ch, left : left + cw]
    # scipy.ndimage.zoom(order=1) of each plane, separably: output o reads input o (n_in - 1) / (n_out - 1),
    # linearly between its two neighbours; elementwise, so every sample gets the same numbers in any batch
    zoomed = _lerp_axis(_lerp_axis(crop_, 1, round(ch * float(factor))), 2, round(cw * float(factor)))
    if not crop:
        return zoomed
    t0 = (zoomed.shape[1] - h) // 2 if centre else 0
    t1 = (zoomed.shape[2] - w) // 2 if centre else 0
    return zoomed[:, t0 : t0 + h, t1 : t1 + w]


def _lerp_axis(x: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Resample ``x`` along ``axis`` to ``n_out`` samples, linearly, end points on end points (grid_mode False)."""
    n_in = x.shape[axis]
    if n_in == 1 or n_out == 1:
        return np.take(x, np.zeros(n_out, np.intp), axis=axis)
    coord = np.arange(n_out) * ((n_in - 1) / (n_out - 1))
    low = np.minimum(np.floor(coord).astype(np.intp), n_in - 2)
    frac = (coord - low).astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - axis - 1))
    a, b = np.take(x, low, axis=axis), np.take(x, low + 1, axis=axis)
    return a + (b - a) * frac


def gaussian_2d(x: np.ndarray, sigma, *, mode: str = "reflect", truncate: float = 3.0) -> np.ndarray:
    """Gaussian blur of ``x: (N, H, W)`` with ``sigma`` a scalar or ``(sigma_y, sigma_x)`` (elastic fields)."""
    sy, sx = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (2,))
    return ndimage.gaussian_filter(x, (0.0, sy, sx), mode=mode, truncate=truncate)
