"""Image folders: ``root/<class>/*.png|jpg|jpeg``, one sub-folder per class (sorted names = label order).

>>> is_image_folder("/nonexistent")
False
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from onnx_geom.datasets._dataset import Dataset, check_memory
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
    """Read every image; all must have one size. Greyscale if every file is greyscale, else RGB.

    Every file's header is read first (size and mode, no pixels): a file that is not an image, one larger than
    Pillow's decompression-bomb limit, a size that differs from the first file's, or a total that does not fit
    in memory is refused before any pixels are decoded.
    """
    root = Path(path)
    classes = _classes(root)
    files = [(label, f) for label, (_, names) in enumerate(classes) for f in names]
    sizes, modes = [], []
    for _, f in files:
        with _opened(f) as im:
            sizes.append(im.size)
            modes.append(im.mode)
    grey = all(m in ("L", "1", "I;16") for m in modes)
    for (_, f), size in zip(files, sizes, strict=True):
        if size != sizes[0]:
            raise DataError(
                f"{f} is {size[0]}x{size[1]} but {files[0][1]} is {sizes[0][0]}x{sizes[0][1]}; resize all to one size."
            )
    width, height = sizes[0]
    channels = 1 if grey else 3
    check_memory(len(files) * width * height * channels, f"the {len(files):,} images of {root}")
    images = np.empty((len(files), height, width, channels), np.uint8)
    for i, (_, f) in enumerate(files):
        with _opened(f) as im:
            images[i] = np.asarray(im.convert("L" if grey else "RGB")).reshape(height, width, channels)
    labels = np.array([label for label, _ in files], dtype=np.int64)
    return Dataset(images, labels, root.name, tuple(name for name, _ in classes))


@contextlib.contextmanager
def _opened(f: Path) -> Iterator[Image.Image]:
    """``Image.open`` with every failure (not an image, damaged, a decompression bomb) as one DataError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                yield im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"image {f} is too large to decode safely ({error}); remove it or resize it.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DataError(f"cannot read image {f} ({error}); remove or replace it.") from None
