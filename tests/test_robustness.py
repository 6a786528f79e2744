"""Accuracy tables, mCE, corruption redundancy and sample sets against hand-worked values and loops."""

import numpy as np
import pytest

from onnx_geom.errors import DataError
from onnx_geom.robustness import (
    accuracy_table,
    corruption_effects,
    corruption_redundancy,
    geometry_and_robustness,
    no_effect_conditions,
    robustness_summary,
    sample_sets,
)


def _table(acc):
    return [{"model": m, "corruption": c, "severity": s, "accuracy": a} for (m, c, s), a in acc.items()]


def test_summary_and_mce_hand_worked():
    acc = {
        ("ref", "clean", 0): 0.9,
        ("ref", "fog", 1): 0.8,
        ("ref", "fog", 2): 0.6,
        ("ref", "snow", 1): 0.5,
        ("ref", "snow", 2): 0.5,
        ("p", "clean", 0): 0.8,
        ("p", "fog", 1): 0.8,
        ("p", "fog", 2): 0.7,
        ("p", "snow", 1): 0.4,
        ("p", "snow", 2): 0.2,
    }
    rows = {r["model"]: r for r in robustness_summary(_table(acc), reference="ref")}
    # p: mean corruption accuracy (0.8 + 0.7 + 0.4 + 0.2) / 4 = 0.525; drop (0.8 - 0.525) / 0.8
    assert rows["p"]["mean_corruption_accuracy"] == pytest.approx(0.525)
    assert rows["p"]["relative_drop"] == pytest.approx(0.34375)
    # CE_fog = (0.2 + 0.3) / (0.2 + 0.4) = 5/6; CE_snow = (0.6 + 0.8) / (0.5 + 0.5) = 1.4
    assert rows["p"]["mce"] == pytest.approx((5 / 6 + 1.4) / 2)
    assert rows["ref"]["mce"] == pytest.approx(1.0)
    # relative CE: fog (0.0 + 0.1) / (0.1 + 0.3) = 0.25; snow 1.25; but two corruptions are too few (5 needed)
    assert np.isnan(rows["p"]["relative_mce"])
    # spatter is a held-out extra: its CE is reported apart, not in mCE
    acc.update({("ref", "spatter", 1): 0.9, ("ref", "spatter", 2): 0.7, ("p", "spatter", 1): 0.7})
    acc[("p", "spatter", 2)] = 0.7
    rows = {r["model"]: r for r in robustness_summary(_table(acc), reference="ref")}
    assert rows["p"]["mce"] == pytest.approx((5 / 6 + 1.4) / 2)
    assert rows["p"]["mce_extra"] == pytest.approx(0.6 / 0.4)  # (0.3 + 0.3) / (0.1 + 0.3)
    assert "mce" not in robustness_summary(_table(acc))[0]  # no reference: no mCE
    with pytest.raises(DataError, match="reference model 'x'"):
        robustness_summary(_table(acc), reference="x")


def test_accuracy_table_counts():
    rng = np.random.default_rng(0)
    correct = {("m", c, s): rng.random(33) < 0.6 for c, s in [("clean", 0), ("fog", 2), ("fog", 1)]}
    rows = accuracy_table(correct)
    assert [(r["corruption"], r["severity"]) for r in rows] == [("clean", 0), ("fog", 1), ("fog", 2)]
    for r in rows:
        assert r["accuracy"] == sum(correct[("m", r["corruption"], r["severity"])]) / 33


