"""A sweep on a Ray cluster: ``sweep(..., executor="ray")``, ``onnx-geom run --executor ray`` (the ``[ray]`` extra).

Imported only when a Ray sweep is asked for (the core never imports Ray otherwise). Who does what:

- **The driver** (the process that calls :func:`onnx_geom.sweep.sweep`) checks the data and the models (one CPU
  session each: a bad probe is refused before anything is written), connects to Ray, checks the cluster (a GPU
  share that no node has; every node must see the study's folder: it reads a beacon the driver wrote there and
  answers with one of its own), creates the study and registers the models exactly as a local sweep does, then
  hands out the conditions (corruption x severity) in jobs and keeps the progress bar.
- **Workers** (``_Runner`` actors, ``workers`` of them, each with ``gpus_per_worker`` of a GPU) open one
  onnxruntime session per model once and keep them for the whole sweep. For each condition of a job a worker
  claims its units through the store (lock, ``complete: false``, stamped with its Ray node), runs the images
  through every model in batches cut exactly where a local sweep cuts them, writes the rows and marks the units
  complete. A worker that dies (or its node) is restarted elsewhere and its job retried: its units were left
  incomplete, or are found complete; never half-written and complete.
- **Chunks** (``_chunk`` tasks, one CPU each, anywhere in the cluster) read a block of clean images from the
  study (a block of its chunk grid: one decode) and corrupt it, or read it from the ``--corrupted`` folder. A
  worker keeps a window of them in flight across the conditions of its job, so every CPU of the cluster makes
  images while the workers run the probes. Corruptions are seeded per sample (``indices``), so the blocks'
  bytes are those of a local sweep whatever the block size.

What each worker did is reported to a small ``_Tally`` actor beside the driver (images, units) for the progress
bar and the per-node counts of the summary.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import logging
import math
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from onnx_geom.conditions import CLEAN
from onnx_geom.errors import ClusterError, DataError, OnnxGeomError
from onnx_geom.runner import ProbeSession, check_data
from onnx_geom.store import Study, Unit, set_writer_node
from onnx_geom.store._beacon import beacon_folder, read_beacon, remove_beacons, write_beacon

__all__ = ["ray_sweep"]

#: Seconds every node has to answer whether it sees the study; a worker to start (open its sessions); to reach
#: an address (TCP) before Ray is asked to connect to it.
ANSWER_S, START_S, CONNECT_S = 120.0, 600.0, 5.0
#: Jobs per worker: the conditions are handed out in about this many jobs per worker (balance against the pause
#: at the end of a job, when a worker's window of chunks runs dry).
JOBS_PER_WORKER = 4
#: The most bytes of corrupted images a worker keeps in flight (its window of chunks).
WINDOW_BYTES = 512 << 20
#: How often a worker tells the tally how many images it ran (seconds).
TELL_S = 0.25
#: Restarts of a worker that died (or whose node did), and retries of its job.
RESTARTS = 3


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(
            "--executor ray needs Ray, which is not installed here; install it with `pip install 'onnx-geom[ray]'`."
        ) from None
    return ray


@functools.cache
def _remote() -> SimpleNamespace:
    """The Ray remote functions and actor classes (made once, when Ray is first asked for)."""
    ray = _ray()
    return SimpleNamespace(
        look=ray.remote(num_cpus=0, max_retries=0)(_look),
        chunk=ray.remote(num_cpus=1, max_retries=RESTARTS)(_chunk),
        Runner=ray.remote(num_cpus=0, max_restarts=RESTARTS, max_task_retries=RESTARTS)(_Runner),
        Tally=ray.remote(num_cpus=0)(_Tally),
    )


def _reachable(ray: Any, address: str) -> None:
    """Refuse an address nobody listens at (a TCP connection, at most :data:`CONNECT_S` seconds), at once; Ray
    itself would try for minutes. Checked as given and as Ray will use it (Ray swaps an address of this machine's
    loopback, 127.0.0.1, for the machine's network address)."""
    if address == "auto":
        return  # Ray looks for the cluster started on this machine (and says so when there is none)
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise DataError(f"--address {address!r} is not HOST:PORT (the address `ray start --head` prints).")
    targets = [address]
    with contextlib.suppress(Exception):  # a private helper of Ray's: without it, the address as given
        targets.append(ray._private.services.canonicalize_bootstrap_address(address))
    for target in dict.fromkeys(targets):
        host, _, port = target.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_S).close()
        except OSError as err:
            why = err.strerror or type(err).__name__
            how = f"Ray reaches it as {target}: {why}" if target != address else why
            raise ClusterError(
                f"cannot reach a Ray cluster at {address} ({how}); start one there with `ray start --head`, or check the address."
            ) from None


