"""The bundled mini zoo: CNNs on 32x32 scikit-learn digits (dense and pruned five ways) and a scikit-learn MLP.

>>> from onnx_geom.demo import load_manifest, load_test_split, zoo_models
>>> images, labels = load_test_split()
>>> images.shape, images.dtype, labels.dtype
((359, 32, 32, 1), dtype('uint8'), dtype('int64'))
>>> zoo_models()["dense"].name
'dense.onnx'
>>> sorted({m["method"] for m in load_manifest()})
['dense', 'gmp', 'l1_channel', 'lth_rewind', 'magnitude', 'random', 'snip']

The zoo ships inside the package (``onnx_geom/demo/zoo/``), so the demo needs no download. Reading it needs
numpy only; rebuilding it (``python -m onnx_geom.demo.build_zoo -o DIR``) needs torch and scikit-learn.
Every model takes float32 input in [0, 1] (``NCHW`` (N, 1, 32, 32) for the CNNs, ``flat`` (N, 1024) for the MLP;
``layout`` in the manifest), so a probe with preset ``none`` (scale to [0, 1]) feeds it the uint8 test images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom.errors import DataError, DataNotFoundError

__all__ = ["load_manifest", "load_test_split", "zoo_dir", "zoo_models"]

_REBUILD = "rebuild the zoo with `python -m onnx_geom.demo.build_zoo"


def zoo_dir() -> Path:
    """The folder of the shipped zoo (ONNX files, ``digits_test.npz``, ``manifest.json``)."""
    return Path(__file__).parent / "zoo"


def _file(name: str, folder: str | Path | None) -> Path:
    if Path(name).name != name or name in ("", ".", ".."):
        raise DataError(f"the zoo manifest names the file {name!r}, which is not a plain file name; rebuild the zoo.")
    path = (zoo_dir() if folder is None else Path(folder)) / name
    if not path.is_file():
        raise DataNotFoundError(f"the demo zoo has no {path}; reinstall onnx-geom or {_REBUILD} -o {path.parent}`.")
    return path


def load_manifest(folder: str | Path | None = None) -> list[dict[str, Any]]:
    """The zoo's models, in build order: dicts with ``name``, ``file``, ``method``, ``framework``, ``sparsity``
    (measured fraction of zero weights), ``target_sparsity``, ``accuracy`` (clean, on the test split),
    ``params``, ``nonzero_params``, ``layout``, ``input_shape`` and ``sha256``. ``folder`` defaults to the shipped zoo."""
    path = _file("manifest.json", folder)
    try:
        return list(json.loads(path.read_text())["models"])
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path} is not a zoo manifest ({err}); {_REBUILD}`.") from None


def load_test_split(folder: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The zoo's test split: ``images`` uint8 (N, 32, 32, 1) and ``labels`` int64 (N,)."""
    path = _file("digits_test.npz", folder)
    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels = data["images"], data["labels"]
    except (ValueError, KeyError, OSError) as err:
        raise DataError(f"{path} is not a zoo test split ({err}); {_REBUILD}`.") from None
    if images.dtype != np.uint8 or images.ndim != 4 or labels.shape != (len(images),):
        raise DataError(
            f"{path} holds images {images.dtype} {images.shape} and labels {labels.shape}, not uint8 (N, H, W, C) and (N,); "
            f"{_REBUILD}`."
        )
    return images, labels.astype(np.int64, copy=False)


def zoo_models(folder: str | Path | None = None) -> dict[str, Path]:
    """``{model name: path to its ONNX file}``, in manifest order."""
    return {m["name"]: _file(m["file"], folder) for m in load_manifest(folder)}
