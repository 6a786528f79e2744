"""Explain chosen samples: the exact linearization of :mod:`onnx_geom.linearize` applied to a data set, or to the
images a study's model saw under one condition, as the arrays of the file ``onnx-geom explain`` writes.

>>> parse_samples("0,5,9", 10).tolist(), parse_samples("3-5,1", 10).tolist()
([0, 5, 9], [3, 4, 5, 1])

Every quantity is a per-input-value map plus a bias that add up to its value (``value == map.sum() + bias``):
the margin, the cosine to the true class and the length (:mod:`onnx_geom.linearize`), and any one logit
(``W[k] * x`` and ``b[k]``), which :func:`explanation` gathers for the true and the predicted class. See
docs/linearize.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom.conditions import CLEAN, CLEAN_CONDITION, condition_name
from onnx_geom.errors import DataError, StudyError
from onnx_geom.linearize import Decomposition, Linearization
from onnx_geom.linearize._geometry import GEOMETRY
from onnx_geom.probe_info import LOGITS

__all__ = [
    "GEOMETRY",
    "QUANTITIES",
    "Explanation",
    "condition_images",
    "explain_arrays",
    "explanation",
    "logit_decomposition",
    "parse_samples",
    "study_probe",
    "write_explanation",
]

#: What :func:`explanation` decomposes: the three geometry quantities and the logits of the true and predicted class.
QUANTITIES = (*GEOMETRY, "true_logit", "predicted_logit")

_SPAN = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


def parse_samples(text: str, n: int) -> np.ndarray:
    """Sample indices from ``"0,5,9"``, ranges ``"10-19"`` (inclusive) or both, in the order given, each once;
    every index in ``0 .. n-1``. Anything else is a :class:`DataError` in one sentence."""
    out: list[int] = []
    for part in str(text).split(","):
        match = _SPAN.fullmatch(part)
        if match is None or int(match[1]) > int(match[2] or match[1]):
            raise DataError(f"--samples takes indices and ranges like 0,5,9 or 10-19, not {text!r}.")
        out.extend(range(int(match[1]), int(match[2] or match[1]) + 1))
    out = list(dict.fromkeys(out))
    beyond = [i for i in out if i >= n]
    if beyond:
        raise DataError(f"sample {beyond[0]} is out of range: the data has {n} images (indices 0 to {n - 1}).")
    return np.asarray(out, np.int64)


def study_probe(study: Any, model: str) -> Path:
    """The probe file a study names for ``model`` (``probe_path``; a relative path is also looked for inside the
    study folder). A model the study does not hold, or whose probe file is gone, is a :class:`StudyError`."""
    if model not in study.models:
        raise StudyError(f"the study has no model {model!r}; it has {', '.join(study.models) or 'none'}.")
    raw = study.model_attrs(model).get("probe_path")
    if not raw:
        raise StudyError(f"the study does not name a probe file for model {model!r}; run it with `onnx-geom run`.")
    path = Path(raw)
    if not path.is_absolute() and not path.exists():
        path = Path(study.path) / path
    if not path.is_file():
        raise StudyError(
            f"the probe file of model {model!r} ({raw}) is not on this machine; make it again with `onnx-geom probe`."
        )
    return path


def _conditions(attrs: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The study's plan: clean, then every corruption x severity."""
    corruptions = [c for c in attrs.get("corruptions", []) if c != CLEAN]
    severities = [int(s) for s in attrs.get("severities", []) if int(s) != 0]
    return [CLEAN_CONDITION] + [(c, s) for c in corruptions for s in severities]