@contextlib.contextmanager
def _connected(ray: Any, address: str | None, verbose: bool) -> Iterator[str]:
    """Connect to Ray for the sweep; yields what it is connected to (for sentences). A connection this process
    already has is used as it is and left open; one made here is closed at the end (a local Ray stopped)."""
    quiet = {"logging_level": logging.INFO if verbose else logging.WARNING, "log_to_driver": verbose}
    if ray.is_initialized():
        if address is not None:
            raise DataError("this process is already connected to a Ray cluster; leave --address out to use that one.")
        yield "the Ray cluster this process is connected to"
        return
    if address is not None:
        if address.startswith("ray://"):
            raise DataError(
                f"{address} is a Ray Client address, which onnx-geom does not use; run onnx-geom on a node of the "
                "cluster with --address HOST:PORT (the address `ray start --head` prints)."
            )
        _reachable(ray, address)
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ClusterError(
                f"cannot connect to the Ray cluster at {address} ({_first_line(err)}); check the address."
            ) from None
        try:
            yield f"the Ray cluster at {address}"
        finally:
            ray.shutdown()
        return
    # a Ray of our own on this machine: every core and GPU, its node on 127.0.0.1 (its servers listen on every
    # interface, as Ray's do; Ray's token authentication guards them, on by default), its files in a folder of its
    # own (removed afterwards), so that it never meets another Ray started here. Ray's sockets live in that folder and a
    # socket's path has at most 107 characters: a long temporary folder gives way to /tmp. Ray's note that it
    # protects the cluster with a token is for --verbose.
    base = tempfile.gettempdir()
    files = tempfile.mkdtemp(
        prefix="onnx-geom-ray-", dir=base if len(base) <= 40 or not os.path.isdir("/tmp") else "/tmp"
    )
    if not verbose:
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        try:
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, _temp_dir=files,
                     _node_ip_address="127.0.0.1", **quiet)  # fmt: skip
        except Exception as err:  # Ray's own errors (no shared memory, no free port, ...) as one sentence
            why = f"{type(err).__name__}: {_first_line(err)}"
            raise ClusterError(f"could not start Ray on this machine ({why}).") from None
        yield "the local Ray"
    finally:
        ray.shutdown()
        shutil.rmtree(files, ignore_errors=True)


# ------------------------------------------------------------------------------------------------- on the nodes
def _look(folder: str, token: str, node: str) -> str | None:
    """On a node: None when it sees the driver's beacon in ``folder`` and can answer there, else why not."""
    where = Path(folder)
    if not where.is_dir():
        return "there is no such folder there"
    try:
        if not read_beacon(where, token):
            return "the folder there is another one: it lacks the file the driver just wrote"
        write_beacon(where, token, node)
    except (OSError, OnnxGeomError) as err:
        return str(err) if isinstance(err, OnnxGeomError) else f"{err.strerror or err}"
    return None


_OPENED: dict[tuple[str, ...], Any] = {}  # per worker process: the study (or folder) chunks are read from


def _chunk(source: Mapping[str, Any], corruption: str, severity: int, start: int, stop: int) -> np.ndarray:
    """On a node: images ``start:stop`` of a condition: read from the study (a chunk of it), corrupted on the fly,
    or read from the ``--corrupted`` folder."""
    if corruption != CLEAN and source["folder"] is not None:
        from onnx_geom.datasets import CorruptedFolder

        key = ("folder", source["folder"], source["folder_sha256"])
        if key not in _OPENED:
            _OPENED[key] = CorruptedFolder(source["folder"])
        return np.array(_OPENED[key].read(corruption, severity, start, stop))
    key = ("study", source["study"], source["sha256"])
    if key not in _OPENED:
        _OPENED[key] = Study.open(source["study"])
    images = np.asarray(_OPENED[key].images[start:stop])
    if corruption == CLEAN:
        return images
    return source["make"](images, corruption, severity, profile=source["profile"], rng=source["seed"],
                          indices=np.arange(start, stop))  # fmt: skip


