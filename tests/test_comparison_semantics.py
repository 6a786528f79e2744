"""What the comparison's numbers mean: conditions with no effect (a real sweep of greyscale images with
saturate), scale-free geometry, the data basis of every similarity column, the map's fidelity."""

import numpy as np
import onnx
import pytest
from _reference_math import gram_cka
from geometry_study import make_study

from onnx_geom.comparison import compare_study
from onnx_geom.metrics import compute_metrics
from onnx_geom.probe_info import ProbeInfo
from onnx_geom.store import Study, Unit


def test_saturate_on_greyscale_images_has_no_effect_and_is_left_out_of_everything(tmp_path):
    """A real sweep: two probes on greyscale images, saturate (which leaves greyscale images as they are) and
    contrast (which does not)."""
    from _probes import make_probe

    from onnx_geom.corruptions import corrupt
    from onnx_geom.sweep import sweep

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 16, 16, 1), dtype=np.uint8)
    labels = rng.integers(0, 4, 40)
    for severity in (1, 2):  # the premise, checked here: saturate does nothing to greyscale images
        np.testing.assert_array_equal(corrupt(images, "saturate", severity, rng=0), images)
        assert not np.array_equal(corrupt(images, "contrast", severity, rng=0), images)
    for seed in (1, 2):
        onnx.save(make_probe(seed=seed, shape=(16, 16, 1))[0], tmp_path / f"p{seed}.onnx")
    models = {"a": tmp_path / "p1.onnx", "b": tmp_path / "p2.onnx"}
    sweep(models, (images, labels), tmp_path / "s", corruptions=["saturate", "contrast"], severities=[1, 2],
          device="cpu")  # fmt: skip
    study = Study.open(tmp_path / "s", mode="a")
    compute_metrics(study)
    for m in ("a", "b"):  # the outputs, read here: bitwise the clean ones under saturate, not under contrast
        clean = study.read(Unit(m, "clean", 0), "logits")
        assert all(np.array_equal(study.read(Unit(m, "saturate", s), "logits"), clean) for s in (1, 2))
        assert not np.array_equal(study.read(Unit(m, "contrast", 2), "logits"), clean)
    cmp = compare_study(study, reference="a")
    row = next(r for r in cmp.corruption_status if r["corruption"] == "saturate")
    assert row["no_effect_severities"] == [1, 2] and row["group"] is None
    for name in ("mean_corruption_accuracy", "mce_extra"):
        assert row[name] == "no effect on this data"
        assert {"corruption": "saturate", "reason": "no effect on this data"} in cmp.averages[name]["excluded"]
    assert cmp.averages["mean_corruption_accuracy"]["used"] == ["contrast"]
    assert cmp.corruptions == ["contrast"]  # not clustered
    for r in cmp.summary:  # the mean over contrast only, from the stored predictions
        acc = [np.mean(study.read(Unit(r["model"], "contrast", s), "logits").argmax(1) == labels) for s in (1, 2)]
        assert r["mean_corruption_accuracy"] == pytest.approx(np.mean(acc))
    # the _all similarities use clean + contrast, not the saturate copies of the clean data
    pred = {m: np.concatenate([study.read(Unit(m, *c), "logits").argmax(1) for c in [("clean", 0), ("contrast", 1),
                                                                                   ("contrast", 2)]])
            for m in ("a", "b")}  # fmt: skip
    assert cmp.pairs[0]["agreement_all"] == pytest.approx(np.mean(pred["a"] == pred["b"]))


def test_a_no_effect_severity_of_a_corruption_with_effect_leaves_its_sums(tmp_path):
    study = make_study(tmp_path / "s")
    for m in ("dense", "mag50", "mag90"):  # motion_blur 5: the clean outputs again, for every model
        clean = Unit(m, "clean", 0)
        arrays = {k: study.read(clean, k) for k in ("features", "logits")}
        study.write_unit(Unit(m, "motion_blur", 5), arrays)
    compute_metrics(study)
    cmp = compare_study(study)
    row = next(r for r in cmp.corruption_status if r["corruption"] == "motion_blur")
    assert row["no_effect_severities"] == [5] and row["mean_corruption_accuracy"] == "used"
    assert {"corruption": "motion_blur", "severity": 5, "reason": "no effect on this data"} in cmp.averages["mce"][
        "left_out"
    ]
    labels = study.labels
    acc = {
        (m, c, s): float(np.mean(study.read(Unit(m, c, s), "logits").argmax(1) == labels))
        for m in ("dense", "mag90")
        for c, s in [("motion_blur", 1), ("motion_blur", 3), ("gaussian_noise", 1), ("gaussian_noise", 3),
                     ("defocus_blur", 1), ("defocus_blur", 3)]
    }  # fmt: skip
    ce = {}
    for c, sevs in (("motion_blur", [1, 3]), ("gaussian_noise", [1, 3]), ("defocus_blur", [1, 3])):
        ce[c] = sum(1 - acc[("mag90", c, s)] for s in sevs) / sum(1 - acc[("dense", c, s)] for s in sevs)
    mag90 = next(r for r in cmp.summary if r["model"] == "mag90")
    assert mag90["mce"] == pytest.approx(sum(ce.values()) / 3)
    assert mag90["mean_corruption_accuracy"] == pytest.approx(np.mean([v for k, v in acc.items() if k[0] == "mag90"]))
    assert "motion_blur" in cmp.corruptions  # it has an effect at severities 1 and 3: clustered


