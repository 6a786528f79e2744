"""Ray for the tests, on this machine only (127.0.0.1), stopped by whoever started it, whatever happens.

Every Ray the tests start keeps its files in a fresh folder of its own (``RAY_TMPDIR`` / ``_temp_dir``, never the
machine's ``/tmp/ray``, which other users' clusters share), talks over 127.0.0.1 (without token authentication:
nothing is written to ``~/.ray``) and is stopped by the fixture that started it: ``ray.shutdown()``,
``Cluster.shutdown()``, or a signal to the process group of a node process it spawned with ``start_new_session``.
Never ``ray stop`` (it ends every Ray process of the machine), never a kill by name. Every wait has a timeout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from onnx_geom.store import Study

#: Fast detection of a dead node (the default takes about half a minute).
FAST_FAILURE = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 4}


#: The environment of every Ray the tests start: no token authentication (Ray would write a token to ~/.ray; and a
#: token switched on and off within one process makes Ray abort), no usage report, and 127.0.0.1 as this machine's
#: address, so that the nodes talk over the loopback (Ray otherwise swaps an address 127.0.0.1 for the machine's
#: network address; this switch, meant for single-machine clusters, keeps them on 127.0.0.1). Ray's servers still
#: listen on every interface (Ray has no setting against it), for the minute or two a test's cluster lives.
ENVIRONMENT = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@contextlib.contextmanager
def ray_environment() -> Iterator[Path]:
    """A short folder for Ray's files (socket paths are limited to 107 characters) and the environment every Ray
    started inside uses (:data:`ENVIRONMENT`, also in this process); all undone afterwards."""
    from ray._private import ray_constants

    folder = Path(tempfile.mkdtemp(prefix="ogr-", dir="/tmp"))
    (folder / "ray").mkdir()  # where Ray writes the address of a cluster started here (cluster_utils does)
    wanted = {**ENVIRONMENT, "RAY_TMPDIR": str(folder)}
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    loopback = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False  # read when this process works out its address
    try:
        yield folder
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = loopback
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def local_ray(num_cpus: int = 2) -> Iterator[None]:
    """``ray.init`` of a Ray of this process's own on 127.0.0.1, shut down at the end."""
    import logging

    import ray

    with ray_environment() as folder:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=0, include_dashboard=False, _temp_dir=str(folder),
                 _node_ip_address="127.0.0.1", logging_level=logging.WARNING, log_to_driver=False)  # fmt: skip
        try:
            yield
        finally:
            ray.shutdown()


@contextlib.contextmanager
def two_nodes() -> Iterator[object]:
    """A cluster of two nodes on 127.0.0.1 (one CPU each), this process connected to the head; shut down at the end."""
    import logging

    import ray
    from ray.cluster_utils import Cluster

    with ray_environment() as folder:
        cluster = Cluster()
        try:
            common = {"num_cpus": 1, "num_gpus": 0, "node_ip_address": "127.0.0.1", "temp_dir": str(folder)}
            cluster.add_node(**common, include_dashboard=False, _system_config=FAST_FAILURE)
            cluster.add_node(**common)
            cluster.wait_for_nodes(timeout=60)
            ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


#: A node joining the cluster at argv[1] (what ``Cluster.add_node`` does, in a process of its own), on 127.0.0.1;
#: it says "ready" and runs until its process group is signalled.
_NODE = """
import signal, sys
from ray._private.node import Node
from ray._private.parameter import RayParams
params = RayParams(gcs_address=sys.argv[1], node_ip_address="127.0.0.1", num_cpus=1, num_gpus=0, temp_dir=sys.argv[2],
                   object_store_memory=150 * 1024 * 1024, min_worker_port=0, max_worker_port=0,
                   include_log_monitor=False, node_manager_port=0)
params.dashboard_agent_listen_port = None
node = Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
print("ready", node.node_id, flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
node.kill_all_processes(check_alive=False, allow_graceful=True, wait=True)
"""


class NodeProcess:
    """A Ray node in a process group of its own (``prefix``: a command it runs under, e.g. ``unshare``), joining the
    cluster at ``address``; ``stop()`` signals that group, and only it. Waits (bounded) until it is up."""

    def __init__(self, address: str, temp_dir: Path, *, prefix: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 timeout: float = 90.0) -> None:  # fmt: skip
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-c", _NODE, address, str(temp_dir)], stdout=subprocess.PIPE,
            stderr=self.log, text=True, start_new_session=True, env={**os.environ, **(env or {})},
        )  # fmt: skip
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0].startswith("ready "):
            self.stop()
            pytest.fail(f"the node did not start within {timeout:.0f} s: {self.output()}")
        self.node_id = line[0].split()[1]

    def output(self) -> str:
        if self.log.closed:
            return ""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM then SIGKILL to the group; waits (bounded) until no process of the group is left."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and group_alive(self.proc.pid):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=0.2)
            if not group_alive(self.proc.pid):
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        self.proc.stdout.close()
        self.log.close()


def group_alive(pgid: int) -> bool:
    """Whether a process of the group ``pgid`` is still alive (zombies left by a dead parent count as gone)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_nodes(count: int, timeout: float = 90.0) -> None:
    import ray

    deadline = time.monotonic() + timeout
    while sum(1 for n in ray.nodes() if n.get("Alive")) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"the cluster did not reach {count} nodes within {timeout:.0f} s")
        time.sleep(0.2)


def assert_same_study(path: Path, reference: Path) -> None:
    """Every array of every complete unit of ``path`` equals ``reference``'s, byte for byte, and the same units
    are complete; the root's data and the heads too."""
    got, want = Study.open(path), Study.open(reference)
    assert got.units() == want.units() and got.models == want.models
    np.testing.assert_array_equal(np.asarray(got.images), np.asarray(want.images))
    np.testing.assert_array_equal(got.labels, want.labels)
    for model in want.models:
        for a, b in zip(got.head(model), want.head(model), strict=True):
            assert a.tobytes() == b.tobytes()
    for unit in want.units():
        for name in ("features", "logits"):
            a, b = got.read(unit, name), want.read(unit, name)
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), f"{unit} {name}"
    assert got.attrs == want.attrs
