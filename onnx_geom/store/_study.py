"""The :class:`Study`: open or create a study, read it, write models and units atomically, store a comparison.

Private to :mod:`onnx_geom.store` (see its docstring and docs/store.md). Every file goes through
:mod:`onnx_geom.store._zarrio` and :mod:`onnx_geom.store._guard` (inside the study, never through a link); the
layout is :mod:`onnx_geom.store._layout`, the locks :mod:`onnx_geom.store._locks`, what the attributes must hold
:mod:`onnx_geom.store._schema` (checked whenever they are read).
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
from onnx_geom.store import _comparison, _guard, _root, _schema
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
    shown,
    unit_key,
)
from onnx_geom.store._locks import lock, writer_stamp
from onnx_geom.store._units import UnitWriter, check_spec, fingerprint
from onnx_geom.store._zarrarray import ZarrArray, open_array
from onnx_geom.store._zarrio import (
    META,
    child_folders,
    group_attrs,
    io_errors,
    read_meta,
    remove,
    require_groups,
    write_array,
    write_group,
)

_LOCK_WAIT_S = 30.0
HEAD = ("W", "b")


class UnitAlreadyComplete(Exception):
    """Raised by :meth:`Study.writing` when another process completed the unit before this one claimed it."""


def head_sha256(W: np.ndarray, b: np.ndarray) -> str:
    """sha256 of a head (float32, little-endian, with its shape): recorded with a model, so that a damaged head
    can be restored from a probe that provably has the same one."""
    digest = hashlib.sha256(json.dumps([list(W.shape), list(b.shape)]).encode())
    for array in (W, b):
        digest.update(np.ascontiguousarray(array, dtype="<f4").tobytes())
    return digest.hexdigest()


class Study:
    """A study folder opened for reading (``mode="r"``) or writing (``mode="a"``). See :mod:`onnx_geom.store`."""

    def __init__(self, path: Path, mode: str) -> None:
        self.path, self.mode = path, mode
        self._images: Any = None
        self._n: int | None = None

    # ----------------------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | os.PathLike[str], mode: str = "r") -> Study:
        """Open an existing study; :class:`StudyNotFoundError` if there is none at ``path``."""
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', not {mode!r}")
        path = Path(path)
        if not path.is_dir():
            raise StudyNotFoundError(f"no study at {path}; create one with `onnx-geom run ... -o {path}`.")
        try:
            meta = read_meta(path, root=path, strict=True)
        except StudyError:
            raise
        except (ValueError, OSError) as err:
            raise StudyError(
                f"the study at {path} is unreadable ({type(err).__name__}: {err}); it may be damaged."
            ) from None
        if meta is None:
            raise StudyError(
                f"{path} is not an onnx-geom study (no zarr.json inside); point at the folder given to `onnx-geom run -o`."
            )
        attrs = meta.get("attributes") if meta.get("node_type") == "group" else None
        if not isinstance(attrs, dict) or "onnx_geom_version" not in attrs or "dataset" not in attrs:
            raise StudyError(f"{path} is a Zarr node but not an onnx-geom study (no onnx_geom_version attribute).")
        checked = _schema.check_root(attrs, path / META)  # damaged attributes are said now (the file read once)
        study = cls(path, mode)
        study._n = int(checked["dataset"]["n"])
        return study

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
        corrupted: Mapping[str, Any] | None = None,
        exist_ok: bool = False,
    ) -> Study:
        """Create a study holding ``images`` uint8 (N, H, W, C) and ``labels`` int (N,), opened in mode "a".

        ``corrupted`` says where the corrupted images come from: None when they are made on the fly, else a
        JSON-able mapping (e.g. ``{"folder": ..., "sha256": ...}`` for a ``--corrupted DIR``), stored and compared
        like the data. The study is built beside ``path`` and renamed into place whole (all or nothing).
        With ``exist_ok=True`` an existing study made from the same data, profile, seed and source of corrupted
        images is opened instead (its lists of corruptions and severities grow to include the new ones; labels or
        images that ``onnx-geom check --repair`` removed as damaged are written again); otherwise an error.
        """
        path = Path(path)
        labels = _root.check_data(images, labels)
        for corruption in corruptions:
            check_name("corruption", corruption)
        source = _root.corrupted_source(corrupted)
        digest = fingerprint(images, labels)
        target = Path(os.path.realpath(path)) if os.path.islink(path) else path  # a link the user gave: its target
        won = False
        with io_errors(f"creating the study at {path}"):
            if not os.path.lexists(target) or (target.is_dir() and not any(target.iterdir())):
                attrs = _root.root_attrs(
                    images.shape, labels, digest, dataset_name, class_names, corruptions, severities, profile, seed,
                    source,
                )  # fmt: skip
                won = _root.create_new(target, images, labels, attrs)
            if won:
                return cls(path, "a")
            if not target.is_dir():
                raise StudyError(f"{path} is a file; choose a folder for the study.")
            if _guard.read_bytes(path, path / META) is None:
                raise StudyError(f"{path} exists and is not empty; choose a new folder for the study.")
            if not exist_ok:
                raise StudyError(f"a study already exists at {path}; open it, or choose another folder.")
            study = cls.open(path, mode="a")
            with study._study_lock():
                attrs = study.attrs  # read once, under the lock: what the plan grows from
                _root.check_same(attrs, path, digest, len(labels), profile, seed, source)
                study._restore_data(images, labels)
                study._grow_plan(corruptions, severities, attrs)
        return study

    def _restore_data(self, images: Any, labels: np.ndarray) -> None:
        """Write the labels or images again where they are missing (``onnx-geom check --repair`` removes damaged
        ones): the caller checked that this data is the study's (its fingerprint)."""
        missing = [name for name in (LABELS, IMAGES) if open_array(self.path / name, root=self.path) is None]
        if missing:
            _root.write_data(self.path, images, labels, root=self.path, only=missing)
            self._images = None

    def _grow_plan(
        self, corruptions: Sequence[str], severities: Sequence[int], attrs: dict[str, Any] | None = None
    ) -> None:
        """Add ``corruptions`` and ``severities`` to the study's plan (one write of the root's metadata);
        ``attrs``: the root's attributes, when the caller read them already (under the study's lock)."""
        grown = _root.grown_plan(attrs if attrs is not None else self.attrs, corruptions, severities)
        if grown is not None:
            write_group(self.path, grown, root=self.path, durable=True)

    def _writable(self) -> None:
        if self.mode != "a":
            raise StudyError(f"the study at {self.path} was opened read-only; open it with mode='a' to write.")

    @contextlib.contextmanager
    def _study_lock(self, folder: Path | None = None) -> Iterator[None]:
        holder = f"another process has held the study at {self.path} for {_LOCK_WAIT_S:.0f} s; try again later."
        with lock(folder or self.path, wait_s=_LOCK_WAIT_S, holder=holder, root=self.path):
            yield

    # ----------------------------------------------------------------------------------------- reading
    @property
    def attrs(self) -> dict[str, Any]:
        """The root's attributes, checked (:mod:`onnx_geom.store._schema`)."""
        return _schema.check_root(group_attrs(self.path, root=self.path) or {}, self.path / META)

    @property
    def n(self) -> int:
        """The number of samples (images, labels, rows of every unit array)."""
        if self._n is None:
            self._n = int(self.attrs["dataset"]["n"])
        return self._n

    @property
    def labels(self) -> np.ndarray:
        labels = self._array(self.path / LABELS, "the labels")
        self._rows(labels, "the labels", (self.n,))
        return np.asarray(labels.read(), dtype=np.int64)

    @property
    def images(self) -> Any:
        """The clean images, a lazy array uint8 (N, H, W, C): ``study.images[idx]`` reads only the chunks of
        ``idx`` and is numpy (``np.asarray(study.images)``: all of them)."""
        if self._images is None:
            images = self._array(self.path / IMAGES, "the images")
            shape = self.attrs["dataset"].get("image_shape")
            self._rows(images, "the images", (self.n, *shape) if isinstance(shape, list) else None)
            self._images = images
        return self._images

    def _array(self, folder: Path, what: str) -> ZarrArray:
        array = open_array(folder, root=self.path)
        if array is None:
            raise StudyError(
                f"the study at {self.path} has no {what} ({folder.name}); run `onnx-geom run` with the same data "
                "to write them again (or `onnx-geom check STUDY` to see what else is damaged)."
            )
        return array

    def _rows(self, array: ZarrArray, what: str, shape: tuple[int, ...] | None = None) -> None:
        """Refuse an array whose shape is not ``shape`` (None: whose rows are not the study's samples)."""
        expected = shape if shape is not None else (self.n,)
        got = array.shape if shape is not None else array.shape[:1]
        if tuple(got) != tuple(expected):
            raise _schema.Damaged(
                f"{what} ({array.folder}) holds an array of shape {list(array.shape)} where the study has "
                f"{list(expected)}{'' if shape is not None else ' rows'}",
                f"run `onnx-geom check {self.path} --repair`",
                "it is damaged",
            )

    @property
    def models(self) -> list[str]:
        """The models whose head and metadata are whole, sorted (see :meth:`damaged_models` for the others)."""
        return [name for name in self._model_names() if self._model_state(name)[0] == "ok"]

    def damaged_models(self) -> dict[str, str]:
        """Models whose metadata is damaged or whose head (``W``, ``b``) is missing while units of theirs exist:
        ``{name: the sentence that says what is wrong and what to do}``."""
        states = {name: self._model_state(name) for name in self._model_names()}
        return {name: reason for name, (state, reason) in states.items() if state == "damaged"}

    def _model_names(self) -> list[str]:
        return child_folders(self.path / MODELS, root=self.path)[0]

    def _unit_folders(self, model: str) -> list[str]:
        """The folders of a model's corruptions (its head's arrays excluded)."""
        names = child_folders(self.path / model_key(model), root=self.path)[0]
        return [name for name in names if name not in HEAD]

    def _model_state(self, model: str) -> tuple[str, str]:
        """``("ok", "")``, ``("incomplete", why)`` (being added, or left by a killed ``add_model``: no units yet)
        or ``("damaged", why and what to do)``; reads metadata only (the head's chunks: ``onnx-geom check``)."""
        folder = self.path / model_key(model)
        fix = f"run `onnx-geom run` with this model ({model}=PROBE) and the same data again to restore it"
        try:
            meta = read_meta(folder, root=self.path, strict=True)
            if meta is None or meta.get("node_type") != "group" or not isinstance(meta.get("attributes"), dict):
                if meta is None and not self._unit_folders(model):
                    return "incomplete", f"model {model!r} is being added (no metadata yet)"
                return "damaged", f"model {model!r} is damaged ({folder / META} is not a group's metadata); {fix}."
            _schema.check_model(meta["attributes"], folder / META)
            arrays = {name: open_array(folder / name, root=self.path) for name in HEAD}
        except _guard.Unsafe:
            raise
        except StudyError as err:
            return "damaged", f"model {model!r} is damaged ({_schema.problem_of(err)}); {fix}."
        except ValueError:
            return "damaged", f"model {model!r} is damaged ({folder / META} is not valid JSON); {fix}."
        missing = [name for name, array in arrays.items() if array is None]
        if missing == ["W"] and not self._unit_folders(model):
            return "incomplete", f"model {model!r} is being added (its head is not written yet)"
        if missing:
            return "damaged", f"model {model!r} is damaged (its head {'/'.join(missing)} is missing); {fix}."
        W, b = arrays["W"], arrays["b"]
        assert W is not None and b is not None
        if W.ndim != 2 or b.shape != W.shape[:1]:
            why = f"its head has W {list(W.shape)} and b {list(b.shape)}"
            return "damaged", f"model {model!r} is damaged ({why}); {fix}."
        return "ok", ""

    def _healthy(self, model: str, missing: str | None = None) -> None:
        """Refuse a model that is damaged (the reason) or missing (``missing``, or which models there are)."""
        state, reason = self._model_state(model)
        if state == "damaged":
            raise StudyError(reason)
        if state != "ok":
            raise StudyNotFoundError(missing) if missing else self._missing_model(model)

    def _missing_model(self, model: str) -> StudyNotFoundError:
        return StudyNotFoundError(f"the study at {self.path} has no model {shown(model)}; it has {self.models}.")

    def head(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        """The model's head ``(W (K, D), b (K,))``, in ``logits = features @ W.T + b``."""
        self._healthy(model)
        folder = self.path / model_key(model)
        W, b = open_array(folder / "W", root=self.path), open_array(folder / "b", root=self.path)
        if W is None or b is None:
            raise self._missing_model(model)
        return np.asarray(W.read(), np.float32), np.asarray(b.read(), np.float32)

    def model_attrs(self, model: str) -> dict[str, Any]:
        self._healthy(model)
        folder = self.path / model_key(model)
        return _schema.check_model(group_attrs(folder, root=self.path) or {}, folder / META)

    def _unit_attrs(self, unit: Unit, group: str | None = None) -> dict[str, Any] | None:
        """The attributes of a unit (or of a group inside it), checked: one metadata file read; None if there is
        none (a folder being created). Metadata that is not a group's, or not valid JSON, is damaged."""
        folder = self.path / unit_key(unit, group)
        try:
            meta = read_meta(folder, root=self.path, strict=True)
        except StudyError:
            raise
        except ValueError:
            meta = {}
        if meta is None:
            return None
        if meta.get("node_type") != "group" or not isinstance(meta.get("attributes", {}), dict):
            raise _schema.Damaged(f"{folder / META} is not the valid metadata of a group", _schema.FIX_UNIT)
        return _schema.check_unit(meta.get("attributes", {}), folder / META)

    def is_complete(self, unit: Unit, group: str | None = None) -> bool:
        """Whether ``unit`` (or the group ``group`` inside it) is completely written."""
        if group is not None and not self.is_complete(unit):
            return False
        attrs = self._unit_attrs(unit, group)
        return bool(attrs is not None and attrs.get("complete") is True)

    def _all_units(
        self, model: str | None = None, *, problems: list[tuple[str, str, str]] | None = None
    ) -> Iterator[tuple[Unit, dict[str, Any]]]:
        """Every unit (of ``model``, or of all models) with its checked attributes. Damaged metadata is a
        :class:`StudyError`, or, given ``problems``, appended there as ``(path, problem, fix)`` and skipped; so
        are folders whose names break the rule of names. Folders without metadata (being created) are skipped;
        a link or special file is refused either way."""

        def damaged(path: Path, error: _schema.Damaged, *, ignored: bool = False) -> None:
            if problems is not None:
                problems.append((str(path), error.problem, error.fix))
            elif not ignored:  # a folder whose name breaks the rule is never used, only reported
                raise error

        for name in self.models if model is None else [model]:
            folder = self.path / model_key(name)
            corruptions, odd = child_folders(folder, root=self.path)
            for bad in odd:
                damaged(folder / bad, _odd_name(folder, bad), ignored=True)
            for corruption in corruptions:
                if corruption in HEAD:
                    continue
                severities, odd = child_folders(folder / corruption, root=self.path, digits=True)
                for bad in odd:
                    damaged(folder / corruption / bad, _odd_name(folder / corruption, bad), ignored=True)
                for severity in sorted(severities, key=int):
                    unit = Unit(name, corruption, int(severity))
                    try:
                        attrs = self._unit_attrs(unit)
                    except _guard.Unsafe:
                        raise
                    except _schema.Damaged as err:
                        damaged(self.path / unit.key(), err)
                        continue
                    if attrs is not None:
                        yield unit, attrs

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
        return {name: array.read() for name, array in self.arrays(unit, names).items()}

    def array(self, unit: Unit, name: str) -> ZarrArray:
        """An array of a complete unit, lazy (see :meth:`read`): ``array[rows]`` reads only the chunks of those
        rows, ``array.chunks[0]`` rows at a time is the cheapest way through it (memory flat in N)."""
        return self.arrays(unit, [name])[name]

    def arrays(self, unit: Unit, names: Sequence[str]) -> dict[str, ZarrArray]:
        """Several lazy arrays of a complete unit (completeness checked once per group)."""
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
            array = open_array(self.path / unit.key() / name, root=self.path)
            if array is None:
                raise StudyNotFoundError(f"unit {unit} has no array {name!r}.")
            self._rows(array, f"array {name!r} of unit {unit}")
            out[name] = array
        return out

    # ----------------------------------------------------------------------------------------- writing
    def add_model(self, name: str, info: Any, *, probe_path: str = "", tags: Mapping[str, Any] | None = None) -> None:
        """Record a model's head and probe metadata (``info``: a ProbeInfo); the same model again is a no-op.

        A different model under a name the study already holds is a :class:`StudyError`. A model whose metadata
        or head is damaged is written again when ``info`` provably is the same model (its head equals the stored
        one, or the sha256 of the head recorded with it); otherwise the error says what to do.
        """
        self._writable()
        check_name("model", name)
        W, b = np.asarray(info.W, np.float32), np.asarray(info.b, np.float32)
        digest = head_sha256(W, b)
        folder = self.path / model_key(name)
        with io_errors(f"adding model {name!r} to the study at {self.path}"), self._study_lock():
            state, reason = self._model_state(name)
            stored = None if state == "incomplete" else self._stored_head(name)
            if stored is not None:
                if stored[0].shape != W.shape or not (np.array_equal(stored[0], W) and np.array_equal(stored[1], b)):
                    raise StudyError(
                        f"the study at {self.path} already holds a different model named {name!r}; rename it (name=path) or use a new study."
                    )
                if state == "ok":
                    return
            elif state != "incomplete" and self._recorded_head(name) != digest:  # the head is missing or damaged
                why = reason.rstrip(".") if state == "damaged" else f"the head of model {name!r} is unreadable"
                raise StudyError(
                    f"{why}, and the study has no record that this probe's head is the one its units were computed "
                    f"with; remove the folder {folder} (its units are computed again) or use a new study folder."
                )
            attrs = {"probe": info.to_json(), "probe_path": str(probe_path), "head_sha256": digest}
            tags = dict(tags if tags is not None else info.tags)
            write_group(folder, {**attrs, "tags": tags}, root=self.path, durable=True)
            if stored is None:
                # written once: durable; W last (a model is listed once W's metadata exists)
                for key, array, ndim in (("b", b, 1), ("W", W, 2)):
                    dims, chunks = dimension_names(key, ndim), row_chunks(array.shape, 4)
                    write_array(folder / key, array, dims, root=self.path, chunks=chunks, durable=True)

    def _stored_head(self, model: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The model's stored head when it is whole and readable, else None."""
        folder = self.path / model_key(model)
        try:
            W, b = open_array(folder / "W", root=self.path), open_array(folder / "b", root=self.path)
            if W is None or b is None or W.ndim != 2 or b.shape != W.shape[:1]:
                return None
            return np.asarray(W.read(), np.float32), np.asarray(b.read(), np.float32)
        except StudyError:
            return None

    def _recorded_head(self, model: str) -> str | None:
        """The sha256 of the head recorded with the model (None: none, or unreadable metadata)."""
        try:
            attrs = group_attrs(self.path / model_key(model), root=self.path) or {}
        except (StudyError, ValueError):
            return None
        recorded = attrs.get("head_sha256")
        return recorded if isinstance(recorded, str) else None

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
        self._healthy(unit.model, f"add model {unit.model!r} to the study before writing its units.")
        if group is not None and not self.is_complete(unit):
            raise StudyNotFoundError(f"unit {unit} is not complete; its {group} cannot be written yet.")
        key = unit_key(unit, group)
        what = f"{group} of unit {unit}" if group else f"unit {unit}"
        folder = self.path / key
        with io_errors(f"writing {what} to the study at {self.path}"):
            _guard.check_tree(self.path, folder)  # a link in what is rewritten: said before anything is claimed
            claim = {"complete": False, "writer": writer_stamp()}
            if group_attrs(folder, root=self.path) is None:
                with self._study_lock():  # two processes may create the same group at once
                    require_groups(self.path, key, claim)  # a new group is created claimed
            holder = lambda: self._holder_sentence(self._raw_attrs(folder), what)  # read when it is locked
            with lock(folder, wait_s=0.0, holder=holder, root=self.path):
                attrs = self._raw_attrs(folder)
                if attrs.get("complete") is True:
                    raise UnitAlreadyComplete(str(unit))
                if attrs.get("complete") is not False or attrs.get("writer") != claim["writer"]:
                    attrs = {k: v for k, v in attrs.items() if k not in ("completion",)}
                    attrs.update(claim)
                    write_group(folder, attrs, root=self.path)
                if group is None:
                    remove(folder / GEOMETRY, root=self.path)  # derived from the old arrays: stale
                writer = UnitWriter(folder, spec, root=self.path, group=group)
                yield writer
                writer.close()
                # durable: the mark that the unit is whole; "completion" tells one completion from another
                mark = {**attrs, "complete": True, "completion": uuid.uuid4().hex}
                write_group(folder, mark, root=self.path, durable=True)

    def _raw_attrs(self, folder: Path) -> dict[str, Any]:
        """A group's attributes as stored (unchecked: what a writer replaces), {} when unreadable."""
        try:
            return dict(group_attrs(folder, root=self.path) or {})
        except ValueError:
            return {}

    def _holder_sentence(self, attrs: Mapping[str, Any], what: str) -> str:
        stamp = attrs.get("writer")
        stamp = stamp if isinstance(stamp, dict) else {}
        who = (
            f"process {shown(stamp.get('pid'))} on {shown(stamp.get('host'))}"
            + (f" (Ray node {shown(stamp['node'])})" if "node" in stamp else "")
            + f" (since {shown(stamp.get('started'))})"
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

    def mark_incomplete(self, unit: Unit, group: str | None = None) -> bool:
        """Mark a unit (or a group inside it) incomplete, so that the next ``onnx-geom run`` (``metrics`` for the
        geometry) computes it again; its metadata is written afresh (a damaged one included). False when another
        process is writing it (it is left to that process)."""
        self._writable()
        folder = self.path / unit_key(unit, group)
        from onnx_geom.errors import StudyLockedError

        with io_errors(f"marking {unit_key(unit, group)} incomplete in the study at {self.path}"):
            try:
                with lock(folder, wait_s=0.0, holder="busy", root=self.path):
                    write_group(folder, {"complete": False}, root=self.path, durable=True)
            except StudyLockedError:
                return False
        return True

    def remove_array(self, name: str) -> None:
        """Remove a damaged array of the root (``labels``, ``images``) or a model's head (``models/m/W``) so that
        ``onnx-geom run`` writes it again (from the same data, or a probe with the recorded head)."""
        self._writable()
        with io_errors(f"removing {name} from the study at {self.path}"), self._study_lock():
            remove(self.path / name, root=self.path)
        self._images = None

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
        folder = self.path / COMPARISON
        with io_errors(f"storing the comparison in the study at {self.path}"):
            _guard.makedirs(self.path, folder)
            _guard.check_tree(self.path, folder)  # a link in what is replaced: said before anything is written
            with self._study_lock(folder):
                _comparison.store(folder, comparison, self.geometry_fingerprint, root=self.path)

    def read_comparison(self, **parameters: Any) -> Any:
        """The stored comparison computed with ``parameters`` (those of
        :func:`onnx_geom.comparison.compare_study`, defaults filled in) from the study's current geometry;
        None when none is stored, it was computed with other parameters or by another onnx-geom version, or
        a unit's geometry was added, removed or rewritten since (stale)."""
        from onnx_geom.comparison import Comparison, comparison_parameters

        wanted = comparison_parameters(**parameters)
        return _comparison.load(self.path / COMPARISON, Comparison, wanted, self.geometry_fingerprint(), root=self.path)

    def __repr__(self) -> str:
        return f"Study({str(self.path)!r}, mode={self.mode!r})"


def _odd_name(folder: Path, name: str) -> _schema.Damaged:
    return _schema.Damaged(
        f"{folder}/{shown(name)} is a folder whose name breaks the rule of names in a study",
        "remove it (or rename it) if it should not be there",
        "onnx-geom ignores it",
    )
