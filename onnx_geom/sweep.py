"""Sweep probes x (clean + corruptions x severities) into a study, resumably.

>>> summary = sweep({"dense": "dense.onnx", "pruned": "pruned.onnx"}, "cifar-10-batches-py", "study",
...                 corruptions=["fog", "snow"], severities=[1, 3, 5])          # doctest: +SKIP
>>> summary["accuracy"]["pruned"]["fog"]       # mean over severities 1, 3, 5    # doctest: +SKIP
0.81

Each corrupted batch is made once (on the fly from the clean images, seeded per sample, or read from a
CIFAR-10-C style folder) and run through every model that still needs that unit; batches stream, so memory
does not grow with the data. Units already complete are skipped; units another process is writing are
skipped and reported (``summary["units"]["locked"]``). A killed sweep leaves only incomplete units, which the
next run recomputes.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnx_geom.conditions import CLEAN, SEVERITIES
from onnx_geom.datasets import CorruptedFolder, Dataset, load
from onnx_geom.errors import DataError, StudyLockedError
from onnx_geom.robustness import accuracy_table
from onnx_geom.runner import ProbeSession, check_data
from onnx_geom.store import Study, Unit, UnitAlreadyComplete, fingerprint

__all__ = ["EXECUTORS", "Progress", "sweep"]

#: progress(event, unit, count): ("plan", None, units to compute), ("plan_images", None, images to run through
#: models in all), ("images", None, images just run through a model),
#: ("unit", unit, 0) when a unit is complete, ("skip", unit, 0) when another process holds it.
Progress = Callable[[str, "Unit | None", int], None]
Corrupt = Callable[..., np.ndarray]


def _as_data(data: Any, limit: int | None) -> Dataset:
    """A path (read with :func:`onnx_geom.datasets.load`), a :class:`Dataset` (or anything with ``.images``,
    ``.labels`` and optionally ``.name``, ``.class_names``) or an ``(images, labels)`` pair; the first ``limit``."""
    if isinstance(data, (str, os.PathLike)):
        data = load(data)
    elif isinstance(data, tuple) and len(data) == 2:
        data = Dataset(np.asarray(data[0]), data[1], "data")
    elif not isinstance(data, Dataset):
        data = Dataset(np.asarray(data.images), data.labels, str(getattr(data, "name", "data")),
                       getattr(data, "class_names", None))  # fmt: skip
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be at least 1, not {limit}.")
    return data.head(limit)


def _prefetched(read: Callable[[int, int], np.ndarray], n: int, step: int) -> Iterator[np.ndarray]:
    """Batches ``read(start, stop)`` of ``n`` images, the next one made in a thread while this one runs."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        bounds = [(start, min(n, start + step)) for start in range(0, n, step)]
        pending = [pool.submit(read, *bounds[0])] if bounds else []
        for i in range(len(bounds)):
            batch = pending.pop().result()
            if i + 1 < len(bounds):
                pending.append(pool.submit(read, *bounds[i + 1]))
            yield batch


def _check_folder(
    folder: CorruptedFolder, data: Dataset, corruptions: Sequence[str], severities: Sequence[int]
) -> None:
    n = len(data.labels)
    if folder.n < n:
        raise DataError(
            f"{folder.path} holds {folder.n} images per severity but the clean data has {n}; use --limit {folder.n} or the matching folder."
        )
    for severity in severities:
        if not np.array_equal(folder.read_labels(severity, 0, n), data.labels):
            raise DataError(
                f"the labels of {folder.path} (severity {severity}) differ from the clean data's; the folder was made from other data."
            )
    for corruption in corruptions:
        shape = folder.array(corruption).shape[1:]
        if tuple(shape) != data.images.shape[1:]:
            raise DataError(
                f"{corruption}.npy in {folder.path} holds {shape} images but the clean data is {data.images.shape[1:]}."
            )
    made_from = folder.source_fingerprint
    if made_from is not None and made_from != fingerprint(data.images, data.labels):
        raise DataError(
            f"{folder.path} was made by `onnx-geom corrupt` from other data than this clean data "
            f"({folder.meta.get('source')!r}); use the folder made from this data (and the same --limit)."
        )
    if made_from is None and corruptions and min(severities) > 0:
        _check_made_from(folder, data, corruptions, min(severities))


