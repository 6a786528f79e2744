"""onnx_geom.explain and the viewer's explain service without a display: sample lists, the logit decompositions
against W x + b written here, the refusals, a damaged probe file."""

from __future__ import annotations

import numpy as np
import pytest
from _probes import make_probe

from onnx_geom.errors import DataError, OnnxGeomError
from onnx_geom.explain import QUANTITIES, explanation, logit_decomposition, parse_samples
from onnx_geom.linearize import Linearizer
from onnx_geom.viewers.services import ProbeExplain


@pytest.mark.parametrize(
    "text, n, expected",
    [("0,5,9", 10, [0, 5, 9]), ("3-5, 1,4", 10, [3, 4, 5, 1]), (" 7 ", 8, [7]), ("2-2", 3, [2])],
)
def test_samples_are_indices_and_inclusive_ranges_in_the_order_given(text, n, expected):
    assert parse_samples(text, n).tolist() == expected


@pytest.mark.parametrize(
    "text, needle", [("5-3", "like 0,5,9"), ("", "like 0,5,9"), ("-1", "like 0,5,9"), ("1,,2", "like 0,5,9"),
                     ("0-10", "sample 10 is out of range"), ("a", "like 0,5,9")],
)  # fmt: skip
def test_bad_sample_lists_are_one_sentence(text, needle):
    with pytest.raises(DataError, match=needle) as info:
        parse_samples(text, 10)
    assert "\n" not in str(info.value) and str(info.value).endswith(".")


def test_the_five_quantities_add_up_and_the_logits_are_w_x_plus_b():
    model, weights = make_probe(seed=3, shape=(6, 6, 3), features=8, classes=4)
    images = np.random.default_rng(0).integers(0, 256, (5, 6, 6, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 1])
    res = Linearizer(model, device="cpu")(images, labels)
    exp = explanation(res, images)
    assert set(exp.quantities) == set(QUANTITIES) and exp.kind == "exact local linear map"
    # the logits from the probe's own weights, in numpy: features = relu((x / 255) in NCHW order @ A)
    x = images.astype(np.float64).transpose(0, 3, 1, 2).reshape(5, -1) / 255
    f = np.maximum(x @ weights["A"].astype(np.float64), 0)
    z = f @ weights["W"].T.astype(np.float64) + weights["b"]
    np.testing.assert_array_equal(exp.predicted, z.argmax(1))
    for name, k in (("true_logit", labels), ("predicted_logit", z.argmax(1))):
        part = exp.quantities[name]
        np.testing.assert_allclose(part.value, z[np.arange(5), k], rtol=1e-5, atol=1e-5)
        total = part.map.reshape(5, -1).sum(1, dtype=np.float64) + part.bias
        np.testing.assert_allclose(total, part.value, rtol=1e-5, atol=1e-5)
        assert part.residual.max() < 1e-6
    for name in ("margin", "cos", "length"):
        part = exp.quantities[name]
        np.testing.assert_allclose(part.map.reshape(5, -1).sum(1, dtype=np.float64) + part.bias, part.value, atol=1e-5)
    np.testing.assert_allclose(exp.quantities["length"].value, np.linalg.norm(f, axis=1), rtol=1e-5)
    # one logit by hand: W[s, k] * x summed, plus b[s, k]
    one = logit_decomposition(res, images[:1], [2])
    assert one.value[0] == pytest.approx(z[0, 2], rel=1e-5)


def test_an_explanation_needs_the_logits_with_their_geometry():
    model, _ = make_probe(seed=1)
    images = np.zeros((2, 6, 6, 3), np.uint8)
    with pytest.raises(DataError, match="geometry=True"):
        explanation(Linearizer(model, device="cpu", output="features")(images), images)
    with pytest.raises(DataError, match="geometry=True"):
        explanation(Linearizer(model, device="cpu", geometry=False)(images), images)


def test_the_probe_service_says_why_a_model_cannot_be_explained(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an onnx model")
    service = ProbeExplain({"m": bad}, {"gone": "probe file /x.onnx is not available on this machine"})
    assert service.unavailable("m") is None and "not available" in service.unavailable("gone")
    assert service.unavailable("other") == "the study does not name a probe file for model other"
    with pytest.raises(OnnxGeomError) as info:
        service("m", np.zeros((1, 6, 6, 3), np.uint8), np.array([0]))
    assert "\n" not in str(info.value).strip() and "bad.onnx" in str(info.value)
    with pytest.raises(OnnxGeomError, match="not available"):
        service("gone", np.zeros((1, 6, 6, 3), np.uint8), np.array([0]))
    assert service.builds == 0