def test_sample_sets_against_loops():
    rng = np.random.default_rng(1)
    n = 200
    keys = [(m, c, s) for m in ("dense", "p50", "p90") for c, s in [("clean", 0), ("fog", 1), ("fog", 3), ("snow", 1)]]
    correct = {k: rng.random(n) < 0.85 for k in keys}
    sets = sample_sets(correct, reference="dense")
    assert sets["robust"] == [i for i in range(n) if all(correct[k][i] for k in keys)]
    for m in ("dense", "p50", "p90"):
        assert sets["robust_for"][m] == [i for i in range(n) if all(correct[k][i] for k in keys if k[0] == m)]
    for m in ("p50", "p90"):
        want = [i for i in range(n) if correct[("dense", "clean", 0)][i] and not correct[(m, "clean", 0)][i]]
        assert sets["fragile_to_pruning"][m] == want
    assert "dense" not in sets["fragile_to_pruning"]
    for m, c, s in keys:
        if c != "clean":
            want = [i for i in range(n) if correct[(m, "clean", 0)][i] and not correct[(m, c, s)][i]]
            assert sets["fragile_to_corruption"][m][c][s] == want
    counted = {(r["model"], r["kind"], r["corruption"], r["severity"]): r["count"] for r in sets["counts"]}
    assert counted[("*", "robust", "*", -1)] == len(sets["robust"])
    assert counted[("p50", "robust", "*", -1)] == len(sets["robust_for"]["p50"])
    assert counted[("p90", "fragile_to_corruption", "fog", 3)] == len(sets["fragile_to_corruption"]["p90"]["fog"][3])
    with pytest.raises(DataError, match="no clean unit"):
        sample_sets({("a", "fog", 1): np.ones(3, bool)}, reference="a")


def test_redundancy_groups_blurs_and_noises():
    rng = np.random.default_rng(2)
    n, models, sevs = 300, ["a", "b"], [1, 2]
    blur_base = {(m, s): rng.random(n) for m in models for s in sevs}
    noise_base = {(m, s): rng.random(n) for m in models for s in sevs}
    correct = {(m, "clean", 0): np.ones(n, bool) for m in models}
    for name, base in [
        ("defocus_blur", blur_base),
        ("motion_blur", blur_base),
        ("zoom_blur", blur_base),
        ("gaussian_noise", noise_base),
        ("shot_noise", noise_base),
    ]:
        for m in models:
            for s in sevs:
                correct[(m, name, s)] = base[(m, s)] + 0.1 * rng.random(n) > 0.5
    effects = corruption_effects(correct)
    assert len(effects["zoom_blur"]) == n * 4
    # each (model, severity) block of flips (clean right -> wrong = +1) standardised, laid end to end in sorted
    # (model, severity) order
    blocks = [1.0 - correct[(m, "zoom_blur", s)] for m in sorted(models) for s in sevs]
    np.testing.assert_allclose(
        effects["zoom_blur"], np.concatenate([(x - x.mean()) / x.std() for x in blocks]), rtol=1e-6
    )
    red = corruption_redundancy(effects)
    groups = {g["name"]: g["members"] for g in red["groups"]}
    assert groups == {"blur": ["defocus_blur", "motion_blur", "zoom_blur"], "noise": ["gaussian_noise", "shot_noise"]}
    S, names = red["similarity"], red["corruptions"]
    i, j = names.index("defocus_blur"), names.index("motion_blur")
    assert S[i, j] == pytest.approx(np.corrcoef(effects["defocus_blur"], effects["motion_blur"])[0, 1])
    assert red["linkage"].shape == (len(names) - 1, 4)
    assert sorted(corruption_effects(correct, exclude=["zoom_blur"])) == [
        "defocus_blur", "gaussian_noise", "motion_blur", "shot_noise"
    ]  # fmt: skip