def _batches(chunks: Iterator[np.ndarray], step: int) -> Iterator[np.ndarray]:
    """The rows of ``chunks`` in batches of exactly ``step`` (the last one shorter): where a local sweep cuts."""
    held: list[np.ndarray] = []
    count = 0
    for chunk in chunks:
        held.append(chunk)
        count += len(chunk)
        while count >= step:
            rows = np.concatenate(held) if len(held) > 1 else held[0]
            yield rows[:step]
            rest = rows[step:]
            held, count = ([rest] if len(rest) else []), len(rest)
    if count:
        yield np.concatenate(held) if len(held) > 1 else held[0]


class _Tally:
    """Beside the driver: what the workers did, taken by the driver for the progress bar."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def add(self, *events: tuple[Any, ...]) -> None:
        self.events.extend(events)

    def take(self) -> list[tuple[Any, ...]]:
        events, self.events = self.events, []
        return events


class _Runner:
    """A worker: one session per model, kept for the whole sweep; claims, computes and writes units."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        import ray

        self.node = ray.get_runtime_context().get_node_id()
        set_writer_node(self.node)  # every unit this process writes says which node wrote it
        self.options = dict(options)
        self.tally: Any = None
        self.sessions: dict[str, ProbeSession] | None = None
        self.study: Study | None = None
        self.told = time.monotonic()
        self.images, self.waited, self.ran = 0, 0.0, 0.0  # since the last tell: images run, s waiting, s in the models

    def _open(self, models: Mapping[str, Any]) -> dict[str, ProbeSession]:
        """The sessions, opened at the first call (again after a restart): ``models`` are object refs (or paths)."""
        import ray

        if self.sessions is None:
            self.sessions = {
                name: ProbeSession.open(
                    ray.get(model) if isinstance(model, ray.ObjectRef) else model, name=name, **self.options
                )
                for name, model in models.items()
            }
        return self.sessions

    def start(self, models: Mapping[str, Any]) -> dict[str, Any]:
        """Open the sessions (before the study is created: a device that does not work is said first); what they
        got (device, providers, the batch size) and where this worker runs. (The models, the tally and the source
        of the images come with each call, not with the worker: a restarted worker gets them again.)"""
        sessions = self._open(models)
        first = next(iter(sessions.values()))
        return {
            "node": self.node,
            "host": socket.gethostname(),
            "device": first.device,
            "providers": first.providers,
            "step": min(s.batch_size for s in sessions.values()),
        }

    def _tell(self, *events: tuple[Any, ...], wait: bool = False) -> None:
        if self.images and (wait or events or time.monotonic() - self.told >= TELL_S):
            events = (("images", self.node, self.images, round(self.waited, 4), round(self.ran, 4)), *events)
            self.images, self.waited, self.ran = 0, 0.0, 0.0
        if events:
            self.told = time.monotonic()
            ref = self.tally.add.remote(*events)
            if wait:
                import ray

                with contextlib.suppress(ray.exceptions.RayError):  # the tally is for the bar only
                    ray.get(ref, timeout=60)

    def run(
        self, models: Mapping[str, Any], tally: Any, source: Mapping[str, Any], job: Sequence[tuple[str, int, list[str]]],
        step: int, n: int, rows: int, window: int,
    ) -> list:  # fmt: skip
        """Compute the conditions of ``job`` (``(corruption, severity, models)``) in batches of ``step`` images, the
        images made in chunks of ``rows`` by chunk tasks, ``window`` of them in flight; returns the events (unit
        completed, found complete, locked)."""
        import ray

        from onnx_geom.sweep import _claim

        sessions = self._open(models)
        self.tally = tally
        if self.study is None or self.study.path != Path(source["study"]):
            self.study = Study.open(source["study"], mode="a")
        chunk = _remote().chunk
        bounds = [(a, min(n, a + rows)) for a in range(0, n, rows)]
        dropped: set[int] = set()
        wanted = ((i, a, b) for i in range(len(job)) for a, b in bounds)
        flying: collections.deque[tuple[int, Any]] = collections.deque()

        def fill() -> None:
            while len(flying) < window:
                item = next((x for x in wanted if x[0] not in dropped), None)
                if item is None:
                    return
                i, a, b = item
                flying.append((i, chunk.remote(source, job[i][0], job[i][1], a, b)))

        def images(i: int) -> Iterator[np.ndarray]:
            for _ in bounds:
                fill()
                j, ref = flying.popleft()
                assert j == i
                began = time.perf_counter()
                rows = ray.get(ref)
                self.waited += time.perf_counter() - began
                yield rows

        events: list[tuple[Any, ...]] = []
        for i, (corruption, severity, names) in enumerate(job):
            with contextlib.ExitStack() as stack:
                infos = {m: sessions[m].info for m in names}
                writers, skipped = _claim(stack, self.study, corruption, severity, infos, n)
                said = [("raced", self.node, str(u)) if why is None else ("locked", self.node, str(u), why)
                        for u, why in skipped]  # fmt: skip
                if not writers:
                    dropped.add(i)
                    while flying and flying[0][0] == i:  # dropped, not cancelled: a cancel racing the task's
                        flying.popleft()  # reply can abort the process (a check in Ray's task manager)
                    events += said
                    self._tell(*said)
                    continue
                for batch in _batches(images(i), step):
                    for m, writer in writers.items():
                        began = time.perf_counter()
                        features, logits = sessions[m].run(batch)
                        self.ran += time.perf_counter() - began
                        writer.append(features=features, logits=logits)
                    self.images += len(batch) * len(writers)
                    self._tell()
            said += [("unit", self.node, str(Unit(m, corruption, severity))) for m in writers]
            events += said
            self._tell(*said)
        self._tell(wait=True)  # everything told before the job is reported done
        return events


