"""The layers of ``spatter``: water drops (Canny edges -> distance -> equalise -> emboss) and mud, batched.

Written with numpy/scipy after the reference's OpenCV pipeline: Canny with a 3x3 Sobel, L1 magnitude, OpenCV's
non-maximum suppression and hysteresis (8-connected); an exact Euclidean distance (OpenCV used a 5x5 chamfer
approximation); OpenCV's histogram equalisation; the emboss kernel with reflect-101 borders.

>>> import numpy as np
>>> img = np.zeros((1, 16, 16), np.uint8); img[0, 4:12, 4:12] = 200
>>> int(canny(img, 50, 150)[0].sum())   # the square's outline
28
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from onnx_geom.corruptions import _filters

_TG22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)
_EMBOSS = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
_PER_IMAGE = np.zeros((3, 3, 3), bool)
_PER_IMAGE[1] = True  # 8-connected inside an image, never across the batch axis
CAP = 20  # the reference clips the distance to the edges at 20


def canny(images: np.ndarray, low: float, high: float) -> np.ndarray:
    """Edges (bool) of uint8 ``images: (N, H, W)``, OpenCV-style (Sobel 3x3, L1 gradient, replicate border)."""
    # |gradient| <= 1020: every product and shift below stays under 2**31. Sobel by slices of the edge-padded
    # images (integers: the same numbers as a correlation with the two kernels, border replicated)
    p = np.pad(images.astype(np.int32), ((0, 0), (1, 1), (1, 1)), mode="edge")
    dx = p[:, :, 2:] - p[:, :, :-2]  # (N, H + 2, W): right minus left
    gx = dx[:, :-2] + 2 * dx[:, 1:-1] + dx[:, 2:]
    dy = p[:, 2:] - p[:, :-2]  # (N, H, W + 2): below minus above
    gy = dy[:, :, :-2] + 2 * dy[:, :, 1:-1] + dy[:, :, 2:]
    mag = np.abs(gx) + np.abs(gy)
    m = np.pad(mag, ((0, 0), (1, 1), (1, 1)))  # zero magnitude outside, as OpenCV's buffer

    def at(dy: int, dx: int) -> np.ndarray:
        return m[:, 1 + dy : m.shape[1] - 1 + dy, 1 + dx : m.shape[2] - 1 + dx]

    ax, ay = np.abs(gx), np.abs(gy) << 15
    tg22 = ax * _TG22
    tg67 = tg22 + (ax << 16)
    horizontal = ay < tg22
    vertical = ~horizontal & (ay > tg67)
    same_sign = (gx ^ gy) >= 0
    keep = np.where(horizontal, (mag > at(0, -1)) & (mag >= at(0, 1)), False)
    keep |= vertical & (mag > at(-1, 0)) & (mag >= at(1, 0))
    diagonal = ~horizontal & ~vertical
    keep |= diagonal & same_sign & (mag > at(-1, -1)) & (mag > at(1, 1))
    keep |= diagonal & ~same_sign & (mag > at(-1, 1)) & (mag > at(1, -1))
    candidates = keep & (mag > low)
    labels, count = ndimage.label(candidates, structure=_PER_IMAGE)
    strong = np.zeros(count + 1, bool)
    strong[labels[candidates & (mag > high)]] = True
    strong[0] = False
    return strong[labels]


def equalize_hist(images: np.ndarray) -> np.ndarray:
    """OpenCV ``equalizeHist`` of every uint8 image in ``images: (N, H, W)``."""
    n = len(images)
    flat = images.reshape(n, -1).astype(np.int64)
    hist = np.bincount((flat + 256 * np.arange(n)[:, None]).ravel(), minlength=256 * n).reshape(n, 256)
    first = np.argmax(hist > 0, axis=1)
    lowest = hist[np.arange(n), first][:, None]
    total = flat.shape[1]
    cdf = np.cumsum(hist, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lut = np.clip(np.rint((cdf - lowest) * (255.0 / (total - lowest))), 0, 255)
    lut = np.where(lowest == total, first[:, None], lut).astype(np.uint8)
    return np.take_along_axis(lut, flat, axis=1).reshape(images.shape)


def water(liquid: np.ndarray) -> np.ndarray:
    """Water-drop intensity ``(N, H, W)`` in [0, 1] from the thresholded liquid layer ``(N, H, W)``."""
    layer = (np.clip(liquid, 0, 1) * 255).astype(np.uint8)
    edges = canny(layer, 50, 150)
    dist = capped_distance(edges, CAP)
    dist = ndimage.uniform_filter(dist, size=(1, 3, 3), mode="mirror").astype(np.uint8)
    dist = equalize_hist(dist)
    dist = np.clip(np.rint(ndimage.correlate(dist.astype(np.float64), _EMBOSS[None], mode="mirror")), 0, 255)
    dist = np.rint(ndimage.uniform_filter(dist, size=(1, 3, 3), mode="mirror"))
    m = layer * dist
    peak = m.max(axis=(1, 2), keepdims=True)
    return np.divide(m, peak, out=np.zeros_like(m), where=peak > 0)


def capped_distance(edges: np.ndarray, cap: int) -> np.ndarray:
    """``min(distance to the nearest edge pixel, cap)`` per image of ``edges: (N, H, W)`` bool (no edge -> cap).

    Exact and separable, over the whole batch: the vertical distance to the nearest edge in each column (two
    sweeps over the rows, counted up to ``cap + 1``: anything farther cannot matter), then for every pixel the
    least ``k**2 + g**2`` over the columns ``k <= cap`` away. The square root of an exact integer, as scipy's.
    """
    n, h, w = edges.shape
    far = cap + 1
    g = np.empty((n, h, w), np.int32)
    run = np.full((n, w), far, np.int32)
    for r in range(h):
        run = np.where(edges[:, r], 0, np.minimum(run + 1, far))
        g[:, r] = run
    run = np.full((n, w), far, np.int32)
    for r in range(h - 1, -1, -1):
        run = np.where(edges[:, r], 0, np.minimum(run + 1, far))
        np.minimum(g[:, r], run, out=g[:, r])
    g2 = g * g
    best = g2.copy()
    for k in range(1, min(cap, w - 1) + 1):
        np.minimum(best[..., k:], g2[..., :-k] + k * k, out=best[..., k:])
        np.minimum(best[..., :-k], g2[..., k:] + k * k, out=best[..., :-k])
    return np.minimum(np.sqrt(best), float(cap))


def mud(liquid: np.ndarray, threshold: float, sigma: float) -> np.ndarray:
    """Mud opacity ``(N, H, W)`` in [0, 1]: blurred mask of the liquid above ``threshold``, kept where >= 0.8."""
    mask = (liquid > threshold).astype(np.float32)
    m = _filters.gaussian(mask, sigma)
    return np.where(m < 0.8, 0.0, m)
