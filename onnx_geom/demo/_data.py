"""The demo's data: scikit-learn's digits, resized to 32x32 uint8 and split with a fixed seed.

>>> data = digits_32()
>>> data.images.shape, data.images.dtype, data.labels.shape
((1797, 32, 32, 1), dtype('uint8'), (1797,))
>>> train, test = stratified_split(data.labels, test_fraction=0.2, seed=0)
>>> len(train), len(test)
(1438, 359)

Only the builder needs scikit-learn (``load_digits`` ships its 1,797 images inside the package, so nothing is
downloaded); the shipped zoo is read back with numpy alone (see :mod:`onnx_geom.demo`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "SIZE",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "Digits",
    "digits_32",
    "resize_bilinear",
    "stratified_split",
    "to_uint8",
]

SIZE = 32
TEST_FRACTION = 0.2
SPLIT_SEED = 0


class Digits(NamedTuple):
    """``images``: uint8 (N, 32, 32, 1); ``labels``: int64 (N,); ``indices``: int64 (N,) rows of ``load_digits``."""

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray


def to_uint8(images8: np.ndarray) -> np.ndarray:
    """Digits' 0..16 intensities to 0..255.

    >>> to_uint8(np.array([[0.0, 8.0, 16.0]]))
    array([[  0, 128, 255]], dtype=uint8)

    ``images8``: (N, 8, 8) float in [0, 16] -> uint8 of the same shape, ``round(x * 255 / 16)``.
    """
    return np.rint(np.asarray(images8, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)


def resize_bilinear(images: np.ndarray, *, size: int = SIZE) -> np.ndarray:
    """Resize greyscale uint8 images with Pillow's bilinear filter (the zoo's one fixed method).

    >>> resize_bilinear(np.zeros((2, 8, 8), np.uint8)).shape
    (2, 32, 32, 1)

    ``images``: uint8 (N, h, w) -> uint8 (N, size, size, 1).
    """
    from PIL import Image

    out = np.empty((len(images), size, size, 1), dtype=np.uint8)
    for i, image in enumerate(images):
        resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="L").resize(
            (size, size), Image.Resampling.BILINEAR
        )
        out[i, :, :, 0] = np.asarray(resized)
    return out


def digits_32() -> Digits:
    """All 1,797 digits as uint8 (N, 32, 32, 1) images with their int64 labels, in ``load_digits`` order."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = resize_bilinear(to_uint8(bunch.images))
    labels = np.asarray(bunch.target, dtype=np.int64)
    return Digits(images, labels, np.arange(len(labels), dtype=np.int64))


def stratified_split(
    labels: np.ndarray, *, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified train/test split: ``round(test_fraction * n_c)`` test samples of each class.

    >>> train, test = stratified_split(np.repeat(np.arange(2), 10), test_fraction=0.2, seed=0)
    >>> len(train), len(test)
    (16, 4)

    ``labels``: (N,) -> (train indices, test indices), each sorted int64, disjoint, covering ``0..N-1``.
    """
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = round(test_fraction * len(members))
        test.append(rng.permutation(members)[:take])
    test_idx = np.sort(np.concatenate(test)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx).astype(np.int64)
    return train_idx, test_idx
