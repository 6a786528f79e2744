"""Study-level metrics and comparison, against the pure functions and independent loops."""

import json

import numpy as np
import pytest
from _child import Child
from _reference_math import gram_cka, loop_margins
from geometry_study import count_writes, make_study

from onnx_geom.comparison import compare_study
from onnx_geom.errors import DataError, StudyError, StudyLockedError
from onnx_geom.geometry import sample_geometry
from onnx_geom.metrics import compute_metrics, sample_records
from onnx_geom.store import Study, Unit


def _kappa(a, b):
    """Cohen's kappa of two boolean vectors: (p_observed - p_expected) / (1 - p_expected)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    observed = np.mean(a == b)
    expected = a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean())
    return (observed - expected) / (1 - expected)


def test_compute_metrics_writes_every_unit_once_and_summarises(tmp_path, monkeypatch):
    study = make_study(tmp_path / "s")
    writes = count_writes(monkeypatch, study)
    seen = []
    rows = compute_metrics(study, progress=lambda unit, done, total: seen.append((unit, done, total)))
    units = study.units()
    assert len(rows) == len(units) == 3 * 7 and len(seen) == len(units) and seen[-1][1:] == (21, 21)
    assert all(study.is_complete(u, group="geometry") for u in units)
    unit = Unit("mag90", "motion_blur", 3)
    f, (W, b) = study.read(unit, "features").astype(np.float64), study.head("mag90")
    z = f @ W.T.astype(np.float64) + b
    row = next(r for r in rows if (r["model"], r["corruption"], r["severity"]) == unit)
    assert row["accuracy"] == pytest.approx(np.mean(z.argmax(1) == study.labels))
    assert row["median_length"] == pytest.approx(np.median(np.linalg.norm(f, axis=1)), rel=1e-6)
    assert rows[0]["corruption"] == "clean"
    # Resumable: a second run computes nothing and returns the same numbers.
    before = len(writes)
    assert compute_metrics(Study.open(tmp_path / "s", mode="a")) == rows and len(writes) == before
    assert Study.open(tmp_path / "s").units(group="geometry") == units  # readable by a fresh reader


def test_compute_metrics_memory_is_flat_in_the_number_of_samples(tmp_path):
    """One unit of N x 32 features and 300 classes: the (N, 300) cosines are written a chunk at a time, never
    held whole, so four times the samples add only the per-sample summaries (O(N) small arrays), not 3N x 300."""
    import tracemalloc

    from onnx_geom.probe_info import ProbeInfo

    peaks = {}
    for n in (8_000, 32_000):  # both more than one chunk of rows (3,495 at 300 classes)
        rng = np.random.default_rng(0)
        W = rng.standard_normal((300, 32)).astype(np.float32)
        study = Study.create(
            tmp_path / f"s{n}",
            images=np.zeros((n, 1, 1, 1), np.uint8),
            labels=rng.integers(0, 300, n),
            dataset_name="wide",
        )
        study.add_model(
            "m",
            ProbeInfo(W=W, b=np.zeros(300, np.float32), input_shape=(1, 1, 1), layout="flat", mean=(0.0,), std=(1.0,)),
        )
        f = rng.standard_normal((n, 32)).astype(np.float32)
        study.write_unit(Unit("m", "clean", 0), {"features": f, "logits": f @ W.T})
        tracemalloc.start()
        rows = compute_metrics(Study.open(tmp_path / f"s{n}", mode="a"))
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert rows[0]["n"] == n
        stored = Study.open(tmp_path / f"s{n}").read(Unit("m", "clean", 0), "geometry/cos")
        f64, W64 = f.astype(np.float64), W.astype(np.float64)
        cos = f64 @ W64.T / (np.linalg.norm(f64, axis=1)[:, None] * np.linalg.norm(W64, axis=1))
        np.testing.assert_allclose(stored, cos, atol=1e-6)
    whole_cos = 32_000 * 300 * 4  # what holding the larger unit's cosines would cost: 38 MB
    assert peaks[32_000] - peaks[8_000] < whole_cos / 8, peaks


def test_compute_metrics_resumes_after_partial_run(tmp_path, monkeypatch):
    study = make_study(tmp_path / "s")
    writes = count_writes(monkeypatch, study)
    for unit in study.units()[:5]:  # an earlier run that stopped after five units
        W, b = study.head(unit.model)
        study.write_group(unit, "geometry", sample_geometry(study.read(unit, "features"), W, b, study.labels))
    seen = []
    compute_metrics(study, progress=lambda unit, done, total: seen.append(total))
    assert seen == [16] * 16 and len(writes) == 21 and len(set(writes)) == 21


def test_compute_metrics_names_the_unit_on_bad_data(tmp_path, monkeypatch):
    study = make_study(tmp_path / "s")
    monkeypatch.setattr(Study, "labels", property(lambda self: np.array([7] + [0] * 119)))
    with pytest.raises(StudyError, match=r"unit dense/clean/0: labels must lie in 0..3"):
        compute_metrics(study)


def test_sample_records_stream_every_unit(tmp_path):
    study = make_study(tmp_path / "s", geometry=True)
    chunks = list(sample_records(study))
    assert len(chunks) == 21 and all(len(c["margin"]) == 120 for c in chunks)
    first = chunks[0]
    assert (first["model"][0], first["corruption"][0], first["severity"][0]) == ("dense", "clean", 0)
    np.testing.assert_array_equal(first["label"], study.labels)


def test_compare_study_tables_against_independent_numbers(tmp_path):
    study = make_study(tmp_path / "s", geometry=True)
    cmp = compare_study(study)
    assert cmp.reference == "dense" and cmp.models == ["dense", "mag50", "mag90"]
    pair = next(p for p in cmp.pairs if (p["model_a"], p["model_b"]) == ("dense", "mag90"))
    X = study.read(Unit("dense", "clean", 0), "features").astype(np.float64)
    Y = study.read(Unit("mag90", "clean", 0), "features").astype(np.float64)
    assert pair["cka_clean"] == pytest.approx(gram_cka(X, Y), rel=1e-5)
    # Agreement over every unit, by a plain loop.
    same = total = 0
    for unit in study.units(model="dense"):
        other = Unit("mag90", unit.corruption, unit.severity)
        za = (
            study.read(unit, "features").astype(np.float64) @ study.head("dense")[0].T.astype(np.float64)
            + study.head("dense")[1]
        )
        zb = (
            study.read(other, "features").astype(np.float64) @ study.head("mag90")[0].T.astype(np.float64)
            + study.head("mag90")[1]
        )
        same += int(np.sum(za.argmax(1) == zb.argmax(1)))
        total += len(za)
    assert pair["agreement_all"] == pytest.approx(same / total)
    assert cmp.distance.shape == (3, 3) and cmp.embedding.shape == (3, 2) and len(cmp.mst) == 2
    # the raw geometric distance from the stored geometry: every unit the models share, each quantity
    # standardised over all models and samples, then the root-mean-square difference
    shared = sorted({(u.corruption, u.severity) for u in study.units(model="dense", group="geometry")})
    vectors = {
        m: {
            q: np.concatenate([study.read(Unit(m, c, sv), f"geometry/{q}").astype(np.float64) for c, sv in shared])
            for q in ("angle_true", "length", "margin")
        }
        for m in ("dense", "mag90", "mag50")
    }
    squares = count = 0.0
    for q in ("angle_true", "length", "margin"):
        pooled = np.concatenate([vectors[m][q] for m in vectors])
        mu, sd = pooled.mean(), pooled.std()
        squares += float(np.sum(((vectors["dense"][q] - mu) / sd - (vectors["mag90"][q] - mu) / sd) ** 2))
        count += len(vectors["dense"][q])
    assert pair["geometric_distance_raw_all"] == pytest.approx(np.sqrt(squares / count), rel=1e-6)
    assert pair["geometric_distance_all"] == pytest.approx(cmp.distance[0, 2])  # the default: scale-free
    assert cmp.corruptions == ["defocus_blur", "gaussian_noise", "motion_blur"]
    blur = cmp.redundancy[0, 2]
    assert blur > cmp.redundancy[0, 1] and blur > cmp.redundancy[1, 2]
    summary = {r["model"]: r for r in cmp.summary}
    assert summary["dense"]["mce"] == pytest.approx(1.0)

    paths = cmp.write(tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert "comparison.json" in names and "pairs.csv" in names and "sample_counts.csv" in names
    assert "correlations.csv" in names and "geometry.csv" in names
    margins = {r["model"]: r["median_margin"] for r in cmp.geometry}
    for model in cmp.models:  # the clean margin recomputed from the stored features and head
        W, b = (np.asarray(a, np.float64) for a in study.head(model))
        z = study.read(Unit(model, "clean", 0), "features").astype(np.float64) @ W.T + b
        assert margins[model] == pytest.approx(np.median(loop_margins(z, W, study.labels)), rel=1e-4)
    data = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert data["samples"]["robust"] == cmp.samples["robust"]
    header = (tmp_path / "out" / "accuracy.csv").read_text().splitlines()[0]
    assert header == "model,corruption,severity,accuracy"


def test_compare_study_options_and_errors(tmp_path):
    with pytest.raises(StudyError, match="run `onnx-geom metrics STUDY` first"):
        compare_study(make_study(tmp_path / "plain"))
    study = make_study(tmp_path / "s", geometry=True)
    cmp = compare_study(study, reference="mag50", distance="kappa", cka_samples=50)
    assert cmp.reference == "mag50" and "mag50" not in cmp.samples["fragile_to_pruning"]
    # kappa of the correctness over every unit the two models share, from the stored logits
    units = study.units(model="dense")
    correct = {
        m: np.concatenate(
            [study.read(Unit(m, u.corruption, u.severity), "logits").argmax(1) == study.labels for u in units]
        )
        for m in ("dense", "mag50")
    }
    kappa = _kappa(correct["dense"], correct["mag50"])
    pair = next(p for p in cmp.pairs if (p["model_a"], p["model_b"]) == ("dense", "mag50"))
    assert pair["kappa_all"] == pytest.approx(kappa) and cmp.distance[0, 1] == pytest.approx(1 - kappa)
    clean = {m: study.read(Unit(m, "clean", 0), "logits").argmax(1) == study.labels for m in ("dense", "mag50")}
    assert pair["kappa_clean"] == pytest.approx(_kappa(clean["dense"], clean["mag50"]))
    with pytest.raises(DataError, match="reference model 'nope'"):
        compare_study(study, reference="nope")
    with pytest.raises(DataError, match="unknown distance"):
        compare_study(study, distance="euclid")


def test_two_processes_computing_metrics_on_one_study(tmp_path):
    make_study(tmp_path / "s")
    study = Study.open(tmp_path / "s", mode="a")
    with Child("metrics", tmp_path / "s") as first:
        assert first.read() == "holding dense/clean/0/geometry"  # it waits, holding the first unit's geometry
        with Child("metrics", tmp_path / "s") as second:
            # the second leaves the held unit to the first and takes the next one: both hold a unit at once
            assert second.read() == "holding dense/defocus_blur/1/geometry"
            for child, unit in ((first, Unit("dense", "clean", 0)), (second, Unit("dense", "defocus_blur", 1))):
                with pytest.raises(StudyLockedError, match=f"being written by process {child.pid} "):
                    study.write_group(unit, "geometry", {"margin": np.zeros(120, np.float32)})
            for child in (first, second):
                child.send("free")
            rest = first.finish() + second.finish()
    assert rest.count("done") == 2
    # every unit's geometry was claimed once, by one of the two (the first two claims included)
    claims = ["dense/clean/0", "dense/defocus_blur/1"] + [x[8:-9] for x in rest if x.startswith("holding ")]
    assert sorted(claims) == sorted(str(u) for u in study.units()) and len(study.units()) == 21
    assert len(study.units(group="geometry")) == 21
    labels = study.labels
    for unit in study.units():  # every unit's geometry as one process alone would have written it
        W, b = (np.asarray(a, np.float64) for a in study.head(unit.model))
        f = study.read(unit, "features").astype(np.float64)
        z = f @ W.T + b
        np.testing.assert_array_equal(study.read(unit, "geometry/correct"), z.argmax(1) == labels)
        np.testing.assert_allclose(
            study.read(unit, "geometry/margin"), loop_margins(z, W, labels), rtol=1e-4, atol=1e-4
        )


def test_compare_study_with_a_unit_missing_for_one_model(tmp_path):
    import zarr

    study = make_study(tmp_path / "s", geometry=True)
    zarr.open_group(tmp_path / "s", mode="a")[Unit("mag90", "gaussian_noise", 3).key()].attrs["complete"] = False
    cmp = compare_study(Study.open(tmp_path / "s"))
    assert ("mag90", "gaussian_noise", 3) not in {(r["model"], r["corruption"], r["severity"]) for r in cmp.accuracy}
    assert len(cmp.accuracy) == 20
    # Pairs use the 6 units all three models share: agreement by a plain loop over them.
    shared = [u for u in study.units(model="dense") if (u.corruption, u.severity) != ("gaussian_noise", 3)]
    same = sum(
        int(
            np.sum(
                study.read(u, "logits").argmax(1)
                == study.read(Unit("mag50", u.corruption, u.severity), "logits").argmax(1)
            )
        )
        for u in shared
    )
    pair = next(p for p in cmp.pairs if (p["model_a"], p["model_b"]) == ("dense", "mag50"))
    assert pair["agreement_all"] == pytest.approx(same / (len(shared) * 120))
    assert "gaussian_noise" in cmp.corruptions  # redundancy still uses the severities every corruption has


def test_comparison_tables_as_parquet_hold_the_csv_values(tmp_path, pyarrow_parquet):
    import csv

    pq = pyarrow_parquet
    cmp = compare_study(make_study(tmp_path / "s", geometry=True))
    csv_paths = cmp.write(tmp_path / "csv")
    pq_paths = cmp.write(tmp_path / "pq", parquet=True)
    assert sorted(p.stem for p in csv_paths) == sorted(p.stem for p in pq_paths)
    for name in ("summary", "pairs", "correlations", "distance"):
        rows = list(csv.DictReader((tmp_path / "csv" / f"{name}.csv").read_text().splitlines()))
        table = pq.read_table(tmp_path / "pq" / f"{name}.parquet").to_pylist()
        assert [list(r) for r in rows] == [list(r) for r in table]  # same columns, same order
        for a, b in zip(rows, table, strict=True):
            for key, text in a.items():
                value = b[key]
                if isinstance(value, float):
                    assert (text == "" and not np.isfinite(value)) or float(text) == pytest.approx(value)
                else:
                    assert text == str(value)


def _same(a, b) -> bool:
    """Deep equality of two field values: same types of containers, arrays by value, NaN equal to NaN."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        both = isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
        return both and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return a == b and (type(a) is bool) == (type(b) is bool)


