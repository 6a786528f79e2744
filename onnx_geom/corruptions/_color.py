"""RGB <-> HSV over any batch ``(..., 3)`` with scikit-image's conventions (hue in [0, 1), grey has hue 0).

>>> import numpy as np
>>> hsv = rgb_to_hsv(np.array([[1.0, 0.5, 0.0]]))
>>> np.round(hsv, 4).tolist()
[[0.0833, 1.0, 1.0]]
>>> np.allclose(hsv_to_rgb(hsv), [[1.0, 0.5, 0.0]])
True
"""

from __future__ import annotations

import numpy as np


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """``rgb: (..., 3)`` floats in [0, 1] -> ``hsv: (..., 3)``."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    delta = v - rgb.min(axis=-1)
    grey = delta == 0
    safe = np.where(grey, 1.0, delta)
    s = np.where(grey, 0.0, delta / np.where(v == 0, 1.0, v))
    # Later cases win where two channels share the max, as in scikit-image.
    h = np.where(r == v, (g - b) / safe, 0.0)
    h = np.where(g == v, 2.0 + (b - r) / safe, h)
    h = np.where(b == v, 4.0 + (r - g) / safe, h)
    h = np.where(grey, 0.0, (h / 6.0) % 1.0)
    return np.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """``hsv: (..., 3)`` -> ``rgb: (..., 3)`` floats in [0, 1]."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    hi = np.floor(h * 6)
    f = h * 6 - hi
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    sector = hi.astype(np.int64) % 6
    # per sector 0..5: (r, g, b) = (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q), as scikit-image selects them
    r = np.choose(sector, (v, q, p, p, t, v))
    g = np.choose(sector, (t, v, v, q, p, p))
    b = np.choose(sector, (p, p, t, v, v, q))
    return np.stack([r, g, b], axis=-1)
