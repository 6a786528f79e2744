"""Scale (issue 16): 1,000 classes, 2,048 features, 100 models. Every step runs as a process of its own, and its
peak memory is that process's maximum resident set size (``/usr/bin/time -v``; ``getrusage`` of the child where
it is missing).

1. metrics of one 20,000 x 2,048 x 1,000 unit: :func:`onnx_geom.geometry.iter_geometry` on random features
   (time, traced peak, process peak), and the same through a study (``compute_metrics``: read, compute, write).
2. a study of 20,000 structured 32x32 images of 1,000 classes, 3 random-weight probes (a tiny conv front end,
   3 -> 8 channels, stride 2: 2,048 features; a 2,048 -> 1,000 head from the classes' prototypes, dense and
   magnitude-pruned to 50% and 90%), clean + fog 3 + contrast 3: ``onnx-geom run``, ``metrics``, ``compare``,
   ``info`` and ``view --screenshot`` of every panel and of the window, each with its wall time and peak RSS
   (goal: under 4 GB each).
3. 100 models x 96 conditions (1,000 samples, D=32, K=10, written straight into a study): ``info``,
   ``metrics``, ``compare`` and the viewer's start (reading the study, the first frame of the window).

    python -m benchmarks scale                 # writes benchmarks/results/scale.md (about 20 minutes)
    python -m benchmarks.bench_scale --skip-100     # parts 1 and 2 only
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

N, D, K = 20_000, 2_048, 1_000
GOAL_MB = 4096
HERE = Path(__file__).parent
SHOTS = ("table", "similarity", "samples", "local", "global", "attribution")


def measured(argv: list[str], *, cwd: Path | None = None) -> dict:
    """Run ``argv`` as a child; its wall time, peak RSS (MB), exit code and the tail of its output."""
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    t = time.perf_counter()
    if timer:
        run = subprocess.run([timer, "-v", *argv], capture_output=True, text=True, cwd=cwd, env=env)
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
        peak = int(found.group(1)) / 1024 if found else float("nan")
    else:  # pragma: no cover - machines without GNU time
        import resource

        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        run = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env)
        peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    seconds = time.perf_counter() - t
    out = {"seconds": seconds, "peak_mb": peak, "rc": run.returncode, "stdout": run.stdout[-4000:]}
    if run.returncode != 0:
        out["stderr"] = run.stderr[-3000:]
        print(f"FAILED: {' '.join(argv)}\n{run.stderr[-3000:]}", file=sys.stderr)
    return out


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


CLI = [sys.executable, "-m", "onnx_geom"]

# -- 1. one unit --------------------------------------------------------------------------------------------------
UNIT_CODE = f"""
import json, resource, time, tracemalloc
import numpy as np
from onnx_geom.geometry import iter_geometry
rng = np.random.default_rng(0)
f = rng.standard_normal(({N}, {D}), dtype=np.float32)
np.abs(f, out=f)  # ReLU-like features, made in place: the process's peak so far is the inputs
W = rng.standard_normal(({K}, {D}), dtype=np.float32); b = np.zeros({K}, np.float32); y = rng.integers(0, {K}, {N})
inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
tracemalloc.start()
t = time.perf_counter()
for _rows, part in iter_geometry(f, W, b, y):
    pass
