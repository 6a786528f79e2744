"""Image folders: ``root/<class>/*.png|jpg|jpeg``, one sub-folder per class (sorted names = label order).

>>> is_image_folder("/nonexistent")
False
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from onnx_geom.datasets._dataset import Dataset
from onnx_geom.errors import DataError

SUFFIXES = (".png", ".jpg", ".jpeg")


def _classes(root: Path) -> list[tuple[str, list[Path]]]:
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.iterdir() if f.suffix.lower() in SUFFIXES and f.is_file())
        if files:
            out.append((sub.name, files))
    return out


def is_image_folder(path: str | os.PathLike) -> bool:
    """True if ``path`` has at least one class sub-folder holding PNG or JPEG files."""
    p = Path(path)
    return p.is_dir() and bool(_classes(p))


def read_image_folder(path: str | os.PathLike) -> Dataset:
    """Read every image; all must have one size. Greyscale if every file is greyscale, else RGB."""
    root = Path(path)
    classes = _classes(root)
    pictures, labels, paths = [], [], []
    for label, (_, files) in enumerate(classes):
        for f in files:
            paths.append(f)
            try:
                with Image.open(f) as im:
                    im.load()
                    pictures.append(im.copy())
            except (UnidentifiedImageError, OSError) as error:
                raise DataError(f"cannot read image {f} ({error}); remove or replace it.") from None
            labels.append(label)
    grey = all(p.mode in ("L", "1", "I;16") for p in pictures)
    arrays = [np.asarray(p.convert("L" if grey else "RGB")) for p in pictures]
    size = arrays[0].shape
    for array, f in zip(arrays, paths, strict=True):
        if array.shape != size:
            raise DataError(
                f"{f} is {array.shape[1]}x{array.shape[0]} but {paths[0]} is {size[1]}x{size[0]}; resize all to one size."
            )
    images = np.stack(arrays)
    if grey:
        images = images[..., None]
    return Dataset(images, np.array(labels, dtype=np.int64), root.name, tuple(name for name, _ in classes))