def _feature_scale_by_loops(features, labels):
    """Half the median distance between class centroids, with loops."""
    classes = sorted(set(labels.tolist()))
    centroids = {k: features[labels == k].astype(np.float64).mean(axis=0) for k in classes}
    distances = []
    for i, a in enumerate(classes):
        for b in classes[i + 1 :]:
            distances.append(float(np.sqrt(sum((x - y) ** 2 for x, y in zip(centroids[a], centroids[b], strict=True)))))
    return 0.5 * float(np.median(distances))


def test_scale_free_margin_and_distance_against_loops(tmp_path):
    study = make_study(tmp_path / "s", geometry=True)
    cmp = compare_study(study)
    labels = study.labels
    rows = {r["model"]: r for r in cmp.geometry}
    models = ("dense", "mag50", "mag90")
    scaled = {}
    for m in models:
        scale = _feature_scale_by_loops(study.read(Unit(m, "clean", 0), "features"), labels)
        assert rows[m]["scale"] == pytest.approx(scale, rel=1e-9)
        clean_length = np.median(study.read(Unit(m, "clean", 0), "geometry/length").astype(np.float64))
        margin = study.read(Unit(m, "clean", 0), "geometry/margin").astype(np.float64)
        assert rows[m]["median_margin_scaled"] == pytest.approx(np.median(margin / scale), rel=1e-6)
        units = sorted((u.corruption, u.severity) for u in study.units(model=m))
        scaled[m] = {
            "angle_true": np.concatenate([study.read(Unit(m, *u), "geometry/angle_true") for u in units]),
            "length": np.concatenate([study.read(Unit(m, *u), "geometry/length") for u in units]) / clean_length,
            "margin": np.concatenate([study.read(Unit(m, *u), "geometry/margin") for u in units]) / scale,
        }
    squares = 0.0
    for q in ("angle_true", "length", "margin"):
        pooled = np.concatenate([scaled[m][q].astype(np.float64) for m in models])
        mu, sd = pooled.mean(), pooled.std()
        squares += float(np.sum(((scaled["dense"][q] - mu) / sd - (scaled["mag50"][q] - mu) / sd) ** 2))
    pair = next(p for p in cmp.pairs if (p["model_a"], p["model_b"]) == ("dense", "mag50"))
    assert pair["geometric_distance_all"] == pytest.approx(np.sqrt(squares / (3 * len(scaled["dense"]["margin"]))))
    assert any(c["clean_geometry"] == "median_margin_scaled" for c in cmp.correlations)


def _study(path, factor):
    """Three models on the same class-structured features; model c's features times ``factor`` and its head
    divided by it (the same logits, every feature-space distance times ``factor``)."""
    rng = np.random.default_rng(5)
    n, d, k = 150, 6, 3
    labels = rng.integers(0, k, n)
    means = rng.normal(size=(k, d)) * 2
    study = Study.create(path, images=np.zeros((n, 2, 2, 3), np.uint8), labels=labels, dataset_name="toy",
                         corruptions=["fog", "snow"], severities=[1, 2])  # fmt: skip
    for name, noise in (("a", 0.6), ("b", 0.9), ("c", 1.2)):
        W = (means + rng.normal(scale=0.3, size=means.shape)).astype(np.float32)
        b = rng.normal(scale=0.1, size=k).astype(np.float32)
        scale = factor if name == "c" else 1.0
        info = ProbeInfo(W=W / np.float32(scale), b=b, input_shape=(2, 2, 3), layout="NCHW", mean=(0.0,) * 3,
                         std=(1.0,) * 3)  # fmt: skip
        study.add_model(name, info, tags={"method": "dense" if name == "a" else "x"})
        for c, s in [("clean", 0), ("fog", 1), ("fog", 2), ("snow", 1), ("snow", 2)]:
            f = means[labels] + rng.normal(scale=noise + 0.3 * s, size=(n, d))
            f = (f * scale).astype(np.float32)
            study.write_unit(Unit(name, c, s), {"features": f, "logits": f @ info.W.T + b})
    compute_metrics(study)
    return study


