"""Shared checks of the viewer tests: the table's cells found on a rendered picture, a view's background work
finished by hand (no event loop in the tests)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def table_cells(img: np.ndarray, min_pixels: int) -> tuple[np.ndarray, list[int]]:
    """The coloured cells of a rendered table: ``(labels, cells)``, the connected saturated regions (labelled as
    ``ndimage.label`` does) and the labels of those of more than ``min_pixels`` pixels and taller than the colour
    key (an 8-pixel bar)."""
    rgb = img[..., :3].astype(float)
    saturated = (rgb.max(-1) - rgb.min(-1)) > 40
    labels, n = ndimage.label(saturated)
    sizes = ndimage.sum(saturated, labels, range(1, n + 1))
    tall = [b[0].stop - b[0].start > 12 for b in ndimage.find_objects(labels)]
    return labels, [i + 1 for i, s in enumerate(sizes) if s > min_pixels and tall[i]]


def finish_background(view) -> None:
    """Wait for every computation the view handed to its worker, then take the results as its timer would."""
    for future in list(view._pending.values()):
        future.result()
    view._collect()
