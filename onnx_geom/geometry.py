"""Per-sample geometry of penultimate features relative to the class directions of a linear head.

The logits of a probe are ``z_c = W_c . f + b_c = ||W_c|| ||f|| cos(theta_c) + b_c`` (docs/geometry.md), so
the length of ``f``, its angle to every class direction and its signed distance to the decision boundaries
say everything the softmax sees.

>>> import numpy as np
>>> W = np.array([[1.0, 0.0], [0.0, 1.0]]); b = np.zeros(2)
>>> g = sample_geometry(np.array([[3.0, 1.0], [1.0, 2.0]]), W, b, np.array([0, 0]))
>>> g["length"].round(3), g["angle_true"].round(1), g["margin"].round(3), g["correct"]
(array([3.162, 2.236], dtype=float32), array([18.4, 63.4], dtype=float32), array([ 1.414, -0.707], dtype=float32), array([ True, False]))
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from onnx_geom.errors import DataError

__all__ = [
    "GEOMETRY_ARRAYS",
    "MARGIN_DEFINITION",
    "feature_scale",
    "iter_geometry",
    "sample_geometry",
    "scale_free",
    "shifts",
]

#: What the margin is, in the words every doc, label and tooltip uses.
MARGIN_DEFINITION = (
    "margin: signed distance from f to the nearest pairwise decision boundary between the true class and another "
    "class (negative when misclassified); for a misclassified sample it is the distance to the nearest such "
    "boundary, a lower bound on the distance to the true class's region"
)

#: The arrays of a unit's ``geometry`` group (docs/architecture.md) and their dtypes.
GEOMETRY_ARRAYS = {
    "length": np.float32,
    "angle_true": np.float32,
    "angle_pred": np.float32,
    "margin": np.float32,
    "cos": np.float32,
    "pred": np.int64,
    "correct": np.bool_,
}


def _check_inputs(shape: tuple[int, ...], W: np.ndarray, b: np.ndarray, labels: np.ndarray) -> None:
    if len(shape) != 2:
        raise DataError(f"features must be a 2-D array (N, D), got shape {shape}.")
    if W.ndim != 2 or W.shape[1] != shape[1]:
        raise DataError(f"W must have shape (K, D={shape[1]}) to match the features, got {W.shape}.")
    if b.shape != (W.shape[0],):
        raise DataError(f"b must have shape (K={W.shape[0]},) to match W, got {b.shape}.")
    if labels.shape != (shape[0],):
        raise DataError(f"labels must have shape (N={shape[0]},), one per feature row, got {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"labels must be integers, got dtype {labels.dtype}.")
    if labels.size and (labels.min() < 0 or labels.max() >= W.shape[0]):
        raise DataError(
            f"labels must lie in 0..{W.shape[0] - 1} (one per class of the head), found {labels.min()}..{labels.max()}."
        )
    if not (np.isfinite(W).all() and np.isfinite(b).all()):
        raise DataError("the head W, b holds NaN or infinite values; re-export the model.")


def _boundary_norms(W: np.ndarray) -> np.ndarray:
    """``||W_i - W_j||`` for every pair of classes: (K, K) float64, via the Gram matrix (no K x K x D array)."""
    gram = W @ W.T
    sq = np.diag(gram)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0))


#: From this many classes on, the (n, K) products of the features with the class directions go through BLAS.
_BLAS_CLASSES = 64


def _boundary_distances(z: np.ndarray, y: np.ndarray, pair_norm: np.ndarray) -> np.ndarray:
    """Signed distance to the boundary between the true class and each other class: (n, K) float64 from logits z
    (n, K) and ``pair_norm`` (K, K) from :func:`_boundary_norms`; +inf in the true class's column."""
    rows = np.arange(z.shape[0])
    gap = z[rows, y][:, None] - z  # z_y - z_j, (n, K)
    denom = pair_norm[y]
    with np.errstate(divide="ignore", invalid="ignore"):
        # Identical class directions: the boundary is never crossed (+/-inf) or everywhere (0 gap -> 0).
        dist = np.where(denom > 0, gap / np.where(denom > 0, denom, 1.0), np.sign(gap) * np.inf)
    dist = np.where(np.isnan(dist), 0.0, dist)
    dist[rows, y] = np.inf
    return dist


