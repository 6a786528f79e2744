"""What the views ask of the world besides the data: running a model. Injected into the views, never held by
:class:`~onnx_geom.viewers.data.ViewerData` (which holds data only: arrays, names, paths).

>>> services = Services(features=FunctionFeatures({"m": lambda images: images.reshape(len(images), -1) / 255.0}))
>>> services.features.unavailable("m"), services.features.unavailable("x")
(None, 'no feature function for model x')
>>> services.features("m", np.full((1, 2, 2, 1), 255, np.uint8)).tolist()
[[1.0, 1.0, 1.0, 1.0]]
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from onnx_geom.errors import OnnxGeomError, StudyError

__all__ = ["Features", "FunctionFeatures", "ProbeFeatures", "Services"]


class Features(Protocol):
    """The features of a model: ``features(model, images uint8 (n, H, W, C)) -> float32 (n, D)``."""

    def unavailable(self, model: str) -> str | None:
        """None when ``model``'s features can be computed here, else the sentence saying why not."""
        ...

    def __call__(self, model: str, images: np.ndarray) -> np.ndarray: ...


class ProbeFeatures:
    """Features through each model's probe file, with the core runner (GPU when usable, else CPU); a model's
    onnxruntime session is opened on first use and kept. ``notes[model]`` says why a model has no probe file."""

    def __init__(self, probes: Mapping[str, Path], notes: Mapping[str, str] | None = None) -> None:
        self._probes, self._notes = dict(probes), dict(notes or {})
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()  # the window computes attribution maps on a worker thread

    def unavailable(self, model: str) -> str | None:
        if model in self._probes:
            return None
        return self._notes.get(model, f"the study does not name a probe file for model {model}")

    def __call__(self, model: str, images: np.ndarray) -> np.ndarray:
        reason = self.unavailable(model)
        if reason is not None:
            raise StudyError(reason + ".")
        return self._session(model).run(images)[0]

    def _session(self, model: str) -> Any:
        from onnx_geom.runner import ProbeSession

        with self._lock:
            if model not in self._sessions:
                path = self._probes[model]
                try:
                    self._sessions[model] = ProbeSession.open(path, device="auto", name=path.name)
                except OnnxGeomError:
                    raise
                except Exception as error:  # onnxruntime raises its own classes for unreadable files
                    raise StudyError(
                        f"probe file {path} could not be loaded ({error}); re-create it with `onnx-geom probe`."
                    ) from None
            return self._sessions[model]


@dataclass
class FunctionFeatures:
    """Features from plain functions ``{model: images -> features}`` (tests, synthetic studies)."""

    functions: Mapping[str, Callable[[np.ndarray], np.ndarray]]

    def unavailable(self, model: str) -> str | None:
        return None if model in self.functions else f"no feature function for model {model}"

    def __call__(self, model: str, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.functions[model](images))


@dataclass
class Services:
    """Everything the views use besides the data and the selection."""

    features: Features = field(default_factory=lambda: FunctionFeatures({}))

    @classmethod
    def for_data(cls, data: Any) -> Services:
        """The default services of a study's data: features through the probe files it names."""
        return cls(features=ProbeFeatures(data.probe_paths, data.probe_notes))
