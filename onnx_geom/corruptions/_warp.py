"""Bilinear resampling of a batch at per-sample coordinates, and the random affine of CIFAR-10-C's elastic.

>>> import numpy as np
>>> x = np.arange(2 * 16 * 16, dtype=np.float32).reshape(2, 16, 16, 1)
>>> ys, xs = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
>>> bool((sample(x, np.broadcast_to(ys, (2, 16, 16)), np.broadcast_to(xs, (2, 16, 16)), mode="reflect") == x).all())
True
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def sample(x: np.ndarray, ys: np.ndarray, xs: np.ndarray, *, mode: str) -> np.ndarray:
    """``x: (N, H, W, C)`` read bilinearly at ``(ys, xs): (N, H, W)`` each, with scipy's border ``mode``."""
    n = np.broadcast_to(np.arange(len(x), dtype=np.float64)[:, None, None], ys.shape)
    coords = np.stack([n, ys, xs])
    channels = [ndimage.map_coordinates(x[..., c], coords, order=1, mode=mode) for c in range(x.shape[3])]
    return np.stack(channels, axis=-1)


def affine_points(h: int, w: int) -> np.ndarray:
    """The three reference points of the CIFAR-10-C random affine, ``(3, 2)`` in that generator's order."""
    centre = np.float32((h, w)) // 2
    square = min(h, w) // 3
    return np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])


def affine_warp(x: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """Warp each sample by the affine taking :func:`affine_points` to ``moved: (N, 3, 2)`` (cv2.warpAffine-like).

    Points are (x, y) pixel coordinates as OpenCV reads them; the output pixel p reads the input at A^-1 (p - t),
    bilinearly, border reflect-101.
    """
    n, h, w = x.shape[:3]
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
