"""What the viewer shows, read from a study (or made up for tests and benchmarks); no Qt, no VisPy.

>>> data = ViewerData.synthetic(200, 4, models=("dense", "magnitude-90"), seed=0)
>>> data.accuracy.shape, data.geometry("dense", "clean", 0)["length"].shape
((2, 2, 2), (200,))

The per-sample geometry of a (model, corruption, severity) unit is loaded on first use and a few units are
kept in memory, so a study of 1,000,000 samples and hundreds of units opens at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from onnx_geom.conditions import CLEAN_CONDITION
from onnx_geom.errors import StudyError
from onnx_geom.geometry import GEOMETRY_ARRAYS

__all__ = ["GEOMETRY_KEYS", "ViewerData"]

GEOMETRY_KEYS = tuple(GEOMETRY_ARRAYS)  # what a unit's geometry holds (written by onnx-geom metrics)


@dataclass(eq=False)
class ViewerData:
    """The read-only data of one viewer window.

    ``models`` (M,) names with ``tags`` per model; ``corruptions`` (C,) and ``severities`` (S,) of the study
    (clean excluded); ``clean_accuracy`` (M,) and ``accuracy`` (M, C, S) with NaN where a unit is missing;
    ``embedding`` (M, 2) and ``mst`` edges ``(i, j, weight)`` of the model map (None when there is none, with
    ``embedding_note`` saying why); ``labels`` (N,) int64, ``class_names`` (K,); ``images`` an array-like
    (N, H, W, C) uint8 indexable by an index array, or None. ``loader(model, corruption, severity)`` returns
    the geometry dict of a unit (keys :data:`GEOMETRY_KEYS`); use :meth:`geometry`. ``heads[model]`` is
    ``(W (K, D), b (K,))`` (read from a study on first use); ``probe_paths[model]`` is the model's probe file (the attribution panel runs it through
    the injected :class:`~onnx_geom.viewers.services.Services`), and ``probe_notes[model]`` says why a model has
    none. ``corruption_profile`` and
    ``corruption_seed`` are the study's when its sweep made the corrupted images on the fly (then the viewer
    remakes the ones it shows, byte for byte); None when they came from a folder or are unknown. ``reference`` is
    the model the others are compared with (the comparison's reference: the dense model), or None.
    """

    models: list[str]
    tags: dict[str, dict[str, Any]]
    corruptions: list[str]
    severities: list[int]
    labels: np.ndarray
    class_names: list[str]
    loader: Callable[[str, str, int], dict[str, np.ndarray]] = field(repr=False)
    units: set[tuple[str, str, int]] = field(repr=False)
    embedding: np.ndarray | None = None
    mst: list[tuple[int, int, float]] = field(default_factory=list)
    embedding_note: str = ""
    #: how much of the distances the map keeps (``Comparison.embedding_quality``; empty when unknown)
    embedding_quality: dict[str, Any] = field(default_factory=dict)
    images: Any = field(default=None, repr=False)
    heads: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    probe_paths: dict[str, Path] = field(default_factory=dict)
    probe_notes: dict[str, str] = field(default_factory=dict)
    title: str = "study"
    corruption_profile: str | None = None
    corruption_seed: int = 0
    reference: str | None = None
    cache_units: int = 6
    _cache: OrderedDict = field(default_factory=OrderedDict, init=False, repr=False)
    _accuracy: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)
    _class_order: Any = field(default=None, init=False, repr=False)

    # -- sizes -------------------------------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def conditions(self) -> list[tuple[str, int]]:
        """Every (corruption, severity) column: clean first, then each corruption by severity."""
        return [CLEAN_CONDITION] + [(c, s) for c in self.corruptions for s in self.severities]

    def has(self, model: str, corruption: str, severity: int) -> bool:
        return (model, corruption, int(severity)) in self.units

    # -- geometry ----------------------------------------------------------------------------------------------
    def geometry(self, model: str, corruption: str, severity: int) -> dict[str, np.ndarray]:
        """The per-sample geometry of one unit: ``length`` (N,), ``angle_true`` (N,), ``margin`` (N,),
        ``cos`` (N, K), ``pred`` (N,), ``correct`` (N,) ... Raises StudyError if the unit has none."""
        key = (model, corruption, int(severity))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if key not in self.units:
            raise StudyError(
                f"unit {model}/{corruption}/{severity} has no geometry in this study; "
                "run `onnx-geom metrics STUDY` (or sweep that unit) first."
            )
        geom = self.loader(*key)
        self._cache[key] = geom
        while len(self._cache) > self.cache_units:
            self._cache.popitem(last=False)
        return geom

    def cos_columns(self, model: str, corruption: str, severity: int, classes: ArrayLike) -> np.ndarray:
        """(N, len(classes)) float32 cosines of every sample to the class directions ``classes`` (class ids), read
        without holding the unit's whole (N, K) cosines when the geometry is lazy (a study: streamed a chunk of
        rows at a time; memory is N x len(classes))."""
        geom = self.geometry(model, corruption, severity)
        cols = np.asarray(classes, np.int64)
        columns = getattr(geom, "columns", None)
        if columns is not None:
            return columns("cos", cols)
        return np.asarray(geom["cos"])[:, cols]

    def class_order(self):
        """The :class:`~onnx_geom.viewers.classes.ClassOrder` of the study's classes (from the first model's class
        directions; computed once)."""
        if self._class_order is None:
            from onnx_geom.viewers.classes import class_order

            model = self.models[0] if self.models else None
            head = self.heads.get(model) if model is not None else None
            W = None if head is None else np.asarray(head[0])
            self._class_order = class_order(W, self.class_names, source=model or "")
        return self._class_order

    @property
    def clean_accuracy(self) -> np.ndarray:
        """(M,) clean accuracy per model (NaN when missing)."""
        return self._accuracies()[0]

    @property
    def accuracy(self) -> np.ndarray:
        """(M, C, S) accuracy per model x corruption x severity (NaN when missing)."""
        return self._accuracies()[1]

    def _accuracies(self) -> tuple[np.ndarray, np.ndarray]:
        if self._accuracy is None:
            clean = np.full(len(self.models), np.nan)
            table = np.full((len(self.models), len(self.corruptions), len(self.severities)), np.nan)
            for i, m in enumerate(self.models):
                if self.has(m, *CLEAN_CONDITION):
                    clean[i] = float(np.mean(self.geometry(m, *CLEAN_CONDITION)["correct"]))
                for j, c in enumerate(self.corruptions):
                    for k, s in enumerate(self.severities):
                        if self.has(m, c, s):
                            table[i, j, k] = float(np.mean(self.loader(m, c, s)["correct"]))
            self._accuracy = (clean, table)
        return self._accuracy

    def set_accuracy(self, clean: np.ndarray, table: np.ndarray) -> None:
        """Use precomputed accuracies (``clean`` (M,), ``table`` (M, C, S)) instead of reading every unit."""
        self._accuracy = (np.asarray(clean, float), np.asarray(table, float))

    def thumbnails(self, indices: ArrayLike, condition: tuple[str, int] = CLEAN_CONDITION) -> np.ndarray | None:
        """(n, H, W, C) uint8 images of ``indices`` as the models saw them under ``condition``; the clean ones
        when that condition cannot be remade (see :meth:`remakes`); None when the study holds no images."""
        if self.images is None:
            return None
        idx = np.asarray(indices, np.int64)
        order = np.argsort(idx)
        out = np.asarray(self.images[idx[order]]) if idx.size else np.zeros((0, 1, 1, 3), np.uint8)
        back = np.empty_like(out)
        back[order] = out
        if idx.size and condition != CLEAN_CONDITION and self.remakes(condition):
            from onnx_geom.corruptions import corrupt

            profile = None if self.corruption_profile == "auto" else self.corruption_profile
            back = corrupt(back, condition[0], condition[1], profile=profile, rng=self.corruption_seed, indices=idx)
        return back

    def remakes(self, condition: tuple[str, int]) -> bool:
        """Whether :meth:`thumbnails` shows ``condition`` itself (clean, or made on the fly by the sweep)."""
        from onnx_geom.corruptions import CORRUPTIONS

        return condition == CLEAN_CONDITION or (self.corruption_profile is not None and condition[0] in CORRUPTIONS)

    # -- constructors ------------------------------------------------------------------------------------------
    @classmethod
    def from_study(cls, study, *, reference: str | None = None, comparison=None) -> ViewerData:
        """Read a study (an :class:`onnx_geom.store.Study` or its path): geometry lazily, the comparison once.

        Needs the geometry groups (``onnx-geom metrics STUDY``); the model map comes from ``comparison`` when the
        caller already has it, else from the comparison stored in the study (``onnx-geom compare``) while it is
        fresh, else from :func:`onnx_geom.comparison.compare_study`.
        """
        from onnx_geom.viewers._study import read_study

        return read_study(cls, study, reference=reference, comparison=comparison)

    @classmethod
    def of(cls, source, *, reference: str | None = None) -> ViewerData:
        """``source`` itself when it is a ViewerData, else :meth:`from_study` of it (a folder or a Study)."""
        return source if isinstance(source, cls) else cls.from_study(source, reference=reference)

    @classmethod
    def synthetic(
        cls,
        n: int,
        k: int,
        *,
        models: Sequence[str] = ("dense", "magnitude-50", "magnitude-90"),
        seed: int = 0,
        corruptions: Sequence[str] = ("gaussian_noise", "fog"),
        severities: Sequence[int] = (1, 3),
        dim: int = 16,
        image_size: int = 16,
    ) -> ViewerData:
        """A made-up study of ``n`` samples and ``k`` classes, for tests, demos and benchmarks.

        Features are drawn around random class directions (pruned models and stronger corruptions are
        noisier); the geometry is computed from them with :func:`onnx_geom.geometry.sample_geometry`.
        Images are class prototypes plus noise, made on demand; the attribution "probe" of every model is a
        fixed linear map of the image to the features.
        """
        from onnx_geom.viewers._synthetic import make_synthetic

        return make_synthetic(
            cls,
            n,
            k,
            models=list(models),
            seed=seed,
            corruptions=list(corruptions),
            severities=[int(s) for s in severities],
            dim=dim,
            image_size=image_size,
        )
