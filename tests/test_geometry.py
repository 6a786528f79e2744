"""Per-sample geometry against independent computations (onnxruntime outputs, per-sample loops, scipy)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cosine

from onnx_geom.errors import DataError
from onnx_geom.geometry import GEOMETRY_ARRAYS, sample_geometry, shifts


def _tiny_probe_outputs(rng, n=64, d_in=12, d=16, k=5):
    """Run a hand-built ONNX MLP (features = relu(x A + a), logits = Gemm(features, W, b, transB=1))."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    A = rng.normal(size=(d_in, d)).astype(np.float32)
    a = rng.normal(size=d).astype(np.float32)
    W = rng.normal(size=(k, d)).astype(np.float32)
    b = rng.normal(size=k).astype(np.float32)
    inits = [numpy_helper.from_array(v, name) for v, name in ((A, "A"), (a, "a"), (W, "W"), (b, "b"))]
    nodes = [
        helper.make_node("MatMul", ["x", "A"], ["h"]),
        helper.make_node("Add", ["h", "a"], ["pre"]),
        helper.make_node("Relu", ["pre"], ["features"]),
        helper.make_node("Gemm", ["features", "W", "b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d_in])],
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", d]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", k]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.normal(size=(n, d_in)).astype(np.float32)
    features, logits = sess.run(["features", "logits"], {"x": x})
    return features, logits, W, b


def test_logit_decomposition_on_real_onnxruntime_outputs():
    rng = np.random.default_rng(0)
    features, logits, W, b = _tiny_probe_outputs(rng)
    labels = rng.integers(0, W.shape[0], size=features.shape[0])
    g = sample_geometry(features, W, b, labels, chunk=10)
    recon = np.linalg.norm(W, axis=1)[None, :] * g["length"][:, None].astype(np.float64) * g["cos"] + b
    scale = np.abs(logits).max()
    np.testing.assert_allclose(recon, logits, atol=1e-5 * scale)
    np.testing.assert_array_equal(g["pred"], logits.argmax(axis=1))


def test_angles_and_length_match_scipy_per_sample():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(30, 7))
    W = rng.normal(size=(4, 7))
    b = rng.normal(size=4)
    y = rng.integers(0, 4, size=30)
    g = sample_geometry(f.astype(np.float32), W, b, y)
    for i in range(30):
        z = W @ f[i] + b
        p = int(np.argmax(z))
        assert g["pred"][i] == p and g["correct"][i] == (p == y[i])
        assert g["length"][i] == pytest.approx(np.sqrt(sum(v * v for v in f[i])), rel=1e-6)
        for c in range(4):
            assert g["cos"][i, c] == pytest.approx(1 - cosine(f[i], W[c]), abs=1e-6)
        assert g["angle_true"][i] == pytest.approx(np.rad2deg(np.arccos(1 - cosine(f[i], W[y[i]]))), abs=1e-3)
        assert g["angle_pred"][i] == pytest.approx(np.rad2deg(np.arccos(1 - cosine(f[i], W[p]))), abs=1e-3)


def test_margin_is_distance_to_nearest_boundary_and_sign_is_correctness():
    rng = np.random.default_rng(2)
    n, d, k = 400, 6, 5
    f = rng.normal(size=(n, d))
    W = rng.normal(size=(k, d))
    b = rng.normal(size=k)
    y = rng.integers(0, k, size=n)
    g = sample_geometry(f, W, b, y, chunk=33)
    assert 0 < g["correct"].sum() < n  # both cases present
    np.testing.assert_array_equal(g["margin"] < 0, ~g["correct"])
    np.testing.assert_array_equal(g["margin"] > 0, g["correct"])
    for i in range(n):
        # Independent route: project f onto each boundary hyperplane {x : (W_y - W_j) x + b_y - b_j = 0}.
        best = np.inf
        for j in range(k):
            if j == y[i]:
                continue
            normal = W[y[i]] - W[j]
            offset = b[y[i]] - b[j]
            foot = f[i] - (normal @ f[i] + offset) / (normal @ normal) * normal
            assert abs(normal @ foot + offset) < 1e-9
            dist = np.linalg.norm(f[i] - foot) * np.sign(normal @ f[i] + offset)
            best = min(best, dist)
        assert g["margin"][i] == pytest.approx(best, rel=1e-5, abs=1e-6)


def test_chunking_does_not_change_results_and_dtypes_follow_the_layout():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(101, 9)).astype(np.float32)
    W = rng.normal(size=(3, 9))
    b = rng.normal(size=3)
    y = rng.integers(0, 3, size=101)
    whole = sample_geometry(f, W, b, y, chunk=1000)
    for chunk in (1, 7, 100):
        part = sample_geometry(f, W, b, y, chunk=chunk)
        for key, dtype in GEOMETRY_ARRAYS.items():
            assert part[key].dtype == dtype
            if dtype == np.float32:  # BLAS may block the sums differently per chunk size
                np.testing.assert_allclose(part[key], whole[key], rtol=1e-6, atol=1e-5)
            else:
                np.testing.assert_array_equal(part[key], whole[key])
    assert whole["cos"].shape == (101, 3)


def test_zero_feature_vector_has_cosine_zero_and_finite_outputs():
    W = np.array([[1.0, 0.0], [0.0, 2.0]])
    g = sample_geometry(np.zeros((1, 2)), W, np.array([0.5, 0.0]), np.array([0]))
    assert g["length"][0] == 0 and g["angle_true"][0] == 90
    assert g["pred"][0] == 0 and g["margin"][0] == pytest.approx(0.5 / np.sqrt(5))


