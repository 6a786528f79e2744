"""The Ray executor: studies identical to a local run's, byte for byte, on a local Ray and on a two-node cluster
(units written by both nodes), a node killed mid-sweep, Ctrl-C, and every refusal in one sentence.

Every Ray here is started by the test on this machine (127.0.0.1) and stopped by it (tests/_ray.py); the slow
tests need the [ray] extra, which `make ci` installs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from _probes import make_probe
from _ray import (
    ENVIRONMENT,
    NodeProcess,
    assert_same_study,
    free_port,
    group_alive,
    local_ray,
    ray_environment,
    two_nodes,
    wait_for_nodes,
)
from typer.testing import CliRunner

from onnx_geom.cli.app import app
from onnx_geom.corruptions import CORRUPTIONS
from onnx_geom.errors import ClusterError, DataError, DeviceError
from onnx_geom.store import Study, Unit, describe, set_writer_node
from onnx_geom.sweep import sweep

SHAPE = (16, 16, 3)  # the smallest images the corruptions take
OPTIONS = {"device": "cpu", "batch_size": 8, "seed": 3}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Two tiny probes and a few dozen 16x16 images on disk."""
    work = tmp_path_factory.mktemp("ray")
    onnx.save(make_probe(seed=1, shape=SHAPE)[0], work / "a.onnx")
    onnx.save(make_probe(seed=2, shape=SHAPE, features=5)[0], work / "b.onnx")
    rng = np.random.default_rng(7)
    np.savez(
        work / "data.npz", images=rng.integers(0, 256, (36, *SHAPE), dtype=np.uint8), labels=rng.integers(0, 4, 36)
    )
    return work


def models(work):
    return {"a": work / "a.onnx", "b": work / "b.onnx"}


def run(work, path, **kw):
    return sweep(models(work), work / "data.npz", path, **{**OPTIONS, **kw})


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, result.stdout


# --------------------------------------------------------------------------------------- without a cluster
def test_writer_node_is_stamped_kept_and_counted(tmp_path):
    from onnx_geom.probe_info import ProbeInfo

    study = Study.create(tmp_path / "s", images=np.zeros((4, 2, 2, 3), np.uint8), labels=np.arange(4) % 2,
                         dataset_name="toy")  # fmt: skip
    study.add_model("m", ProbeInfo(W=np.ones((2, 3), np.float32), b=np.zeros(2, np.float32), input_shape=(2, 2, 3),
                                   layout="NCHW", mean=(0.0,) * 3, std=(1.0,) * 3))  # fmt: skip
    arrays = {"features": np.ones((4, 3), np.float32)}
    study.write_unit(Unit("m", "clean", 0), arrays)  # not on Ray: no node
    set_writer_node("f" * 56)
    try:
        study.write_unit(Unit("m", "fog", 1), arrays)
        study.write_unit(Unit("m", "fog", 2), arrays)
        with pytest.raises(LookupError), study.writing(Unit("m", "fog", 3), {"features": ((4, 3), "float32")}):
            held = describe(Study.open(tmp_path / "s"))["incomplete"]
            raise LookupError  # the unit stays incomplete, as a stopped run leaves it
    finally:
        set_writer_node(None)
    assert held[0]["unit"] == "m/fog/3" and held[0]["node"] == "f" * 56
    info = describe(Study.open(tmp_path / "s"))
    assert info["nodes"] == {"f" * 56: {"units": 2, "hosts": [os.uname().nodename]}}
    # `info` says which node wrote what
    result, stdout = invoke("info", tmp_path / "s")
    assert result.exit_code == 0 and f"complete units per Ray node: {'f' * 12} ({os.uname().nodename}): 2" in stdout


def test_batches_are_cut_where_a_local_sweep_cuts():
    from onnx_geom.ray_sweep import _batches, _jobs

    chunks = [np.arange(a, b) for a, b in [(0, 5), (5, 6), (6, 20), (20, 23)]]
    batches = list(_batches(iter(chunks), 8))
    assert [b.tolist() for b in batches] == [list(range(8)), list(range(8, 16)), list(range(16, 23))]
    todo = [("clean", 0, ["a"]), ("fog", 1, []), ("fog", 2, ["a", "b"]), ("snow", 1, ["b"])]
    assert _jobs(todo, 1) == [[todo[0]], [todo[2]], [todo[3]]]
    assert _jobs(todo, 4) == [[todo[0]], [todo[2]], [todo[3]]] and _jobs([("clean", 0, [])], 2) == []


