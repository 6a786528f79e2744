"""Runner throughput: our onnxruntime probe session vs torch eager on a CIFAR ResNet-18, same batch, one run.

    python -m benchmarks runner            # CPU always; CUDA (IO binding, fp32 and fp16) too when it works

Both sides get the same uint8 NHWC images and do the same work (cast, /255, normalise, NCHW, ResNet-18, logits
and penultimate features). Random weights (throughput does not depend on them). Writes
benchmarks/results/runner.md.
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

RESULTS = Path(__file__).parent / "results" / "runner.md"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def resnet18_probe_module():
    """A CIFAR ResNet-18 (3x3 stem, no max-pool) whose forward takes uint8 NHWC and returns (logits, features)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.skip = (
                nn.Sequential()
                if stride == 1 and cin == cout
                else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            )

        def forward(self, x):
            return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + self.skip(x))

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            widths, layers, cin = (64, 128, 256, 512), [], 64
            for i, w in enumerate(widths):
                layers += [Block(cin, w, 1 if i == 0 else 2), Block(w, w, 1)]
                cin = w
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
            self.body, self.fc = nn.Sequential(*layers), nn.Linear(512, 10)
            self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

        def forward(self, images):
            x = (images.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
            features = torch.flatten(nn.functional.adaptive_avg_pool2d(self.body(self.stem(x)), 1), 1)
            return self.fc(features), features

    torch.manual_seed(0)
    return Probe().eval()


def export_probe(module, path: Path) -> None:
    """Export with the two probe outputs and write the ProbeInfo (head W, b) into its metadata."""
    import onnx
    import torch

    from onnx_geom.probe_info import ProbeInfo, write_probe_info

    example = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    torch.onnx.export(module, (example,), str(path), input_names=["images"], output_names=["logits", "features"],
                      dynamic_axes={"images": {0: "N"}, "logits": {0: "N"}, "features": {0: "N"}}, dynamo=False)  # fmt: skip
    model = onnx.load(str(path))
    info = ProbeInfo(W=module.fc.weight.detach().numpy(), b=module.fc.bias.detach().numpy(), input_shape=(32, 32, 3),
                     layout="NCHW", mean=MEAN, std=STD, producer="bench_runner")  # fmt: skip
    write_probe_info(model, info)
    onnx.save(model, str(path))


def images_per_s(run, images: np.ndarray, batch: int, repeats: int = 1) -> float:
    run(images[:batch])  # warm-up (allocations, cuDNN autotune)
    start = time.perf_counter()
    for _ in range(repeats):
        for i in range(0, len(images), batch):
            run(images[i : i + batch])
    return repeats * len(images) / (time.perf_counter() - start)


def torch_runner(module, device: str, half: bool = False):
    import torch

    module = module.to(device)

    def run(batch: np.ndarray):
        with torch.inference_mode(), torch.autocast(device, enabled=half):
            logits, features = module(torch.from_numpy(batch).to(device))
            return logits.float().cpu().numpy(), features.float().cpu().numpy()

    return run


def measure(path: Path, module, device: str, n: int, batch: int) -> list[tuple[str, float]]:
    from onnx_geom.runner import ProbeSession

    images = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    rows = [(f"torch eager fp32 ({device})", images_per_s(torch_runner(module, device), images, batch))]
    ours = ProbeSession.open(path, device=device, batch_size=batch)
    rows.append(
        (
            f"onnx-geom runner fp32 ({ours.device}{', IO binding' if ours.device != 'cpu' else ''})",
            images_per_s(ours.run, images, batch),
        )
    )
    if device == "cuda":
        rows.append(
            ("torch eager autocast fp16 (cuda)", images_per_s(torch_runner(module, device, half=True), images, batch))
        )
        half = ProbeSession.open(path, device=device, batch_size=batch, fp16=True)
        rows.append(("onnx-geom runner fp16 (cuda, IO binding)", images_per_s(half.run, images, batch)))
        ref_f, _ = ours.run(images[:64])
        half_f, _ = half.run(images[:64])
        print(f"fp16 features vs fp32: max relative error {np.abs(half_f - ref_f).max() / np.abs(ref_f).max():.2e}")
    return rows


def sweep_rate(path: Path, n: int, batch: int, device: str) -> float:
    """images/s of a whole clean-only sweep (session, batches, study writes) into a fresh study."""
    from onnx_geom.sweep import sweep

    images = np.random.default_rng(1).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(n) % 10
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        sweep(
            {"resnet18": path}, (images, labels), Path(tmp) / "study", corruptions=[], batch_size=batch, device=device
        )
        return n / (time.perf_counter() - start)


def main() -> None:
    import torch

    from onnx_geom.runner import _auto_device

    module = resnet18_probe_module()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet18.probe.onnx"
        export_probe(module, path)
        sections = [("cpu", 1024, 256, measure(path, module, "cpu", 1024, 256))]
        sections[0][3].append(
            (
                "onnx-geom sweep, clean only (incl. session start, study writes) (cpu)",
                sweep_rate(path, 1024, 256, "cpu"),
            )
        )
        if _auto_device(False) == "cuda" and torch.cuda.is_available():
            sections.append(("cuda", 20480, 2048, measure(path, module, "cuda", 20480, 2048)))
            sections[1][3].append(
                (
                    "onnx-geom sweep, clean only (incl. session start, study writes) (cuda)",
                    sweep_rate(path, 10000, 2048, "cuda"),
                )
            )
    lines = [
        "# Runner benchmark",
        "",
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"(shared with other engineers' jobs: ratios, taken in one run, are what count), torch {torch.__version__}, "
        f"onnxruntime {__import__('onnxruntime').__version__}. CIFAR ResNet-18 (11.2 M parameters, random weights), "
        "uint8 32x32x3 in, logits + 512-d features out. Command: `python -m benchmarks runner`.",
        "",
    ]
    for device, n, batch, rows in sections:
        base = rows[0][1]
        lines += [
            f"## {device}: {n} images, batch {batch}",
            "",
            "| what | images/s | vs torch eager fp32 |",
            "|---|---:|---:|",
        ]
        lines += [f"| {name} | {rate:,.0f} | {rate / base:.2f}x |" for name, rate in rows]
        lines.append("")
    if len(sections) == 1:
        lines += ["No usable CUDA provider on this machine, so no GPU section: run the same command on a GPU machine for",
                  "CUDA + IO binding (fp32, fp16) vs torch eager on that GPU.", ""]  # fmt: skip
    publish(RESULTS, lines)


if __name__ == "__main__":
    main()
