"""The :class:`Study`: open or create a study, read it, write models and units atomically, store a comparison.

Private to :mod:`onnx_geom.store` (see its docstring and docs/store.md). Every file goes through
:mod:`onnx_geom.store._zarrio`; the layout is :mod:`onnx_geom.store._layout`, the locks
:mod:`onnx_geom.store._locks`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom.errors import StudyError, StudyNotFoundError
from onnx_geom.store import _comparison, _root
from onnx_geom.store._layout import (
    COMPARISON,
    GEOMETRY,
    IMAGES,
    LABELS,
    MODELS,
    Unit,
    check_name,
    dimension_names,
    model_key,
    row_chunks,
    unit_key,
)
from onnx_geom.store._locks import lock, writer_stamp
from onnx_geom.store._units import UnitWriter, check_spec, fingerprint
from onnx_geom.store._zarrarray import open_array
from onnx_geom.store._zarrio import (
    child_groups,
    group_attrs,
    io_errors,
    read_meta,
    remove,
    require_groups,
    write_array,
    write_group,
)

_LOCK_WAIT_S = 30.0


class UnitAlreadyComplete(Exception):
    """Raised by :meth:`Study.writing` when another process completed the unit before this one claimed it."""


class Study:
    """A study folder opened for reading (``mode="r"``) or writing (``mode="a"``). See :mod:`onnx_geom.store`."""

    def __init__(self, path: Path, mode: str) -> None:
        self.path, self.mode = path, mode
        self._images: Any = None

    # ----------------------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | os.PathLike[str], mode: str = "r") -> Study:
        """Open an existing study; :class:`StudyNotFoundError` if there is none at ``path``."""
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', not {mode!r}")
        path = Path(path)
        if not path.is_dir():
            raise StudyNotFoundError(f"no study at {path}; create one with `onnx-geom run ... -o {path}`.")
        if not (path / "zarr.json").is_file():
            raise StudyError(
                f"{path} is not an onnx-geom study (no zarr.json inside); point at the folder given to `onnx-geom run -o`."
            )
        try:
            meta = read_meta(path, strict=True) or {}
        except (ValueError, OSError) as err:
            raise StudyError(
                f"the study at {path} is unreadable ({type(err).__name__}: {err}); it may be damaged."
            ) from None
        attrs = meta.get("attributes") if meta.get("node_type") == "group" else None
        if not isinstance(attrs, dict) or "onnx_geom_version" not in attrs or "dataset" not in attrs:
            raise StudyError(f"{path} is a Zarr node but not an onnx-geom study (no onnx_geom_version attribute).")
        return cls(path, mode)

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        images: Any,
        labels: Any,
        dataset_name: str,
        class_names: Sequence[str] = (),
        corruptions: Sequence[str] = (),
        severities: Sequence[int] = (),
        profile: str | None = None,
        seed: int = 0,
        exist_ok: bool = False,
    ) -> Study:
        """Create a study holding ``images`` uint8 (N, H, W, C) and ``labels`` int (N,), opened in mode "a".

        With ``exist_ok=True`` an existing study made from the same data, profile and seed is opened instead
        (its lists of corruptions and severities grow to include the new ones); other data is an error.
        """
        path = Path(path)
        labels = _root.check_data(images, labels)
        digest = fingerprint(images, labels)
        with io_errors(f"creating the study at {path}"):
            path.mkdir(parents=True, exist_ok=True)
            with lock(
                path, wait_s=_LOCK_WAIT_S, holder=f"another process is creating the study at {path}; try again later."
            ):
                if (path / "zarr.json").exists():
                    if not exist_ok:
                        raise StudyError(f"a study already exists at {path}; open it, or choose another folder.")
                    study = cls.open(path, mode="a")
                    _root.check_same(study.attrs, path, digest, len(labels), profile, seed)
                    study._grow_plan(corruptions, severities)
                    return study
                if any(path.iterdir()):
                    raise StudyError(f"{path} exists and is not empty; choose a new folder for the study.")
                attrs = _root.root_attrs(
                    images.shape, labels, digest, dataset_name, class_names, corruptions, severities, profile, seed
                )
                _root.write_new(path, images, labels, attrs)
        return cls(path, "a")

    def _grow_plan(self, corruptions: Sequence[str], severities: Sequence[int]) -> None:
        """Add ``corruptions`` and ``severities`` to the study's plan (one write of the root's metadata)."""
        grown = _root.grown_plan(self.attrs, corruptions, severities)
        if grown is not None:
            write_group(self.path, grown, durable=True)

    def _writable(self) -> None:
        if self.mode != "a":
            raise StudyError(f"the study at {self.path} was opened read-only; open it with mode='a' to write.")

    @contextlib.contextmanager
    def _study_lock(self, folder: Path | None = None) -> Iterator[None]:
        holder = f"another process has held the study at {self.path} for {_LOCK_WAIT_S:.0f} s; try again later."
        with lock(folder or self.path, wait_s=_LOCK_WAIT_S, holder=holder):
            yield

    # ----------------------------------------------------------------------------------------- reading
    @property
    def attrs(self) -> dict[str, Any]:
        return dict(group_attrs(self.path) or {})

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self._array(self.path / LABELS, "the labels").read(), dtype=np.int64)

    @property
    def images(self) -> Any:
        """The clean images, a lazy array uint8 (N, H, W, C): ``study.images[idx]`` reads only the chunks of
        ``idx`` and is numpy (``np.asarray(study.images)``: all of them)."""
        if self._images is None:
            self._images = self._array(self.path / IMAGES, "the images")
        return self._images

    def _array(self, folder: Path, what: str) -> Any:
        array = open_array(folder)
        if array is None:
            raise StudyError(f"the study at {self.path} has no {what} ({folder.name}); it may be damaged.")
        return array

    @property
    def models(self) -> list[str]:
        return [name for name in self._model_names() if self._has_model(name)]

    def _has_model(self, model: str) -> bool:
        """Whether the model's head is written (W is written last); one file lookup."""
        return (self.path / model_key(model) / "W" / "zarr.json").is_file()

    def _model_names(self) -> list[str]:
        return list(child_groups(self.path / MODELS))

    def _missing_model(self, model: str) -> StudyNotFoundError:
        return StudyNotFoundError(f"the study at {self.path} has no model {model!r}; it has {self._model_names()}.")

    def head(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        """The model's head ``(W (K, D), b (K,))``, in ``logits = features @ W.T + b``."""
        folder = self.path / model_key(model)
        W, b = open_array(folder / "W"), open_array(folder / "b")
        if W is None or b is None:
            raise self._missing_model(model)
        return np.asarray(W.read(), np.float32), np.asarray(b.read(), np.float32)

    def model_attrs(self, model: str) -> dict[str, Any]:
        attrs = group_attrs(self.path / model_key(model))
        if attrs is None:
            raise self._missing_model(model)
        return dict(attrs)

    def _unit_attrs(self, unit: Unit, group: str | None = None) -> dict[str, Any] | None:
        """The attributes of a unit (or of a group inside it): one metadata file read; None if there is none."""
        return group_attrs(self.path / unit_key(unit, group))

    def is_complete(self, unit: Unit, group: str | None = None) -> bool:
        """Whether ``unit`` (or the group ``group`` inside it) is completely written."""
        if group is not None and not self.is_complete(unit):
            return False
        attrs = self._unit_attrs(unit, group)
        return bool(attrs is not None and attrs.get("complete") is True)

    def _all_units(self, model: str | None = None) -> Iterator[tuple[Unit, dict[str, Any]]]:
        """Every unit (of ``model``, or of all models) with its attributes (unreadable metadata reads as an
        incomplete unit)."""
        for name in self.models if model is None else [model]:
            for corruption in child_groups(self.path / model_key(name)):
                folder = self.path / model_key(name) / corruption
                for severity, attrs in sorted(child_groups(folder, digits=True).items(), key=lambda kv: int(kv[0])):
                    yield Unit(name, corruption, int(severity)), attrs

    def units(self, model: str | None = None, group: str | None = None) -> list[Unit]:
        """Complete units, sorted (``group="geometry"``: those whose geometry is complete too)."""
        return sorted(unit for unit, _ in self._complete_units(model, group))

    def _complete_units(self, model: str | None, group: str | None) -> Iterator[tuple[Unit, dict[str, Any]]]:
        """Complete units with the attributes of the unit (``group``: of that group, complete too)."""
        for unit, attrs in self._all_units(model):
            if attrs.get("complete") is not True:
                continue
            if group is not None:
                attrs = self._unit_attrs(unit, group) or {}
                if attrs.get("complete") is not True:
                    continue
            yield unit, attrs

    def incomplete_units(self) -> list[tuple[Unit, dict[str, Any]]]:
        """Units that were started but not completed, with their ``writer`` stamp (pid, host, started)."""
        return sorted(
            (unit, dict(attrs.get("writer") or {}))
            for unit, attrs in self._all_units()
            if attrs.get("complete") is not True
        )

    def read(self, unit: Unit, name: str) -> np.ndarray:
        """An array of a complete unit: ``"features"``, ``"logits"``, or ``"<group>/<array>"`` (e.g. ``"geometry/margin"``)."""
        return self.read_many(unit, [name])[name]

    def read_many(self, unit: Unit, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Several arrays of a complete unit at once (completeness checked once per group): ``{name: array}``,
        e.g. ``study.read_many(unit, ["geometry/margin", "geometry/length"])``."""
        checked: set[str | None] = set()
        out = {}
        for name in names:
            group = name.rsplit("/", 1)[0] if "/" in name else None
            if group not in checked and not self.is_complete(unit, group):
                what = f"{group} of unit {unit}" if group else f"unit {unit}"
                raise StudyNotFoundError(
                    f"{what} is not complete in the study at {self.path}; run the sweep (or metrics) again."
                )
            checked.add(group)
            array = open_array(self.path / unit.key() / name)
            if array is None:
                raise StudyNotFoundError(f"unit {unit} has no array {name!r}.")
            out[name] = array.read()
        return out

    # ----------------------------------------------------------------------------------------- writing
    def add_model(self, name: str, info: Any, *, probe_path: str = "", tags: Mapping[str, Any] | None = None) -> None:
        """Record a model's head and probe metadata (``info``: a ProbeInfo); the same model again is a no-op.

        A different model under a name the study already holds is a :class:`StudyError`.
        """
        self._writable()
        check_name("model", name)
        W, b = np.asarray(info.W, np.float32), np.asarray(info.b, np.float32)
        with io_errors(f"adding model {name!r} to the study at {self.path}"), self._study_lock():
            if self._has_model(name):
                old_W, old_b = self.head(name)
                if old_W.shape != W.shape or not (np.array_equal(old_W, W) and np.array_equal(old_b, b)):
                    raise StudyError(
                        f"the study at {self.path} already holds a different model named {name!r}; rename it (name=path) or use a new study."
                    )
                return
            folder, durable = self.path / model_key(name), {"sync": True, "durable": True}  # written once
            attrs = {"probe": info.to_json(), "probe_path": str(probe_path)}
            write_group(folder, {**attrs, "tags": dict(tags if tags is not None else info.tags)}, durable=True)
            write_array(folder / "b", b, dimension_names("b", 1), chunks=row_chunks(b.shape, 4), **durable)
            # W last: a model is listed once W's metadata exists
            write_array(folder / "W", W, dimension_names("W", 2), chunks=row_chunks(W.shape, 4), **durable)

    @contextlib.contextmanager
    def writing(
        self, unit: Unit, spec: Mapping[str, tuple[Sequence[int], str]], *, group: str | None = None
    ) -> Iterator[UnitWriter]:
        """Write a unit (or the group ``group`` inside a complete unit) atomically, claiming it first.

        ``spec`` maps array names to ``(shape, dtype)``. Raises :class:`StudyLockedError` if another process is
        writing it, :class:`UnitAlreadyComplete` if it was completed meanwhile. Marked complete only when the
        ``with`` block ends without an error and every row was written.
        """
        self._writable()
        check_name("corruption", unit.corruption)
        check_spec(spec)
        if not self._has_model(unit.model):
            raise StudyNotFoundError(f"add model {unit.model!r} to the study before writing its units.")
        if group is not None and not self.is_complete(unit):
            raise StudyNotFoundError(f"unit {unit} is not complete; its {group} cannot be written yet.")
        key = unit_key(unit, group)
        what = f"{group} of unit {unit}" if group else f"unit {unit}"
        folder = self.path / key
        with io_errors(f"writing {what} to the study at {self.path}"):
            claim = {"complete": False, "writer": writer_stamp()}
            if group_attrs(folder) is None:
                with self._study_lock():  # two processes may create the same group at once
                    require_groups(self.path, key, claim)  # a new group is created claimed
            holder = lambda: self._holder_sentence(group_attrs(folder) or {}, what)  # read when it is locked
            with lock(folder, wait_s=0.0, holder=holder):
                attrs = group_attrs(folder) or {}
                if attrs.get("complete") is True:
                    raise UnitAlreadyComplete(str(unit))
                if attrs.get("complete") is not False or attrs.get("writer") != claim["writer"]:
                    attrs.update(claim)
                    write_group(folder, attrs)
                if group is None:
                    remove(folder / GEOMETRY)  # derived from the old arrays: stale
                writer = UnitWriter(folder, spec, group=group)
                yield writer
                writer.close()
                # durable: the mark that the unit is whole; "completion" tells one completion from another
                write_group(folder, {**attrs, "complete": True, "completion": uuid.uuid4().hex}, durable=True)

    def _holder_sentence(self, attrs: Mapping[str, Any], what: str) -> str:
        stamp = attrs.get("writer") or {}
        who = (
            f"process {stamp.get('pid')} on {stamp.get('host')} (since {stamp.get('started')})"
            if stamp
            else "another process"
        )
        return f"{what} is being written by {who}; that process keeps it, this one moves on."

    def write_group(self, unit: Unit, group: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Write ``arrays`` as the group ``group`` of a complete unit, atomically (arrays first, then complete)."""
        check_name("group", group)
        self._write_whole(unit, arrays, group)

    def write_unit(self, unit: Unit, arrays: Mapping[str, np.ndarray]) -> None:
        """Write a whole unit at once (``{"features": (N, D), "logits": (N, K)}``), atomically."""
        self._write_whole(unit, arrays, None)

    def _write_whole(self, unit: Unit, arrays: Mapping[str, np.ndarray], group: str | None) -> None:
        arrays = {name: np.asarray(a) for name, a in arrays.items()}
        with self.writing(unit, {n: (a.shape, a.dtype.str) for n, a in arrays.items()}, group=group) as writer:
            writer.append(**arrays)

    # ----------------------------------------------------------------------------------------- comparison
    def geometry_fingerprint(self) -> str:
        """sha256 of the study's units whose geometry is complete, each with its geometry's writer and completion
        id: it changes when a unit's geometry is added, removed or rewritten (rewriting a unit drops its geometry)."""
        items = [
            [unit.model, unit.corruption, unit.severity, attrs.get("completion"), attrs.get("writer")]
            for unit, attrs in self._complete_units(None, GEOMETRY)
        ]
        return hashlib.sha256(json.dumps(sorted(items, key=str)).encode()).hexdigest()

    def write_comparison(self, comparison: Any) -> None:
        """Store ``comparison`` (a :class:`onnx_geom.comparison.Comparison`, with its ``parameters`` and the
        ``geometry_fingerprint`` of the units it was computed from) as the study's ``comparison`` group,
        replacing the one stored before: its array fields as arrays, the others as JSON attributes."""
        self._writable()
        with io_errors(f"storing the comparison in the study at {self.path}"):
            self.path.joinpath(COMPARISON).mkdir(exist_ok=True)
            with self._study_lock(self.path / COMPARISON):
                _comparison.store(self.path / COMPARISON, comparison, self.geometry_fingerprint)

    def read_comparison(self, **parameters: Any) -> Any:
        """The stored comparison computed with ``parameters`` (those of
        :func:`onnx_geom.comparison.compare_study`, defaults filled in) from the study's current geometry;
        None when none is stored, it was computed with other parameters or by another onnx-geom version, or
        a unit's geometry was added, removed or rewritten since (stale)."""
        from onnx_geom.comparison import Comparison, comparison_parameters

        wanted = comparison_parameters(**parameters)
        return _comparison.load(self.path / COMPARISON, Comparison, wanted, self.geometry_fingerprint())

    def __repr__(self) -> str:
        return f"Study({str(self.path)!r}, mode={self.mode!r})"