def _folder_source(folder: CorruptedFolder, *, rows: int = 8) -> dict[str, Any]:
    """What the study records of a ``--corrupted`` folder, to refuse resuming from another one: its path, who made
    it (the clean data's fingerprint and the folder's settings, when onnx-geom did), and the sha256 of its labels
    and of ``rows`` images of every severity block of every corruption file (a sample: the files can be GBs)."""
    digest = hashlib.sha256(np.ascontiguousarray(folder.labels, "<i8").tobytes())
    for corruption in folder.corruptions:
        array = folder.array(corruption)
        digest.update(f"{corruption}{array.shape}".encode())
        for block in range(len(folder.severities)):
            picks = block * folder.n + np.linspace(0, folder.n - 1, min(rows, folder.n)).astype(np.int64)
            digest.update(np.ascontiguousarray(array[picks]).tobytes())
    made_by = {k: folder.meta.get(k) for k in ("source_fingerprint", "profile", "seed", "severities")}
    return {
        "folder": str(folder.path),
        "made_by": made_by if folder.source_fingerprint is not None else None,
        "sampled_sha256": digest.hexdigest(),
    }


def _check_made_from(
    folder: CorruptedFolder, data: Dataset, corruptions: Sequence[str], severity: int, *, samples: int = 32
) -> None:
    """Refuse a folder whose images are not corrupted copies of ``data``'s (same labels, other images): under the
    mildest severity asked for, a corrupted image must be closer to its own clean image than to other clean
    images of the same class, for at least one corruption. Reads ``samples`` images per corruption."""
    n = len(data.labels)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(n, min(samples, n), replace=False))
    # a partner of the same class for each sample (the labels already agree), so the class alone cannot match
    partners = np.array([rng.choice(np.flatnonzero(data.labels == data.labels[i])) for i in rows])
    mine = rows != partners
    if mine.sum() < 4:
        return  # too few samples that share a class to tell
    clean = data.images[rows].astype(np.float32)
    other = data.images[partners].astype(np.float32)
    ratios = []
    for corruption in corruptions:
        corrupted = np.concatenate([folder.read(corruption, severity, r, r + 1) for r in rows]).astype(np.float32)
        own = np.abs(corrupted - clean).mean(axis=(1, 2, 3))[mine].mean()
        elsewhere = np.abs(corrupted - other).mean(axis=(1, 2, 3))[mine].mean()
        ratios.append(own / max(elsewhere, 1e-9))
    if min(ratios) > 0.8:
        raise DataError(
            f"the images in {folder.path} are not corrupted copies of this clean data (under severity {severity} "
            "they are as far from their own clean image as from others of the same class); the folder was made "
            "from other images: use the folder made from this data, or make one with `onnx-geom corrupt`."
        )


def _accuracy(
    study: Study, models: Sequence[str], plan: Sequence[tuple[str, int]]
) -> tuple[dict[str, Any], dict[str, int]]:
    """Top-1 accuracy of every complete unit of ``plan``: ``{model: {corruption: {severity: accuracy}}}``, and
    ``{"model/corruption/severity": n}`` for the units where the model gave NaN or infinite logits for n images
    (they count as wrong)."""
    labels = study.labels
    correct: dict[tuple[str, str, int], np.ndarray] = {}
    nonfinite: dict[str, int] = {}
    for model, (corruption, severity) in itertools.product(models, plan):
        unit = Unit(model, corruption, severity)
        if study.is_complete(unit):
            logits = study.read(unit, "logits")
            finite = np.isfinite(logits).all(axis=1)
            correct[unit] = (logits.argmax(axis=1) == labels) & finite
            if not finite.all():
                nonfinite[str(unit)] = int((~finite).sum())
    accuracy = {(r["model"], r["corruption"], r["severity"]): r["accuracy"] for r in accuracy_table(correct)}
    table: dict[str, Any] = {}
    for key in correct:  # in the order of the plan
        model, corruption, severity = key
        table.setdefault(model, {}).setdefault(corruption, {})[severity] = accuracy[key]
    return table, nonfinite


