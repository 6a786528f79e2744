"""The one in-memory form of a data set, and the ``.npz`` reader and writer.

>>> import numpy as np
>>> ds = Dataset(np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 1]), "toy", ("cat", "dog"))
>>> ds.n, ds.image_shape, ds.labels.dtype
(2, (32, 32, 3), dtype('int64'))
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnx_geom._files import check_output, output_errors, replacing
from onnx_geom.errors import DataError, DataNotFoundError


@dataclass(frozen=True, eq=False)  # eq on arrays would be ambiguous
class Dataset:
    """``images`` uint8 ``(N, H, W, C)`` with C in (1, 3), ``labels`` int64 ``(N,)``, a name, class names if known.

    Integer labels of another dtype are converted to int64; anything else is a DataError.
    """

    images: np.ndarray
    labels: np.ndarray
    name: str = "dataset"
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if (
            not isinstance(images, np.ndarray)
            or images.dtype != np.uint8
            or images.ndim != 4
            or images.shape[3] not in (1, 3)
        ):
            shape = getattr(images, "shape", None)
            dtype = getattr(images, "dtype", type(images).__name__)
            raise DataError(f"images must be uint8 (N, H, W, C) with C = 1 or 3, not {dtype} {shape}.")
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu" or labels.ndim != 1:
            raise DataError(f"labels must be a 1-D integer array, not {labels.dtype} with shape {labels.shape}.")
        if len(images) == 0:
            raise DataError("the data set holds no images; give at least one.")
        if len(labels) != len(images):
            raise DataError(f"labels has {len(labels)} entries but images has {len(images)}; give one label per image.")
        if len(labels) and labels.min() < 0:
            raise DataError(f"labels must be >= 0, found {labels.min()}.")
        object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))
        if self.class_names is not None:
            names = tuple(str(c) for c in self.class_names)
            if len(labels) and labels.max() >= len(names):
                raise DataError(f"label {labels.max()} has no class name ({len(names)} names given).")
            object.__setattr__(self, "class_names", names)

    @property
    def n(self) -> int:
        """Number of images."""
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)``."""
        h, w, c = (int(s) for s in self.images.shape[1:])
        return h, w, c

    def head(self, limit: int | None) -> Dataset:
        """The first ``limit`` images (all if None)."""
        if limit is None or limit >= self.n:
            return self
        return Dataset(self.images[:limit], self.labels[:limit], self.name, self.class_names)


def save_npz(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` to ``path`` (``.npz`` with images, labels, name, class_names), atomically.

    >>> import numpy as np, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "toy.npz"
    >>> _ = save_npz(Dataset(np.zeros((2, 16, 16, 1), np.uint8), np.array([0, 1]), "toy"), p)
    >>> read_npz(p).name
    'toy'
    """
    path = check_output(path)  # not inside a study, not a folder; missing parent folders are created
    names = np.array(dataset.class_names if dataset.class_names is not None else [], dtype=np.str_)
    with output_errors(path), replacing(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, images=dataset.images, labels=dataset.labels, name=np.array(dataset.name), class_names=names)
    return path


def read_npz(path: str | os.PathLike) -> Dataset:
    """Read an ``.npz`` with ``images`` and ``labels`` (and optionally ``name``, ``class_names``); never unpickles."""
    path = Path(path)
    try:
        _check_npz_sizes(path)
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:  # our handle: closed on any error
            missing = {"images", "labels"} - set(data.files)
            if missing:
                raise DataError(f"{path} has no {' or '.join(sorted(missing))} array; an .npz data set needs both.")
            images, labels = data["images"], data["labels"]
            name = str(data["name"]) if "name" in data.files else path.stem
            names = tuple(data["class_names"].tolist()) if "class_names" in data.files else None
    except FileNotFoundError:
        raise DataNotFoundError(f"{path} does not exist.") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"{path} is not a readable .npz file of plain arrays ({error}).") from None
    return Dataset(images, labels, name, names or None)


def _check_npz_sizes(path: Path) -> None:
    """Refuse, before numpy allocates anything, an ``.npz`` whose arrays declare more bytes than they hold, or
    more than this machine's free memory (a zip bomb, or a damaged header)."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(member)
            name = info.filename.removesuffix(".npy")
            if any(int(d) < 0 for d in shape):
                raise DataError(f"{path}: array {name!r} declares a negative size {shape}; the file is damaged.")
            declared = math.prod(int(d) for d in shape) * dtype.itemsize
            if declared > info.file_size:
                raise DataError(
                    f"{path}: array {name!r} declares {declared:,} bytes {shape} but holds {info.file_size:,}; "
                    "the file is damaged."
                )
            check_memory(declared, f"array {name!r} of {path}")


def check_memory(nbytes: int, what: str) -> None:
    """Refuse with one sentence to load ``nbytes`` when that is more than the machine's available memory."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise DataError(
            f"{what} needs {nbytes / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB of memory available; "
            "use a smaller data set (or --limit)."
        )


def available_memory() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable; elsewhere the physical memory), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
