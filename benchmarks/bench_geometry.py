"""Geometry and CKA at study scale: 10 models x 96 units x 10,000 samples (D=512, K=10), synthetic.

``python -m benchmarks geometry`` (or ``python -m benchmarks.bench_geometry [--units U]``). Prints the table and
writes ``benchmarks/results/geometry.md``.

- metrics: :func:`onnx_geom.geometry.sample_geometry` on every unit (features generated per unit from a
  per-model base and a shared noise pool, so memory stays bounded and generation is cheap; generation is not
  timed). Peer: the straightforward numpy a user would write (float32 logits, margin through the explicit
  (N, K, D) array of ``W_y - W_j``), timed on a few units; the ratio is per unit.
- CKA: :func:`onnx_geom.similarity.cka_matrix` for all 45 model pairs on the clean features (N=10,000), and
  :func:`onnx_geom.similarity.linear_cka` per pair. Peer: the Gram-matrix form (N x N, centred HSIC) on a
  subset of 2,000 samples, against ours on the same subset.
Peak memory: tracemalloc (numpy allocations) of the timed code, and the process's max RSS.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import platform
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np

from onnx_geom.geometry import sample_geometry
from onnx_geom.similarity import cka_matrix, linear_cka

MODELS, UNITS, N, D, K = 10, 96, 10_000, 512, 10
PEER_UNITS, GRAM_N = 4, 2_000


def _model(rng: np.random.Generator):
    means = rng.normal(size=(K, D)).astype(np.float32)
    W = (means + rng.normal(scale=0.3, size=(K, D))).astype(np.float32)
    b = rng.normal(scale=0.1, size=K).astype(np.float32)
    labels = rng.integers(0, K, size=N)
    base = (means[labels] * 0.3 + np.abs(rng.normal(size=(N, D)))).astype(np.float32)
    return W, b, labels, base


def _unit_features(base: np.ndarray, noise: np.ndarray, u: int) -> np.ndarray:
    """Unit u of a model: its base scaled and shifted by a rolled slice of the shared noise pool."""
    return base * np.float32(1 - 0.004 * u) + np.roll(noise, 37 * u, axis=0) * np.float32(0.02 * u)


def naive_geometry(f: np.ndarray, W: np.ndarray, b: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """What one writes without thinking about memory: float32, explicit (N, K, D) boundary normals."""
    z = f @ W.T + b
    length = np.linalg.norm(f, axis=1)
    cos = (f @ W.T) / (length[:, None] * np.linalg.norm(W, axis=1)[None, :])
    pred = z.argmax(1)
    normals = W[y][:, None, :] - W[None, :, :]  # (N, K, D)
    gaps = z[np.arange(len(y)), y][:, None] - z
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = gaps / np.linalg.norm(normals, axis=2)
    dist[np.arange(len(y)), y] = np.inf
    return {
        "length": length,
        "cos": cos,
        "angle_true": np.degrees(np.arccos(np.clip(cos[np.arange(len(y)), y], -1, 1))),
        "margin": dist.min(1),
        "pred": pred,
        "correct": pred == y,
    }


def gram_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """The N x N Gram-matrix form: centred HSIC."""
    n = X.shape[0]
    H = np.eye(n) - 1.0 / n
    K_, L_ = H @ (X @ X.T) @ H, H @ (Y @ Y.T) @ H
    return float(np.sum(K_ * L_) / np.sqrt(np.sum(K_ * K_) * np.sum(L_ * L_)))


def _timed(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return value, seconds, peak


def run(units: int = UNITS) -> dict[str, float]:
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(N, D)).astype(np.float32)
    models = [_model(rng) for _ in range(MODELS)]
    r: dict[str, float] = {"units": units}

    # Metrics over every model x unit; only sample_geometry is on the clock.
    seconds, peak = 0.0, 0
    tracemalloc.start()
    for W, b, labels, base in models:
        for u in range(units):
            f = _unit_features(base, noise, u)
            tracemalloc.reset_peak()
            t0 = time.perf_counter()
            sample_geometry(f, W, b, labels)
            seconds += time.perf_counter() - t0
            peak = max(peak, tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    r["metrics_s"], r["metrics_peak_mb"] = seconds, peak / 2**20
    r["metrics_unit_ms"] = 1000 * seconds / (MODELS * units)
    W, b, labels, base = models[0]
    feats = [_unit_features(base, noise, u) for u in range(PEER_UNITS)]
    _, ours_s, _ = _timed(lambda: [sample_geometry(f, W, b, labels) for f in feats])
    _, peer_s, _ = _timed(lambda: [naive_geometry(f, W, b, labels) for f in feats])
    r["peer_unit_ms"], r["ours_unit_ms_same"] = 1000 * peer_s / PEER_UNITS, 1000 * ours_s / PEER_UNITS
    r["peer_peak_mb"] = _timed(lambda: naive_geometry(feats[0], W, b, labels))[2] / 2**20
    check = sample_geometry(feats[1], W, b, labels)
    naive = naive_geometry(feats[1], W, b, labels)
    r["max_margin_diff"] = float(np.max(np.abs(check["margin"] - naive["margin"])))

    # CKA between all model pairs on the clean features.
    clean = [base for _, _, _, base in models]
    matrix, r["cka_matrix_s"], peak = _timed(lambda: cka_matrix(clean))
    r["cka_matrix_peak_mb"] = peak / 2**20
    pairs = list(itertools.combinations(range(MODELS), 2))
    _, r["cka_pairwise_s"], _ = _timed(lambda: [linear_cka(clean[i], clean[j]) for i, j in pairs])
    sub = [c[:GRAM_N].astype(np.float64) for c in clean[:3]]
    few = list(itertools.combinations(range(3), 2))
    gram_vals, gram_s, gram_peak = _timed(lambda: [gram_cka(sub[i], sub[j]) for i, j in few])
    ours_vals, ours_s, _ = _timed(lambda: [linear_cka(sub[i], sub[j]) for i, j in few])
    r["gram_pair_s"], r["ours_pair_s_same"] = gram_s / len(few), ours_s / len(few)
    r["gram_peak_mb"] = gram_peak / 2**20
    r["cka_max_diff"] = float(np.max(np.abs(np.array(gram_vals) - np.array(ours_vals))))
    r["cka_matrix_vs_pairwise"] = float(max(abs(matrix[i, j] - linear_cka(clean[i], clean[j])) for i, j in pairs[:3]))
    r["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return r


def run_on_store(models: int = 2, units: int = 8) -> dict[str, float]:
    """End to end: ``compute_metrics`` on a real Zarr study (read features, compute, write the group)."""
    import shutil
    import tempfile

    from onnx_geom.metrics import compute_metrics
    from onnx_geom.probe_info import ProbeInfo
    from onnx_geom.store import Study, Unit

    rng = np.random.default_rng(1)
    noise = rng.normal(size=(N, D)).astype(np.float32)
    folder = Path(tempfile.mkdtemp(prefix="bench-geometry-"))
    try:
        labels = None
        for m in range(models):
            W, b, labels_m, base = _model(rng)
            if labels is None:
                labels = labels_m
                study = Study.create(
                    folder / "study", images=np.zeros((N, 1, 1, 1), np.uint8), labels=labels, dataset_name="synthetic"
                )
            info = ProbeInfo(W=W, b=b, input_shape=(1, 1, 1), layout="flat", mean=(0.0,), std=(1.0,))
            study.add_model(f"m{m}", info)
            for u in range(units):
                f = _unit_features(base, noise, u)
                study.write_unit(Unit(f"m{m}", "clean" if u == 0 else "c", u), {"features": f, "logits": f @ W.T + b})
        study = Study.open(folder / "study", mode="a")
        spent = {"read": 0.0, "write_group": 0.0}
        for name in spent:  # time the store's side on this instance only

            def timed(*args, _real=getattr(study, name), _name=name):  # noqa: B008 (bound per loop turn)
                t = time.perf_counter()
                try:
                    return _real(*args)
                finally:
                    spent[_name] += time.perf_counter() - t

            setattr(study, name, timed)
        t0 = time.perf_counter()
        compute_metrics(study)
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    count = models * units
    return {
        "store_units": count,
        "store_s": seconds,
        "store_unit_ms": 1000 * seconds / count,
        "store_read_ms": 1000 * spent["read"] / count,
        "store_write_ms": 1000 * spent["write_group"] / count,
    }


class _GeometryOnlyStudy:
    """Just the read side of the Study API that ``compare_study`` uses, in memory (no I/O on the clock).

    Every unit of a model shares its clean features (``compare_study`` reads a sample of rows of each unit's
    features for the CKA over every condition; 19 GB of distinct features would not fit), and a unit's margin
    stands in for its logits (the no-effect check only compares a unit's output with its clean output)."""

    def __init__(self, arrays: dict, models: dict, labels: np.ndarray) -> None:
        self._arrays, self._models, self.labels = arrays, models, labels

    def units(self, model=None, group=None):
        from onnx_geom.store import Unit

        return [Unit(*k) for k in sorted({k[:3] for k in self._arrays}) if model in (None, k[0])]

    def read(self, unit, name):
        if name == "features":
            return self._arrays[(unit[0], "clean", 0, name)]
        if name == "logits":
            return self._arrays[(*unit, "geometry/margin")]
        return self._arrays[(*unit, name)]

    def read_many(self, unit, names):
        return {name: self.read(unit, name) for name in names}

    def model_attrs(self, model):
        return {"tags": self._models[model]}


def run_compare(units: int = UNITS) -> dict[str, float]:
    """``compare_study`` over 10 models x ``units`` units x 10,000 samples of synthetic geometry."""
    from onnx_geom.comparison import compare_study

    rng = np.random.default_rng(2)
    arrays: dict = {}
    models = {f"m{m}": {"sparsity": 0.1 * m} for m in range(MODELS)}
    for model in models:
        base = rng.normal(size=(N, D)).astype(np.float32)
        for u in range(units):
            key = (model, "clean", 0) if u == 0 else (model, f"c{(u - 1) // 5:02d}", 1 + (u - 1) % 5)
            margin = rng.normal(size=N).astype(np.float32)
            arrays.update(
                {
                    (*key, f"geometry/{q}"): v
                    for q, v in {
                        "correct": margin > -0.8,
                        "pred": rng.integers(0, K, N),
                        "margin": margin,
                        "angle_true": rng.uniform(20, 90, N).astype(np.float32),
                        "length": rng.uniform(1, 9, N).astype(np.float32),
                    }.items()
                }
            )
            if u == 0:
                arrays[(*key, "features")] = base
    labels = rng.integers(0, K, N)
    _, seconds, peak = _timed(lambda: compare_study(_GeometryOnlyStudy(arrays, models, labels)))
    return {"compare_s": seconds, "compare_peak_mb": peak / 2**20}


def report(r: dict[str, float], command: str) -> str:
    units = int(r["units"])
    scale = UNITS / units
    total = r["metrics_s"] * scale + r["cka_matrix_s"]
    return f"""# Benchmark: geometry and CKA

- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, 2-core CPU
  shared with five other engineers' jobs (absolute times are noisy; the ratios are taken in the same run);
  numpy {np.__version__}; command: `{command}`.
- workload: {MODELS} models x {units} units x {N:,} samples, D={D}, K={K}, synthetic float32 features.

| what | ours | peer | ratio (peer / ours) |
|---|---|---|---|
| metrics per unit (10,000 samples) | {r["ours_unit_ms_same"]:.1f} ms | {r["peer_unit_ms"]:.1f} ms (naive numpy, (N,K,D) normals) | {r["peer_unit_ms"] / r["ours_unit_ms_same"]:.1f}x |
| metrics peak memory per unit | {r["metrics_peak_mb"]:.0f} MB | {r["peer_peak_mb"]:.0f} MB | {r["peer_peak_mb"] / max(r["metrics_peak_mb"], 1e-9):.1f}x |
| CKA per pair, N={GRAM_N:,} | {1000 * r["ours_pair_s_same"]:.1f} ms (feature space) | {1000 * r["gram_pair_s"]:.0f} ms (Gram N x N, peak {r["gram_peak_mb"]:.0f} MB) | {r["gram_pair_s"] / r["ours_pair_s_same"]:.0f}x |

| study-scale figure | value | goal |
|---|---|---|
| metrics, all {MODELS} x {units} units | {r["metrics_s"]:.1f} s ({r["metrics_unit_ms"]:.1f} ms/unit) | |
| CKA, all 45 pairs, N={N:,} (`cka_matrix`) | {r["cka_matrix_s"]:.1f} s, peak {r["cka_matrix_peak_mb"]:.0f} MB | |
| CKA, 45 x `linear_cka` (float64) | {r["cka_pairwise_s"]:.1f} s | |
| total metrics + CKA{" (metrics scaled to 96 units)" if units != UNITS else ""} | {total:.1f} s | < 60 s |
| peak memory: traced (metrics) / process max RSS | {r["metrics_peak_mb"]:.0f} MB / {r["max_rss_mb"]:.0f} MB | < 2 GB |

End to end on a real Zarr study (`compute_metrics`: read the features, compute, write the geometry group
atomically), {int(r["store_units"])} units of 10,000 x 512: {r["store_unit_ms"]:.0f} ms/unit, of which
`study.read` (features, plus the summaries' reads) {r["store_read_ms"]:.0f} ms and `study.write_group` (7 small arrays,
claim/complete protocol) {r["store_write_ms"]:.0f} ms; the geometry itself is about {r["metrics_unit_ms"]:.0f} ms.
At that rate the full 960 units would take about {r["store_unit_ms"] * 0.96:.0f} s; the store's share of a unit is
{100 * (r["store_read_ms"] + r["store_write_ms"]) / r["store_unit_ms"]:.0f}%.

`compare_study` on 10 models x {units} units x 10,000 samples of synthetic geometry (an in-memory stand-in for
the study, so no I/O on the clock; CKA of the clean features included): {r["compare_s"]:.1f} s, traced peak
{r["compare_peak_mb"]:.0f} MB.

Agreement: max |margin ours - naive| = {r["max_margin_diff"]:.2e}; max |CKA ours - Gram form| = {r["cka_max_diff"]:.2e};
max |cka_matrix - linear_cka| = {r["cka_matrix_vs_pairwise"]:.2e}.
The process RSS includes the synthetic inputs (10 models' base features and the noise pool, about 230 MB).
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=UNITS, help="units per model (96 = 19 corruptions x 5 + clean)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    args = parser.parse_args(argv if argv is not None else [])
    r = run(args.units)
    r.update(run_on_store())
    r.update(run_compare(args.units))
    text = report(r, "python -m benchmarks geometry" + (f" (--units {args.units})" if args.units != UNITS else ""))
    print(text)
    if not args.no_write:
        out = Path(__file__).parent / "results" / "geometry.md"
        out.parent.mkdir(exist_ok=True)
        out.write_text(text)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