@dataclass
class _Setup:
    """What a sweep runs, checked before anything is written (whichever executor runs it)."""

    clean: Dataset
    folder: CorruptedFolder | None
    corruptions: list[str]
    severities: list[int]
    make: Corrupt
    profile: str | None
    seed: int

    @property
    def plan(self) -> list[tuple[str, int]]:
        return [(CLEAN, 0)] + [(c, s) for c in self.corruptions for s in self.severities]

    def create_study(self, study_path: str | os.PathLike[str]) -> Study:
        clean, folder = self.clean, self.folder
        return Study.create(
            study_path, images=clean.images, labels=clean.labels, dataset_name=clean.name, class_names=clean.class_names or (),
            corruptions=[CLEAN, *self.corruptions], severities=[0, *self.severities],
            profile="folder" if folder is not None else (self.profile or "auto"), seed=self.seed, exist_ok=True,
            corrupted=_folder_source(folder) if folder is not None else None,
        )  # fmt: skip

    def start(
        self, study_path: str | os.PathLike[str], models: Mapping[str, Any], infos: Mapping[str, Any], report: Progress
    ) -> tuple[Study, list[tuple[str, int]], list[tuple[str, int, list[str]]]]:
        """What every executor does first: create (or open) the study, record the models (``models``: name ->
        source, ``infos``: name -> ProbeInfo), and report the plan (``"plan"``, ``"plan_images"``). Returns the
        study, the plan and what is still to do (:func:`_todo`)."""
        study = self.create_study(study_path)
        for name, src in models.items():
            study.add_model(name, infos[name], probe_path=str(src) if isinstance(src, (str, os.PathLike)) else "")
        plan = self.plan
        todo = _todo(study, list(models), plan)
        units = sum(len(names) for _, _, names in todo)
        report("plan", None, units)
        report("plan_images", None, len(self.clean.labels) * units)
        return study, plan, todo


def _setup(
    models: Mapping[str, Any],
    data: Any,
    *,
    corruptions: Sequence[str] | None,
    severities: Sequence[int] | None,
    corrupted_dir: str | os.PathLike[str] | None,
    limit: int | None,
    profile: str | None,
    seed: int,
    corrupt: Corrupt | None,
) -> _Setup:
    """Read and check the data, the corruptions and the severities (nothing written yet)."""
    from onnx_geom.corruptions import CORRUPTIONS
    from onnx_geom.corruptions import corrupt as default_corrupt

    clean = _as_data(data, limit)
    folder = CorruptedFolder(corrupted_dir) if corrupted_dir is not None else None
    if corruptions is None:
        corruptions = list(folder.corruptions) if folder is not None else list(CORRUPTIONS)
    corruptions = [c for c in dict.fromkeys(corruptions) if c != CLEAN]
    if severities is None:
        severities = folder.severities if folder is not None else SEVERITIES
    severities = sorted({int(s) for s in severities}) if corruptions else []  # the study records only what runs
    if corruptions and not severities:
        raise DataError("no severities were given; pass some of 1..5.")
    if any(s < 1 for s in severities):
        raise DataError(f"severities must be 1 or more (clean is always run), got {severities}.")
    if not models:
        raise DataError("no models were given; pass at least one probe or ONNX model.")
    if folder is not None:
        _check_folder(folder, clean, corruptions, severities)
    if corrupt is None and folder is None:
        unknown = [c for c in corruptions if c not in CORRUPTIONS]
        if unknown:
            raise DataError(f"unknown corruption(s) {', '.join(unknown)}; choose from {', '.join(CORRUPTIONS)}.")
    make = corrupt or default_corrupt
    if folder is None and corruptions:  # one image through the first corruption: bad profile or size fail now
        make(clean.images[:1], corruptions[0], severities[0], profile=profile, rng=seed, indices=np.arange(1))
    return _Setup(clean, folder, corruptions, severities, make, profile, seed)


