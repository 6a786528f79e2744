"""Saturation change through HSV, in closed planes, with scikit-image's arithmetic operation for operation.

The reference (``imagecorruptions``) converts RGB -> HSV, scales the saturation, converts back, and truncates to
8 bits. Many results sit exactly on an integer grey level, so the last bit decides the byte: this module does the
same float64 operations per pixel as ``skimage.color.rgb2hsv`` / ``hsv2rgb`` (same divisions, same order), on
contiguous channel planes and without scikit-image's stacked copies, and gets bit-identical results.

>>> import numpy as np
>>> planes = np.array([[1.0], [0.5], [0.0]])   # one orange pixel, channels first
>>> saturate_planes(planes, 0.5, 0.0)[:, 0].tolist()
[1.0, 0.75, 0.5]
"""

from __future__ import annotations

import numpy as np

# Which of (v, p, q, t) each output channel takes per hue sector 0..5, as scikit-image's hsv2rgb selects them:
# (r, g, b) = (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q)
_PICK = np.array([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]], np.uint8)


def saturate_planes(planes: np.ndarray, scale: float, shift: float, *, channels: int = 3) -> np.ndarray:
    """``planes: (3, ...)`` RGB floats in [0, 1] -> the first ``channels`` RGB planes after ``s -> clip(s scale + shift)``.

    Hue and value are kept; ties between channels resolve as in scikit-image (blue over green over red).
    """
    r, g, b = planes
    v = np.maximum(np.maximum(r, g), b)
    delta = v - np.minimum(np.minimum(r, g), b)
    grey = delta == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        s = delta / v
        b_max, g_max = b == v, g == v
        h = np.where(b_max, r - g, np.where(g_max, b - r, g - b)) / delta
    h = np.where(b_max, 4.0 + h, np.where(g_max, 2.0 + h, h))
    h = np.where(grey, 0.0, (h / 6.0) % 1.0)
    s = np.clip(np.where(grey, 0.0, s) * scale + shift, 0, 1)
    h6 = h * 6
    hi = np.floor(h6)
    f = h6 - hi
    choices = (v, v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s))  # v, p, q, t
    sector = hi.astype(np.uint8) % 6
    return np.stack([np.choose(_PICK[c][sector], choices) for c in range(channels)])
