"""What the views ask of the world besides the data: running a model. Injected into the views, never held by
:class:`~onnx_geom.viewers.data.ViewerData` (which holds data only: arrays, names, paths).

>>> services = Services(features=FunctionFeatures({"m": lambda images: images.reshape(len(images), -1) / 255.0}))
>>> services.features.unavailable("m"), services.features.unavailable("x")
(None, 'no feature function for model x')
>>> services.features("m", np.full((1, 2, 2, 1), 255, np.uint8)).tolist()
[[1.0, 1.0, 1.0, 1.0]]
>>> services.explain.unavailable("m")
'no explain function for model m'

``explain(model, images, labels)`` is the exact linearization of the model's logits at those images
(:func:`onnx_geom.explain.explanation`): margin, cos, length, true and predicted logit, each a per-pixel map plus a
bias that add up to the value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from onnx_geom.errors import OnnxGeomError, StudyError

if TYPE_CHECKING:
    from onnx_geom.explain import Explanation

__all__ = ["Explain", "Features", "FunctionExplain", "FunctionFeatures", "ProbeExplain", "ProbeFeatures", "Services"]


class Features(Protocol):
    """The features of a model: ``features(model, images uint8 (n, H, W, C)) -> float32 (n, D)``."""

    def unavailable(self, model: str) -> str | None:
        """None when ``model``'s features can be computed here, else the sentence saying why not."""
        ...

    def __call__(self, model: str, images: np.ndarray) -> np.ndarray: ...


class _FromProbes:
    """What each model's probe file is made into (``_build``, by subclasses), on first use and kept; under a lock,
    as the window works on a worker thread. ``notes[model]`` says why a model has no probe file."""

    #: How the error of a probe file ``_build`` cannot take ends: "probe file P could not be <_verb> (...)".
    _verb = "loaded"

    def __init__(self, probes: Mapping[str, Any], notes: Mapping[str, str] | None = None) -> None:
        self._probes, self._notes = dict(probes), dict(notes or {})
        self._built: dict[str, Any] = {}
        self._lock = threading.Lock()

    def unavailable(self, model: str) -> str | None:
        if model in self._probes:
            return None
        return self._notes.get(model, f"the study does not name a probe file for model {model}")

    def _get(self, model: str) -> Any:
        """The built object of ``model``; a model :meth:`unavailable` names, or a probe file that cannot be built,
        is a :class:`StudyError` in one sentence."""
        reason = self.unavailable(model)
        if reason is not None:
            raise StudyError(reason + ".")
        with self._lock:
            if model not in self._built:
                probe = self._probes[model]
                try:
                    self._built[model] = self._build(probe)
                except OnnxGeomError:
                    raise
                except Exception as error:  # onnxruntime raises its own classes for unreadable files
                    raise StudyError(
                        f"probe file {probe} could not be {self._verb} ({error}); re-create it with `onnx-geom probe`."
                    ) from None
            return self._built[model]

    def _build(self, probe: Any) -> Any:
        raise NotImplementedError


class ProbeFeatures(_FromProbes):
    """Features through each model's probe file, with the core runner (GPU when usable, else CPU); a model's
    onnxruntime session is opened on first use and kept. ``notes[model]`` says why a model has no probe file."""

    def __call__(self, model: str, images: np.ndarray) -> np.ndarray:
        return self._get(model).run(images)[0]

    def _build(self, probe: Path) -> Any:
        from onnx_geom.runner import ProbeSession

        return ProbeSession.open(probe, device="auto", name=probe.name)


@dataclass
class FunctionFeatures:
    """Features from plain functions ``{model: images -> features}`` (tests, synthetic studies)."""

    functions: Mapping[str, Callable[[np.ndarray], np.ndarray]]

    def unavailable(self, model: str) -> str | None:
        return None if model in self.functions else f"no feature function for model {model}"

    def __call__(self, model: str, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.functions[model](images))


class Explain(Protocol):
    """The exact linearization of a model's logits: ``explain(model, images uint8 (n, H, W, C), labels (n,))`` ->
    :class:`onnx_geom.explain.Explanation` (per-pixel maps + biases of margin, cos, length, true and predicted
    logit)."""

    def unavailable(self, model: str) -> str | None:
        """None when ``model`` can be explained here, else the sentence saying why not."""
        ...

    def __call__(self, model: str, images: np.ndarray, labels: np.ndarray) -> Explanation: ...


class ProbeExplain(_FromProbes):
    """Explanations through each model's probe file with :class:`onnx_geom.linearize.Linearizer` (onnxruntime,
    GPU when usable): a model's graphs and sessions are built on first use and kept. ``probes`` maps a model to its
    probe file (or an ``onnx.ModelProto``); ``notes[model]`` says why a model has none."""

    _verb = "linearized"

    def __init__(self, probes: Mapping[str, Any], notes: Mapping[str, str] | None = None, *, device: str = "auto"):
        super().__init__(probes, notes)
        self.device = device
        self.builds = 0  # linearizers built (one per model, however many samples are explained)

    def __call__(self, model: str, images: np.ndarray, labels: np.ndarray) -> Explanation:
        from onnx_geom.explain import explanation

        linearizer = self._get(model)
        images = np.asarray(images)
        return explanation(linearizer(images, np.asarray(labels, np.int64)), images)

    def _build(self, probe: Any) -> Any:
        from onnx_geom.linearize import Linearizer

        linearizer = Linearizer(probe, device=self.device)
        self.builds += 1
        return linearizer


@dataclass
class FunctionExplain:
    """Explanations from plain functions ``{model: (images, labels) -> Linearization}`` of the logits with
    geometry (tests, synthetic studies)."""

    functions: Mapping[str, Callable[[np.ndarray, np.ndarray], Any]]

    def unavailable(self, model: str) -> str | None:
        return None if model in self.functions else f"no explain function for model {model}"

    def __call__(self, model: str, images: np.ndarray, labels: np.ndarray) -> Explanation:
        from onnx_geom.explain import explanation

        return explanation(self.functions[model](images, labels), images)


@dataclass
class Services:
    """Everything the views use besides the data and the selection: ``features`` (occlusion) and ``explain``
    (the linearization)."""

    features: Features = field(default_factory=lambda: FunctionFeatures({}))
    explain: Explain = field(default_factory=lambda: FunctionExplain({}))

    @classmethod
    def for_data(cls, data: Any) -> Services:
        """The default services of a study's data: features and explanations through the probe files it names."""
        return cls(
            features=ProbeFeatures(data.probe_paths, data.probe_notes),
            explain=ProbeExplain(data.probe_paths, data.probe_notes),
        )