def _check_location(study_path: str | os.PathLike[str]) -> None:
    """Refuse an object store's address (``s3://bucket/study``): a study is a folder on a file system."""
    text = os.fspath(study_path)
    url = re.match(r"^([A-Za-z][A-Za-z0-9+.-]+):/+(.*)$", text)  # a Path made of "s3://b/s" reads "s3:/b/s"
    if url:
        raise DataError(
            f"{url.group(1)}://{url.group(2)} is an object store's address ({url.group(1)}://), which is not a "
            "supported study location yet; give a folder on a file system (on a cluster, one that every node "
            "mounts at the same path)."
        )


def _claim(
    stack: contextlib.ExitStack, study: Study, corruption: str, severity: int, infos: Mapping[str, Any], n: int
) -> tuple[dict[str, Any], list[tuple[Unit, str | None]]]:
    """Claim the units of ``corruption``/``severity`` of the models ``infos`` (name -> ProbeInfo), in that order,
    each held by ``stack``: ``({model: writer}, [(unit, why)])`` where ``why`` is the sentence of the process
    that holds a unit, or None when the unit was completed meanwhile."""
    writers = {}
    skipped: list[tuple[Unit, str | None]] = []
    for m, info in infos.items():
        unit = Unit(m, corruption, severity)
        spec = {"features": ((n, info.feature_dim), "float32"), "logits": ((n, info.num_classes), "float32")}
        try:
            writers[m] = stack.enter_context(study.writing(unit, spec))
        except StudyLockedError as err:
            skipped.append((unit, str(err)))
        except UnitAlreadyComplete:
            skipped.append((unit, None))
    return writers, skipped


def _todo(study: Study, models: Sequence[str], plan: Sequence[tuple[str, int]]) -> list[tuple[str, int, list[str]]]:
    """Every condition of ``plan`` with the models whose unit of it is not complete yet."""
    return [(c, s, [m for m in models if not study.is_complete(Unit(m, c, s))]) for c, s in plan]


def _summary(
    study: Study,
    study_path: str | os.PathLike[str],
    models: Sequence[str],
    plan: Sequence[tuple[str, int]],
    todo: Sequence[tuple[str, int, list[str]]],
    *,
    device: str,
    providers: list[str],
    fp16: bool,
    step: int,
    n: int,
    computed: list[str],
    raced: int,
    locked: list[str],
    seconds: float,
    images_run: int,
) -> dict[str, Any]:
    table, nonfinite = _accuracy(study, list(models), plan)
    return {
        "study": str(Path(study_path)),
        "device": device,
        "providers": providers,
        "fp16": fp16,
        "batch_size": step,
        "images": n,
        "units": {
            "planned": len(plan) * len(models),
            "computed": computed,
            "already_complete": len(plan) * len(models) - sum(len(x) for *_, x in todo) + raced,
            "locked": locked,
        },
        "seconds": round(seconds, 3),
        "images_per_s": round(images_run / seconds, 1) if seconds > 0 else 0.0,
        "accuracy": {
            m: {c: float(np.mean(list(by_sev.values()))) for c, by_sev in per.items()} for m, per in table.items()
        },
        "nonfinite": nonfinite,
        "accuracy_by_severity": {
            m: {c: {str(s): a for s, a in by_sev.items()} for c, by_sev in per.items()} for m, per in table.items()
        },
    }


EXECUTORS = ("local", "ray")


