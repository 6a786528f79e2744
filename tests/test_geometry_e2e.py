"""Probes -> sweep (onnxruntime) -> metrics -> compare, checked against the logits onnxruntime stored."""

import numpy as np
import onnx
from _probes import make_probe, toy_corrupt

from onnx_geom.comparison import compare_study
from onnx_geom.metrics import compute_metrics
from onnx_geom.store import Study
from onnx_geom.sweep import sweep


def test_logit_decomposition_and_margin_sign_on_swept_probe_outputs(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 6, 6, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, size=40)
    for name, seed in (("a", 0), ("b", 1)):
        onnx.save(make_probe(seed=seed)[0], tmp_path / f"{name}.onnx")
    sweep(
        {"a": tmp_path / "a.onnx", "b": tmp_path / "b.onnx"},
        (images, labels),
        tmp_path / "s",
        corruptions=["gaussian_noise", "defocus_blur"],
        severities=[1, 2],
        device="cpu",
        corrupt=toy_corrupt,
    )
    study = Study.open(tmp_path / "s", mode="a")
    rows = compute_metrics(study)
    assert len(rows) == 2 * 5
    for unit in study.units():
        W, b = (x.astype(np.float64) for x in study.head(unit.model))
        logits = study.read(unit, "logits")  # written by onnxruntime
        length = study.read(unit, "geometry/length").astype(np.float64)
        cos = study.read(unit, "geometry/cos").astype(np.float64)
        recon = np.linalg.norm(W, axis=1) * length[:, None] * cos + b
        np.testing.assert_allclose(recon, logits, atol=1e-5 * np.abs(logits).max())
        correct = study.read(unit, "geometry/correct")
        sorted_logits = np.sort(logits, axis=1)
        clear = sorted_logits[:, -1] - sorted_logits[:, -2] > 1e-4 * np.abs(logits).max()  # no near-tie
        np.testing.assert_array_equal(correct[clear], (logits.argmax(1) == labels)[clear])
        np.testing.assert_array_equal((study.read(unit, "geometry/margin") < 0)[clear], ~correct[clear])
    cmp = compare_study(study)
    assert cmp.models == ["a", "b"] and len(cmp.mst) == 1
    accuracy = {(r["model"], r["corruption"], r["severity"]): r["accuracy"] for r in cmp.accuracy}
    assert accuracy[("b", "defocus_blur", 2)] == np.mean(
        study.read(
            next(u for u in study.units() if (u.model, u.corruption, u.severity) == ("b", "defocus_blur", 2)), "logits"
        ).argmax(1)
        == labels
    )
