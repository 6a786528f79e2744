"""Bilinear resampling of a batch at per-sample coordinates, and the random affine of CIFAR-10-C's elastic.

>>> import numpy as np
>>> x = np.arange(2 * 16 * 16, dtype=np.float32).reshape(2, 16, 16, 1)
>>> ys, xs = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
>>> bool((sample(x, np.broadcast_to(ys, (2, 16, 16)), np.broadcast_to(xs, (2, 16, 16)), mode="reflect") == x).all())
True
"""

from __future__ import annotations

import numpy as np

from onnx_geom.corruptions._linear import border_index


def sample(x: np.ndarray, ys: np.ndarray, xs: np.ndarray, *, mode: str) -> np.ndarray:
    """``x: (N, H, W, C)`` read bilinearly at ``(ys, xs): (N, H, W)`` each, with scipy's border ``mode``.

    The same values as ``scipy.ndimage.map_coordinates(order=1)`` per image (borders by index reflection),
    computed with four gathers over the whole batch and all channels at once.
    """
    n, h, w, c = x.shape
    if not n:
        return np.zeros(x.shape)
    y0, x0 = np.floor(ys), np.floor(xs)
    fy, fx = (ys - y0)[..., None], (xs - x0)[..., None]
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    rows = [r * w + np.arange(n)[:, None, None] * (h * w) for r in _border_pair(y0, h, mode)]
    cols = _border_pair(x0, w, mode)
    flat = x.reshape(n * h * w, c)

    def at(r, col):
        return np.take(flat, r + col, axis=0)

    # as scipy sums them: each corner's value times the product of its two weights, corners in order
    wy, wx = (1 - fy, fy), (1 - fx, fx)
    out = at(rows[0], cols[0]) * (wy[0] * wx[0])
    for i, j in ((0, 1), (1, 0), (1, 1)):
        out += at(rows[i], cols[j]) * (wy[i] * wx[j])
    return out


def _border_pair(i0: np.ndarray, n: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """``border_index`` of ``i0`` and ``i0 + 1`` through a lookup table over their range (one gather each)."""
    low = int(i0.min())
    lut = border_index(np.arange(low, int(i0.max()) + 2), n, mode)
    return lut[i0 - low], lut[i0 + (1 - low)]


def affine_points(h: int, w: int) -> np.ndarray:
    """The three reference points of the CIFAR-10-C random affine, ``(3, 2)`` in that generator's order."""
    centre = np.array((h, w), np.float32) // 2
    square = min(h, w) // 3
    return np.array([centre + square, [centre[0] + square, centre[1] - square], centre - square], np.float32)


def affine_warp(x: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """Warp each sample by the affine taking :func:`affine_points` to ``moved: (N, 3, 2)`` (cv2.warpAffine-like).

    Points are (x, y) pixel coordinates as OpenCV reads them; the output pixel p reads the input at A^-1 (p - t),
    bilinearly, border reflect-101.
    """
    _n, h, w = x.shape[:3]
    src = affine_points(h, w).astype(np.float64)
    design = np.hstack([src, np.ones((3, 1))])  # (3, 3): rows [x, y, 1]
    maps = np.linalg.solve(design[None], moved.astype(np.float64))  # (N, 3, 2): [x y 1] @ maps = moved
    a = maps[:, :2, :].transpose(0, 2, 1)  # (N, 2, 2): moved = a @ p + t
    t = maps[:, 2, :]
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    grid = np.stack([xs, ys], axis=-1)[None] - t[:, None, None, :]  # (N, H, W, 2) as (x, y)
    inv = np.linalg.inv(a)
    back = np.einsum("nij,nhwj->nhwi", inv, grid)
    return sample(x, back[..., 1], back[..., 0], mode="mirror")