def sweep(
    models: Mapping[str, Any],
    data: Any,
    study_path: str | os.PathLike[str],
    *,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    corrupted_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    fp16: bool = False,
    profile: str | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    corrupt: Corrupt | None = None,
    verbose: bool = False,
    executor: str = "local",
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
) -> dict[str, Any]:
    """Run every model over clean data and every corruption x severity; write the units to ``study_path``.

    ``models`` maps names to probes (paths or ``onnx.ModelProto``; plain classifiers are probed on the fly).
    ``data`` is a data path, a Dataset-like object or an ``(images, labels)`` pair. Corrupted sets come from
    ``corrupted_dir`` (CIFAR-10-C layout) or are made on the fly by ``corrupt`` (default
    :func:`onnx_geom.corruptions.corrupt`, seeded with ``seed``, ``profile``). ``corruptions`` defaults to
    all those of the folder, or all 19; ``severities`` to those of the folder, or 1..5. Returns a JSON-able summary (see the module doc).

    ``executor="ray"`` runs the sweep on a Ray cluster (:mod:`onnx_geom.ray_sweep`, the ``[ray]`` extra): the
    one at ``address``, else the one this process is connected to, else a local one on every core (and GPU);
    ``workers`` processes run the probes and write the units (default: one per GPU share, or one per node),
    each with ``gpus_per_worker`` of a GPU (default 1 on a cluster with GPUs, else 0), while every CPU of the
    cluster makes corrupted images. The study is the same, byte for byte, as a local run's.
    """
    if executor not in EXECUTORS:
        raise DataError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}.")
    if executor == "local" and (address, workers, gpus_per_worker) != (None, None, None):
        raise DataError("--address, --workers and --gpus-per-worker are for --executor ray; add it, or leave them out.")
    started = time.perf_counter()
    report = progress or (lambda event, unit, count: None)
    _check_location(study_path)
    setup = _setup(models, data, corruptions=corruptions, severities=severities, corrupted_dir=corrupted_dir,
                   limit=limit, profile=profile, seed=seed, corrupt=corrupt)  # fmt: skip
    if executor == "ray":
        from onnx_geom.ray_sweep import ray_sweep

        return ray_sweep(models, setup, study_path, batch_size=batch_size, device=device, fp16=fp16, verbose=verbose,
                         report=report, address=address, workers=workers, gpus_per_worker=gpus_per_worker,
                         started=started)  # fmt: skip
    clean, folder, make = setup.clean, setup.folder, setup.make

    sessions = {
        name: ProbeSession.open(src, device=device, fp16=fp16, batch_size=batch_size, verbose=verbose, name=name)
        for name, src in models.items()
    }
    for name, session in sessions.items():
        check_data(session.info, clean.images.shape[1:], clean.labels, name)
    step = min(s.batch_size for s in sessions.values())

    study, plan, todo = setup.start(study_path, models, {name: s.info for name, s in sessions.items()}, report)
    n = len(clean.labels)
    computed: list[str] = []
    locked: list[str] = []
    raced = 0
    images_run = 0

    def reader(corruption: str, severity: int) -> Callable[[int, int], np.ndarray]:
        if corruption == CLEAN:
            return lambda a, b: clean.images[a:b]
        if folder is not None:
            return lambda a, b: folder.read(corruption, severity, a, b)
        return lambda a, b: make(
            clean.images[a:b], corruption, severity, profile=profile, rng=seed, indices=np.arange(a, b)
        )

    for corruption, severity, names in todo:
        if not names:
            continue
        with contextlib.ExitStack() as stack:
            writers, skipped = _claim(stack, study, corruption, severity, {m: sessions[m].info for m in names}, n)
            for unit, message in skipped:
                if message is None:
                    raced += 1
                else:
                    locked.append(message)
                report("skip", unit, 0)
            if not writers:
                continue
            for batch in _prefetched(reader(corruption, severity), n, step):
                for m, writer in writers.items():
                    features, logits = sessions[m].run(batch)
                    writer.append(features=features, logits=logits)
                images_run += len(batch) * len(writers)
                report("images", None, len(batch) * len(writers))
        for m in writers:
            computed.append(str(Unit(m, corruption, severity)))
            report("unit", Unit(m, corruption, severity), 0)

    any_session = next(iter(sessions.values()))
    return _summary(study, study_path, list(models), plan, todo, device=any_session.device,
                    providers=any_session.providers, fp16=fp16, step=step, n=n, computed=computed, raced=raced,
                    locked=locked, seconds=time.perf_counter() - started, images_run=images_run)  # fmt: skip