def test_the_scale_free_distance_ignores_a_model_s_feature_scale_the_raw_one_does_not(tmp_path):
    one, ten = compare_study(_study(tmp_path / "one", 1.0)), compare_study(_study(tmp_path / "ten", 10.0))
    for p1, p10 in zip(one.pairs, ten.pairs, strict=True):
        assert p10["geometric_distance_all"] == pytest.approx(p1["geometric_distance_all"], rel=1e-5, abs=1e-6)
        assert p10["geometric_distance_clean"] == pytest.approx(p1["geometric_distance_clean"], rel=1e-5, abs=1e-6)
        assert p10["kappa_all"] == pytest.approx(p1["kappa_all"])  # the same decisions
        if "c" in (p1["model_a"], p1["model_b"]):
            assert abs(p10["geometric_distance_raw_all"] - p1["geometric_distance_raw_all"]) > 0.1
    g1, g10 = ({r["model"]: r for r in c.geometry} for c in (one, ten))
    assert g10["c"]["scale"] == pytest.approx(10 * g1["c"]["scale"], rel=1e-5)
    assert g10["c"]["median_margin"] == pytest.approx(10 * g1["c"]["median_margin"], rel=1e-4)
    assert g10["c"]["median_margin_scaled"] == pytest.approx(g1["c"]["median_margin_scaled"], rel=1e-4)
    np.testing.assert_allclose(ten.distance, one.distance, rtol=1e-5, atol=1e-6)  # the default map's distance


def test_similarity_columns_name_their_data(tmp_path):
    study = make_study(tmp_path / "s", geometry=True)
    cmp = compare_study(study, cka_samples=1000)  # more than the 7 x 120 rows: every row of every condition
    units = sorted((u.corruption, u.severity) for u in study.units(model="dense"))
    feats = {m: np.concatenate([study.read(Unit(m, *u), "features") for u in units]) for m in ("dense", "mag90")}
    clean = {m: study.read(Unit(m, "clean", 0), "features") for m in ("dense", "mag90")}
    pair = next(p for p in cmp.pairs if (p["model_a"], p["model_b"]) == ("dense", "mag90"))
    assert pair["cka_all"] == pytest.approx(gram_cka(feats["dense"], feats["mag90"]), rel=1e-5)
    assert pair["cka_debiased_all"] == pytest.approx(gram_cka(feats["dense"], feats["mag90"], True), rel=1e-4)
    assert pair["cka_debiased_clean"] == pytest.approx(gram_cka(clean["dense"], clean["mag90"], True), rel=1e-4)
    labels = study.labels
    pred = {m: study.read(Unit(m, "clean", 0), "logits").argmax(1) for m in ("dense", "mag90")}
    assert pair["agreement_clean"] == pytest.approx(np.mean(pred["dense"] == pred["mag90"]))
    assert set(pair) >= {"kappa_clean", "kappa_all", "geometric_distance_clean", "geometric_distance_raw_all"}
    assert cmp.cka_note == ""  # 120 samples for 8 features
    few = compare_study(study, cka_samples=20)
    assert "cka_clean uses N=20 samples for features of up to D=8 dimensions" in few.cka_note
    assert "read the debiased column" in few.cka_note and labels.shape == (120,)
    q = cmp.embedding_quality
    assert q["distance"] == "geometry" and 0 < q["kept"] <= 1 and q["read_tree"] == (q["kept"] < 0.6)
    assert {"median_relative_error", "max_relative_error", "threshold"} <= set(q)


def test_published_errors_as_the_mce_reference(tmp_path):
    study = make_study(tmp_path / "s", geometry=True)
    errors = {("clean", 0): 0.1}
    for c, e in (("gaussian_noise", 0.3), ("defocus_blur", 0.4), ("motion_blur", 0.5)):
        errors.update({(c, 1): e, (c, 3): e + 0.1})
    cmp = compare_study(study, reference_errors=errors)
    assert cmp.mce_reference == "the given reference errors" and cmp.reference == "dense"
    assert cmp.parameters["reference_errors"] == sorted([c, s, e] for (c, s), e in errors.items())
    labels = study.labels
    for r in cmp.summary:
        ces = []
        for c in ("gaussian_noise", "defocus_blur", "motion_blur"):
            err = [1 - np.mean(study.read(Unit(r["model"], c, s), "logits").argmax(1) == labels) for s in (1, 3)]
            ces.append(sum(err) / (errors[(c, 1)] + errors[(c, 3)]))
        assert r["mce"] == pytest.approx(np.mean(ces))
    study.write_comparison(cmp)
    assert study.read_comparison(reference_errors=errors) is not None and study.read_comparison() is None
    from onnx_geom.errors import DataError

    del errors[("motion_blur", 3)]
    with pytest.raises(DataError, match="give motion_blur without severity 3, which the study has"):
        compare_study(study, reference_errors=errors)
