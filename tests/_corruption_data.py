"""Shared test images: smooth random batches with natural-image-like statistics."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth_images(n: int, h: int = 32, w: int = 32, c: int = 3, seed: int = 0) -> np.ndarray:
    """uint8 ``(n, h, w, c)`` covering 0..255, spatially correlated like photographs."""
    raw = np.random.default_rng(seed).normal(size=(n, h, w, c))
    x = ndimage.gaussian_filter(raw, (0, 1.5, 1.5, 0))
    return ((x - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8)
