"""CIFAR-10 / CIFAR-100 python-batch folders, read through the restricted unpickler.

>>> is_cifar_folder("/nonexistent")
False
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from onnx_geom.datasets._dataset import Dataset
from onnx_geom.datasets._pickle import loads
from onnx_geom.errors import DataError, UnsafePickleError

CIFAR10_FILES = {"test": ("test_batch",), "train": tuple(f"data_batch_{i}" for i in range(1, 6))}
CIFAR100_FILES = {"test": ("test",), "train": ("train",)}


def is_cifar_folder(path: str | os.PathLike) -> bool:
    """True if ``path`` holds CIFAR-10 (``test_batch``) or CIFAR-100 (``test`` + ``meta``) python batches."""
    p = Path(path)
    return (p / "test_batch").is_file() or ((p / "test").is_file() and (p / "meta").is_file())


def _unpickle(path: Path) -> dict:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path} ({error.strerror}).") from None
    try:
        obj = loads(data)
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{path}: {error}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR batch (expected a dict, found {type(obj).__name__}).")
    return obj


def _field(batch: dict, path: Path, *keys: bytes):
    for key in keys:
        if key in batch:
            return batch[key]
    raise DataError(f"{path} is not a CIFAR batch: it has no {keys[0].decode()} entry.")


def read_cifar(path: str | os.PathLike, *, split: str = "test") -> Dataset:
    """Read the ``split`` ("test" or "train") of a CIFAR-10 or CIFAR-100 python folder; images ``(N, 32, 32, 3)``."""
    root = Path(path)
    if split not in ("test", "train"):
        raise DataError(f"split must be 'test' or 'train', not {split!r}.")
    cifar100 = not (root / "test_batch").is_file()
    files = (CIFAR100_FILES if cifar100 else CIFAR10_FILES)[split]
    label_keys = (b"fine_labels",) if cifar100 else (b"labels",)
    images, labels = [], []
    for name in files:
        batch = _unpickle(root / name)
        data = np.asarray(_field(batch, root / name, b"data"))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{root / name}: data must be uint8 (N, 3072), found {data.dtype} {data.shape}.")
        lab = np.asarray(_field(batch, root / name, *label_keys))
        if lab.shape != (len(data),) or lab.dtype.kind not in "iu":
            raise DataError(f"{root / name}: expected {len(data)} integer labels, found shape {lab.shape}.")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(lab)
    meta_name = "meta" if cifar100 else "batches.meta"
    class_names = None
    if (root / meta_name).is_file():
        meta = _unpickle(root / meta_name)
        raw = meta.get(b"fine_label_names" if cifar100 else b"label_names")
        if isinstance(raw, list):
            class_names = tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in raw)
    name = f"{'cifar100' if cifar100 else 'cifar10'}-{split}"
    return Dataset(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels), name, class_names)
