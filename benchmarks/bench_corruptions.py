"""Corrupt one batch of 32x32 images with all 19 corruptions x 5 severities: ours (batched) vs imagecorruptions.

``python -m benchmarks corruptions`` (set ``BENCH_N`` for the batch size, default 256). The reference,
``imagecorruptions-imaug``, runs image by image as its API does; both use the imagenet profile (the reference's
constants) so they do the same work. Each side is warmed up once per corruption and severity (numba compiles
the reference's glass blur; ours builds its cached linear operators).
Writes ``benchmarks/results/corruptions.md``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import time
import warnings
from pathlib import Path

from onnx_geom.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from tests._corruption_data import smooth_images

REPEATS = 3


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _one_blas_thread():
    """Both sides on one BLAS thread: on a shared 2-core machine OpenBLAS's spinning threads distort timings."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn (dev extra)
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def main() -> None:
    from imagecorruptions import corrupt as reference

    warnings.filterwarnings("ignore", category=RuntimeWarning)  # the reference's spatter divides 0 by 0
    n = int(os.environ.get("BENCH_N", "256"))
    x = smooth_images(n)
    rows = []
    for name in CORRUPTIONS:
        for s in SEVERITIES:  # ours builds its linear operators once per size and severity; numba compiles
            corrupt(x[:2], name, s, profile="imagenet", rng=0)
            reference(x[0], s, name)
        ours_runs, ref_runs = [], []
        for _ in range(REPEATS):  # interleaved, best of REPEATS for each side
            with _one_blas_thread():
                ours_runs.append(
                    sum(
                        _time(lambda s=s, name=name: corrupt(x, name, s, profile="imagenet", rng=0)) for s in SEVERITIES
                    )
                )
                ref_runs.append(
                    sum(_time(lambda s=s, name=name: [reference(im, s, name) for im in x]) for s in SEVERITIES)
                )
        ours, ref = min(ours_runs), min(ref_runs)
        rows.append((name, ref, ours))
        print(f"{name:18s} reference {ref:7.3f} s  ours {ours:7.3f} s  x{ref / ours:6.1f}", flush=True)
    total_ref, total_ours = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'total':18s} reference {total_ref:7.3f} s  ours {total_ours:7.3f} s  x{total_ref / total_ours:6.1f}")
    lines = [
        "# Corruptions: onnx-geom (batched) vs imagecorruptions-imaug (image by image)",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), shared with other jobs;"
        " figures are ratios taken in the same run",
        f"- batch: {n} images of 32x32x3, all 19 corruptions x severities 1-5, imagenet profile on both sides",
        f"- timing: best of {REPEATS} interleaved runs per side, one BLAS thread on both sides (threadpoolctl),"
        " after one warm-up call per corruption and severity",
        "- command: `python -m benchmarks corruptions` (`BENCH_N` sets the batch size)",
        "",
        "| corruption | imagecorruptions (s) | onnx-geom (s) | speed-up |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {ref:.3f} | {ours:.3f} | {ref / ours:.1f}x |" for name, ref, ours in rows]
    lines.append(f"| **all 95** | **{total_ref:.3f}** | **{total_ours:.3f}** | **{total_ref / total_ours:.1f}x** |")
    lines += [
        "",
        "Where the reference spends its time on per-image Python work (frost reads a PNG per call, zoom blur calls",
        "scipy once per zoom factor, fog, snow, brightness, pixelate) the batched versions win by 4-200x. Where the",
        "work itself dominates it cannot: the noise corruptions are bound by drawing the random numbers (ours draws",
        "them per image from its own seeded stream, so a sample's noise never depends on its batch), JPEG is",
        "Pillow's encoder image by image on both sides, and defocus blur runs as exact integer matrix",
        "products (bit-identical results whatever the batch) against OpenCV's C filter.",
    ]
    out = Path(__file__).parent / "results" / "corruptions.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
