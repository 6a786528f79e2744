"""CKA, kappa, agreement, geometric distance, MDS and MST against independent computations."""

import itertools

import numpy as np
import pytest
from _reference_math import gram_cka, song_unbiased_hsic
from scipy.stats import ortho_group
from sklearn.metrics import cohen_kappa_score

from onnx_geom.errors import DataError
from onnx_geom.similarity import (
    agreement,
    cka_matrices,
    cka_matrix,
    classical_mds,
    cohen_kappa,
    geometric_distance,
    geometric_vectors,
    linear_cka,
    mds_quality,
    minimum_spanning_tree,
)


def kornblith_debiased_cka(X, Y):
    """Debiased CKA the way Kornblith et al.'s notebook does it: U-centred Grams (Szekely), then cosine."""

    def ucenter(G):
        G = G.copy()
        n = G.shape[0]
        np.fill_diagonal(G, 0)
        means = G.sum(0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        G -= means[:, None]
        G -= means[None, :]
        np.fill_diagonal(G, 0)
        return G

    K, L = ucenter(X @ X.T), ucenter(Y @ Y.T)
    return (K.ravel() @ L.ravel()) / np.sqrt((K.ravel() @ K.ravel()) * (L.ravel() @ L.ravel()))


@pytest.fixture
def reps():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 10)) + 3.0
    Y = np.tanh(X @ rng.normal(size=(10, 7))) + rng.normal(scale=0.3, size=(60, 7))
    return X, Y


def test_cka_equals_the_gram_matrix_form(reps):
    X, Y = reps
    assert linear_cka(X, Y) == pytest.approx(gram_cka(X, Y), rel=1e-10)
    assert linear_cka(X, Y, chunk=7) == pytest.approx(gram_cka(X, Y), rel=1e-10)


def test_debiased_cka_equals_two_gram_forms(reps):
    X, Y = reps
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    song = song_unbiased_hsic(X @ X.T, Y @ Y.T) / np.sqrt(
        song_unbiased_hsic(X @ X.T, X @ X.T) * song_unbiased_hsic(Y @ Y.T, Y @ Y.T)
    )
    assert linear_cka(X, Y, debiased=True) == pytest.approx(song, rel=1e-8)
    assert linear_cka(X, Y, debiased=True) == pytest.approx(kornblith_debiased_cka(Xc, Yc), rel=1e-8)
    assert linear_cka(X, Y, debiased=True) != pytest.approx(linear_cka(X, Y), rel=1e-3)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_invariances_and_identity(reps, debiased):
    X, Y = reps
    Q = ortho_group.rvs(X.shape[1], random_state=1)
    base = linear_cka(X, Y, debiased=debiased)
    assert linear_cka(X @ Q, Y, debiased=debiased) == pytest.approx(base, rel=1e-9)
    assert linear_cka(X * 17.5, Y * 0.01, debiased=debiased) == pytest.approx(base, rel=1e-9)
    assert linear_cka(X, X, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(X + 100.0, Y, debiased=debiased) == pytest.approx(base, rel=1e-7)
    # Not invariant to anisotropic scaling: the check above can fail.
    S = np.diag(np.linspace(0.1, 10, X.shape[1]))
    assert linear_cka(X @ S, Y, debiased=debiased) != pytest.approx(base, rel=1e-3)


def test_cka_matrix_matches_pairwise_linear_cka(reps):
    X, Y = reps
    Z = np.random.default_rng(3).normal(size=(60, 4))
    M = cka_matrix([X.astype(np.float32), Y, Z], chunk=16)
    for (i, A), (j, B) in itertools.product(enumerate([X, Y, Z]), repeat=2):
        assert M[i, j] == pytest.approx(gram_cka(A, B), rel=1e-5)


def test_cka_bad_input():
    with pytest.raises(DataError, match="same samples"):
        linear_cka(np.zeros((5, 2)), np.zeros((6, 2)))
    with pytest.raises(DataError, match="at least 4"):
        linear_cka(np.ones((3, 2)), np.ones((3, 2)), debiased=True)
    assert np.isnan(linear_cka(np.ones((5, 2)), np.arange(10.0).reshape(5, 2)))


def test_kappa_hand_worked_examples():
    # 10 samples: both right 4, only a right 2, only b right 1, both wrong 3.
    a = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    b = [1, 1, 1, 1, 0, 0, 1, 0, 0, 0]
    # p_obs = 7/10; acc 0.6 and 0.5; p_exp = 0.6*0.5 + 0.4*0.5 = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    # Complement: p_obs = 0, p_exp = 0.6*0.4 + 0.4*0.6 = 0.48, kappa = -0.48 / 0.52.
    assert cohen_kappa(a, [1 - v for v in a]) == pytest.approx(-0.48 / 0.52)
    assert cohen_kappa([1, 1, 0, 0], [0, 0, 1, 1]) == pytest.approx(-1.0)
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) == 1.0  # constant and equal: convention


