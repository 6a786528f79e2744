"""The study: one directory that is a Zarr v3 group, written in atomic units, readable with plain zarr.

>>> import numpy as np, tempfile
>>> from onnx_geom.store import Study, Unit
>>> path = tempfile.mkdtemp() + "/study"
>>> study = Study.create(path, images=np.zeros((4, 2, 2, 3), np.uint8), labels=np.array([0, 1, 0, 1]),
...                      dataset_name="toy", class_names=["a", "b"])
>>> from onnx_geom.probe_info import ProbeInfo
>>> study.add_model("m", ProbeInfo(W=np.ones((2, 3), np.float32), b=np.zeros(2, np.float32),
...                                input_shape=(2, 2, 3), layout="NCHW", mean=(0.0,) * 3, std=(1.0,) * 3))
>>> unit = Unit("m", "clean", 0)
>>> with study.writing(unit, {"features": ((4, 3), "float32")}) as writer:
...     writer.append(features=np.ones((4, 3), np.float32))
>>> Study.open(path).units()
[Unit(model='m', corruption='clean', severity=0)]

Layout (docs/architecture.md, docs/store.md)::

    /                                   attrs: onnx_geom_version, dataset {...}, corruptions, severities, profile, seed
    /labels  /images                    int64 (N,), uint8 (N, H, W, C)
    /models/<model>/W, b                float32 (K, D), (K,); attrs: probe, probe_path, tags
    /models/<model>/<corruption>/<severity>/           a unit: features (N, D), logits (N, K); attrs complete
    /models/<model>/<corruption>/<severity>/geometry/  a group inside a unit; attrs complete

Atomicity: a unit (or a group inside it) is marked ``complete: false`` first, its arrays are written, and only
then is it marked ``complete: true`` (the group's ``zarr.json`` is written atomically: a temporary file renamed
into place). Units are written and read as plain Zarr v3 files (:mod:`onnx_geom._zarr_files`), without
zarr-python's event-loop round trips; the rest (creating the study, models, images) goes through zarr-python.
Readers see complete units only. Concurrency: a writer holds an exclusive ``flock`` on the directory of the unit it writes (released by
the kernel when the process dies, even on SIGKILL), and short metadata changes take the same lock on the
study's root directory; a second process that finds a unit locked gets :class:`StudyLockedError` naming the
process that holds it. Locks are advisory and need a local file system (or one whose ``flock`` works).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from onnx_geom import _zarr_files
from onnx_geom._study_io import UnitWriter, _flock, _os_errors, _row_chunks, _writer_stamp, check_spec, fingerprint
from onnx_geom.conditions import CLEAN
from onnx_geom.errors import StudyError, StudyNotFoundError

__all__ = ["STUDY_FORMAT", "Study", "Unit", "UnitAlreadyComplete", "UnitWriter", "describe", "fingerprint"]

#: Marks a Zarr group as an onnx-geom study (root attribute ``onnx_geom_version``).
STUDY_FORMAT = 1
_LOCK_WAIT_S = 30.0


class Unit(NamedTuple):
    """One model x corruption x severity; ``Unit(m, "clean", 0)`` is the clean set."""

    model: str
    corruption: str
    severity: int

    def key(self) -> str:
        return f"models/{self.model}/{self.corruption}/{self.severity}"

    def __str__(self) -> str:
        return f"{self.model}/{self.corruption}/{self.severity}"


class UnitAlreadyComplete(Exception):
    """Raised by :meth:`Study.writing` when another process completed the unit before this one claimed it."""


def _check_name(kind: str, name: str) -> None:
    if not name or "/" in name or name.startswith(".") or name != name.strip():
        raise StudyError(
            f"{kind} name {name!r} cannot be used in a study; use letters, digits, '-', '_' or '.' (not first)."
        )


class Study:
    """A study folder opened for reading (``mode="r"``) or writing (``mode="a"``). See the module docstring."""

    def __init__(self, root: Any, path: Path, mode: str) -> None:
        self._root, self.path, self.mode = root, path, mode

    # ----------------------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | os.PathLike[str], mode: str = "r") -> Study:
        """Open an existing study; :class:`StudyNotFoundError` if there is none at ``path``."""
        import zarr

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
            root = zarr.open_group(
                zarr.storage.LocalStore(path, read_only=(mode == "r")), mode="r" if mode == "r" else "r+"
            )
            attrs = root.attrs.asdict()
        except (ValueError, TypeError, KeyError, OSError) as err:
            raise StudyError(
                f"the study at {path} is unreadable ({type(err).__name__}: {err}); it may be damaged."
            ) from None
        if "onnx_geom_version" not in attrs or "dataset" not in attrs:
            raise StudyError(f"{path} is a Zarr group but not an onnx-geom study (no onnx_geom_version attribute).")
        return cls(root, path, mode)

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
        import zarr

        from onnx_geom import __version__

        path = Path(path)
        labels = np.asarray(labels)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise StudyError(f"images must be uint8 (N, H, W, C), got {images.dtype} {tuple(images.shape)}.")
        if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
            raise StudyError(
                f"labels must be integers (N,) with N = {len(images)} images, got {labels.dtype} {labels.shape}."
            )
        digest = fingerprint(images, labels)
        with _os_errors(f"creating the study at {path}"):
            path.mkdir(parents=True, exist_ok=True)
            with _flock(
                path, wait_s=_LOCK_WAIT_S, holder=f"another process is creating the study at {path}; try again later."
            ):
                if (path / "zarr.json").exists():
                    if not exist_ok:
                        raise StudyError(f"a study already exists at {path}; open it, or choose another folder.")
                    study = cls.open(path, mode="a")
                    study._check_same(digest, len(labels), profile, seed)
                    study._grow_plan(corruptions, severities)
                    return study
                if any(path.iterdir()):
                    raise StudyError(f"{path} exists and is not empty; choose a new folder for the study.")
                root = zarr.open_group(zarr.storage.LocalStore(path), mode="w-")  # "w" would replace the locked folder
                root.create_array("labels", data=labels.astype(np.int64), chunks=(max(1, len(labels)),))
                out = root.create_array(
                    "images", shape=images.shape, dtype=np.uint8, chunks=_row_chunks(images.shape, 1)
                )
                step = out.chunks[0]
                for start in range(0, len(images), step):
                    out[start : start + step] = np.asarray(images[start : start + step], dtype=np.uint8)
                root.require_group("models")
                root.attrs.update(
                    {
                        "onnx_geom_version": __version__,
                        "format": STUDY_FORMAT,
                        "dataset": {
                            "name": str(dataset_name),
                            "n": len(labels),
                            "image_shape": [int(s) for s in images.shape[1:]],
                            "class_names": [str(c) for c in class_names],
                            "sha256": digest,
                        },
                        "corruptions": list(dict.fromkeys(str(c) for c in corruptions)),
                        "severities": sorted({int(s) for s in severities}),
                        "profile": profile,
                        "seed": int(seed),
                    }
                )
        return cls(root, path, "a")

    def _check_same(self, digest: str, n: int, profile: str | None, seed: int) -> None:
        data = self.attrs["dataset"]
        if data.get("sha256") != digest:
            raise StudyError(
                f"the study at {self.path} was made from other data ({data.get('name')!r}, {data.get('n')} images, "
                f"this run has {n}); use the same data and --limit, or a new study folder."
            )
        if self.attrs.get("profile") != profile or int(self.attrs.get("seed", 0)) != int(seed):
            raise StudyError(
                f"the study at {self.path} was made with profile {self.attrs.get('profile')!r} and seed {self.attrs.get('seed')}, "
                f"this run asks for {profile!r} and {seed}; use the same, or a new study folder."
            )

    def _grow_plan(self, corruptions: Sequence[str], severities: Sequence[int]) -> None:
        attrs = self.attrs
        merged_c = list(dict.fromkeys([*attrs.get("corruptions", []), *map(str, corruptions)]))
        merged_s = sorted({*attrs.get("severities", []), *map(int, severities)})
        if merged_c != attrs.get("corruptions") or merged_s != attrs.get("severities"):
            self._root.attrs.update({"corruptions": merged_c, "severities": merged_s})

    def _writable(self) -> None:
        if self.mode != "a":
            raise StudyError(f"the study at {self.path} was opened read-only; open it with mode='a' to write.")

    @contextlib.contextmanager
    def _study_lock(self) -> Iterator[None]:
        with _flock(
            self.path,
            wait_s=_LOCK_WAIT_S,
            holder=f"another process has held the study at {self.path} for {_LOCK_WAIT_S:.0f} s; try again later.",
        ):
            yield

    # ----------------------------------------------------------------------------------------- reading
    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._root.attrs.asdict())

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self._root["labels"][:], dtype=np.int64)

    @property
    def images(self) -> Any:
        """The clean images, a lazy zarr array uint8 (N, H, W, C): ``study.images[idx]`` is numpy."""
        return self._root["images"]

    @property
    def models(self) -> list[str]:
        return [name for name in self._model_names() if self._has_model(name)]

    def _model_group(self, model: str) -> Any:
        try:
            return self._root[f"models/{model}"]
        except KeyError:
            raise StudyNotFoundError(
                f"the study at {self.path} has no model {model!r}; it has {self._model_names()}."
            ) from None

    def _has_model(self, model: str) -> bool:
        """Whether the model's head is written (W is written last); one file lookup."""
        return _zarr_files.read_meta(self.path / "models" / model / "W") is not None

    def _model_names(self) -> list[str]:
        return list(_zarr_files.child_groups(self.path / "models"))

    def head(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        """The model's head ``(W (K, D), b (K,))``, in ``logits = features @ W.T + b``."""
        group = self._model_group(model)
        return np.asarray(group["W"][:], np.float32), np.asarray(group["b"][:], np.float32)

    def model_attrs(self, model: str) -> dict[str, Any]:
        return dict(self._model_group(model).attrs.asdict())

    def _unit_attrs(self, unit: Unit, group: str | None = None) -> dict[str, Any] | None:
        """The attributes of a unit (or of a group inside it): one metadata file read; None if there is none."""
        key = unit.key() + (f"/{group}" if group else "")
        return _zarr_files.group_attrs(self.path / key)

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
            for corruption in _zarr_files.child_groups(self.path / "models" / name):
                folder = self.path / "models" / name / corruption
                for severity, attrs in sorted(
                    _zarr_files.child_groups(folder, digits=True).items(), key=lambda kv: int(kv[0])
                ):
                    yield Unit(name, corruption, int(severity)), attrs

    def units(self, model: str | None = None, group: str | None = None) -> list[Unit]:
        """Complete units, sorted (``group="geometry"``: those whose geometry is complete too)."""
        found = []
        for unit, attrs in self._all_units(model):
            if attrs.get("complete") is not True:
                continue
            if group is None or (self._unit_attrs(unit, group) or {}).get("complete") is True:
                found.append(unit)
        return sorted(found)

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
        """Several arrays of a complete unit at once (completeness checked once per group): ``{name: array}``.

        >>> study.read_many(unit, ["geometry/margin", "geometry/length"])   # doctest: +SKIP
        """
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
            out[name] = self._read_array(unit, name)
        return out

    def _read_array(self, unit: Unit, name: str) -> np.ndarray:
        folder = self.path / unit.key() / name
        try:
            array = _zarr_files.read_array(folder)
            if array is None:  # not the plain form written here: let zarr read it
                array = np.asarray(self._root[f"{unit.key()}/{name}"][:])
        except KeyError:
            raise StudyNotFoundError(f"unit {unit} has no array {name!r}.") from None
        except (ValueError, OSError, RuntimeError) as err:  # RuntimeError: a damaged zstd chunk (numcodecs)
            raise StudyError(
                f"array {name!r} of unit {unit} in the study at {self.path} is unreadable ({err}); it may be damaged."
            ) from None
        return array

    # ----------------------------------------------------------------------------------------- writing
    def add_model(self, name: str, info: Any, *, probe_path: str = "", tags: Mapping[str, Any] | None = None) -> None:
        """Record a model's head and probe metadata (``info``: a ProbeInfo); the same model again is a no-op.

        A different model under a name the study already holds is a :class:`StudyError`.
        """
        self._writable()
        _check_name("model", name)
        W, b = np.asarray(info.W, np.float32), np.asarray(info.b, np.float32)
        with _os_errors(f"adding model {name!r} to the study at {self.path}"), self._study_lock():
            if self._has_model(name):
                old_W, old_b = self.head(name)
                if old_W.shape != W.shape or not (np.array_equal(old_W, W) and np.array_equal(old_b, b)):
                    raise StudyError(
                        f"the study at {self.path} already holds a different model named {name!r}; rename it (name=path) or use a new study."
                    )
                return
            group = self._root["models"].require_group(name)
            group.attrs.update(
                {
                    "probe": info.to_json(),
                    "probe_path": str(probe_path),
                    "tags": dict(tags if tags is not None else info.tags),
                }
            )
            group.create_array("b", data=b, overwrite=True)
            group.create_array("W", data=W, overwrite=True)  # W last: a model is listed once W exists

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
        _check_name("corruption", unit.corruption)
        check_spec(spec)
        if not self._has_model(unit.model):
            raise StudyNotFoundError(f"add model {unit.model!r} to the study before writing its units.")
        if group is not None and not self.is_complete(unit):
            raise StudyNotFoundError(f"unit {unit} is not complete; its {group} cannot be written yet.")
        key = unit.key() + (f"/{group}" if group else "")
        what = f"{group} of unit {unit}" if group else f"unit {unit}"
        folder = self.path / key
        with _os_errors(f"writing {what} to the study at {self.path}"):
            claim = {"complete": False, "writer": _writer_stamp()}
            attrs = _zarr_files.group_attrs(folder)
            if attrs is None:
                with self._study_lock():  # two processes may create the same group at once
                    _zarr_files.require_groups(self.path, key, claim)  # a new group is created claimed
                attrs = _zarr_files.group_attrs(folder) or {}
            holder = self._holder_sentence(attrs, what)
            with _flock(folder, wait_s=0.0, holder=holder):
                attrs = _zarr_files.group_attrs(folder) or {}
                if attrs.get("complete") is True:
                    raise UnitAlreadyComplete(str(unit))
                if attrs.get("complete") is not False or attrs.get("writer") != claim["writer"]:
                    attrs.update(claim)
                    _zarr_files.write_group(folder, attrs)
                if group is None:
                    _zarr_files.remove(folder / "geometry")  # derived from the old arrays: stale
                writer = UnitWriter(folder, spec)
                yield writer
                writer.close()
                _zarr_files.write_group(folder, {**attrs, "complete": True})

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
        _check_name("group", group)
        self._write_whole(unit, arrays, group)

    def write_unit(self, unit: Unit, arrays: Mapping[str, np.ndarray]) -> None:
        """Write a whole unit at once (``{"features": (N, D), "logits": (N, K)}``), atomically."""
        self._write_whole(unit, arrays, None)

    def _write_whole(self, unit: Unit, arrays: Mapping[str, np.ndarray], group: str | None) -> None:
        arrays = {name: np.asarray(a) for name, a in arrays.items()}
        with self.writing(unit, {n: (a.shape, a.dtype.str) for n, a in arrays.items()}, group=group) as writer:
            writer.append(**arrays)

    def __repr__(self) -> str:
        return f"Study({str(self.path)!r}, mode={self.mode!r})"


def describe(study: Study) -> dict[str, Any]:
    """A JSON-able summary of a study: dataset, plan, per model its complete and missing units, incomplete ones."""
    attrs = study.attrs
    corruptions = [c for c in attrs.get("corruptions", []) if c != CLEAN]
    severities = [s for s in attrs.get("severities", []) if s != 0]
    plan = [(CLEAN, 0)] + [(c, s) for c in corruptions for s in severities]
    complete: dict[str, set[tuple[str, int]]] = {m: set() for m in study.models}
    incomplete = []
    for unit, unit_attrs in study._all_units():  # one pass over the study's metadata
        if unit_attrs.get("complete") is True:
            complete[unit.model].add((unit.corruption, unit.severity))
        else:
            incomplete.append((unit, dict(unit_attrs.get("writer") or {})))
    models = {
        m: {
            "complete": len(done),
            "missing": [str(Unit(m, c, s)) for c, s in plan if (c, s) not in done],
            "tags": study.model_attrs(m).get("tags", {}),
        }
        for m, done in complete.items()
    }
    return {
        "path": str(study.path),
        "dataset": {k: v for k, v in attrs["dataset"].items() if k != "class_names"},
        "corruptions": corruptions,
        "severities": severities,
        "profile": attrs.get("profile"),
        "seed": attrs.get("seed"),
        "planned_per_model": len(plan),
        "models": models,
        "incomplete": [{"unit": str(u), **w} for u, w in sorted(incomplete)],
    }
