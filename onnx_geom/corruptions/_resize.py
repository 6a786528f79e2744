"""Pillow resizing of a whole batch in two calls, bit-identical to resizing each image on its own.

Pillow resizes horizontally, then vertically, through an 8-bit intermediate. A horizontal-only resize of the
images stacked vertically touches every row on its own, and a vertical-only resize of the images side by side
every column on its own; so two calls on the mosaics give exactly the per-image result.

>>> import numpy as np
>>> from PIL import Image
>>> x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
>>> y = resize(x, (19, 19), Image.Resampling.BOX)
>>> all((y[i] == np.asarray(Image.fromarray(x[i]).resize((19, 19), Image.Resampling.BOX))).all() for i in range(3))
True
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_CHUNK = 256


def _pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)


def _arr(im: Image.Image) -> np.ndarray:
    a = np.asarray(im)
    return a[..., None] if a.ndim == 2 else a


def resize(images: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Resize uint8 ``images: (N, H, W, C)`` to ``size = (width, height)``: ``(N, height, width, C)``."""
    if len(images) > _CHUNK:
        return np.concatenate([resize(images[i : i + _CHUNK], size, resample) for i in range(0, len(images), _CHUNK)])
    n, h, w, c = images.shape
    new_w, new_h = size
    if n == 0:
        return np.empty((0, new_h, new_w, c), np.uint8)
    x = images
    if new_w != w:
        tall = _pil(np.ascontiguousarray(x).reshape(n * h, w, c)).resize((new_w, n * h), resample)
        x = _arr(tall).reshape(n, h, new_w, c)
    if new_h != h:
        wide = _pil(np.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(h, n * new_w, c))
        x = _arr(wide.resize((n * new_w, new_h), resample)).reshape(new_h, n, new_w, c).transpose(1, 0, 2, 3)
    return np.ascontiguousarray(x)