PARAMS = {
    "reference": "mag50",
    "distance": "kappa",
    "cka_samples": 50,
    "threshold": 0.7,
    "seed": 3,
    "reference_errors": None,
    "min_reference_drop": 0.02,
}


def test_a_stored_comparison_round_trips_every_field(tmp_path):
    import dataclasses

    import zarr

    from onnx_geom.comparison import Comparison

    study = make_study(tmp_path / "s", geometry=True)
    assert study.read_comparison(**PARAMS) is None  # none stored yet
    cmp = compare_study(study, **PARAMS)
    assert cmp.parameters == PARAMS
    odd = [{"model": "x", "spearman": float("nan"), "p_value": float("inf"), "n": np.int64(3)}]
    cmp = dataclasses.replace(cmp, correlations=cmp.correlations + odd)  # NaN, inf and numpy scalars survive
    study.write_comparison(cmp)
    back = Study.open(tmp_path / "s").read_comparison(**PARAMS)
    assert isinstance(back, Comparison)
    for field in dataclasses.fields(Comparison):
        assert _same(getattr(back, field.name), getattr(cmp, field.name)), field.name
    assert all(type(edge) is tuple for edge in back.mst) and back.mst
    severities = back.samples["fragile_to_corruption"]["dense"]["gaussian_noise"]
    assert sorted(severities) == [1, 3] and all(type(s) is int for s in severities)
    # other parameters (the defaults included) find nothing
    assert study.read_comparison() is None and study.read_comparison(**{**PARAMS, "seed": 4}) is None
    # plain zarr reads the group: its arrays with dimension names, the rest in the attributes
    group = zarr.open_group(str(tmp_path / "s"), mode="r")["comparison"]
    np.testing.assert_array_equal(group["distance"][:], cmp.distance)
    np.testing.assert_array_equal(group["linkage"][:], cmp.linkage)
    assert group["distance"].metadata.dimension_names == ("model_a", "model_b")
    assert group["embedding"].metadata.dimension_names == ("model", "axis")
    assert group.attrs["parameters"] == PARAMS and group.attrs["fields"]["models"] == cmp.models
    assert sorted(group.array_keys()) == ["distance", "embedding", "linkage", "redundancy"]


