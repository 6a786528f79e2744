"""Batched diamond-square plasma fractal (the fog layer), one independent map per sample.

>>> import numpy as np
>>> u = np.random.default_rng(0).uniform(-1, 1, (2, draws_needed(32)))
>>> maps = plasma_fractal(u, 32, 3.0)
>>> maps.shape, float(maps.min()), float(maps.max())
((2, 32, 32), 0.0, 1.0)
"""

from __future__ import annotations

import numpy as np


def draws_needed(mapsize: int) -> int:
    """How many uniform numbers one map of side ``mapsize`` (a power of two) consumes."""
    total, step = 0, mapsize
    while step >= 2:
        total += 3 * (mapsize // step) ** 2
        step //= 2
    return total


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= n (``1`` for 0)."""
    return 1 if n == 0 else 2 ** (int(n) - 1).bit_length()


def plasma_fractal(uniform: np.ndarray, mapsize: int, decay: float) -> np.ndarray:
    """Heightmaps ``(N, mapsize, mapsize)`` in [0, 1] from ``uniform: (N, draws_needed(mapsize))`` in [-1, 1).

    The reference's algorithm: start from 0 at the corner; at every scale the square centres, then the diamond
    centres, get the mean of their neighbours (wrapping around) plus ``wibble * U(-wibble, wibble)``; ``wibble``
    starts at 100 and is divided by ``decay`` per scale; the map is finally scaled to [0, 1] per sample.
    """
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, not {mapsize}")
    n = len(uniform)
    grid = np.zeros((n, mapsize, mapsize))
    step, wibble, used = mapsize, 100.0, 0

    def wibbled(total: np.ndarray) -> np.ndarray:
        nonlocal used
        size = total.shape[1] * total.shape[2]
        noise = uniform[:, used : used + size].reshape(total.shape) * wibble
        used += size
        return total / 4 + wibble * noise

    while step >= 2:
        half = step // 2
        corners = grid[:, ::step, ::step]
        squares = corners + np.roll(corners, -1, axis=1)
        squares = squares + np.roll(squares, -1, axis=2)
        grid[:, half::step, half::step] = wibbled(squares)
        centres = grid[:, half::step, half::step]
        corners = grid[:, ::step, ::step]
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        grid[:, ::step, half::step] = wibbled(left)
        top = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        grid[:, half::step, ::step] = wibbled(top)
        step //= 2
        wibble /= decay
    grid -= grid.min(axis=(1, 2), keepdims=True)
    return grid / grid.max(axis=(1, 2), keepdims=True)