def test_kappa_matches_sklearn_on_random_correctness():
    rng = np.random.default_rng(5)
    for _ in range(20):
        a = rng.random(200) < rng.random()
        b = rng.random(200) < rng.random()
        if len(set(a)) == 1 and len(set(b)) == 1:
            continue
        assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_agreement():
    assert agreement([0, 1, 2, 3, 4], [0, 1, 9, 3, 0]) == pytest.approx(3 / 5)
    with pytest.raises(DataError, match="same length"):
        agreement([1, 2], [1])


def _geom(rng, n):
    return {"angle_true": rng.uniform(0, 180, n), "length": rng.uniform(1, 10, n), "margin": rng.normal(size=n)}


def test_geometric_distance_against_explicit_standardisation():
    rng = np.random.default_rng(6)
    geoms = [_geom(rng, 40) for _ in range(4)]
    D = geometric_distance(geoms)
    pooled = {q: np.concatenate([g[q] for g in geoms]) for q in ("angle_true", "length", "margin")}
    for i, j in itertools.product(range(4), repeat=2):
        total = 0.0
        for q, values in pooled.items():
            mu, sd = values.mean(), values.std()
            total += sum(((geoms[i][q][s] - mu) / sd - (geoms[j][q][s] - mu) / sd) ** 2 for s in range(40))
        assert D[i, j] == pytest.approx(np.sqrt(total / 120), abs=1e-9)
    assert geometric_vectors(geoms).shape == (4, 120)
    with pytest.raises(DataError, match="lacks 'margin'"):
        geometric_distance([{"angle_true": np.zeros(2), "length": np.zeros(2)}])


def test_classical_mds_recovers_euclidean_configurations():
    rng = np.random.default_rng(7)
    for dim in (1, 2, 3):
        P = rng.normal(size=(8, dim))
        D = np.linalg.norm(P[:, None] - P[None], axis=-1)
        Y = classical_mds(D, k=dim)
        np.testing.assert_allclose(np.linalg.norm(Y[:, None] - Y[None], axis=-1), D, atol=1e-9)
    assert classical_mds(np.zeros((1, 1))).shape == (1, 2)
    with pytest.raises(DataError, match="symmetric"):
        classical_mds(np.array([[0.0, 1.0], [2.0, 0.0]]))


def _brute_force_mst_weight(D):
    M = D.shape[0]
    edges = list(itertools.combinations(range(M), 2))
    best = np.inf
    for tree in itertools.combinations(edges, M - 1):
        parent = list(range(M))

        def root(i, parent=parent):
            while parent[i] != i:
                i = parent[i]
            return i

        ok = True
        for i, j in tree:
            ri, rj = root(i), root(j)
            if ri == rj:
                ok = False
                break
            parent[ri] = rj
        if ok:
            best = min(best, sum(D[i, j] for i, j in tree))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_mst_has_m_minus_1_edges_and_is_minimal(seed):
    rng = np.random.default_rng(seed)
    M = 6
    P = rng.normal(size=(M, 3))
    D = np.linalg.norm(P[:, None] - P[None], axis=-1) if seed % 2 else rng.integers(1, 5, size=(M, M)).astype(float)
    D = np.triu(D, 1)
    D = D + D.T
    edges = minimum_spanning_tree(D)
    assert len(edges) == M - 1
    assert all(i < j and w == D[i, j] for i, j, w in edges)
    assert len({i for e in edges for i in e[:2]}) == M
    assert sum(w for _, _, w in edges) == pytest.approx(_brute_force_mst_weight(D))


