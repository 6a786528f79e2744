"""Colour-blind-safe colours, as plain numpy RGBA (no VisPy): class palettes and sequential/diverging maps.

>>> class_colors(3)[:, :3].astype(float).round(3).tolist()[0]
[0.0, 0.447, 0.698]
>>> colormap(np.array([0.0, 1.0]), "viridis")[:, :3].astype(float).round(3).tolist()
[[0.267, 0.004, 0.329], [0.992, 0.906, 0.145]]

Palettes: Okabe & Ito (2008) up to 8 classes, Paul Tol's "muted" up to 10, evenly spaced viridis beyond.
Maps: viridis (accuracy), a white-to-viridis ramp (density on white), Tol's PuOr-like orange/purple
diverging map (attribution: signed changes) and the same through grey for points (``signed``: margins).
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAPS", "class_colors", "colormap", "hex_to_rgba", "image_rgba"]

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]
TOL_MUTED = [
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
    "#000000",
]
VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"]
MAPS = {
    "viridis": VIRIDIS,
    "density": ["#ffffff", "#c8e6d6", "#5ec962", "#21918c", "#3b528b", "#440154"],
    "diverging": ["#b35806", "#f1a340", "#fee0b6", "#f7f7f7", "#d8daeb", "#998ec3", "#542788"],
    # the same ends through grey, for points on white (a near-white middle would vanish)
    "opacity": ["#f2f2f2", "#333333"],  # the key of a density drawn as opacity
    "signed": ["#b35806", "#f1a340", "#bbbbbb", "#998ec3", "#542788"],
}


def hex_to_rgba(colors: list[str], alpha: float = 1.0) -> np.ndarray:
    """(n, 4) float32 RGBA in 0..1 from ``#rrggbb`` strings."""
    rgb = [[int(c[i : i + 2], 16) / 255.0 for i in (1, 3, 5)] for c in colors]
    return np.concatenate([np.asarray(rgb, np.float32), np.full((len(rgb), 1), alpha, np.float32)], axis=1)


def class_colors(k: int, alpha: float = 1.0) -> np.ndarray:
    """(k, 4) distinct colour-blind-safe colours, one per class."""
    if k <= len(OKABE_ITO):
        return hex_to_rgba(OKABE_ITO[:k], alpha)
    if k <= len(TOL_MUTED):
        return hex_to_rgba(TOL_MUTED[:k], alpha)
    return colormap(np.linspace(0.0, 1.0, k), "viridis", alpha=alpha)


def colormap(values: np.ndarray, name: str = "viridis", *, alpha: float = 1.0) -> np.ndarray:
    """(..., 4) float32 RGBA of ``values`` in 0..1 (clipped; NaN -> light grey) on the map ``name``."""
    anchors = hex_to_rgba(MAPS[name])
    v = np.asarray(values, np.float64)
    nan = ~np.isfinite(v)
    t = np.clip(np.where(nan, 0.0, v), 0.0, 1.0) * (len(anchors) - 1)
    lo = np.minimum(t.astype(np.int64), len(anchors) - 2)
    frac = (t - lo)[..., None]
    out = anchors[lo] * (1 - frac) + anchors[lo + 1] * frac
    out[..., 3] = alpha
    out[nan] = (0.85, 0.85, 0.85, alpha)
    return out.astype(np.float32)


def image_rgba(images: np.ndarray) -> np.ndarray:
    """uint8 images ``(..., H, W, C)`` (C = 1 grey or 3 RGB) -> float32 RGBA in [0, 1] ``(..., H, W, 4)``, opaque."""
    out = np.ones((*images.shape[:-1], 4), np.float32)
    out[..., :3] = images[..., :3] / np.float32(255)  # a grey channel broadcasts to R, G and B
    return out