def test_the_core_does_not_import_ray():
    code = textwrap.dedent("""
        import sys
        import onnx_geom, onnx_geom.sweep, onnx_geom.store, onnx_geom.cli.app, onnx_geom.metrics
        assert "ray" not in sys.modules, "ray was imported"
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--address", "127.0.0.1:1"], "--address, --workers and --gpus-per-worker are for --executor ray"),
        (["--executor", "ray", "--address", "nowhere"], "is not HOST:PORT"),
        (["--executor", "ray", "--address", "ray://127.0.0.1:10001"], "is a Ray Client address"),
        (["--executor", "ray", "--gpus-per-worker", "1.5"], "a fraction of a GPU (0 to 1) or a whole number"),
        (["--executor", "ray", "--device", "cpu", "--gpus-per-worker", "0.5"], "--device cpu runs on the CPU"),
    ],
)
def test_ray_options_that_cannot_work_are_one_sentence(work, tmp_path, extra, message):
    result, _ = invoke("run", work / "a.onnx", "--data", work / "data.npz", "-o", tmp_path / "s", "-c", "none", *extra)
    assert result.exit_code == 1 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3  # one sentence (wrapped at most)
    assert not (tmp_path / "s").exists()


def test_an_unreachable_address_is_said_at_once(work, tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nobody listens there
    started = time.monotonic()
    result, _ = invoke("run", work / "a.onnx", "--data", work / "data.npz", "-o", tmp_path / "s", "-c", "none",
                       "--executor", "ray", "--address", address)  # fmt: skip
    assert result.exit_code == 1 and time.monotonic() - started < 60
    assert f"cannot reach a Ray cluster at {address} (Connection refused)" in result.stderr, result.stderr
    assert not (tmp_path / "s").exists()


def test_without_ray_installed_the_executor_is_one_sentence(work, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as it does where Ray is not installed
    result, _ = invoke("run", work / "a.onnx", "--data", work / "data.npz", "-o", tmp_path / "s", "-c", "none",
                       "--executor", "ray")  # fmt: skip
    assert result.exit_code == 1 and "--executor ray needs Ray, which is not installed" in result.stderr
    assert "pip install 'onnx-geom[ray]'" in result.stderr and not (tmp_path / "s").exists()


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_an_object_store_is_not_a_study_location(work, executor):
    result, _ = invoke("run", work / "a.onnx", "--data", work / "data.npz", "-o", "s3://bucket/study", "-c", "none",
                       "--executor", executor)  # fmt: skip
    assert result.exit_code == 1 and "is an object store's address (s3://)" in result.stderr, result.stderr
    assert not Path("s3:").exists()


# --------------------------------------------------------------------------------------- a local Ray
@pytest.fixture(scope="class")
def ray_of_the_class():
    with local_ray(num_cpus=2):
        yield


@pytest.fixture(scope="class")
def cluster():
    with two_nodes() as cluster:
        yield cluster


@pytest.mark.slow
@pytest.mark.usefixtures("ray_of_the_class")
class TestLocalRay:
    def test_every_array_equals_a_local_run_and_every_unit_names_its_node(self, work, tmp_path):
        import ray

        every = {"corruptions": list(CORRUPTIONS), "severities": [2, 5]}  # all 19: their bytes, not just their seeds
        run(work, tmp_path / "local", **every)
        events = []
        summary = run(
            work, tmp_path / "ray", executor="ray", progress=lambda e, u, c: events.append((e, u, c)), **every
        )
        assert_same_study(tmp_path / "ray", tmp_path / "local")
        units = 2 * (1 + 19 * 2)
        assert events[:2] == [("plan", None, units), ("plan_images", None, units * 36)]
        assert sum(c for e, _, c in events if e == "images") == units * 36
        assert sorted(str(u) for e, u, _ in events if e == "unit") == sorted(summary["units"]["computed"])
        assert len(summary["units"]["computed"]) == units and summary["units"]["already_complete"] == 0
        node = ray.get_runtime_context().get_node_id()
        assert summary["executor"] == "ray" and summary["workers"] == 1 and summary["gpus_per_worker"] == 0
        counts = summary["nodes"][node]
        assert list(summary["nodes"]) == [node] and counts["waiting_s"] >= 0 and counts["running_s"] > 0
        assert (counts["host"], counts["units"], counts["images"]) == (os.uname().nodename, units, units * 36)
        assert summary["device"] == "cpu" and summary["batch_size"] == 8
        assert describe(Study.open(tmp_path / "ray"))["nodes"] == {
            node: {"units": units, "hosts": [os.uname().nodename]}
        }
        local, remote = run(work, tmp_path / "local", **every), run(work, tmp_path / "ray", executor="ray", **every)
        assert local["accuracy"] == remote["accuracy"] == summary["accuracy"]
        assert remote["units"]["computed"] == [] and remote["units"]["already_complete"] == units

    def test_a_ray_run_finishes_a_local_one_and_two_workers_share_it(self, work, tmp_path):
        run(work, tmp_path / "local", corruptions=["fog", "contrast"], severities=[1, 2])
        run(work, tmp_path / "s", corruptions=["fog"], severities=[1])  # partly done, locally
        summary = run(work, tmp_path / "s", corruptions=["fog", "contrast"], severities=[1, 2], executor="ray",
                      workers=2)  # fmt: skip
        assert sorted(summary["units"]["computed"]) == sorted(
            f"{m}/{c}/{s}" for m in "ab" for c, s in [("fog", 2), ("contrast", 1), ("contrast", 2)]
        )
        assert summary["workers"] == 2 and summary["units"]["already_complete"] == 4
        assert_same_study(tmp_path / "s", tmp_path / "local")

    def test_the_command_line_on_ray(self, work, tmp_path):
        result, stdout = invoke("run", work / "a.onnx", work / "b.onnx", "--data", work / "data.npz", "-o",
                                tmp_path / "s", "-c", "fog", "--severities", "1", "--device", "cpu", "--executor",
                                "ray", "--json")  # fmt: skip
        assert result.exit_code == 0, result.stderr
        summary = json.loads(stdout)
        (node, counts), *_ = summary["nodes"].items()
        assert len(summary["nodes"]) == 1 and counts["units"] == 4 and counts["images"] == 4 * 36
        info = json.loads(invoke("info", tmp_path / "s", "--json")[1])
        assert info["nodes"] == {node: {"units": 4, "hosts": [os.uname().nodename]}}
        result, stdout = invoke("run", work / "a.onnx", "--data", work / "data.npz", "-o", tmp_path / "t", "-c",
                                "none", "--device", "cpu", "--executor", "ray")  # fmt: skip
        assert result.exit_code == 0 and f"on Ray: 1 worker on 1 node ({node[:12]}" in stdout, stdout

    def test_a_gpu_share_on_a_cluster_without_gpus_is_refused(self, work, tmp_path):
        with pytest.raises(ClusterError, match=r"a share of 0.5 GPU per worker was asked for, but .* has no GPUs"):
            run(work, tmp_path / "s", corruptions=[], executor="ray", gpus_per_worker=0.5, device="auto")
        assert not (tmp_path / "s").exists()
        with pytest.raises(DeviceError, match="fp16 runs on a GPU only"):  # said by the workers, before any write
            run(work, tmp_path / "s", corruptions=[], executor="ray", fp16=True, device="auto")
        assert not (tmp_path / "s").exists()
        with pytest.raises(DataError, match="already connected to a Ray cluster"):
            run(work, tmp_path / "s", corruptions=[], executor="ray", address="127.0.0.1:6379")


# --------------------------------------------------------------------------------------- two nodes
@pytest.mark.slow
class TestTwoNodes:
    def test_both_nodes_write_units_and_the_study_equals_a_local_one(self, work, tmp_path, cluster):
        plan = {"corruptions": ["gaussian_noise", "fog", "pixelate", "jpeg_compression"], "severities": [1, 3, 5]}
        run(work, tmp_path / "local", **plan)
        summary = run(work, tmp_path / "ray", executor="ray", **plan)
        assert_same_study(tmp_path / "ray", tmp_path / "local")
        nodes = describe(Study.open(tmp_path / "ray"))["nodes"]
        assert len(nodes) == 2 and sum(n["units"] for n in nodes.values()) == 2 * 13, nodes  # both wrote units
        assert summary["workers"] == 2 and {k: v["units"] for k, v in summary["nodes"].items()} == {
            k: v["units"] for k, v in nodes.items()
        }

    def test_a_node_killed_mid_sweep_loses_nothing_and_the_same_command_finishes(self, work, tmp_path, cluster):
        """The second node (a worker and chunk tasks on it) is killed while units are being written; its work
        moves to the head. Whatever the first run leaves, every complete unit is right, and running the same
        command again ends with exactly the local study."""
        plan = {"corruptions": list(CORRUPTIONS)[:8], "severities": [1, 2, 3, 4, 5]}
        run(work, tmp_path / "local", **plan)
        victim = next(iter(cluster.worker_nodes))
        done = []

        def progress(event, unit, count):
            if event == "unit":
                done.append(unit)
                if len(done) == 12:  # a dozen of 82 units done: both workers are in the middle of their jobs
                    cluster.remove_node(victim, allow_graceful=False)

        try:
            first = run(work, tmp_path / "ray", executor="ray", progress=progress, **plan)
        except ClusterError as err:  # allowed: the sentence says to run again
            first = None
            assert "run the same command again" in str(err)
        assert len(done) >= 12 and victim not in cluster.worker_nodes
        study = Study.open(tmp_path / "ray")
        reference = Study.open(tmp_path / "local")
        for unit in study.units():  # nothing half-written is marked complete
            for name in ("features", "logits"):
                assert study.read(unit, name).tobytes() == reference.read(unit, name).tobytes(), unit
        again = run(work, tmp_path / "ray", executor="ray", **plan)  # the same command
        missing = 82 - len(study.units())
        assert len(again["units"]["computed"]) == missing and again["units"]["locked"] == []
        assert_same_study(tmp_path / "ray", tmp_path / "local")
        assert first is None or len(first["units"]["computed"]) + first["units"]["already_complete"] >= 82 - missing


# --------------------------------------------------------------------------------------- a node that cannot see it
def _blind_node_command(folder: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    """How to start a node that sees another file system at ``folder``: in a mount namespace of its own with an
    empty tmpfs over it (``unshare``, where the kernel lets us), else with a Python start-up hook that sends every
    path under ``folder`` to an empty folder: what such a node sees, for the code that runs on it."""
    try:
        works = subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30, check=False).returncode == 0
    except OSError:  # no unshare here
        works = False
    if works:
        script = f'mount -t tmpfs none "{folder}" && exec "$0" "$@"'
        return ("unshare", "-rm", "sh", "-c", script), {}
    empty = Path(str(folder) + ".elsewhere")
    empty.mkdir()
    hook = empty.parent / "blind_hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        textwrap.dedent(f"""
        import os, os.path
        _FROM, _TO = {str(folder)!r}, {str(empty)!r}
        def _moved(path):
            text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
            if isinstance(text, str) and (text == _FROM or text.startswith(_FROM + os.sep)):
                return _TO + text[len(_FROM):]
            return path
        def _wrap(function):
            return lambda path, *a, **k: function(_moved(path), *a, **k)
        for _name in ("open", "lstat", "stat", "scandir", "listdir", "mkdir", "makedirs", "unlink", "rmdir", "rename", "replace"):
            setattr(os, _name, _wrap(getattr(os, _name)))
        os.path.isdir, os.path.exists, os.path.lexists, os.path.islink = (
            _wrap(os.path.isdir), _wrap(os.path.exists), _wrap(os.path.lexists), _wrap(os.path.islink))
        """)
    )
    return (), {"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow
def test_a_node_that_cannot_see_the_study_is_said_before_anything_is_written(work, tmp_path):
    import logging

    import ray
    from ray.cluster_utils import Cluster

    shared = tmp_path / "shared"
    shared.mkdir()
    prefix, env = _blind_node_command(shared)
    with ray_environment() as folder:
        cluster, blind = Cluster(), None
        try:
            cluster.add_node(num_cpus=1, num_gpus=0, node_ip_address="127.0.0.1", temp_dir=str(folder),
                             include_dashboard=False)  # fmt: skip
            blind = NodeProcess(cluster.address, folder, prefix=prefix, env=env)
            ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
            wait_for_nodes(2)
            ray.shutdown()  # the command line connects by itself
            result, _ = invoke("run", work / "a.onnx", "--data", work / "data.npz", "-o", shared / "study", "-c",
                               "none", "--executor", "ray", "--address", cluster.address)  # fmt: skip
        finally:
            ray.shutdown()
            if blind is not None:
                blind.stop()
            cluster.shutdown()
    assert result.exit_code == 1, (result.stdout, result.stderr)
    sentence = " ".join(result.stderr.split())
    assert f"Ray node {blind.node_id[:12]} (" in sentence and "cannot use the study's folder" in sentence, sentence
    assert (
        str(shared) in sentence and "put the study on a file system that every node mounts at the same path" in sentence
    )
    assert sorted(p.name for p in shared.iterdir()) == []  # nothing written: no study, no beacon left


# --------------------------------------------------------------------------------------- Ctrl-C
@pytest.mark.slow
def test_ctrl_c_stops_the_cluster_keeps_every_complete_unit_and_a_rerun_finishes(work, tmp_path):
    """`onnx-geom run --executor ray` (a Ray of its own) is interrupted like a terminal does (SIGINT to its
    process group) while it writes units: exit code 130, one sentence, every complete unit right, no process of
    it left; the same command again finishes only what is missing."""
    plan = ["-c", ",".join(CORRUPTIONS), "--severities", "1-5"]
    args = ["run", str(work / "a.onnx"), str(work / "b.onnx"), "--data", str(work / "data.npz"), "--device", "cpu",
            "--batch-size", "8", "--seed", "3", *plan]  # fmt: skip
    run(work, tmp_path / "local", corruptions=list(CORRUPTIONS), severities=[1, 2, 3, 4, 5])
    files = Path(tempfile.mkdtemp(prefix="ogc-", dir="/tmp"))  # its Ray's files go there (short: socket paths)
    env = {**os.environ, "TMPDIR": str(files), **ENVIRONMENT}
    command = [sys.executable, "-m", "onnx_geom", *args, "-o", str(tmp_path / "s"), "--executor", "ray"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not (tmp_path / "s").is_dir() or len(Study.open(tmp_path / "s").units()) < 10:
            assert child.poll() is None and time.monotonic() < deadline, child.communicate(timeout=60)
            time.sleep(0.1)
        os.killpg(child.pid, signal.SIGINT)  # Ctrl-C in a terminal
        _out, err = child.communicate(timeout=120)
        deadline = time.monotonic() + 60
        while group_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = group_alive(child.pid)
    finally:
        if child.poll() is None or group_alive(child.pid):
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=60)
    assert child.returncode == 130 and "interrupted; everything completed so far is kept." in err, err
    assert not left, "a process of the interrupted run (its Ray) is still alive"
    ray_files = [p.name for p in files.iterdir() if p.name.startswith("onnx-geom-ray-")]
    shutil.rmtree(files)  # (onnxruntime leaves a file of its own there: .ses)
    assert ray_files == []  # its Ray's files are gone too
    study, reference = Study.open(tmp_path / "s"), Study.open(tmp_path / "local")
    kept = study.units()
    assert 10 <= len(kept) < 192
    for unit in kept:
        assert study.read(unit, "logits").tobytes() == reference.read(unit, "logits").tobytes(), unit
    with local_ray(num_cpus=2):
        again = run(work, tmp_path / "s", corruptions=list(CORRUPTIONS), severities=[1, 2, 3, 4, 5], executor="ray")
    assert len(again["units"]["computed"]) == 192 - len(kept)
    assert_same_study(tmp_path / "s", tmp_path / "local")