def condition_images(
    study: Any,
    condition: tuple[str, int],
    indices: np.ndarray,
    *,
    corrupted: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """uint8 (S, H, W, C): the images of samples ``indices`` as the study's models saw them under ``condition``.

    Clean images come from the study; corrupted ones are made again from the study's seed and profile (byte for
    byte what its sweep made), or, when its sweep read them from a folder (profile ``folder``), read from that
    folder, which must then be given as ``corrupted``. A condition outside the study's plan is a
    :class:`DataError`."""
    plan = _conditions(study.attrs)
    if tuple(condition) not in plan:
        shown = ", ".join(condition_name(*c) for c in plan[:8]) + (
            f" and {len(plan) - 8} more" if len(plan) > 8 else ""
        )
        raise DataError(f"the study has no condition {condition_name(*condition)}; it has {shown}.")
    idx = np.asarray(indices, np.int64)
    order = np.argsort(idx)
    clean = np.empty((len(idx), *study.images.shape[1:]), np.uint8)
    clean[order] = np.asarray(study.images[idx[order]])
    if tuple(condition) == CLEAN_CONDITION:
        return clean
    corruption, severity = condition
    attrs = study.attrs
    if attrs.get("profile") == "folder":
        return _from_folder(study, corruption, severity, idx, corrupted)
    from onnx_geom.corruptions import corrupt

    profile = attrs.get("profile")
    return corrupt(
        clean,
        corruption,
        severity,
        profile=None if profile in (None, "auto") else str(profile),
        rng=int(attrs.get("seed") or 0),
        indices=idx,
    )


def _from_folder(
    study: Any, corruption: str, severity: int, idx: np.ndarray, corrupted: str | os.PathLike[str] | None
) -> np.ndarray:
    from onnx_geom.datasets import CorruptedFolder

    name = condition_name(corruption, severity)
    recorded = study.attrs.get("corrupted") or {}
    if corrupted is None:
        where = f" (its sweep read {recorded['folder']})" if recorded.get("folder") else ""
        raise DataError(
            f"the study's {name} images were read from a CIFAR-10-C style folder{where}, not made on the fly; give "
            "that folder with --corrupted DIR."
        )
    folder = CorruptedFolder(corrupted)
    n = len(study.labels)
    if folder.n < n:
        raise DataError(f"{folder.path} holds {folder.n} images per severity but the study has {n}; give its folder.")
    if severity not in folder.severities:
        raise DataError(f"{folder.path} has no severity {severity} (it has {list(folder.severities)}).")
    if not np.array_equal(folder.read_labels(severity, 0, n), study.labels):
        raise DataError(f"the labels of {folder.path} differ from the study's; give the folder its sweep read.")
    if recorded.get("sampled_sha256"):
        from onnx_geom.sweep import _folder_source

        if _folder_source(folder)["sampled_sha256"] != recorded["sampled_sha256"]:
            raise DataError(
                f"{folder.path} is not the folder the study's sweep read ({recorded.get('folder')}): its images "
                "differ; give that folder."
            )
    images = np.concatenate([folder.read(corruption, severity, int(i), int(i) + 1) for i in idx])
    if images.shape[1:] != tuple(study.images.shape[1:]):
        raise DataError(f"{folder.path} holds {images.shape[1:]} images but the study's are {study.images.shape[1:]}.")
    return images


def logit_decomposition(res: Linearization, images: np.ndarray, classes: Sequence[int] | np.ndarray) -> Decomposition:
    """Output ``classes[s]`` of image ``s`` as a map plus a bias: ``map = W[s, k] * x``, ``bias = b[s, k]``,
    ``value = F(x)[s, k]`` (the probe's own output); ``residual`` as in :class:`Decomposition`."""
    s = np.arange(len(images))
    k = np.asarray(classes, np.int64)
    gmap = (res.W[s, k] * images.astype(np.float32)).astype(np.float32)
    return Decomposition.of(gmap, res.b[s, k], res.value[s, k])


@dataclass(frozen=True)
class Explanation:
    """One model's exact decompositions of S images: ``quantities[q]`` for each of :data:`QUANTITIES` is a
    :class:`~onnx_geom.linearize.Decomposition` (map (S, H, W, C), bias, value, residual). ``labels`` (S,) the
    true classes, ``predicted`` (S,) the model's, ``rival`` (S,) the frozen nearest competing class, ``kind``
    the linearization's report (``"exact local linear map"`` or the frozen gates), ``residual`` (S,) the largest
    relative identity residual of the logits."""

    quantities: dict[str, Decomposition]
    labels: np.ndarray
    predicted: np.ndarray
    rival: np.ndarray
    kind: str
    residual: np.ndarray


def explanation(res: Linearization, images: np.ndarray) -> Explanation:
    """The five quantities of :data:`QUANTITIES` from a linearization of the logits with geometry."""
    if res.output != LOGITS or res.margin is None or res.cos is None or res.length is None or res.labels is None:
        raise DataError("an explanation needs the linearization of the logits with its geometry (geometry=True).")
    predicted = res.value.argmax(axis=1)
    quantities = {
        "margin": res.margin,
        "cos": res.cos,
        "length": res.length,
        "true_logit": logit_decomposition(res, images, res.labels),
        "predicted_logit": logit_decomposition(res, images, predicted),
    }
    rival = res.rival if res.rival is not None else np.full(len(images), -1, np.int64)
    return Explanation(quantities, np.asarray(res.labels), predicted, rival, res.report.kind, res.residual)


def explain_arrays(
    res: Linearization, images: np.ndarray, samples: np.ndarray, labels: np.ndarray | None
) -> dict[str, np.ndarray]:
    """The arrays of an explanation file: ``images``, ``samples``, ``labels`` (when known), ``output`` (its name),
    ``W`` float32 (S, K, H, W, C), ``b`` (S, K), the output's values (``logits``, or ``values`` for another
    output), ``residual`` (S,); for the logits also ``predicted`` (S,), ``rival`` (S,) and, for each of margin, cos
    and length, ``<name>`` (S,), ``<name>_map`` (S, H, W, C) float32 and ``<name>_bias`` (S,)."""
    arrays: dict[str, np.ndarray] = {
        "images": np.asarray(images, np.uint8),
        "samples": np.asarray(samples, np.int64),
        "output": np.array(res.output),
        "W": np.asarray(res.W, np.float32),
        "b": np.asarray(res.b, np.float64),
        ("logits" if res.output == LOGITS else "values"): np.asarray(res.value, np.float64),
        "residual": np.asarray(res.residual, np.float64),
    }
    if labels is not None:
        arrays["labels"] = np.asarray(labels, np.int64)
    if res.output == LOGITS:
        arrays["predicted"] = res.value.argmax(axis=1).astype(np.int64)
    for name in GEOMETRY:
        part: Decomposition | None = getattr(res, name)
        if part is not None:
            arrays[name] = np.asarray(part.value, np.float64)
            arrays[f"{name}_map"] = np.asarray(part.map, np.float32)
            arrays[f"{name}_bias"] = np.asarray(part.bias, np.float64)
    if res.rival is not None:
        arrays["rival"] = np.asarray(res.rival, np.int64)
    return arrays


def write_explanation(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` to the .npz ``path`` whole or not at all (readable with ``np.load``, no pickles); the path
    is checked first (:func:`onnx_geom._files.check_output`: not inside a study, not a folder, writable)."""
    from onnx_geom._files import check_output, output_errors, replacing

    path = check_output(path)
    with output_errors(path), replacing(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    return path
