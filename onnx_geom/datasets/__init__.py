"""Data sets as arrays: ``images`` uint8 ``(N, H, W, C)``, ``labels`` int64 ``(N,)``; readers pick themselves.

>>> import numpy as np, tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "toy.npz"
>>> _ = save_npz(Dataset(np.zeros((3, 32, 32, 3), np.uint8), np.array([0, 1, 2]), "toy"), p)
>>> load(p).images.shape
(3, 32, 32, 3)

Nothing is ever downloaded. Readers: a CIFAR-10/100 python folder (``cifar-10-batches-py``, restricted
unpickler), a CIFAR-10-C style folder (:class:`CorruptedFolder`, memory-mapped), an ``.npz`` (never pickles), an
image folder ``root/<class>/*.png|jpg``.
"""

from __future__ import annotations

import os
from pathlib import Path

from onnx_geom.datasets._cifar import is_cifar_folder, read_cifar
from onnx_geom.datasets._corrupted import CorruptedFolder, is_corrupted_folder, write_corrupted
from onnx_geom.datasets._dataset import Dataset, read_npz, save_npz
from onnx_geom.datasets._image_folder import is_image_folder, read_image_folder
from onnx_geom.errors import DataError, DataNotFoundError

__all__ = [
    "CorruptedFolder",
    "Dataset",
    "is_corrupted_folder",
    "load",
    "read_cifar",
    "read_image_folder",
    "read_npz",
    "save_npz",
    "write_corrupted",
]  # fmt: skip

HELP = (
    "expected a CIFAR-10/100 python folder (cifar-10-batches-py with test_batch, or test + meta), a CIFAR-10-C "
    "style folder (<corruption>.npy + labels.npy), an .npz with images and labels, or an image folder "
    "root/<class>/*.png; nothing is downloaded: unpack cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/"
    "cifar.html) or CIFAR-10-C.tar (https://zenodo.org/records/2535967) and pass the folder"
)


def load(
    path: str | os.PathLike, *, split: str = "test", corruption: str | None = None, severity: int | None = None
) -> Dataset:
    """Read the data set at ``path``, choosing the reader from what is on disk.

    ``split`` picks CIFAR's test or train batches. A CIFAR-10-C style folder needs ``corruption`` and
    ``severity`` (one block); use :class:`CorruptedFolder` to read it block by block instead.
    """
    p = Path(path)
    if not p.exists():
        raise DataNotFoundError(f"{p} does not exist; {HELP}.")
    if p.is_file():
        if p.suffix == ".npz":
            return read_npz(p)
        raise DataError(f"{p} is a file onnx-geom cannot read as a data set; {HELP}.")
    for candidate in (p, p / "cifar-10-batches-py", p / "cifar-100-python"):
        if candidate.is_dir() and is_cifar_folder(candidate):
            return read_cifar(candidate, split=split)
    if is_corrupted_folder(p):
        folder = CorruptedFolder(p)
        if corruption is None or severity is None:
            raise DataError(
                f"{p} is a CIFAR-10-C style folder ({', '.join(folder.corruptions)}); pass a corruption and a "
                "severity, or read it with CorruptedFolder."
            )
        return folder.dataset(corruption, severity)
    if is_image_folder(p):
        return read_image_folder(p)
    raise DataNotFoundError(f"{p} holds no data set onnx-geom can read; {HELP}.")
