"""Read a whole study and list what is damaged; optionally mark it for recomputation (``onnx-geom check``).

Private to :mod:`onnx_geom.store`, which exports :func:`check`. Reads every chunk of every array of the root,
of every model's head, of every complete unit and of every complete group inside one (geometry), and of the
stored comparison; checks every group's metadata (:mod:`onnx_geom.store._schema`), every array's shape and the
labels and images against the study's fingerprint of them. With ``repair=True``:

- a damaged unit (an array, or its metadata) is marked incomplete: the next ``onnx-geom run`` with the same
  arguments computes exactly those units again (and drops their geometry);
- a damaged geometry group is marked incomplete: the next ``onnx-geom metrics`` computes it again;
- a damaged comparison is removed (``onnx-geom compare`` stores it again; ``view`` computes it);
- damaged labels or images are removed: ``onnx-geom run`` with the same data writes them again (the data is
  checked against the study's fingerprint first);
- a model whose head or metadata is damaged is not repaired here: ``onnx-geom run`` with that model writes it
  again when the probe's head is provably the one recorded (its sha256), otherwise the report says to remove
  the model's folder;
- folders whose names break the rule of names are left alone (readers ignore them): the report says to remove
  them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onnx_geom.errors import StudyError
from onnx_geom.store._guard import Unsafe
from onnx_geom.store._layout import COMPARISON, GEOMETRY, IMAGES, LABELS, MODELS, Unit, model_key, unit_key
from onnx_geom.store._schema import problem_of
from onnx_geom.store._units import fingerprint
from onnx_geom.store._zarrarray import open_array
from onnx_geom.store._zarrio import child_folders


def check(study: Any, *, repair: bool = False) -> dict[str, Any]:
    """Check every file of ``study`` (a :class:`~onnx_geom.store.Study`, mode "a" to repair); returns a JSON-able
    report: ``damaged`` (``{"path", "problem", "repair"}`` each, ``repair`` what was or must be done),
    ``repaired`` and ``left`` (paths), ``next`` (the commands that recompute what was marked), ``arrays`` and
    ``units`` (how many were read)."""
    root: Path = study.path
    damaged: list[dict[str, Any]] = []
    repaired: list[str] = []
    follow_up: set[str] = set()
    counts = {"arrays": 0, "units": 0}

    def found(path: Path | str, problem: str, fix: str, action: Callable[[], bool] | None = None) -> None:
        done = bool(repair and action is not None and action())
        damaged.append({"path": str(path), "problem": problem, "repair": fix, "repaired": done})
        if done:
            repaired.append(str(path))

    def verify(folder: Path, rows: tuple[int, ...] | None) -> str | None:
        """None when the array at ``folder`` reads whole (and has ``rows`` as its leading shape), else why not."""
        try:
            array = open_array(folder, root=root)
            if array is None:
                return f"{folder} is missing"
            if rows is not None and tuple(array.shape[: len(rows)]) != rows:
                return f"{folder} has shape {list(array.shape)}, the study needs {list(rows)} first"
            array.verify()
            counts["arrays"] += 1
        except Unsafe:
            raise
        except StudyError as err:
            return problem_of(err)
        return None

    n = study.n
    dataset = study.attrs["dataset"]  # read once here
    # the root's data: labels and images, each read whole, then both against the study's fingerprint
    shape = dataset.get("image_shape")
    expected = {LABELS: (n,), IMAGES: (n, *shape) if isinstance(shape, list) else (n,)}
    data_ok = True
    for name, rows in expected.items():
        problem = verify(root / name, rows)
        if problem is not None:
            data_ok = False
            found(
                root / name,
                problem,
                f"--repair removes the {name}; then `onnx-geom run` with the same data (and --limit) writes them again",
                _removing(study, [name], follow_up, then="data"),
            )
    digest = dataset.get("sha256")
    if data_ok and isinstance(digest, str) and fingerprint(study.images, study.labels) != digest:
        found(
            root / IMAGES,
            "the labels and images do not match the study's fingerprint of them (dataset.sha256)",
            "--repair removes both; then `onnx-geom run` with the same data (and --limit) writes them again",
            _removing(study, [LABELS, IMAGES], follow_up, then="data"),
        )

    # models: metadata and head; then every unit of each (a damaged model's units too)
    names, odd = child_folders(root / MODELS, root=root)
    for bad in odd:
        found(root / MODELS / bad, "its name breaks the rule of names (onnx-geom ignores it)", "remove it")
    for model in names:
        state, reason = study._model_state(model)
        if state == "incomplete":
            continue
        if state == "damaged":
            problem, _, fix = reason.rpartition("; ")
            found(root / model_key(model), problem, fix.rstrip("."))
        else:
            head = [verify(root / model_key(model) / name, None) for name in ("W", "b")]
            for problem in filter(None, head):
                recorded = study._recorded_head(model) is not None
                fix = (
                    f"run `onnx-geom run` with this model ({model}=PROBE) and the same data again: the study "
                    "recorded its head's sha256 and writes it again from a probe that has it"
                    if recorded
                    else f"the study has no record of this model's head: remove the folder {root / model_key(model)} "
                    "and run `onnx-geom run` with it again (its units are computed again)"
                )
                found(root / model_key(model), problem, fix)
        problems: list[tuple[str, str, str]] = []
        for unit, attrs in study._all_units(model, problems=problems):
            if attrs.get("complete") is not True:
                continue
            counts["units"] += 1
            _check_unit(study, unit, n, verify, found, follow_up)
        for path, problem, fix in problems:
            unit = _unit_of(root, Path(path))
            if unit is None:
                found(path, problem, fix)
            else:
                found(path, problem, *_marking(study, unit, None, follow_up))

    # the stored comparison: derived, removed when damaged (computed again by `compare`, or by `view`)
    folder = root / COMPARISON
    for name in child_folders(folder, root=root)[0]:
        problem = verify(folder / name, None)
        if problem is not None:
            found(
                folder,
                problem,
                "--repair removes the stored comparison; `onnx-geom compare STUDY` stores it again",
                _removing(study, [COMPARISON], follow_up, then="compare"),
            )
            break

    left = [d["path"] for d in damaged if not d["repaired"]]
    commands = {
        "run": "the same `onnx-geom run ...` as before, to compute the units marked incomplete again",
        "data": "the same `onnx-geom run ...` as before (same data and --limit), to write the removed labels or images again",
        "metrics": f"`onnx-geom metrics {root}`, to compute their geometry again",
        "compare": f"`onnx-geom compare {root}`, to store the comparison again",
    }
    if "run" in follow_up:
        follow_up.add("metrics")
    return {
        "path": str(root),
        "arrays": counts["arrays"],
        "units": counts["units"],
        "damaged": damaged,
        "repaired": repaired,
        "left": left,
        "next": [commands[k] for k in ("data", "run", "metrics", "compare") if k in follow_up],
    }


def _removing(study: Any, names: list[str], follow_up: set[str], then: str) -> Callable[[], bool]:
    """The repair that removes the arrays (or groups) ``names`` of the root; ``then``: the command that restores
    them."""

    def action() -> bool:
        for name in names:
            study.remove_array(name)
        follow_up.add(then)
        return True

    return action


def _marked(study: Any, unit: Unit, group: str | None, follow_up: set[str]) -> bool:
    if not study.mark_incomplete(unit, group):
        return False
    follow_up.add("metrics" if group else "run")
    return True


#: What ``--repair`` does to a damaged unit (None) or geometry group, and the command that computes it again.
_MARK_FIX = {
    None: "--repair marks the unit incomplete; then the same `onnx-geom run` computes it again",
    GEOMETRY: "--repair marks the geometry incomplete; then `onnx-geom metrics` computes it again",
}


def _marking(study: Any, unit: Unit, group: str | None, follow_up: set[str]) -> tuple[str, Callable[[], bool]]:
    """The repair of a damaged unit (``group`` None) or group inside it: the sentence, and the action that marks it
    incomplete."""
    return _MARK_FIX[group], functools.partial(_marked, study, unit, group, follow_up)


def _first_problem(verify: Callable, folder: Path, names: list[str], n: int) -> str | None:
    """Why the first of the arrays ``names`` in ``folder`` that does not read whole (with ``n`` rows) does not;
    None when they all do (the arrays after a damaged one are not read)."""
    for name in names:
        problem = verify(folder / name, (n,))
        if problem is not None:
            return problem
    return None


def _check_unit(study: Any, unit: Unit, n: int, verify: Callable, found: Callable, follow_up: set[str]) -> None:
    """Every array of a complete unit, then its geometry group's."""
    root: Path = study.path
    folder = root / unit.key()
    arrays = [name for name in child_folders(folder, root=root)[0] if name != GEOMETRY]
    problem = _first_problem(verify, folder, arrays, n)
    if problem is not None:
        found(folder, problem, *_marking(study, unit, None, follow_up))
        return
    geometry = root / unit_key(unit, GEOMETRY)
    try:
        attrs = study._unit_attrs(unit, GEOMETRY)
    except Unsafe:
        raise
    except StudyError as err:
        found(geometry, problem_of(err), *_marking(study, unit, GEOMETRY, follow_up))
        return
    if attrs is None or attrs.get("complete") is not True:
        return
    problem = _first_problem(verify, geometry, child_folders(geometry, root=root)[0], n)
    if problem is not None:
        found(geometry, problem, *_marking(study, unit, GEOMETRY, follow_up))


def _unit_of(root: Path, path: Path) -> Unit | None:
    """The unit whose folder ``path`` is (``models/m/c/s``), or None."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    if len(parts) == 4 and parts[0] == MODELS and parts[3].isdigit():
        return Unit(parts[1], parts[2], int(parts[3]))
    return None
