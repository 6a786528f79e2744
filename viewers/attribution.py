"""Occlusion sensitivity of one sample's geometry: how angle, length and margin change when a patch of the
image is greyed out. Pure numpy around a feature function (the probe through onnxruntime, in the viewer).

>>> image = np.zeros((8, 8, 3), np.uint8); image[:4, :4] = 255
>>> fn = lambda x: x.reshape(len(x), -1).astype(np.float32)[:, :2] / 255 + [0.0, 0.1]
>>> maps = occlusion(image, 0, fn, np.eye(2, dtype=np.float32), np.zeros(2, np.float32), patch=4)
>>> maps["length"].shape
(2, 2)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from onnx_geom.errors import DataError
from onnx_geom.geometry import sample_geometry

__all__ = ["QUANTITIES", "occlusion"]

QUANTITIES = ("angle_true", "length", "margin")


def occlusion(
    image: np.ndarray,
    label: int,
    features: Callable[[np.ndarray], np.ndarray],
    W: np.ndarray,
    b: np.ndarray,
    *,
    patch: int | None = None,
    fill: float | None = None,
    batch: int = 256,
) -> dict[str, np.ndarray]:
    """Change of ``angle_true``, ``length`` and ``margin`` when each patch is occluded.

    Parameters
    ----------
    image : (H, W, C) uint8, the clean image; ``label`` its true class.
    features : maps uint8 images (n, H, W, C) to features (n, D) (the probe's ``features`` output).
    W : (K, D), ``b`` (K,): the model's head.
    patch : side of the square occluder in pixels (default: an 8 x 8 grid of patches); the grid is
        ``ceil(H / patch) x ceil(W / patch)``, patches do not overlap.
    fill : grey value of the occluder (default: the image's mean).

    Returns
    -------
    dict with, for each of :data:`QUANTITIES`, a (gh, gw) float32 map of ``occluded - original``, and
    ``base`` the unoccluded values.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.dtype != np.uint8:
        raise DataError(f"the image must be uint8 (H, W, C); got {image.dtype} {image.shape}.")
    h, w, _ = image.shape
    patch = int(patch or max(1, int(np.ceil(max(h, w) / 8))))
    gh, gw = -(-h // patch), -(-w // patch)
    value = np.uint8(np.clip(np.round(image.mean() if fill is None else fill), 0, 255))
    batch_images = np.repeat(image[None], gh * gw + 1, axis=0)
    for cell in range(gh * gw):
        r, c = divmod(cell, gw)
        batch_images[cell + 1, r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = value
    feats = np.concatenate([features(batch_images[i : i + batch]) for i in range(0, len(batch_images), batch)])
    geom = sample_geometry(np.asarray(feats, np.float32), W, b, np.full(len(feats), int(label), np.int64))
    out = {q: (geom[q][1:] - geom[q][0]).reshape(gh, gw).astype(np.float32) for q in QUANTITIES}
    out["base"] = {q: float(geom[q][0]) for q in QUANTITIES}
    return out