# ------------------------------------------------------------------------------------------------- the driver
def _load_models(models: Mapping[str, Any], clean: Any, verbose: bool) -> dict[str, tuple[Any, Any]]:
    """``{name: (what the workers open, ProbeInfo)}``: each model checked here with a CPU session (a
    bad probe, or data that does not fit it, is refused before anything is written). Plain classifiers are
    probed once, here; a probe whose weights are external files (over 2 GB) is opened by its path on the workers."""
    import onnx

    from onnx_geom.runner import _load

    loaded = {}
    for name, src in models.items():
        model, _info, is_file = _load(src, weights=False)
        external = is_file and any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
        ship = os.path.abspath(src) if external else model
        session = ProbeSession.open(src if external else model, device="cpu", verbose=verbose, name=name)
        check_data(session.info, clean.images.shape[1:], clean.labels, name)
        loaded[name] = (ship, session.info)
        del session
    return loaded


def _shares(
    nodes: list[dict[str, Any]], device: str, workers: int | None, gpus_per_worker: float | None, where: str
) -> tuple[int, float]:
    """How many workers, and the share of a GPU each takes (see :func:`onnx_geom.sweep.sweep`)."""
    gpus = [float(n["Resources"].get("GPU", 0)) for n in nodes]
    share = (1.0 if any(gpus) and device != "cpu" else 0.0) if gpus_per_worker is None else float(gpus_per_worker)
    if share > 0 and not any(gpus):
        raise ClusterError(
            f"a share of {share:g} GPU per worker was asked for, but {where} has no GPUs; "
            "leave --gpus-per-worker out (or give 0) to run on CPUs."
        )
    if share > max(gpus, default=0):
        raise ClusterError(
            f"a share of {share:g} GPU per worker was asked for, but no node of {where} has that many "
            f"(the most is {max(gpus):g}); ask for at most that."
        )
    if workers is None:
        workers = sum(math.floor(g / share + 1e-9) for g in gpus) if share > 0 else len(nodes)
    return max(1, workers), share


def _check_options(device: str, workers: int | None, gpus_per_worker: float | None) -> None:
    if workers is not None and workers < 1:
        raise DataError(f"--workers must be at least 1, not {workers}; leave it out for the default.")
    if gpus_per_worker is not None:
        share = float(gpus_per_worker)
        if not share >= 0 or (share > 1 and share != int(share)):
            raise DataError(
                f"--gpus-per-worker must be a fraction of a GPU (0 to 1) or a whole number of GPUs, not {gpus_per_worker}."
            )
        if share > 0 and device == "cpu":
            raise DataError("--gpus-per-worker asks for GPUs but --device cpu runs on the CPU; leave one of them out.")