def _margin(z: np.ndarray, y: np.ndarray, pair_norm: np.ndarray) -> np.ndarray:
    """Signed distance to the nearest pairwise boundary between the true class and another: (n,) float64 from
    logits z (n, K)."""
    return _boundary_distances(z, y, pair_norm).min(axis=1)  # a one-class head has no boundary: +inf


def sample_geometry(
    features: np.ndarray, W: np.ndarray, b: np.ndarray, labels: np.ndarray, *, chunk: int = 4096
) -> dict[str, np.ndarray]:
    """Length, angles, cosines, margin, prediction and correctness of every sample.

    >>> W = np.eye(3); g = sample_geometry(np.array([[2.0, 0.0, 0.0]]), W, np.zeros(3), np.array([1]))
    >>> g["angle_true"], g["angle_pred"], g["pred"], g["margin"].round(4)
    (array([90.], dtype=float32), array([0.], dtype=float32), array([0]), array([-1.4142], dtype=float32))

    Parameters
    ----------
    features : (N, D) penultimate features (any float dtype, or a lazy array that slices; read in chunks).
    W : (K, D) head weights, ``b`` : (K,) head bias, in the ``z = f @ W.T + b`` convention.
    labels : (N,) integer true classes in ``0..K-1``.
    chunk : rows processed at a time; memory is O(chunk * (D + K)) beyond the outputs.

    Returns
    -------
    dict with ``length`` (N,) ``||f||``; ``angle_true`` (N,) and ``angle_pred`` (N,) in degrees between ``f``
    and ``W_y`` / ``W_pred``; ``cos`` (N, K) cosine to every class direction; ``margin`` (N,)
    ``min_{j != y} ((W_y - W_j) . f + b_y - b_j) / ||W_y - W_j||`` (margin: signed distance from f to the
    nearest pairwise decision boundary between the true class and another class (negative when
    misclassified); for a misclassified sample it is the distance to the nearest such boundary, a lower bound
    on the distance to the true class's region); ``pred`` (N,) int64
    ``argmax z``; ``correct`` (N,) bool. Float arrays are float32 (the study layout). A sample whose features hold
    NaN or infinite values (the model broke on it) gets NaN geometry, ``pred`` -1 and ``correct`` False.

    Notes
    -----
    The logits are recomputed from the features and the head, so ``pred`` and the sign of the margin come
    from the same numbers: the margin is negative exactly when the sample is misclassified, and exactly 0 on a
    tie (where ``argmax`` picks the lowest class index). The D-long dot products run in the
    features' own precision (float32 features: about 1e-7 relative error, the resolution of the float32
    outputs and of the probe's own logits); everything across classes (logits, cosines, margins) is float64.
    A zero feature vector (or a zero class row) has cosine 0 by convention (angle 90 degrees).
    """
    if not (hasattr(features, "shape") and hasattr(features, "dtype")):
        features = np.asarray(features)
    parts = iter_geometry(features, W, b, labels, chunk=chunk)  # checks its inputs before anything is allocated
    n, k = int(features.shape[0]), int(np.shape(W)[0])
    out: dict[str, np.ndarray] = {
        name: np.empty((n, k) if name == "cos" else n, dtype) for name, dtype in GEOMETRY_ARRAYS.items()
    }
    for sl, part in parts:
        for name, values in part.items():
            out[name][sl] = values
    return out


#: Rows x classes of one chunk's (rows, K) float64 temporaries: with many classes the chunk shrinks to keep them
#: about 8 MB each, so memory does not grow with K (nor with N).
_CHUNK_CELLS = 1 << 20