seconds = time.perf_counter() - t
traced = tracemalloc.get_traced_memory()[1] / 2**20
tracemalloc.stop()
print(json.dumps({{"seconds": seconds, "traced_mb": traced, "inputs_rss_mb": inputs,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

STORE_UNIT_CODE = f"""
import json, resource, sys, time
import numpy as np
from onnx_geom.metrics import compute_metrics
from onnx_geom.probe_info import ProbeInfo
from onnx_geom.store import Study, Unit
path = sys.argv[1]
rng = np.random.default_rng(0)
W = rng.standard_normal(({K}, {D}), dtype=np.float32)
study = Study.create(path, images=np.zeros(({N}, 1, 1, 1), np.uint8), labels=rng.integers(0, {K}, {N}),
                     dataset_name="unit")
study.add_model("m", ProbeInfo(W=W, b=np.zeros({K}, np.float32), input_shape=(1, 1, 1), layout="flat",
                               mean=(0.0,), std=(1.0,)))
with study.writing(Unit("m", "clean", 0), {{"features": (({N}, {D}), "<f4"), "logits": (({N}, {K}), "<f4")}}) as w:
    for s in range(0, {N}, 2048):
        f = np.abs(rng.standard_normal((min(2048, {N} - s), {D}), dtype=np.float32))
        w.append(features=f, logits=f @ W.T)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
compute_metrics(Study.open(path, mode="a"))
print(json.dumps({{"seconds": time.perf_counter() - t, "before_mb": before,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def one_unit(folder: Path) -> dict:
    plain = measured(python(UNIT_CODE))
    store = measured([*python(STORE_UNIT_CODE), str(folder / "unit-study")])
    shutil.rmtree(folder / "unit-study", ignore_errors=True)
    return {"plain": {**plain, **json.loads(plain["stdout"].strip().splitlines()[-1])},
            "store": {**store, **json.loads(store["stdout"].strip().splitlines()[-1])}}  # fmt: skip


# -- 2. the 1,000-class study -------------------------------------------------------------------------------------
def make_data_and_probes(folder: Path, n: int = N, k: int = K, seed: int = 0) -> list[str]:
    """``data.npz`` (n structured images, k classes in about sqrt(k) families of alike ones) and three probes;
    returns the ``NAME=PATH`` arguments."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from onnx_geom.datasets import Dataset, save_npz
    from onnx_geom.probe_info import ProbeInfo, write_probe_info

    rng = np.random.default_rng(seed)
    families = max(2, round(np.sqrt(k)))  # alike classes (ImageNet's dog breeds): a family's blocks vary little
    family = rng.uniform(40, 215, (families, 4, 4, 3))
    coarse = family[rng.permutation(np.arange(k) % families)] + rng.normal(0, 22, (k, 4, 4, 3))
    prototypes = np.kron(coarse, np.ones((8, 8, 1)))  # (k, 32, 32, 3): blocky class prototypes
    labels = rng.integers(0, k, n)
    images = np.empty((n, 32, 32, 3), np.uint8)
    for s in range(0, n, 2000):
        noise = rng.normal(0, 30, (min(2000, n - s), 32, 32, 3))
        images[s : s + 2000] = np.clip(prototypes[labels[s : s + 2000]] + noise, 0, 255)
    save_npz(Dataset(images, labels, "blocks-1000", tuple(f"class {c}" for c in range(k))), folder / "data.npz")
    conv = rng.normal(0, 0.4, (8, 3, 3, 3)).astype(np.float32)

    def features(x: np.ndarray) -> np.ndarray:  # the front end in numpy (the head is built from it)
        from numpy.lib.stride_tricks import sliding_window_view

        x = np.pad(np.moveaxis(x / 255.0, -1, 1), ((0, 0), (0, 0), (1, 1), (1, 1)))
        win = sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2]  # (n, 3, 16, 16, 3, 3)
        return np.maximum(np.einsum("ncijab,ocab->noij", win, conv), 0).reshape(len(x), -1).astype(np.float32)

    proto = features(prototypes)  # (k, 2048)
    centred = proto - proto.mean(axis=0)
    W_dense = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    b = (-W_dense @ proto.mean(axis=0)).astype(np.float32)  # z_c = W_c . (f - mean prototype)
    args = []
    for name, sparsity in (("dense", 0.0), ("magnitude-50", 0.5), ("magnitude-90", 0.9)):
        W = W_dense.copy()
        if sparsity:
            W[np.abs(W) < np.quantile(np.abs(W), sparsity)] = 0.0  # magnitude pruning of the head
        W = W.astype(np.float32)
        nodes = [
            helper.make_node("Cast", ["images"], ["x_float"], to=TensorProto.FLOAT),
            helper.make_node("Div", ["x_float", "scale"], ["x_unit"]),
            helper.make_node("Transpose", ["x_unit"], ["x_nchw"], perm=[0, 3, 1, 2]),
            helper.make_node("Conv", ["x_nchw", "conv"], ["maps"], strides=[2, 2], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["maps"], ["relu"]),
            helper.make_node("Flatten", ["relu"], ["features"], axis=1),
            helper.make_node("Gemm", ["features", "W", "b"], ["logits"], transB=1),
        ]
        inits = [
            numpy_helper.from_array(np.array(255.0, np.float32), "scale"),
            numpy_helper.from_array(conv, "conv"),
            numpy_helper.from_array(W, "W"),
            numpy_helper.from_array(b, "b"),
        ]
        graph = helper.make_graph(
            nodes,
            name,
            [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", 32, 32, 3])],
            [
                helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", k]),
                helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 8 * 16 * 16]),
            ],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        tags = {"method": "dense" if not sparsity else "magnitude", "sparsity": sparsity}
        info = ProbeInfo(W=W, b=b, input_shape=(32, 32, 3), layout="NCHW", mean=(0.0,) * 3, std=(1.0,) * 3, tags=tags)
        write_probe_info(model, info)
        onnx.save(model, folder / f"{name}.onnx")
        args.append(f"{name}={folder / f'{name}.onnx'}")
    return args


def big_study(folder: Path, n: int = N) -> dict:
    models = make_data_and_probes(folder, n)
    study, shots = folder / "study", folder / "shots"
    steps = {}
    steps["run"] = measured([*CLI, "run", *models, "--data", str(folder / "data.npz"), "-o", str(study),
                             "-c", "fog,contrast", "--severities", "3", "--device", "cpu"])  # fmt: skip
    steps["metrics"] = measured([*CLI, "metrics", str(study)])
    steps["compare"] = measured([*CLI, "compare", str(study), "-o", str(folder / "tables")])
    steps["info"] = measured([*CLI, "info", str(study)])
    for panel in SHOTS:
        steps[f"view --panel {panel}"] = measured(
            [
                *CLI,
                "view",
                str(study),
                "--screenshot",
                str(shots / f"{panel}.png"),
                "--panel",
                panel,
                "--size",
                "900x600",
            ]
        )
    steps["view (window)"] = measured([*CLI, "view", str(study), "--screenshot", str(shots / "window.png"),
                                       "--size", "1400x860"])  # fmt: skip
    size = sum(p.stat().st_size for p in study.rglob("*") if p.is_file())
    accuracy = {}
    summary = folder / "tables" / "accuracy.csv"
    if summary.exists():
        import csv

        with summary.open() as f:
            for row in csv.DictReader(f):
                accuracy[f"{row['model']} {row['corruption']} {row['severity']}"] = float(row["accuracy"])
    return {"steps": steps, "study_mb": size / 2**20, "accuracy": accuracy, "shots": str(shots)}


# -- 3. 100 models ------------------------------------------------------------------------------------------------
MANY_CODE = """
import sys
import numpy as np
from onnx_geom.corruptions import CORRUPTIONS
from onnx_geom.probe_info import ProbeInfo
from onnx_geom.store import Study, Unit
path, models, n, d, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = np.random.default_rng(0)
labels = rng.integers(0, k, n)
means = rng.normal(0, 2.0, (k, d)).astype(np.float32)
corruptions = list(CORRUPTIONS)
study = Study.create(path, images=rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), labels=labels,
                     dataset_name="many-models", class_names=[f"c{i}" for i in range(k)],
                     corruptions=["clean", *corruptions], severities=[0, 1, 2, 3, 4, 5])
base = means[labels] + rng.normal(0, 1.0, (n, d)).astype(np.float32)
for m in range(models):
    W = (means + rng.normal(0, 0.3 + 0.02 * m, (k, d))).astype(np.float32)
    name = f"pruned-{m:03d}"
    study.add_model(name, ProbeInfo(W=W, b=np.zeros(k, np.float32), input_shape=(8, 8, 3), layout="NHWC",
                                    mean=(0.0,) * 3, std=(1.0,) * 3),
                    tags={"method": ["magnitude", "gmp", "snip", "random"][m % 4], "sparsity": round(m / 100, 2)})
    noise = rng.normal(0, 1.0, (n, d)).astype(np.float32)
    for c, s in [("clean", 0)] + [(c, s) for c in corruptions for s in range(1, 6)]:
        shift = 0.0 if c == "clean" else 0.15 * s * (1 + corruptions.index(c) % 4)
        f = base + (0.3 + 0.01 * m + shift) * np.roll(noise, 17 * s + corruptions.index(c) if c != "clean" else 0, 0)
        study.write_unit(Unit(name, c, s), {"features": f, "logits": f @ W.T})
"""

VIEW_START_CODE = """
import json, resource, sys, time
t0 = time.perf_counter()
from onnx_geom.viewers._backend import use_backend
use_backend("egl")
from onnx_geom.viewers import ViewerData
from onnx_geom.viewers.layout import build_canvas, initial_selection
t = time.perf_counter()
data = ViewerData.from_study(sys.argv[1])
read = time.perf_counter() - t
t = time.perf_counter()
selection = initial_selection(data)
canvas, views = build_canvas(data, selection, size=(1400, 860))
build = time.perf_counter() - t
t = time.perf_counter(); image = canvas.render(); first = time.perf_counter() - t
t = time.perf_counter(); canvas.render(); steady = time.perf_counter() - t
from PIL import Image
Image.fromarray(image).save(sys.argv[2])
print(json.dumps({"read": read, "build": build, "first": first, "steady": steady, "total": time.perf_counter() - t0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def hundred_models(folder: Path, models: int = 100, n: int = 1_000, d: int = 32, k: int = 10) -> dict:
    study = folder / "many"
    steps = {"write 100 x 96 units": measured([*python(MANY_CODE), str(study), str(models), str(n), str(d), str(k)])}
    steps["info"] = measured([*CLI, "info", str(study)])
    steps["metrics"] = measured([*CLI, "metrics", str(study)])
    steps["compare"] = measured([*CLI, "compare", str(study), "-o", str(folder / "many-tables")])
    start = measured([*python(VIEW_START_CODE), str(study), str(folder / "many-window.png")])
    steps["view: open + first frame"] = start
    timing = json.loads(start["stdout"].strip().splitlines()[-1]) if start["rc"] == 0 else {}
    return {
        "steps": steps,
        "view": timing,
        "models": models,
        "n": n,
        "d": d,
        "k": k,
        "window": str(folder / "many-window.png"),
    }


# -- report -------------------------------------------------------------------------------------------------------
def _row(name: str, r: dict) -> str:
    ok = "yes" if r["rc"] == 0 and r["peak_mb"] < GOAL_MB else "**no**"
    return f"| {name} | {r['seconds']:.1f} | {r['peak_mb']:,.0f} | {ok} |"


def report(unit: dict | None, big: dict | None, many: dict | None) -> str:
    lines = [
        "# Benchmark: 1,000 classes, 2,048 features, 100 models (issue 16)",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
        f"{os.cpu_count()}-core CPU shared with other engineers' jobs (times are noisy), no GPU; numpy {np.__version__}",
        "- every step a process of its own; peak memory = its maximum resident set size (`/usr/bin/time -v`), "
        "Python, numpy, onnxruntime and VisPy included",
        "- command: `python -m benchmarks scale`",
        "",
    ]
    if unit:
        p, s = unit["plain"], unit["store"]
        lines += [
            f"## Metrics of one {N:,} x {D:,} x {K:,} unit",
            "",
            "| what | seconds | peak memory |",
            "|---|---:|---:|",
            f"| `iter_geometry` (length, angles, cosines, margin; features in memory) | {p['seconds']:.2f} | "
            f"{p['traced_mb']:.0f} MB traced (numpy allocations of the computation); process peak "
            f"{p['rss_mb']:,.0f} MB, {p['inputs_rss_mb']:,.0f} MB of it the inputs (features 164 MB) |",
            f"| `compute_metrics` on a study (read features, compute, write the geometry group, stream) | "
            f"{s['seconds']:.2f} | process peak {s['rss_mb']:,.0f} MB ({s['before_mb']:,.0f} MB before it: the "
            f"unit was written by the same process) |",
            "",
            "Issue 16's starting point: about 10 s per unit on this machine (11.1 s measured before the BLAS "
            "change on main); goal at least 3x faster. The margin uses the logits and the K x K table of "
            "||W_i - W_j|| only; the (chunk, K) temporaries are about 8 MB each (chunks shrink with K), the "
            "features are read and the geometry written a chunk of rows at a time, so memory does not grow with N "
            "(tests/test_metrics_and_comparison.py::test_compute_metrics_memory_is_flat_in_the_number_of_samples).",
            "",
        ]
    if big:
        lines += [
            f"## A study of {N:,} images, D = {D:,}, K = {K:,}, 3 models x 3 conditions",
            "",
            "Random-weight probes with a tiny conv front end (3 -> 8 channels, stride 2: 2,048 features) and a "
            "2,048 -> 1,000 head made from the 1,000 classes' blocky prototypes (dense; magnitude-pruned to 50% and "
            "90%); conditions clean, fog 3, contrast 3 (made on the fly). Study on disk: "
            f"{big['study_mb']:,.0f} MB.",
            "",
            "| step | seconds | peak RSS (MB) | under 4 GB |",
            "|---|---:|---:|---|",
            *[_row(name, r) for name, r in big["steps"].items()],
            "",
        ]
        if big["accuracy"]:
            lines += ["Accuracy (from `compare`'s accuracy.csv): "
                      + "; ".join(f"{k} {100 * v:.1f}%" for k, v in big["accuracy"].items()) + ".", ""]  # fmt: skip
    if many:
        v = many["view"]
        lines += [
            f"## {many['models']} models x 96 conditions ({many['n']:,} samples, D = {many['d']}, K = {many['k']})",
            "",
            "Units written straight into a study (9,600 of them), then:",
            "",
            "| step | seconds | peak RSS (MB) | under 4 GB |",
            "|---|---:|---:|---|",
            *[_row(name, r) for name, r in many["steps"].items()],
            "",
        ]
        if v:
            lines += [
                f"The viewer's start: reading the study {v['read']:.1f} s (the accuracy table from the stored "
                f"comparison, geometry lazily), building the six views {v['build']:.1f} s, first frame "
                f"{v['first']:.1f} s, next frame {v['steady']:.2f} s; {v['total']:.1f} s from the first import, peak "
                f"{v['rss_mb']:,.0f} MB.",
                "",
            ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-100", action="store_true", help="leave out the 100-model study")
    parser.add_argument("--only-100", action="store_true", help="only the 100-model study")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    args = parser.parse_args(argv if argv is not None else [])
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        unit = None if args.only_100 else one_unit(folder)
        big = None if args.only_100 else big_study(folder)
        many = None if args.skip_100 else hundred_models(folder)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    text = report(unit, big, many)
    print(text)
    if not args.no_write:
        out = HERE / "results" / "scale.md"
        out.write_text(text)


if __name__ == "__main__":
    main(sys.argv[1:])