def _pearson(x, y):
    """Pearson correlation by sums."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / (sxx * syy) ** 0.5


def test_redundancy_is_about_flips_not_about_hard_samples():
    """fog and snow flip the same samples the same way; contrast flips others. Correctness alone (mostly how
    hard each sample is) would call all three alike; the flips tell them apart."""
    rng = np.random.default_rng(7)
    n, models, sevs = 400, ["a", "b"], [1, 2]
    correct = {}
    for m in models:
        clean = rng.random(n) > 0.3  # 30% of the samples are hard: wrong already on clean data
        correct[(m, "clean", 0)] = clean
        for s in sevs:
            first, second = rng.choice(n, 24 * s, replace=False), rng.choice(n, 24 * s, replace=False)
            for name, flipped in (("fog", first), ("snow", first), ("contrast", second)):
                v = clean.copy()
                v[flipped] = ~v[flipped]  # right -> wrong and wrong -> right
                correct[(m, name, s)] = v
    effects = corruption_effects(correct)
    red = corruption_redundancy(effects)
    assert [g["members"] for g in red["groups"]] == [["fog", "snow"], ["contrast"]]
    # the flip vectors by hand: +1 right -> wrong, -1 wrong -> right, 0 unchanged; each block standardised
    vec = {}
    for name in ("contrast", "fog", "snow"):
        parts = []
        for m in models:
            for s in sevs:
                block = [int(c) - int(x) for c, x in zip(correct[(m, "clean", 0)], correct[(m, name, s)], strict=True)]
                mu = sum(block) / n
                sd = (sum((v - mu) ** 2 for v in block) / n) ** 0.5
                parts += [(v - mu) / sd for v in block]
        vec[name] = parts
    names = red["corruptions"]
    S = red["similarity"]
    for x, y in (("fog", "snow"), ("fog", "contrast"), ("snow", "contrast")):
        assert S[names.index(x), names.index(y)] == pytest.approx(_pearson(vec[x], vec[y]), abs=1e-6)
    assert S[names.index("fog"), names.index("snow")] == pytest.approx(1.0)
    assert abs(S[names.index("fog"), names.index("contrast")]) < 0.2
    # plain correctness, by hand: fog and contrast look alike (the hard samples dominate)
    plain = {name: np.concatenate([correct[(m, name, s)] for m in models for s in sevs]).astype(float).tolist()
             for name in ("fog", "contrast")}  # fmt: skip
    assert _pearson(plain["fog"], plain["contrast"]) > 0.6


def test_no_effect_conditions_are_those_every_model_leaves_unchanged():
    unchanged = {("a", "saturate", 1): True, ("b", "saturate", 1): True, ("a", "saturate", 2): True,
                 ("b", "saturate", 2): False, ("a", "clean", 0): True}  # fmt: skip
    assert no_effect_conditions(unchanged) == {("saturate", 1)}


def _spearman_by_hand(x, y):
    """Pearson correlation of the ranks (no ties in the data below), with numpy only."""
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def test_clean_geometry_beside_the_drop_and_its_rank_correlation():
    rng = np.random.default_rng(4)
    clean, summary = {}, []
    for m in range(7):
        margin, length = rng.normal(5 + m, 1, 200), rng.gamma(4 + m, 2, 200)
        clean[f"m{m}"] = {"margin": margin, "length": length, "angle_true": rng.uniform(40, 100, 200)}
        summary.append({"model": f"m{m}", "relative_drop": float(rng.uniform(0, 0.2))})
    summary.append({"model": "no_clean", "relative_drop": 0.5})  # ignored: no clean geometry
    per_model, correlations = geometry_and_robustness(clean, summary)
    assert [r["model"] for r in per_model] == sorted(clean)
    for r in per_model:
        g = clean[r["model"]]
        assert r["median_margin"] == pytest.approx(
            sorted(g["margin"])[99:101][0] / 2 + sorted(g["margin"])[99:101][1] / 2
        )
        assert r["mean_length"] == pytest.approx(sum(g["length"]) / 200)
        assert r["mean_angle_true"] == pytest.approx(sum(g["angle_true"]) / 200)
    drop = [next(s["relative_drop"] for s in summary if s["model"] == r["model"]) for r in per_model]
    for c in correlations:
        x = [r[c["clean_geometry"]] for r in per_model]
        assert c["models"] == 7 and c["spearman"] == pytest.approx(_spearman_by_hand(x, drop))
        assert 0 <= c["p_value"] <= 1


def test_rank_correlation_is_undefined_below_three_models_or_without_corruptions():
    clean = {
        m: {"margin": np.ones(3) * v, "length": np.ones(3) * v, "angle_true": np.ones(3) * v}
        for m, v in [("a", 1.0), ("b", 2.0)]
    }
    _, correlations = geometry_and_robustness(
        clean, [{"model": "a", "relative_drop": 0.1}, {"model": "b", "relative_drop": 0.2}]
    )
    assert all(np.isnan(c["spearman"]) and c["models"] == 2 for c in correlations)
    clean["c"] = clean["a"]
    nan_drop = [{"model": m, "relative_drop": float("nan")} for m in "abc"]  # a study with no corruption
    assert all(c["models"] == 0 and np.isnan(c["spearman"]) for c in geometry_and_robustness(clean, nan_drop)[1])
