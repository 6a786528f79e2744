"""Probe benchmark: what the baked-in preprocessing and the two extra outputs cost at inference.

Peer: what a user would do without a probe, i.e. numpy preprocessing (cast, /255, normalise, NCHW) and then the
source model in onnxruntime. Ours: the probe fed uint8 NHWC images directly. Both on CPU, same session options,
same images; reported as a ratio (ours / peer), best of several repeats. Also: the time to build a probe
(surgery + self-check). Run: ``python -m benchmarks probe``.
"""

from __future__ import annotations

import datetime
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "probe.md"


def _cnn():
    import torch

    torch.manual_seed(0)
    layers, channels = [], 3
    for width in (32, 64, 128):
        layers += [
            torch.nn.Conv2d(channels, width, 3, padding=1),
            torch.nn.BatchNorm2d(width),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        ]
        channels = width
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(channels, 10)]
    return torch.nn.Sequential(*layers).eval()


def _best_of_interleaved(first, second, repeats: int = 15) -> tuple[float, float]:
    """Best times of two callables, run alternately so that load from other jobs hits both alike."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return min(times[0]), min(times[1])


def main() -> None:
    import onnxruntime as ort
    import torch

    from onnx_geom.export import torch_to_onnx
    from onnx_geom.probe import preprocess_numpy, probe
    from onnx_geom.probe._preprocess import PRESETS

    source = torch_to_onnx(_cnn(), torch.rand(2, 3, 32, 32), dynamo=False)
    start = time.perf_counter()
    model = probe(source, preset="cifar10")
    build = time.perf_counter() - start
    mean, std = PRESETS["cifar10"]

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the machine is shared; one thread keeps the ratio stable
    peer = ort.InferenceSession(source.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ours = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rows = []
    for batch in (1, 64, 256):
        images = np.random.default_rng(0).integers(0, 256, size=(batch, 32, 32, 3), dtype=np.uint8)
        peer_s, ours_s = _best_of_interleaved(
            lambda images=images: peer.run(
                None, {"input": preprocess_numpy(images, layout="NCHW", mean=mean, std=std)}
            ),
            lambda images=images: ours.run(None, {"images": images}),
        )
        rows.append((batch, batch / peer_s, batch / ours_s, ours_s / peer_s))

    lines = [
        "# probe benchmark",
        "",
        f"Date: {datetime.date.today()}; machine: {platform.machine()} CPU, 2 cores shared with other jobs (timings are",
        "noisy; compare the ratio, not the absolute numbers); onnxruntime CPU, 1 intra-op thread, best of 15, the two run alternately.",
        "Command: `python -m benchmarks probe`.",
        "",
        "Model: a 3-block CNN on 32x32x3 (conv-bn-relu-pool x3, global pool, Linear 128->10), torch legacy export.",
        f"Building the probe (head search, surgery, self-check under two optimisation levels): {build:.2f} s.",
        "",
        "| batch | peer: numpy preprocessing + source model (img/s) | probe, uint8 in (img/s) | time ratio probe/peer |",
        "|---:|---:|---:|---:|",
        *[f"| {b} | {p:,.0f} | {o:,.0f} | {r:.2f} |" for b, p, o, r in rows],
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