def _check_nodes(ray: Any, study_path: str, nodes: list[dict[str, Any]]) -> None:
    """Refuse a cluster a node of which does not see the study's folder (or another folder there, or one it
    cannot write): every node reads the driver's beacon there and writes its answer, which the driver reads."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    folder = beacon_folder(study_path)
    token = uuid.uuid4().hex
    ids = [n["NodeID"] for n in nodes]
    write_beacon(folder, token)
    look = _remote().look
    refs = {}
    try:
        for node in ids:
            strategy = NodeAffinitySchedulingStrategy(node, soft=False)
            refs[node] = look.options(scheduling_strategy=strategy).remote(str(folder), token, node)
        _ready, late = ray.wait(list(refs.values()), num_returns=len(refs), timeout=ANSWER_S)
        for n in nodes:
            node, host = n["NodeID"], n.get("NodeManagerHostname", "?")
            if refs[node] in late:
                raise ClusterError(
                    f"Ray node {node[:12]} ({host}) did not say within {ANSWER_S:.0f} s whether it sees the study's "
                    f"folder {folder}; check that node (or remove it from the cluster)."
                )
            try:
                problem = ray.get(refs[node])
            except ray.exceptions.RayError as err:
                raise _cannot_run(f"Ray node {node[:12]} ({host})", err) from None
            if problem is None and not read_beacon(folder, token, node):
                problem = "what it wrote there does not appear here"
            if problem is not None:
                raise ClusterError(
                    f"Ray node {node[:12]} ({host}) cannot use the study's folder {folder} ({problem}); put the "
                    "study on a file system that every node mounts at the same path."
                )
    finally:
        # Only the nodes that have not answered are cancelled: a cancel racing a task's reply can abort this
        # process (Ray 2.60: "Tried to complete task that was not pending", seen in the tests).
        _answered, late = ray.wait(list(refs.values()), num_returns=len(refs), timeout=0) if refs else ([], [])
        for ref in late:
            ray.cancel(ref)
        remove_beacons(folder, token, ids)


def _first_line(error: BaseException) -> str:
    """The first line of what an error says (its type's name when it says nothing), at most 200 characters."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def _why(error: BaseException) -> str:
    """The last line of what went wrong on a node (the exception under Ray's own lines and tracebacks)."""
    cause = getattr(error, "cause", None) or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return (lines[-1] if lines else type(cause).__name__)[:300]


def _cannot_run(who: str, error: BaseException) -> ClusterError:
    return ClusterError(
        f"{who} cannot run onnx-geom's code ({_why(error)}); install the same onnx-geom, Ray and Python on every node "
        "(and run onnx-geom from a folder that holds no other copy of it: Ray puts that folder first on the workers' path)."
    )


def _failure(ray: Any, error: BaseException) -> BaseException:
    """The user's sentence inside a worker's error (a full disk, a GPU that does not work), else the error."""
    cause = getattr(error, "cause", None) if isinstance(error, ray.exceptions.RayTaskError) else None
    if isinstance(cause, OnnxGeomError):
        return type(cause)(str(cause))
    return error


def _jobs(todo: Sequence[tuple[str, int, list[str]]], workers: int) -> list[list[tuple[str, int, list[str]]]]:
    """The conditions still to compute, in the plan's order, in about :data:`JOBS_PER_WORKER` jobs per worker."""
    conditions = [(c, s, names) for c, s, names in todo if names]
    count = min(len(conditions), workers * JOBS_PER_WORKER)
    if not count:
        return []
    edges = [round(k * len(conditions) / count) for k in range(count + 1)]
    return [conditions[a:b] for a, b in itertools.pairwise(edges) if b > a]


def ray_sweep(
    models: Mapping[str, Any],
    setup: Any,
    study_path: str | os.PathLike[str],
    *,
    batch_size: int | None,
    device: str,
    fp16: bool,
    verbose: bool,
    report: Callable[[str, Unit | None, int], None],
    address: str | None,
    workers: int | None,
    gpus_per_worker: float | None,
    started: float,
) -> dict[str, Any]:
    """The Ray executor of :func:`onnx_geom.sweep.sweep` (``setup``: its checked ``_Setup``)."""
    from onnx_geom.sweep import _summary

    ray = _ray()
    _check_options(device, workers, gpus_per_worker)
    clean = setup.clean
    loaded = _load_models(models, clean, verbose)
    given, study_path = study_path, os.path.abspath(study_path)  # the workers' working folder is not ours
    with _connected(ray, address, verbose) as where:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        count, share = _shares(nodes, device, workers, gpus_per_worker, where)
        _check_nodes(ray, study_path, nodes)
        options = {"device": device, "fp16": fp16, "batch_size": batch_size, "verbose": verbose}
        run = _Run(ray, loaded, options, nodes, count, share, report)
        try:
            run.start()  # the workers' sessions: a GPU that does not work is said before the study is written
            study, plan, todo = setup.start(given, models, {name: info for name, (_, info) in loaded.items()}, report)
            n = len(clean.labels)
            run.sweep(_jobs(todo, count), _source(setup, study, study_path), n, int(study.images.chunks[0]))
        finally:
            run.stop()
        summary = _summary(study, given, list(models), plan, todo, device=run.device, providers=run.providers,
                           fp16=fp16, step=run.step, n=n, computed=run.computed(), raced=run.raced(),
                           locked=run.locked(), seconds=time.perf_counter() - started,
                           images_run=sum(node["images"] for node in run.nodes.values()))  # fmt: skip
    summary.update(executor="ray", workers=count, gpus_per_worker=share, nodes=run.nodes)
    return summary


def _source(setup: Any, study: Study, study_path: str) -> dict[str, Any]:
    """Where the chunk tasks get their images: the study (clean), how to corrupt them, or the folder. The data's
    sha256 and the folder's are those the study recorded (:meth:`onnx_geom.sweep._Setup.create_study` checked them
    against this sweep's: the folder is not hashed again)."""
    folder = setup.folder
    attrs = study.attrs
    return {
        "study": study_path,
        "sha256": attrs["dataset"].get("sha256"),
        "folder": os.path.abspath(folder.path) if folder is not None else None,
        "folder_sha256": attrs["corrupted"]["sampled_sha256"] if folder is not None else None,
        "make": setup.make,
        "profile": setup.profile,
        "seed": setup.seed,
    }


class _Run:
    """The driver's side of one Ray sweep: the workers, the tally, the jobs, what happened where."""

    def __init__(
        self,
        ray: Any,
        loaded: Mapping[str, tuple[Any, Any]],
        options: Mapping[str, Any],
        nodes: list[dict[str, Any]],
        count: int,
        share: float,
        report: Callable[[str, Unit | None, int], None],
    ) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray, self.report, self.count = ray, report, count
        remote = _remote()
        here = ray.get_runtime_context().get_node_id()
        self.here = here
        self.tally = self._new_tally()
        # the models, put once; held here for the whole sweep (a restarted worker gets them again)
        self.models = {n: ray.put(ship) if not isinstance(ship, str) else ship for n, (ship, _) in loaded.items()}
        hosts = [n for n in nodes if n["Resources"].get("CPU", 0) > 0] or nodes
        self.workers = []
        for k in range(count):
            place: Any = "SPREAD"
            if share == 0:  # one worker per node (round the nodes); if its node dies, its jobs go to the others
                place = NodeAffinitySchedulingStrategy(hosts[k % len(hosts)]["NodeID"], soft=False)
            self.workers.append(remote.Runner.options(num_gpus=share, scheduling_strategy=place).remote(options))
        self.cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1)))
        self.image_bytes = int(np.prod(next(iter(loaded.values()))[1].input_shape))  # uint8 images the probes take
        self.nodes: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[Any, ...]] = []
        self.done: set[tuple[str, str]] = set()
        self.device, self.step = "?", 0
        self.providers: list[str] = []
        self.pending: dict[Any, tuple[int, list]] = {}
        self.tries: dict[int, int] = {}

    def _new_tally(self) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        place = NodeAffinitySchedulingStrategy(self.here, soft=False)  # beside the driver: it lives as long
        return _remote().Tally.options(scheduling_strategy=place).remote()

    def _told(self) -> None:
        """Take what the workers told the tally; a tally that died (it should not) is replaced: the bar may then
        miss some images, the units are counted from the jobs' own answers."""
        try:
            self._take(self.ray.get(self.tally.take.remote(), timeout=60))
        except self.ray.exceptions.RayError:
            self.tally = self._new_tally()

    def start(self) -> None:
        ray = self.ray
        refs = [w.start.remote(self.models) for w in self.workers]
        _ready, late = ray.wait(refs, num_returns=len(refs), timeout=START_S)
        if late:
            raise ClusterError(
                f"{len(late)} of {len(refs)} workers did not start within {START_S:.0f} s (the cluster has no room for "
                "them: GPU shares held by other jobs?); run again when it has, or ask for fewer --workers."
            )
        answers = []
        for ref in refs:
            try:
                answers.append(ray.get(ref))
            except ray.exceptions.RayError as err:
                failure = _failure(ray, err)
                if isinstance(failure, OnnxGeomError):
                    raise failure from None
                raise _cannot_run("a worker", err) from None
        self.device, self.providers = answers[0]["device"], answers[0]["providers"]
        self.step = min(a["step"] for a in answers)
        for a in answers:
            self.nodes.setdefault(a["node"], self._counts(a["host"]))

    def sweep(self, jobs: list[list[tuple[str, int, list[str]]]], source: Mapping[str, Any], n: int, rows: int) -> None:
        """Hand out ``jobs``; chunk tasks read ``rows`` images at a time (one chunk of the stored images)."""
        ray = self.ray
        rows = max(1, min(rows, n))
        image_bytes = self.image_bytes
        window = max(2, math.ceil(2 * self.cpus / self.count))
        window = max(2, min(window, WINDOW_BYTES // max(1, rows * image_bytes)))
        queue = collections.deque(jobs)
        idle = list(range(self.count))[::-1]
        alive = set(idle)
        while queue or self.pending:
            while queue and idle:
                k = idle.pop()
                job = queue.popleft()
                self.pending[
                    self.workers[k].run.remote(self.models, self.tally, source, job, self.step, n, rows, window)
                ] = (
                    k,
                    job,
                )
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=0.2)
            self._told()
            for ref in ready:
                k, job = self.pending.pop(ref)
                try:
                    self._take(ray.get(ref))
                except (ray.exceptions.RayActorError, ray.exceptions.ActorUnschedulableError) as err:
                    alive.discard(k)  # it died more often than it may restart, or its node is gone
                    self._again(job, queue, err, alive)
                    continue
                except ray.exceptions.RayTaskError as err:
                    if isinstance(err.cause, OnnxGeomError) or not isinstance(err.cause, ray.exceptions.RayError):
                        raise _failure(ray, err) from None
                    self._again(job, queue, err.cause, alive)  # a chunk lost beyond its retries (a node died)
                idle.append(k)
        self._told()

    @staticmethod
    def _counts(host: str) -> dict[str, Any]:
        """What a node did: its host, units completed, images run through a model, and the seconds its workers
        spent waiting for images and running the models (on a GPU node: how long the GPU waited, how long it ran)."""
        return {"host": host, "units": 0, "images": 0, "waiting_s": 0.0, "running_s": 0.0}

    def _again(self, job: list, queue: collections.deque, error: BaseException, alive: set[int]) -> None:
        """Hand ``job`` out again (to a worker still alive) after a failure of the cluster, a few times at most."""
        key = id(job)
        self.tries[key] = self.tries.get(key, 0) + 1
        if not alive or self.tries[key] > RESTARTS:
            raise ClusterError(
                f"{'every worker died' if not alive else 'a job failed ' + str(RESTARTS + 1) + ' times'} "
                f"({_first_line(error)}); "
                "every unit completed so far is kept and the others are left incomplete: run the same command again "
                "to finish."
            )
        queue.appendleft(job)

    def _take(self, events: Sequence[tuple[Any, ...]]) -> None:
        """Count what the workers told (the tally's events, or a finished job's: each unit once)."""
        for event in events:
            kind, node = event[0], event[1]
            counts = self.nodes.setdefault(node, self._counts("?"))
            if kind == "images":
                counts["images"] += event[2]
                counts["waiting_s"] = round(counts["waiting_s"] + event[3], 3)
                counts["running_s"] = round(counts["running_s"] + event[4], 3)
                self.report("images", None, event[2])
                continue
            unit = event[2]
            if (kind, unit) in self.done or (kind == "raced" and ("unit", unit) in self.done):
                continue
            self.done.add((kind, unit))
            self.events.append(event)
            if kind == "unit":
                counts["units"] += 1
            model, corruption, severity = unit.split("/")
            self.report("unit" if kind == "unit" else "skip", Unit(model, corruption, int(severity)), 0)

    def computed(self) -> list[str]:
        return [e[2] for e in self.events if e[0] == "unit"]

    def raced(self) -> int:
        done = set(self.computed())
        return sum(1 for e in self.events if e[0] == "raced" and e[2] not in done)

    def locked(self) -> list[str]:
        return [e[3] for e in self.events if e[0] == "locked"]

    def stop(self) -> None:
        """Stop what still runs (Ctrl-C, an error): cancel the jobs (and their chunk tasks), end the workers. Every
        unit they were writing stays incomplete; every completed one is kept."""
        ray = self.ray
        for ref in self.pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, recursive=True)
        for actor in [*self.workers, self.tally]:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self.pending.clear()
