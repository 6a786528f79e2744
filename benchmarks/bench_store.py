"""The study store per unit: write and read time of a small and a large unit, ours against plain files.

``python -m benchmarks store`` (or ``python -m benchmarks.bench_store [--small U] [--large U] [--rounds R]``).
Prints the table and writes ``benchmarks/results/store.md``. Each figure is the best of ``R`` rounds (per-unit
means), the rounds of all ways interleaved: on a shared machine the other jobs only ever add time.

- small unit: features (359, 64) + logits (359, 10) float32 (the demo zoo: 32x32 digits, D=64, K=10);
  large unit: features (10,000, 512) + logits (10,000, 10) (a CIFAR-10-C set of a ResNet-18).
- ours: ``Study.write_unit`` (claim with flock, mark incomplete, write, mark complete) and
  ``Study.read_many(unit, ["features", "logits"])`` (completeness checked, both arrays read).
- peer: what a user would otherwise write, ``np.save`` of each array into a folder per unit and ``np.load``
  (no atomicity, no lock, no compression).
- for reference: zarr-python 3 itself (``zarr.create_array(..., data=...)`` per array, default codec), which
  onnx-geom no longer uses (it wrote units this way, then the root, labels, images and models until the store
  wrote every file itself).
- metrics' write: ``Study.write_group`` of 7 arrays (N,) (a unit's geometry group).
- the price of durability: writing a small file (20 kB) under a temporary name and renaming it into place,
  with and without ``fsync`` before the rename (``onnx_geom._files.write_bytes(sync=...)``).
Bytes on disk are summed file sizes of one unit.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from onnx_geom.probe_info import ProbeInfo
from onnx_geom.store import Study, Unit

SHAPES = {"small": (359, 64, 10), "large": (10_000, 512, 10)}


def _arrays(n: int, d: int, k: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = np.maximum(rng.normal(size=(n, d)), 0).astype(np.float32)  # post-ReLU: about half zeros
    return {"features": features, "logits": rng.normal(size=(n, k)).astype(np.float32)}


def _study(root: Path, n: int, d: int, k: int) -> Study:
    study = Study.create(
        root / "study", images=np.zeros((n, 2, 2, 1), np.uint8), labels=np.arange(n) % k, dataset_name="bench"
    )
    info = ProbeInfo(
        W=np.ones((k, d), np.float32),
        b=np.zeros(k, np.float32),
        input_shape=(1, 2, 2),
        layout="NCHW",
        mean=(0.0,),
        std=(1.0,),
    )
    study.add_model("m", info)
    return study


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _per_unit(fn, units: int) -> float:
    t0 = time.perf_counter()
    for u in range(units):
        fn(u)
    return (time.perf_counter() - t0) / units


def measure_sync(files: int = 200) -> dict[str, float]:
    """Seconds per 20 kB file replaced whole, with and without fsync before the rename."""
    from onnx_geom._files import write_bytes

    data, out = os.urandom(20_000), {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        for sync in (True, False):
            out["synced" if sync else "unsynced"] = _per_unit(
                lambda u, sync=sync: write_bytes(Path(tmp) / f"f{u % 20}", data, sync=sync), files
            )
    return out


def measure(kind: str, units: int) -> dict[str, float]:
    """Seconds per unit for each way, and bytes of one unit."""
    import zarr

    n, d, k = SHAPES[kind]
    arrays = _arrays(n, d, k)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        study = _study(root, n, d, k)
        out["ours_write"] = _per_unit(lambda u: study.write_unit(Unit("m", f"c{u}", 1), arrays), units)
        out["ours_read"] = _per_unit(lambda u: study.read_many(Unit("m", f"c{u}", 1), ["features", "logits"]), units)
        geometry = {
            name: np.random.default_rng(i).normal(size=n).astype(np.float32) for i, name in enumerate("abcdefg")
        }
        out["ours_group"] = _per_unit(lambda u: study.write_group(Unit("m", f"c{u}", 1), "geometry", geometry), units)
        shutil.rmtree(root / "study" / "models" / "m" / "c0" / "1" / "geometry")
        out["ours_bytes"] = _size(root / "study" / "models" / "m" / "c0" / "1")

        def save(u: int) -> None:
            folder = root / "npy" / str(u)
            folder.mkdir(parents=True)
            for name, a in arrays.items():
                np.save(folder / f"{name}.npy", a)

        out["peer_write"] = _per_unit(save, units)
        out["peer_read"] = _per_unit(
            lambda u: {name: np.load(root / "npy" / str(u) / f"{name}.npy") for name in arrays}, units
        )
        out["peer_bytes"] = _size(root / "npy" / "0")

        def zarr_write(u: int) -> None:
            group = zarr.open_group(str(root / "zarr" / str(u)), mode="w")
            for name, a in arrays.items():
                group.create_array(name, data=a)
            group.attrs["complete"] = True

        out["zarr_write"] = _per_unit(zarr_write, units)
        out["zarr_read"] = _per_unit(
            lambda u: {name: zarr.open_array(str(root / "zarr" / str(u) / name), mode="r")[:] for name in arrays}, units
        )
        out["zarr_bytes"] = _size(root / "zarr" / "0")
    return out


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=60, help="units written and read at the small size")
    parser.add_argument("--large", type=int, default=4, help="units written and read at the large size")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each figure is the best round")
    args = parser.parse_args(argv if argv is not None else [])
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for kind, units in (("small", args.small), ("large", args.large), ("sync", 0)):
            m = measure_sync() if kind == "sync" else measure(kind, units)
            best[kind] = {key: min(v, best.get(kind, {}).get(key, v)) for key, v in m.items()}
    rows = []
    for kind in ("small", "large"):
        m = best[kind]
        n, d, k = SHAPES[kind]
        label = f"{kind} ({n:,} x {d} + {n:,} x {k})"
        rows.append(
            f"| {label} write | {_ms(m['ours_write'])} | {_ms(m['peer_write'])} | {m['peer_write'] / m['ours_write']:.2f}x | {_ms(m['zarr_write'])} |"
        )
        rows.append(
            f"| {label} read | {_ms(m['ours_read'])} | {_ms(m['peer_read'])} | {m['peer_read'] / m['ours_read']:.2f}x | {_ms(m['zarr_read'])} |"
        )
        rows.append(
            f"| {label} bytes | {m['ours_bytes'] / 1e3:,.0f} kB | {m['peer_bytes'] / 1e3:,.0f} kB | {m['peer_bytes'] / m['ours_bytes']:.2f}x | {m['zarr_bytes'] / 1e3:,.0f} kB |"
        )
        rows.append(f"| {label} write_group, 7 x ({n:,},) | {_ms(m['ours_group'])} | | | |")
        print(
            f"{kind}: "
            + ", ".join(
                f"{key} {v * 1e3:.2f} ms" if not key.endswith("bytes") else f"{key} {v:,.0f}" for key, v in m.items()
            ),
            flush=True,
        )
    sync = best["sync"]
    print(f"sync: synced {sync['synced'] * 1e3:.2f} ms, unsynced {sync['unsynced'] * 1e3:.2f} ms", flush=True)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join(
        [
            "# Benchmark: the study store, per unit",
            "",
            f"- date: {now}; machine: {platform.machine()}, {os.cpu_count()}-core CPU shared with five other engineers' jobs",
            "  (absolute times are noisy; ours and the peer are timed in the same run); local ext4 disk;",
            f"  command: `python -m benchmarks store` ({args.small} small units, {args.large} large units, per-unit means,",
            f"  best of {args.rounds} interleaved rounds).",
            "- ours: `Study.write_unit` (flock claim, incomplete mark, arrays, complete mark) and",
            '  `Study.read_many(unit, ["features", "logits"])`; peer: `np.save` / `np.load` of each array in a folder',
            "  per unit (no atomicity, no lock, no compression); zarr-python 3 `create_array(data=...)` per array with its",
            "  default codec, for reference (onnx-geom no longer uses it).",
            "",
            "| unit | ours | peer (np.save / np.load) | ratio (peer / ours) | zarr-python 3 |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"The price of durability: a 20 kB file replaced whole takes {sync['synced'] * 1e3:.2f} ms with `fsync` before",
            f"the rename and {sync['unsynced'] * 1e3:.2f} ms without (`onnx_geom._files.write_bytes(sync=...)`).",
            "",
        ]
    )
    out = Path(__file__).parent / "results" / "store.md"
    notes = (
        out.read_text().split("<!-- notes -->", 1)[1] if out.exists() and "<!-- notes -->" in out.read_text() else ""
    )
    out.write_text(text + ("\n<!-- notes -->" + notes if notes else ""))
    print(text)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
