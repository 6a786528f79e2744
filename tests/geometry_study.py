"""A small real study (onnx_geom.store) with class-structured synthetic features, for the geometry tests."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np

from onnx_geom.probe_info import ProbeInfo
from onnx_geom.store import Study, Unit

MODELS = {
    "dense": {"method": "dense", "sparsity": 0.0},
    "mag50": {"method": "magnitude", "sparsity": 0.5},
    "mag90": {"method": "magnitude", "sparsity": 0.9},
}


_BUILT: dict[tuple, Path] = {}
_CACHE = Path(tempfile.mkdtemp(prefix="onnx-geom-test-studies-"))
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


def make_study(path, seed=0, *, geometry=False, **kwargs) -> Study:
    """A fresh copy at ``path`` of the study :func:`build_study` makes (built once per parameters), opened "a".

    ``geometry=True``: with every unit's geometry already computed (by ``compute_metrics``).
    """
    key = (seed, geometry, *sorted(kwargs.items()))
    if key not in _BUILT:
        _BUILT[key] = _CACHE / f"s{len(_BUILT)}"
        if geometry:
            from onnx_geom.metrics import compute_metrics

            compute_metrics(make_study(_BUILT[key], seed, **kwargs))
        else:
            build_study(_BUILT[key], seed, **kwargs)
    shutil.copytree(_BUILT[key], path)
    return Study.open(path, mode="a")


def build_study(
    path, seed=0, *, corruptions=("gaussian_noise", "defocus_blur", "motion_blur"), severities=(1, 3), n=120, d=8, k=4
) -> Study:
    """Pruned models and higher severities are noisier; blurs shrink the features. Returns it opened "a"."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    means = rng.normal(size=(k, d)) * 2.0
    base = rng.normal(size=(n, d))
    study = Study.create(
        path,
        images=np.zeros((n, 2, 2, 3), np.uint8),
        labels=labels,
        dataset_name="synthetic",
        class_names=[f"c{i}" for i in range(k)],
        corruptions=list(corruptions),
        severities=list(severities),
    )
    for model, tags in MODELS.items():
        W = (means + rng.normal(scale=0.2, size=means.shape)).astype(np.float32)
        b = rng.normal(scale=0.1, size=k).astype(np.float32)
        info = ProbeInfo(W=W, b=b, input_shape=(2, 2, 3), layout="NCHW", mean=(0.0,) * 3, std=(1.0,) * 3)
        study.add_model(model, info, tags=tags)
        sparsity = float(tags["sparsity"])
        for corruption in ("clean", *corruptions):
            for severity in (0,) if corruption == "clean" else severities:
                f = means[labels] + base * (1 + sparsity) + rng.normal(scale=0.5 * severity, size=(n, d))
                if "blur" in corruption:
                    f = f * (1 - 0.1 * severity)
                f = f.astype(np.float32)
                study.write_unit(Unit(model, corruption, severity), {"features": f, "logits": f @ W.T + b})
    return study


def count_writes(monkeypatch, study) -> list:
    """Record every unit whose geometry group is written (``study.write_group`` and the streamed
    ``study.writing(unit, spec, group=...)``, which ``write_group`` goes through)."""
    seen = []
    real = study.writing

    def spy(unit, spec, *, group=None):
        if group is not None:
            seen.append(unit)
        return real(unit, spec, group=group)

    monkeypatch.setattr(study, "writing", spy)
    return seen