@pytest.mark.parametrize(
    "features, W, b, labels, words",
    [
        (np.zeros(4), np.eye(2), np.zeros(2), np.zeros(4, int), "2-D"),
        (np.zeros((4, 3)), np.eye(2), np.zeros(2), np.zeros(4, int), "(K, D=3)"),
        (np.zeros((4, 2)), np.eye(2), np.zeros(3), np.zeros(4, int), "b must"),
        (np.zeros((4, 2)), np.eye(2), np.zeros(2), np.zeros(3, int), "labels must have shape"),
        (np.zeros((4, 2)), np.eye(2), np.zeros(2), np.array([0, 1, 2, 0]), "0..1"),
        (np.zeros((4, 2)), np.eye(2), np.zeros(2), np.zeros(4), "integers"),
    ],
)
def test_bad_input_is_one_clear_data_error(features, W, b, labels, words):
    with pytest.raises(DataError) as info:
        sample_geometry(features, W, b, labels)
    assert words in str(info.value)


def test_samples_the_model_broke_on_get_nan_geometry_and_count_as_wrong():
    W, b = np.array([[1.0, 0.0], [0.0, 2.0]]), np.zeros(2)
    features = np.array([[3.0, 0.0], [np.nan, 1.0], [0.0, np.inf], [0.0, 1.0]])
    g = sample_geometry(features, W, b, np.array([0, 0, 1, 1]), chunk=3)
    assert g["correct"].tolist() == [True, False, False, True] and g["pred"].tolist() == [0, -1, -1, 1]
    for key in ("length", "angle_true", "angle_pred", "margin"):
        assert np.isnan(g[key]).tolist() == [False, True, True, False], key
    assert np.isnan(g["cos"][1:3]).all() and np.isfinite(g["cos"][[0, 3]]).all()
    assert g["length"][0] == 3 and g["margin"][3] == pytest.approx(2 / np.sqrt(5))  # z = (0, 2): gap 2, |W_1 - W_0|


def test_shifts_are_differences_against_the_reference():
    rng = np.random.default_rng(4)
    f = rng.normal(size=(50, 4))
    W = rng.normal(size=(3, 4))
    b = np.zeros(3)
    y = rng.integers(0, 3, size=50)
    ga = sample_geometry(f, W, b, y)
    gb = sample_geometry(f + rng.normal(scale=0.5, size=f.shape), W, b, y)
    s = shifts(ga, gb)
    np.testing.assert_allclose(s["delta_angle"], gb["angle_true"] - ga["angle_true"], atol=1e-5)
    np.testing.assert_allclose(s["delta_length"], gb["length"] - ga["length"], atol=1e-5)
    np.testing.assert_allclose(s["delta_margin"], gb["margin"] - ga["margin"], atol=1e-5)
    assert [bool(ga["correct"][i] != gb["correct"][i]) for i in range(50)] == s["flipped"].tolist()
    assert not shifts(ga, ga)["flipped"].any()
    with pytest.raises(DataError, match="different samples"):
        shifts(ga, {k: v[:10] for k, v in gb.items()})


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    n=st.integers(1, 30),
    d=st.integers(1, 12),
    k=st.integers(2, 8),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_properties_on_random_heads(n, d, k, seed, scale):
    rng = np.random.default_rng(seed)
    f = (rng.normal(size=(n, d)) * scale).astype(np.float32)
    W = rng.normal(size=(k, d)).astype(np.float32)
    b = rng.normal(size=k).astype(np.float32) * scale
    y = rng.integers(0, k, size=n)
    g = sample_geometry(f, W, b, y, chunk=7)
    z = f.astype(np.float64) @ W.T.astype(np.float64) + b
    recon = np.linalg.norm(W.astype(np.float64), axis=1) * g["length"][:, None].astype(np.float64) * g["cos"] + b
    np.testing.assert_allclose(recon, z, atol=1e-5 * (np.abs(z).max() + 1e-30))
    np.testing.assert_array_equal(g["margin"] < 0, ~g["correct"])
    np.testing.assert_array_equal(g["pred"], z.argmax(axis=1))
    assert (g["angle_true"] >= 0).all() and (g["angle_true"] <= 180).all()


def test_many_classes_take_the_blas_path_and_agree_with_a_loop():
    rng = np.random.default_rng(7)
    n, d, k = 50, 12, 130  # k > 64: the products go through BLAS
    f = rng.standard_normal((n, d)).astype(np.float32)
    W, b = rng.standard_normal((k, d)), rng.standard_normal(k)
    y = rng.integers(0, k, n)
    g = sample_geometry(f, W, b, y, chunk=17)
    for i in range(n):
        fi = f[i].astype(np.float64)
        z = W @ fi + b
        cos = (W @ fi) / (np.linalg.norm(W, axis=1) * np.linalg.norm(fi))
        margin = min((z[y[i]] - z[j]) / np.linalg.norm(W[y[i]] - W[j]) for j in range(k) if j != y[i])
        np.testing.assert_allclose(g["cos"][i], cos, rtol=1e-5, atol=1e-6)
        assert g["margin"][i] == pytest.approx(margin, rel=1e-5, abs=1e-6)
        assert g["pred"][i] == int(np.argmax(z))