def iter_geometry(
    features: np.ndarray, W: np.ndarray, b: np.ndarray, labels: np.ndarray, *, chunk: int = 4096
) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
    """:func:`sample_geometry` one chunk of rows at a time: yields ``(rows, geometry of those rows)``.

    >>> W = np.eye(2); f = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 1.0]])
    >>> [(sl.start, sl.stop, g["pred"].tolist()) for sl, g in iter_geometry(f, W, np.zeros(2), np.zeros(3, int), chunk=2)]
    [(0, 2, [0, 1]), (2, 3, [0])]

    Memory is O(chunk x (D + K)) whatever N (``features`` may be a lazy array that reads the rows it is sliced
    by); with more than 256 classes the chunk shrinks so that its (rows, K) temporaries stay about 8 MB each.
    The margin needs only the logits and the K x K table of ``||W_i - W_j||``.
    """
    if not (hasattr(features, "shape") and hasattr(features, "dtype")):
        features = np.asarray(features)
    W64 = np.asarray(W, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    labels = np.asarray(labels)
    _check_inputs(tuple(int(s) for s in features.shape), W64, b64, labels)
    if chunk < 1:
        raise DataError(f"chunk must be a positive number of rows, got {chunk}.")
    return _chunks(features, W64, b64, labels, chunk)


def _chunks(
    features: np.ndarray, W64: np.ndarray, b64: np.ndarray, labels: np.ndarray, chunk: int
) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
    n, k = int(features.shape[0]), W64.shape[0]
    chunk = max(1, min(chunk, _CHUNK_CELLS // max(k, 1))) if k > 256 else chunk
    work = np.float64 if features.dtype == np.float64 else np.float32
    Ww = np.ascontiguousarray(W64, dtype=work)
    w_norm = np.linalg.norm(W64, axis=1)
    w_safe = np.where(w_norm > 0, w_norm, 1.0)
    pair_norm = _boundary_norms(W64)
    # a lazy array (``.chunks``: a Zarr array) is read in whole stored chunks of rows, each decoded once
    step = int(getattr(features, "chunks", (0,))[0] or 0) if not isinstance(features, np.ndarray) else 0
    block_rows = -(-max(chunk, step) // step) * step if step else n
    for block_start in range(0, n, max(block_rows, 1)):
        block = features[block_start : min(block_start + block_rows, n)]
        for start in range(block_start, block_start + len(block), chunk):
            sl = slice(start, min(start + chunk, block_start + len(block)))
            f = np.asarray(block[sl.start - block_start : sl.stop - block_start], dtype=work)
            yield sl, _chunk_geometry(f, labels[sl], Ww, W64, b64, w_norm, w_safe, pair_norm)


def _chunk_geometry(
    f: np.ndarray,
    labels: np.ndarray,
    Ww: np.ndarray,
    W64: np.ndarray,
    b64: np.ndarray,
    w_norm: np.ndarray,
    w_safe: np.ndarray,
    pair_norm: np.ndarray,
) -> dict[str, np.ndarray]:
    """The geometry of one chunk of rows ``f`` (n, D) in the working precision (see :func:`sample_geometry`)."""
    k = W64.shape[0]
    broken = np.logical_not(np.isfinite(f).all(axis=1))  # the model gave NaN or inf: no geometry, no prediction
    if broken.any():
        f = np.where(broken[:, None], 0, f)
    length = np.sqrt(np.einsum("ij,ij->i", f, f).astype(np.float64))
    y = labels.astype(np.int64)
    # (n, K) f . W_c. For few classes, einsum's own loops, not BLAS: for K << D a threaded GEMM spends more on
    # waking its threads than on the product (5-10x slower on a busy machine) and this is memory-bound
    # anyway; for many classes the product is compute-bound and BLAS is 10-20x faster.
    dot = (f @ Ww.T if k > _BLAS_CLASSES else np.einsum("ij,kj->ik", f, Ww)).astype(np.float64)
    z = dot + b64
    dot /= np.where(length > 0, length, 1.0)[:, None]
    dot /= w_safe[None, :]
    cos = np.clip(dot, -1.0, 1.0, out=dot)
    cos[:, w_norm == 0] = 0.0
    pred = z.argmax(axis=1)
    rows = np.arange(z.shape[0])
    part = {
        "length": length.astype(np.float32),
        "angle_true": np.degrees(np.arccos(cos[rows, y])).astype(np.float32),
        "angle_pred": np.degrees(np.arccos(cos[rows, pred])).astype(np.float32),
        "margin": _margin(z, y, pair_norm).astype(np.float32),
        "cos": cos.astype(np.float32),
        "pred": pred.astype(np.int64),
        "correct": pred == y,
    }
    if broken.any():
        bad = np.flatnonzero(broken)
        for name in ("length", "cos", "angle_true", "angle_pred", "margin"):
            part[name][bad] = np.nan
        part["pred"][bad], part["correct"][bad] = -1, False
    return {name: part[name] for name in GEOMETRY_ARRAYS}


def shifts(geom_a: Mapping[str, np.ndarray], geom_b: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-sample change from a reference ``geom_a`` (dense model, or clean data) to ``geom_b``.

    >>> a = {"angle_true": np.array([10.0]), "length": np.array([2.0]), "margin": np.array([1.0]),
    ...      "correct": np.array([True])}
    >>> b = {"angle_true": np.array([30.0]), "length": np.array([1.5]), "margin": np.array([-0.5]),
    ...      "correct": np.array([False])}
    >>> shifts(a, b)["delta_margin"], shifts(a, b)["flipped"]
    (array([-1.5], dtype=float32), array([ True]))

    Both are dicts as returned by :func:`sample_geometry` over the same N samples. Returns ``delta_angle``,
    ``delta_length``, ``delta_margin`` (N,) float32, each ``b - a`` (angle to the true class), and ``flipped``
    (N,) bool, True where the correctness differs.
    """
    need = ("angle_true", "length", "margin", "correct")
    for name, geom in (("geom_a", geom_a), ("geom_b", geom_b)):
        missing = [key for key in need if key not in geom]
        if missing:
            raise DataError(f"{name} lacks {', '.join(missing)}; pass the dict returned by sample_geometry.")
    n_a, n_b = np.shape(geom_a["margin"]), np.shape(geom_b["margin"])
    if n_a != n_b:
        raise DataError(f"the two geometries cover different samples ({n_a} vs {n_b}); compare the same samples.")

    def delta(key: str) -> np.ndarray:
        return (np.asarray(geom_b[key], np.float64) - np.asarray(geom_a[key], np.float64)).astype(np.float32)

    return {
        "delta_angle": delta("angle_true"),
        "delta_length": delta("length"),
        "delta_margin": delta("margin"),
        "flipped": np.asarray(geom_a["correct"], bool) != np.asarray(geom_b["correct"], bool),
    }


def feature_scale(features: np.ndarray, labels: np.ndarray) -> float:
    """A model's feature scale: half the median distance between its class centroids (clean data).

    >>> f = np.array([[0.0, 0.0], [0.0, 2.0], [4.0, 0.0], [4.0, 2.0]]); y = np.array([0, 0, 1, 1])
    >>> feature_scale(f, y), feature_scale(10 * f, y)
    (2.0, 20.0)

    The centroid of a class is the mean feature vector of its samples (rows with NaN or infinite values left
    out); the median is over every pair of classes present. Half of it is the typical distance from a class
    centroid to the midpoint between two classes, so ``margin / scale`` (and ``shift / scale``) reads in the
    same units for every model, whatever the size of its features. NaN with fewer than two classes or when
    every centroid is the same point.
    """
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    keep = np.isfinite(features).all(axis=1)
    classes = np.unique(labels[keep])
    if classes.size < 2:
        return float("nan")
    centroids = np.stack([features[keep & (labels == k)].mean(axis=0) for k in classes])
    scale = 0.5 * float(np.median(_boundary_norms(centroids)[np.triu_indices(len(classes), 1)]))
    return scale if scale > 0 else float("nan")


def scale_free(geom: Mapping[str, np.ndarray], *, scale: float, length: float) -> dict[str, np.ndarray]:
    """``margin_scaled = margin / scale`` and ``length_scaled = length / length`` (float64) of a unit's geometry.

    >>> scale_free({"margin": np.array([1.0, -2.0]), "length": np.array([3.0, 6.0])}, scale=2.0, length=3.0)
    {'margin_scaled': array([ 0.5, -1. ]), 'length_scaled': array([1., 2.])}

    ``scale``: the model's :func:`feature_scale`; ``length``: the median length of its clean features. Angles are
    already scale-free. Multiplying a model's features by a constant (with a head that keeps its decisions)
    leaves both unchanged. A scale that is not positive and finite gives NaN.
    """
    ok = lambda v: v if np.isfinite(v) and v > 0 else np.nan
    return {
        "margin_scaled": np.asarray(geom["margin"], np.float64) / ok(scale),
        "length_scaled": np.asarray(geom["length"], np.float64) / ok(length),
    }
