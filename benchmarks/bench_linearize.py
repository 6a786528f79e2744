"""W(x) for all K classes: onnx-geom linearize vs torch.func.jacrev and Captum IntegratedGradients, one run.

    python -m benchmarks linearize            # CPU; CUDA too when both torch and onnxruntime have it

The model is benchmarks/bench_runner.py's CIFAR ResNet-18 (random weights; the time does not depend on them),
exported to a probe. Every side differentiates the same function: uint8 NHWC values (as floats) -> cast, /255,
normalise, NCHW, ResNet-18 -> 10 logits. Same images, same thread count (torch.set_num_threads and onnxruntime's
intra-op threads), rounds interleaved, best round of each. Ours: the full W(x) (10 x 32 x 32 x 3) per image, and
the same plus the three geometry maps (13 directions). jacrev: the full Jacobian, vmapped over 8 images and one
image at a time (the faster is the reference). Captum: IntegratedGradients, 50 steps, ONE class per image.
The peers run ``BENCH_ROUNDS`` rounds alone before any onnxruntime session exists, then every method runs
``BENCH_ROUNDS`` interleaved rounds; each keeps its best. ``BENCH_N`` images (default 16), ``BENCH_ROUNDS``
(default 3). Writes benchmarks/results/linearize.md.
"""

from __future__ import annotations

import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import publish
from benchmarks.bench_runner import export_probe, resnet18_probe_module

RESULTS = Path(__file__).parent / "results" / "linearize.md"


def _timed(run, n: int) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / n


def measure(device: str, n: int, rounds: int, threads: int) -> tuple[dict[str, float], float]:
    """Seconds per image of each method (best round) and ours' largest error against jacrev (relative)."""
    import torch
    from captum.attr import IntegratedGradients

    from onnx_geom.linearize import Linearizer

    module = resnet18_probe_module().to(device)
    images = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    x = torch.from_numpy(images).float().to(device)
    one = lambda im: module(im[None])[0][0]
    vmapped = torch.func.vmap(torch.func.jacrev(one))
    jac_batch = lambda: torch.cat([vmapped(x[i : i + 8]) for i in range(0, n, 8)])
    jac_single = lambda: torch.stack([torch.func.jacrev(one)(im) for im in x])
    ig = IntegratedGradients(lambda z: module(z)[0])
    n_ig = max(2, n // 4)
    labels = np.arange(n) % 10

    def captum():
        for i in range(n_ig):
            ig.attribute(
                x[i : i + 1], baselines=x[i : i + 1] * 0, target=int(labels[i]), n_steps=50, internal_batch_size=50
            )

    peers = {
        "torch.func.jacrev, vmapped over 8 images": (jac_batch, n),
        "torch.func.jacrev, one image at a time": (jac_single, n),
        "Captum IntegratedGradients, 50 steps, ONE class": (captum, n_ig),
    }
    best = dict.fromkeys(peers, np.inf)
    jac_batch()  # warm-up; torch's thread pool starts before onnxruntime's, or they fight over the cores
    captum()
    for _ in range(rounds):  # the peers alone first: no onnxruntime session exists yet (their best case)
        for name, (run, count) in peers.items():
            best[name] = min(best[name], _timed(run, count))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet18.probe.onnx"
        export_probe(module.cpu(), path)
        module.to(device)
        ours = Linearizer(path, device=device, geometry=False, threads=threads)
        ours_geo = Linearizer(path, device=device, geometry=True, threads=threads)
    ours(images[:8])
    ours_geo(images[:8], labels[:8])
    methods = {
        "onnx-geom linearize, W(x) for all 10 classes": (lambda: ours(images), n),
        "onnx-geom linearize, W(x) + margin/cos/length maps (13 directions)": (lambda: ours_geo(images, labels), n),
        **peers,
    }
    best.update({name: np.inf for name in methods if name not in peers})
    for _ in range(rounds):  # then every method, rounds interleaved
        for name, (run, count) in methods.items():
            best[name] = min(best[name], _timed(run, count))
    best = {name: best[name] for name in methods}  # ours first
    W = ours(images).W
    J = jac_batch().detach().cpu().numpy()
    return best, float(np.abs(W - J).max() / np.abs(J).max())


def main() -> None:
    import onnxruntime as ort
    import torch

    threads = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
    n, rounds = int(os.environ.get("BENCH_N", 16)), int(os.environ.get("BENCH_ROUNDS", 3))
    torch.set_num_threads(threads)
    devices = ["cpu"]
    if torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers():
        devices.append("cuda")
    lines = [
        "# Linearize benchmark: W(x) for all classes vs jacrev and Integrated Gradients",
        "",
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared with other "
        f"engineers' jobs: the ratios, taken in one run with rounds interleaved, are what count), {threads} threads on "
        f"every side, torch {torch.__version__}, onnxruntime {ort.__version__}, captum "
        f"{__import__('captum').__version__}. CIFAR ResNet-18 (random weights), uint8 32x32x3 in, 10 logits; {n} images; "
        f"each method's best round ({rounds} rounds of the peers alone before any onnxruntime session exists, then "
        f"{rounds} interleaved rounds of all). Command: `python -m benchmarks linearize`.",
        "",
    ]
    for device in devices:
        best, error = measure(device, n, rounds, threads)
        ours = best["onnx-geom linearize, W(x) for all 10 classes"]
        jac = min(best["torch.func.jacrev, vmapped over 8 images"], best["torch.func.jacrev, one image at a time"])
        ig = best["Captum IntegratedGradients, 50 steps, ONE class"]
        lines += [
            f"## {device}",
            "",
            "| method | ms per image | time / ours (all 10 classes) |",
            "|---|---:|---:|",
            *(f"| {name} | {1000 * t:.1f} | {t / ours:.2f}x |" for name, t in best.items()),
            "",
            f"- ours vs the faster jacrev: **{ours / jac:.2f}x its time** (goal: at most 1.5x); "
            f"W(x) equals jacrev's Jacobian to {error:.1e} (max error relative to max |J|).",
            f"- Integrated Gradients for ONE class vs ours for all 10: **{ig / ours:.1f}x slower** (goal: at least 5x).",
            "",
        ]
    if devices == ["cpu"]:
        lines += ["No CUDA on this machine: `python -m benchmarks linearize` on a GPU machine adds the same table on",
                  "CUDA (onnxruntime's CUDA provider for ours, torch on CUDA for the peers).", ""]  # fmt: skip
    publish(RESULTS, lines)


if __name__ == "__main__":
    main()
