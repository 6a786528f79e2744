"""An in-memory stand-in with exactly the Study API of docs/architecture.md, and a synthetic study builder.

Used until (and beside) the real ``onnx_geom.store.Study``: the analysis code only ever calls this API.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from onnx_geom.errors import StudyNotFoundError


class Unit(NamedTuple):
    model: str
    corruption: str
    severity: int


class FakeStudy:
    def __init__(self, labels, attrs=None):
        self.labels = np.asarray(labels, np.int64)
        self.attrs = dict(attrs or {})
        self._heads, self._model_attrs, self._arrays, self._complete = {}, {}, {}, set()
        self.writes = []

    # building (not part of the contract)
    def add_model(self, model, W, b, tags=None):
        self._heads[model] = (np.asarray(W, np.float32), np.asarray(b, np.float32))
        self._model_attrs[model] = {"tags": dict(tags or {})}

    def add_unit(self, unit, features, logits):
        self._arrays[(unit, "features")] = np.asarray(features, np.float32)
        self._arrays[(unit, "logits")] = np.asarray(logits, np.float32)
        self._complete.add((unit, None))

    # the contract
    @property
    def models(self):
        return sorted(self._heads)

    def head(self, model):
        if model not in self._heads:
            raise StudyNotFoundError(f"no model {model!r}")
        return self._heads[model]

    def model_attrs(self, model):
        return dict(self._model_attrs[model])

    def units(self, model=None, group=None):
        return sorted(u for u, g in self._complete if g == group and (model is None or u.model == model))

    def is_complete(self, unit, group=None):
        return (unit, group) in self._complete

    def read(self, unit, name):
        if (unit, name) not in self._arrays or (unit, name.split("/")[0] if "/" in name else None) not in self._complete:
            raise StudyNotFoundError(f"no array {name!r} in {unit}")
        return self._arrays[(unit, name)].copy()

    def write_group(self, unit, group, arrays):
        for key, value in arrays.items():
            self._arrays[(unit, f"{group}/{key}")] = np.array(value)
        self._complete.add((unit, group))
        self.writes.append(unit)


def make_study(seed=0, *, models=None, corruptions=("gaussian_noise", "defocus_blur", "motion_blur"),
               severities=(1, 3), n=120, d=8, k=4):
    """Class-structured synthetic features; pruned models and higher severities are noisier."""
    rng = np.random.default_rng(seed)
    models = models or {"dense": {"method": "dense", "sparsity": 0.0}, "mag50": {"method": "magnitude", "sparsity": 0.5},
                        "mag90": {"method": "magnitude", "sparsity": 0.9}}
    labels = rng.integers(0, k, size=n)
    means = rng.normal(size=(k, d)) * 2.0
    base = rng.normal(size=(n, d))
    study = FakeStudy(labels, {"corruptions": list(corruptions), "severities": list(severities)})
    for mi, (model, tags) in enumerate(models.items()):
        W = means + rng.normal(scale=0.2, size=means.shape)
        b = rng.normal(scale=0.1, size=k)
        study.add_model(model, W, b, tags)
        sparsity = float(tags.get("sparsity", 0.0))
        for corruption in ("clean", *corruptions):
            for severity in ((0,) if corruption == "clean" else severities):
                f = means[labels] + base * (1 + sparsity) + rng.normal(scale=0.5 * severity, size=(n, d))
                if "blur" in corruption:
                    f = f * (1 - 0.1 * severity)
                study.add_unit(Unit(model, corruption, severity), f, f @ W.T + b)
    return study


def install_fake_store(monkeypatch, studies):
    """Make ``from onnx_geom.store import Study`` give a fake whose ``open(path)`` returns ``studies[path]``."""
    import sys
    import types

    class Study:
        @staticmethod
        def open(path, mode="r"):
            key = str(path)
            if key not in studies:
                raise StudyNotFoundError(f"no study at {path}; run `onnx-geom sweep` to create one.")
            return studies[key]

    module = types.ModuleType("onnx_geom.store")
    module.Study, module.Unit = Study, Unit
    monkeypatch.setitem(sys.modules, "onnx_geom.store", module)