def test_a_stored_comparison_goes_stale_when_the_geometry_changes(tmp_path):
    import shutil

    study = make_study(tmp_path / "s", geometry=True)
    unit = Unit("mag90", "motion_blur", 3)
    shutil.rmtree(tmp_path / "s" / unit.key() / "geometry")  # as if metrics had not reached this unit yet
    study.write_comparison(compare_study(study))
    assert study.read_comparison() is not None
    compute_metrics(study)  # adds the unit's geometry
    assert study.read_comparison() is None
    study.write_comparison(compare_study(study))
    assert len(study.read_comparison().accuracy) == 21
    # rewriting a unit drops its geometry (stale again), and new geometry is another one
    study.write_unit(Unit("dense", "new", 1), {"features": np.zeros((120, 8), np.float32)})
    assert study.read_comparison() is not None  # a unit without geometry is not part of the comparison
    compute_metrics(study)
    assert study.read_comparison() is None


def test_storing_a_comparison_needs_a_writable_study(tmp_path):
    make_study(tmp_path / "s", geometry=True)
    study = Study.open(tmp_path / "s")
    with pytest.raises(StudyError, match="read-only"):
        study.write_comparison(compare_study(study))
    assert study.read_comparison() is None and not (tmp_path / "s" / "comparison").exists()