def test_mst_keeps_zero_distance_edges():
    D = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, 3.0], [2.0, 3.0, 0.0]])
    assert minimum_spanning_tree(D) == [(0, 1, 0.0), (0, 2, 2.0)]


def test_debiased_cka_matrix_matches_the_u_centred_gram_form(reps):
    X, Y = reps
    Z = np.random.default_rng(5).normal(size=(60, 4))
    both = cka_matrices([X, Y, Z], chunk=7)
    for (i, a), (j, b) in itertools.combinations(enumerate([X, Y, Z]), 2):
        assert both["debiased"][i, j] == pytest.approx(kornblith_debiased_cka(a, b), rel=1e-5, abs=1e-7)
        assert both["biased"][i, j] == pytest.approx(gram_cka(a, b), rel=1e-5)
    np.testing.assert_allclose(np.diag(both["debiased"]), 1.0)
    np.testing.assert_array_equal(cka_matrix([X, Y, Z], debiased=True, chunk=7), both["debiased"])
    assert np.isnan(cka_matrices([X[:3], Y[:3]])["debiased"]).all()  # under 4 samples: undefined


def test_mds_quality_against_a_numpy_eigendecomposition():
    rng = np.random.default_rng(11)
    P = rng.normal(size=(9, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2])  # a 5-D configuration, seen in 2-D
    D = np.linalg.norm(P[:, None] - P[None], axis=-1)
    D[0, 1] = D[1, 0] = D[0, 1] * 1.5  # and not quite Euclidean: negative eigenvalues
    Y = classical_mds(D)
    q = mds_quality(D, Y)
    M = len(D)
    J = np.eye(M) - np.ones((M, M)) / M
    lam = np.sort(np.linalg.eig(-0.5 * J @ (D**2) @ J)[0].real)[::-1]
    assert lam[-1] < -1e-9  # the test's premise: some negative mass
    positive = lam[lam > 1e-12]
    assert q["kept"] == pytest.approx(positive[:2].sum() / positive.sum(), rel=1e-9)
    errors = []
    for i in range(M):
        for j in range(i + 1, M):
            errors.append(abs(float(np.hypot(*(Y[i] - Y[j]))) - D[i, j]) / D[i, j])
    assert q["median_relative_error"] == pytest.approx(float(np.median(errors)))
    assert q["max_relative_error"] == pytest.approx(max(errors))
    assert q["read_tree"] == (q["kept"] < 0.6)
    flat = mds_quality(D[:2, :2], classical_mds(D[:2, :2]))  # two models: a line keeps everything
    assert flat["kept"] == pytest.approx(1.0) and flat["max_relative_error"] < 1e-9 and not flat["read_tree"]


def test_cka_matrices_in_batches_of_pairs_equal_all_pairs_at_once(monkeypatch):
    """Many models with wide features: the cross-products are taken a batch of pairs at a time (memory bounded
    whatever M and D); the values do not depend on the batching."""
    from onnx_geom import similarity

    rng = np.random.default_rng(7)
    feats = [rng.normal(size=(60, d)) for d in (5, 9, 3, 7)]
    whole = similarity.cka_matrices(feats)
    monkeypatch.setattr(similarity, "CROSS_BYTES", 1)  # one pair per batch
    assert len(similarity._pair_batches([(i, j) for i in range(4) for j in range(i, 4)], [5, 9, 3, 7])) == 10
    batched = similarity.cka_matrices(feats)
    for key in ("biased", "debiased"):
        np.testing.assert_allclose(batched[key], whole[key], rtol=1e-12)
    np.testing.assert_allclose(
        batched["debiased"][0, 1], similarity.linear_cka(feats[0], feats[1], debiased=True), rtol=1e-5
    )
