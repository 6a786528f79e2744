"""How alike two models are on the same samples, and a map of many models.

Linear CKA on features (feature-space form, never an N x N Gram), error consistency (Cohen's kappa on
per-sample correctness), prediction agreement, the distance between models' per-sample geometric vectors, a
classical-MDS embedding of a distance matrix and its minimum spanning tree.

>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 8)); Q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
>>> round(linear_cka(X, 3.0 * X @ Q), 6)
1.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from onnx_geom.errors import DataError

__all__ = [
    "GEOMETRIC_QUANTITIES",
    "MAP_KEEPS_ENOUGH",
    "SCALE_FREE_QUANTITIES",
    "agreement",
    "cka_matrices",
    "cka_matrix",
    "classical_mds",
    "cohen_kappa",
    "geometric_distance",
    "geometric_vectors",
    "linear_cka",
    "mds_quality",
    "minimum_spanning_tree",
]

#: The per-sample quantities that make up a model's geometric vector (keys of the geometry group): raw units.
GEOMETRIC_QUANTITIES = ("angle_true", "length", "margin")
#: The scale-free quantities (:func:`onnx_geom.geometry.scale_free`) of the default geometric distance.
SCALE_FREE_QUANTITIES = ("angle_true", "length_scaled", "margin_scaled")
#: Below this fraction of the distances kept (:func:`mds_quality`), a 2-D model map is read through its tree.
MAP_KEEPS_ENOUGH = 0.6


def _as_2d(name: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise DataError(f"{name} must be a 2-D array (N, D), got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{name} must hold numbers, got dtype {array.dtype}.")
    return array


def _moments(X: np.ndarray, Y: np.ndarray, chunk: int) -> dict[str, np.ndarray]:
    """Centred cross-products ``Xc^T Xc``, ``Yc^T Yc``, ``Yc^T Xc`` (float64), a chunk of rows at a time."""
    mx = X.mean(axis=0, dtype=np.float64)
    my = Y.mean(axis=0, dtype=np.float64)
    xx = np.zeros((X.shape[1],) * 2)
    yy = np.zeros((Y.shape[1],) * 2)
    yx = np.zeros((Y.shape[1], X.shape[1]))
    for start in range(0, X.shape[0], chunk):
        xc = np.asarray(X[start : start + chunk], np.float64) - mx
        yc = np.asarray(Y[start : start + chunk], np.float64) - my
        xx += xc.T @ xc
        yy += yc.T @ yc
        yx += yc.T @ xc
    return {"xx": xx, "yy": yy, "yx": yx}


def _unbiased_hsic_terms(A: np.ndarray, B: np.ndarray, cross: np.ndarray) -> float:
    """Unbiased HSIC (Song et al. 2012) of the linear kernels of A (N, Da), B (N, Db), in feature space.

    ``cross`` is ``B^T A`` (Db, Da). With ``K = A A^T``, ``L = B B^T`` and zeroed diagonals:
    ``[tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))``, every term O(N D).
    """
    n = A.shape[0]
    ka = np.einsum("ij,ij->i", A, A)  # diag K
    lb = np.einsum("ij,ij->i", B, B)  # diag L
    sa, sb = A.sum(axis=0), B.sum(axis=0)
    trace = float(np.sum(cross * cross) - ka @ lb)
    k1 = A @ sa - ka  # K~ 1
    l1 = B @ sb - lb  # L~ 1
    sum_k, sum_l = float(sa @ sa - ka.sum()), float(sb @ sb - lb.sum())
    return (trace + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(k1 @ l1)) / (n * (n - 3))


def linear_cka(X: np.ndarray, Y: np.ndarray, *, debiased: bool = False, chunk: int = 8192) -> float:
    """Linear centred kernel alignment between two representations of the same N samples.

    >>> X = np.arange(12.0).reshape(6, 2) ** 2
    >>> round(linear_cka(X, X), 12), round(linear_cka(X, -2 * X, debiased=True), 12)
    (1.0, 1.0)

    ``X``: (N, D1), ``Y``: (N, D2). Feature-space form (Kornblith et al. 2019): with centred ``Xc``, ``Yc``,
    ``CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``, O(N D^2) time and O(D^2) memory, accumulated in
    float64 over chunks of rows; it never forms an N x N Gram matrix. ``debiased=True`` uses the unbiased
    HSIC estimator (Song et al. 2012) of each term instead (needs N >= 4; may be slightly negative).
    Returns NaN when one representation is constant (its self-similarity is 0).
    """
    X, Y = _as_2d("X", X), _as_2d("Y", Y)
    if X.shape[0] != Y.shape[0]:
        raise DataError(f"X and Y must describe the same samples, got {X.shape[0]} and {Y.shape[0]} rows.")
    if debiased:
        if X.shape[0] < 4:
            raise DataError(f"debiased CKA needs at least 4 samples, got {X.shape[0]}.")
        # The estimator is translation invariant; centring first only helps float accuracy.
        Xc = np.asarray(X, np.float64) - X.mean(axis=0, dtype=np.float64)
        Yc = np.asarray(Y, np.float64) - Y.mean(axis=0, dtype=np.float64)
        m = _moments(Xc, Yc, chunk)
        hxy = _unbiased_hsic_terms(Xc, Yc, m["yx"])
        hxx = _unbiased_hsic_terms(Xc, Xc, m["xx"])
        hyy = _unbiased_hsic_terms(Yc, Yc, m["yy"])
    else:
        m = _moments(X, Y, chunk)
        hxy, hxx, hyy = (float(np.sum(m[key] ** 2)) for key in ("yx", "xx", "yy"))
    denom = np.sqrt(hxx * hyy) if hxx > 0 and hyy > 0 else 0.0
    return float(hxy / denom) if denom > 0 else float("nan")


def cka_matrix(features: Sequence[np.ndarray], *, debiased: bool = False, chunk: int = 2048) -> np.ndarray:
    """Linear CKA between every pair of M representations of the same samples: (M, M), 1 on the diagonal.

    >>> rng = np.random.default_rng(1); X = rng.normal(size=(50, 4))
    >>> float(cka_matrix([X, 2 * X, rng.normal(size=(50, 3))])[0, 1].round(6))
    1.0

    ``features``: M arrays (N, D_m). Each is centred once; the cross-products are float32 BLAS products over
    chunks of ``chunk`` rows summed in float64, a batch of pairs at a time (at most :data:`CROSS_BYTES` of them
    held), so memory does not grow with M^2 D^2. Same value as :func:`linear_cka` to about 1e-6. ``debiased=True``: the unbiased HSIC estimator
    (Song et al. 2012) in each term, as ``linear_cka(..., debiased=True)`` (needs N >= 4);
    :func:`cka_matrices` gives both from the same pass.
    """
    return cka_matrices(features, chunk=chunk, debiased=debiased)["debiased" if debiased else "biased"]


def cka_matrices(features: Sequence[np.ndarray], *, chunk: int = 2048, debiased: bool = True) -> dict[str, np.ndarray]:
    """:func:`cka_matrix` and, with ``debiased`` (and N >= 4; else NaN), its debiased form from the same
    cross-products: ``{"biased": (M, M), "debiased": (M, M)}``.

    >>> rng = np.random.default_rng(1); X = rng.normal(size=(50, 4))
    >>> {k: float(v[0, 1].round(6)) for k, v in cka_matrices([X, -X]).items()}
    {'biased': 1.0, 'debiased': 1.0}
    """
    mats = [_as_2d(f"features[{i}]", f) for i, f in enumerate(features)]
    if len({m.shape[0] for m in mats}) > 1:
        raise DataError("every representation must describe the same samples (same number of rows).")
    n = mats[0].shape[0] if mats else 0
    means = [m.mean(axis=0, dtype=np.float64).astype(np.float32) for m in mats]
    M = len(mats)
    sums = [np.zeros(m.shape[1]) for m in mats]  # column sums of the centred features (debiased)
    diag = [np.zeros(n) for _ in mats]  # diag K = ||x_i||^2 of the centred rows (debiased)
    for start in range(0, n, chunk):
        for i, (m, mu) in enumerate(zip(mats, means, strict=True)):
            b = np.asarray(m[start : start + chunk], np.float32) - mu
            sums[i] += b.sum(axis=0, dtype=np.float64)
            diag[i][start : start + len(b)] = np.einsum("ij,ij->i", b, b, dtype=np.float64)
    # sum((X_i^T X_j)^2) of every pair (i <= j), a batch of pairs at a time: the D_i x D_j cross-products of one
    # batch fit in CROSS_BYTES, so 100 models of 2,048 features need 170 GB for all of them at once and 256 MB here
    squares = np.zeros((M, M))
    pairs = [(i, j) for i in range(M) for j in range(i, M)]
    for batch in _pair_batches(pairs, [m.shape[1] for m in mats]):
        cross = {(i, j): np.zeros((mats[i].shape[1], mats[j].shape[1])) for i, j in batch}
        wanted = sorted({k for pair in batch for k in pair})
        for start in range(0, n, chunk):
            block = {k: np.asarray(mats[k][start : start + chunk], np.float32) - means[k] for k in wanted}
            for (i, j), acc in cross.items():
                acc += block[i].T @ block[j]
        for (i, j), acc in cross.items():
            squares[i, j] = squares[j, i] = float(np.sum(acc**2))
    out = {"biased": _normalise(squares)}
    if debiased:
        if n < 4:
            out["debiased"] = np.full((M, M), np.nan)
        else:
            out["debiased"] = _normalise(_unbiased_matrix(mats, means, squares, sums, diag, chunk))
    return out


#: The most bytes of cross-products :func:`cka_matrices` holds at once (pairs are taken in batches that fit).
CROSS_BYTES = 256 << 20


def _pair_batches(pairs: list[tuple[int, int]], widths: list[int]) -> list[list[tuple[int, int]]]:
    """``pairs`` in consecutive batches whose D_i x D_j float64 cross-products total at most :data:`CROSS_BYTES`
    (a single larger pair is a batch of its own)."""
    batches: list[list[tuple[int, int]]] = [[]]
    used = 0
    for i, j in pairs:
        size = 8 * widths[i] * widths[j]
        if batches[-1] and used + size > CROSS_BYTES:
            batches.append([])
            used = 0
        batches[-1].append((i, j))
        used += size
    return [b for b in batches if b]


def _normalise(hsic: np.ndarray) -> np.ndarray:
    """``hsic[i, j] / sqrt(hsic[i, i] hsic[j, j])``, NaN where a self-term is not positive."""
    self_h = np.sqrt(np.maximum(np.diag(hsic), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = hsic / np.outer(self_h, self_h)
    return np.where(np.outer(self_h, self_h) > 0, out, np.nan)


def _unbiased_matrix(mats, means, squares, sums, diag, chunk) -> np.ndarray:
    """Unbiased HSIC (Song et al. 2012) of every pair of linear kernels from ``squares[i, j]``, the sum of the
    squared cross-products ``X_i^T X_j`` of the centred features, each term
    O(N D) as in :func:`_unbiased_hsic_terms`; ``K~ 1 = A (A^T 1) - diag K`` takes one more pass over the rows."""
    n, M = mats[0].shape[0], len(mats)
    k1 = [np.zeros(n) for _ in mats]
    for start in range(0, n, chunk):
        for i, (m, mu) in enumerate(zip(mats, means, strict=True)):
            b = np.asarray(m[start : start + chunk], np.float32) - mu
            k1[i][start : start + len(b)] = b.astype(np.float64) @ sums[i]
    k1 = [k - d for k, d in zip(k1, diag, strict=True)]
    total = [float(s @ s - d.sum()) for s, d in zip(sums, diag, strict=True)]  # 1' K~ 1
    out = np.zeros((M, M))
    for i in range(M):
        for j in range(i, M):
            trace = float(squares[i, j] - diag[i] @ diag[j])
            rest = total[i] * total[j] / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(k1[i] @ k1[j])
            out[i, j] = out[j, i] = (trace + rest) / (n * (n - 3))
    return out


def _bool_pair(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a.shape != b.shape or a.size == 0:
        raise DataError(f"{name_a} and {name_b} must be non-empty and the same length, got {a.size} and {b.size}.")
    return a, b


def cohen_kappa(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Error consistency: Cohen's kappa between two models' per-sample correctness (Geirhos et al. 2020).

    >>> cohen_kappa([1, 1, 0, 0], [1, 0, 0, 1])   # observed 0.5, expected 0.5 by chance
    0.0

    ``kappa = (p_obs - p_exp) / (1 - p_exp)`` with ``p_exp = a b + (1 - a)(1 - b)`` from the accuracies a, b.
    When both models are constant and equal (``p_exp == 1``) kappa is 1 by convention.
    """
    a, b = _bool_pair("correct_a", correct_a, "correct_b", correct_b)
    a, b = a.astype(bool), b.astype(bool)
    p_obs = float(np.mean(a == b))
    acc_a, acc_b = float(a.mean()), float(b.mean())
    p_exp = acc_a * acc_b + (1 - acc_a) * (1 - acc_b)
    return 1.0 if p_exp >= 1.0 else (p_obs - p_exp) / (1.0 - p_exp)


def agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Fraction of samples on which two models predict the same class.

    >>> agreement([0, 1, 2, 3], [0, 1, 0, 0])
    0.5
    """
    a, b = _bool_pair("pred_a", pred_a, "pred_b", pred_b)
    return float(np.mean(a == b))


def _standardised_blocks(geoms: Sequence[Mapping[str, np.ndarray]], quantities: Sequence[str]):
    """Yield one (M, N) float64 block per quantity, standardised over all models and samples together."""
    if not geoms:
        raise DataError("geometric vectors need at least one model's geometry.")
    for q in quantities:
        try:
            stack = np.stack([np.asarray(g[q], np.float64).ravel() for g in geoms])
        except KeyError:
            raise DataError(f"a geometry lacks {q!r}; pass the dicts returned by sample_geometry.") from None
        except ValueError:
            raise DataError(
                f"the models' {q!r} arrays cover different numbers of samples; use the same samples."
            ) from None
        yield standardise(stack)


def standardise(values: np.ndarray) -> np.ndarray:
    """float64 ``values`` with non-finite entries set to 0, then zero mean and unit variance over all of them
    (a constant array gives zeros).

    >>> standardise(np.array([1.0, 3.0, np.nan])).round(3).tolist()
    [-0.267, 1.336, -1.069]
    """
    v = np.where(np.isfinite(values), values, 0.0).astype(np.float64)
    v -= v.mean()
    std = v.std()
    return v / std if std > 0 else v


def geometric_vectors(
    geoms: Sequence[Mapping[str, np.ndarray]], *, quantities: Sequence[str] = GEOMETRIC_QUANTITIES
) -> np.ndarray:
    """Standardised per-sample geometric vectors of M models: (M, N * Q) float64.

    >>> g = [{"angle_true": np.array([10.0, 20.0]), "length": np.array([1.0, 3.0]), "margin": np.array([1.0, 0.0])}]
    >>> geometric_vectors(g * 2).shape
    (2, 6)

    Each quantity (angle to the true class, length, margin) is standardised over all models and samples
    together (one mean and one standard deviation per quantity, so differences of scale between models stay
    visible while quantities in degrees and in feature units weigh alike), then the model's Q quantities over
    its N samples are laid end to end. Non-finite margins (a head with identical class rows) count as 0.
    """
    return np.concatenate(list(_standardised_blocks(geoms, quantities)), axis=1)


def geometric_distance(
    geoms: Sequence[Mapping[str, np.ndarray]], *, quantities: Sequence[str] = GEOMETRIC_QUANTITIES
) -> np.ndarray:
    """Root-mean-square distance between models' standardised geometric vectors: (M, M), 0 on the diagonal.

    >>> a = {"angle_true": np.array([10.0, 20.0]), "length": np.array([1.0, 3.0]), "margin": np.array([1.0, 0.0])}
    >>> geometric_distance([a, a])
    array([[0., 0.],
           [0., 0.]])

    ``d(m, n) = sqrt(mean_k (v_m[k] - v_n[k])^2)`` over the entries of :func:`geometric_vectors`, accumulated
    one quantity at a time (memory: one (M, N) block, not the whole (M, N * Q) matrix).
    """
    d2, width = 0.0, 0
    for block in _standardised_blocks(geoms, quantities):
        sq = np.einsum("ij,ij->i", block, block)
        d2 = d2 + (sq[:, None] + sq[None, :] - 2.0 * (block @ block.T))
        width += block.shape[1]
    d2 = np.maximum(d2, 0.0) / width
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2)


def _check_distance(D: np.ndarray) -> np.ndarray:
    D = np.asarray(D, np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise DataError(f"a distance matrix must be square (M, M), got shape {D.shape}.")
    if not np.isfinite(D).all() or (D < 0).any():
        raise DataError("a distance matrix must hold finite, non-negative numbers.")
    if not np.allclose(D, D.T, rtol=1e-9, atol=1e-12):
        raise DataError("a distance matrix must be symmetric (D[i, j] == D[j, i]).")
    return (D + D.T) / 2.0


def classical_mds(D: np.ndarray, k: int = 2) -> np.ndarray:
    """Classical (Torgerson) multidimensional scaling of a distance matrix: (M, M) -> (M, k) coordinates.

    >>> P = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    >>> D = np.linalg.norm(P[:, None] - P[None], axis=-1)
    >>> Y = classical_mds(D); bool(np.allclose(np.linalg.norm(Y[:, None] - Y[None], axis=-1), D))
    True

    ``B = -1/2 J D^2 J`` with ``J = I - 11'/M``; the coordinates are the top-k eigenvectors scaled by the
    square roots of their eigenvalues (negative eigenvalues, from non-Euclidean distances, give 0). Signs are
    fixed so that each axis's largest-magnitude coordinate is positive (deterministic output).
    """
    D = _check_distance(D)
    M = D.shape[0]
    if k < 1:
        raise DataError(f"k must be at least 1, got {k}.")
    J = np.eye(M) - 1.0 / M
    B = -0.5 * J @ (D**2) @ J
    vals, vecs = np.linalg.eigh((B + B.T) / 2.0)
    order = np.argsort(vals)[::-1][:k]
    coords = vecs[:, order] * np.sqrt(np.maximum(vals[order], 0.0))
    if coords.shape[1] < k:
        coords = np.pad(coords, ((0, 0), (0, k - coords.shape[1])))
    flip = np.sign(coords[np.abs(coords).argmax(axis=0), np.arange(k)])
    return coords * np.where(flip == 0, 1.0, flip)


def mds_quality(D: np.ndarray, coords: np.ndarray) -> dict[str, float]:
    """How much of the distances ``D`` (M, M) a classical-MDS map ``coords`` (M, k) keeps.

    >>> P = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    >>> D = np.linalg.norm(P[:, None] - P[None], axis=-1)
    >>> q = mds_quality(D, classical_mds(D)); q["kept"], q["median_relative_error"] < 1e-12
    (1.0, True)

    ``kept``: the fraction of the positive eigenvalue mass of ``B = -1/2 J D^2 J`` in the map's k axes (1 for
    distances that live in k dimensions; 1 when every distance is 0). ``median_relative_error`` and
    ``max_relative_error``: ``|d_map - D| / D`` over the model pairs at a positive distance (NaN when there
    are none). ``read_tree``: True when ``kept`` is below :data:`MAP_KEEPS_ENOUGH`, where neighbours should be
    read from the spanning tree (which uses the full distances), not from the map.
    """
    D = _check_distance(D)
    coords = np.asarray(coords, np.float64)
    M = D.shape[0]
    J = np.eye(M) - 1.0 / M
    B = -0.5 * J @ (D**2) @ J
    vals = np.sort(np.linalg.eigvalsh((B + B.T) / 2.0))[::-1]
    positive = vals[vals > 0]
    k = coords.shape[1] if coords.ndim == 2 else 0
    kept = float(positive[:k].sum() / positive.sum()) if positive.size and positive.sum() > 0 else 1.0
    iu = np.triu_indices(M, 1)
    mapped = np.linalg.norm(coords[:, None] - coords[None], axis=-1)[iu]
    true = D[iu]
    far = true > 0
    rel = np.abs(mapped[far] - true[far]) / true[far]
    return {
        "kept": kept,
        "median_relative_error": float(np.median(rel)) if rel.size else float("nan"),
        "max_relative_error": float(rel.max()) if rel.size else float("nan"),
        "read_tree": kept < MAP_KEEPS_ENOUGH,
    }


def minimum_spanning_tree(D: np.ndarray) -> list[tuple[int, int, float]]:
    """Edges ``(i, j, weight)`` with ``i < j`` of a minimum spanning tree of the complete graph on D.

    >>> minimum_spanning_tree(np.array([[0, 1, 4], [1, 0, 2], [4, 2, 0]]))
    [(0, 1, 1.0), (1, 2, 2.0)]

    M - 1 edges (scipy.sparse.csgraph). Zero distances between distinct models are kept as edges (scipy would
    read them as missing), so the tree always spans all M points.
    """
    from scipy.sparse.csgraph import minimum_spanning_tree as _mst

    D = _check_distance(D)
    # scipy reads a 0 as "no edge": shift every edge by the same positive constant, which changes the weight
    # of every spanning tree by the same amount (M - 1 edges each), so the minimal tree is the same.
    shift = D[D > 0].min() if (D > 0).any() else 1.0
    graph = np.triu(D + shift, k=1)
    tree = _mst(graph).tocoo()
    edges = sorted((min(int(i), int(j)), max(int(i), int(j))) for i, j in zip(tree.row, tree.col, strict=True))
    return [(i, j, float(D[i, j])) for i, j in edges]
