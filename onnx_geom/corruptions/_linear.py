"""Linear image operators as sums of separable matrices, applied to a whole batch with two matrix products.

An operator ``sum_k R_k X C_k^T`` (rows ``R_k: (H', H)``, columns ``C_k: (W', W)``) covers a Gaussian blur (one
term), zoom blur (one term per zoom factor) and a disk blur (one term per singular value of the kernel). Over a
batch it costs two GEMMs, which is what makes these corruptions fast.

>>> import numpy as np
>>> from scipy import ndimage
>>> x = np.random.default_rng(0).integers(0, 256, (2, 20, 24, 3), dtype=np.uint8)
>>> r = filter_matrix(20, np.array([0.25, 0.5, 0.25]), "nearest")
>>> c = filter_matrix(24, np.array([0.25, 0.5, 0.25]), "nearest")
>>> y = apply(x, operator(r[None], c[None]))
>>> bool(np.allclose(y, ndimage.correlate(x / 1.0, np.outer([.25, .5, .25], [.25, .5, .25])[None, :, :, None], mode="nearest")))
True
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy import sparse

DENSE_MAX_PIXELS = 64 * 64  # above this, apply the (banded) matrices as sparse ones, term by term
DENSE_MAX_MAP = 32 * 32  # up to this many pixels, a many-term operator may become one dense (HW, HW) map
SPARSE_MAX_DENSITY = 0.05  # a whole map with at most this fraction of non-zeros is applied as a sparse matrix


def border_index(i: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Map indices outside ``0..n-1`` inside, as scipy.ndimage's ``mode`` (nearest, mirror, reflect) does."""
    if mode == "nearest":
        return np.clip(i, 0, n - 1)
    if n == 1:
        return np.zeros_like(i)
    if mode == "mirror":  # reflect-101: d c b | a b c d | c b a
        period = 2 * n - 2
        j = np.mod(i, period)
        return np.where(j >= n, period - j, j)
    if mode == "reflect":  # half-sample symmetric: b a | a b c d | d c
        period = 2 * n
        j = np.mod(i, period)
        return np.where(j >= n, period - 1 - j, j)
    raise ValueError(f"unknown border mode {mode!r}")


def filter_matrix(n: int, taps: np.ndarray, mode: str) -> np.ndarray:
    """``(n, n)`` matrix of the 1-D correlation with odd-length ``taps`` (centred) and border ``mode``."""
    half = len(taps) // 2
    out = np.zeros((n, n))
    rows = np.arange(n)
    for k, tap in enumerate(taps):
        np.add.at(out, (rows, border_index(rows + k - half, n, mode)), tap)
    return out


def zoom_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` matrix of scipy.ndimage.zoom with ``order=1`` along one axis (``grid_mode=False``)."""
    out = np.zeros((n_out, n_in))
    if n_out == 1 or n_in == 1:
        out[:, 0] = 1.0
        return out
    coord = np.arange(n_out) * ((n_in - 1) / (n_out - 1))
    low = np.minimum(np.floor(coord).astype(np.int64), n_in - 1)
    frac = coord - low
    high = np.minimum(low + 1, n_in - 1)
    rows = np.arange(n_out)
    np.add.at(out, (rows, low), 1 - frac)
    np.add.at(out, (rows, high), frac)
    return out


def clipped_zoom_matrix(n: int, factor: float, *, centre: bool) -> np.ndarray:
    """``(n, n)``: crop the central ``ceil(n / factor)``, zoom it by ``factor``, keep ``n`` (top or centre)."""
    crop = int(np.ceil(n / float(factor)))
    start = (n - crop) // 2
    zoomed = round(crop * float(factor))
    z = zoom_matrix(crop, zoomed)
    trim = (zoomed - n) // 2 if centre else 0
    out = np.zeros((n, n))
    out[:, start : start + crop] = z[trim : trim + n]
    return out


def disk_terms(kernel: np.ndarray, h: int, w: int, mode: str) -> Operator:
    """The operator of a 2-D correlation with ``kernel``: one term (rows ``(h, h)``, columns ``(w, w)``) per
    singular value of the kernel."""
    u, s, vt = np.linalg.svd(kernel)
    keep = s > s[0] * 1e-10
    rows = np.stack([filter_matrix(h, u[:, k] * s[k], mode) for k in np.flatnonzero(keep)])
    cols = np.stack([filter_matrix(w, vt[k], mode) for k in np.flatnonzero(keep)])
    return operator(rows, cols)


TERM_BITS = 20  # weights of the two-stage path, as integers / 2**20
DENSE_BITS = 15  # the dense map (non-negative, columns summing to 1) as hi / 2**15 + lo / 2**(15 + lo_bits), hi
# and lo integers small enough that every partial sum with uint8 input stays below 2**24: float32 GEMMs are exact


class Operator(NamedTuple):
    """``sum_k rows[k] X cols[k]^T``; ``dense`` is the whole map ``(H W, H' W')`` when that is cheaper, ``sparse``
    the whole map ``(H' W', H W)`` when it has few non-zeros (zoom blur: about 10 per output pixel).

    The weights are stored as integers (in float64) so that products with uint8 images are exact: the result
    cannot depend on the order a BLAS sums in, hence not on the batch an image is in. The sparse map keeps its
    exact float64 weights: scipy's CSR product sums each output value over its row's entries in stored order,
    whatever the number of columns on the other side, so it is batch-independent too.
    """

    rows: np.ndarray  # (K, H', H), integers / 2**TERM_BITS
    cols: np.ndarray  # (K, W', W), integers / 2**TERM_BITS
    dense: tuple[np.ndarray, np.ndarray, int, tuple] | None  # (hi, lo, lo_bits, bands): see _split
    sparse: sparse.csr_matrix | None = None  # (H' W', H W) float64


def operator(rows: np.ndarray, cols: np.ndarray) -> Operator:
    """Bundle the terms; small images with many non-negative terms get the dense map (one GEMM per batch)."""
    k, h2, h = rows.shape
    w2, w = cols.shape[1:]
    dense = sparse_map = None
    if k > 1 and h * w <= DENSE_MAX_MAP:
        full = np.einsum("kab,kcd->bdac", rows, cols).reshape(h * w, h2 * w2)
        if np.count_nonzero(full) <= SPARSE_MAX_DENSITY * full.size:
            sparse_map = sparse.csr_matrix(full.T)
        elif full.min() > -1e-9:  # non-negative up to the rounding of an SVD
            dense = _split(np.clip(full, 0, None) * 2.0**DENSE_BITS)
    scale = 2.0**TERM_BITS
    rows_q, cols_q = np.round(rows * scale), np.round(cols * scale)
    # largest partial sum of the second product for uint8 input: it must stay an exact float64 integer
    bound = 255 * np.abs(rows_q).sum(axis=2).max(axis=1) @ np.abs(cols_q).sum(axis=2).max(axis=1)
    if bound >= 2.0**53:
        raise ValueError("operator weights too large for exact arithmetic")
    return Operator(rows_q, cols_q, dense, sparse_map)


BAND_PIXELS = 128  # output pixels per band of the dense map (4 rows of a 32-pixel-wide image)


def _split(scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, tuple]:
    """``scaled ~ hi + lo / 2**lo_bits`` with integer hi, lo whose uint8 products sum exactly in float32.

    ``bands``: ``(out_start, out_stop, in_start, in_stop)`` per run of BAND_PIXELS output pixels, the input
    pixels outside ``in_start:in_stop`` having zero weight for all of them (a blur reads near rows only). As the
    sums are exact, skipping those zeros gives the same numbers.
    """
    hi = np.round(scaled)
    rest = scaled - hi
    lo_bits = int(np.floor(np.log2(2.0**24 / (255 * (np.abs(rest).sum(axis=0).max() + 1))))) - 1
    lo = np.round(rest * 2.0**lo_bits)
    assert 255 * hi.sum(axis=0).max() < 2.0**24 and 255 * np.abs(lo).sum(axis=0).max() < 2.0**24
    reads = (hi != 0) | (lo != 0)
    bands = []
    for start in range(0, scaled.shape[1], BAND_PIXELS):
        stop = min(start + BAND_PIXELS, scaled.shape[1])
        used = np.flatnonzero(reads[:, start:stop].any(axis=1))
        bands.append((start, stop, int(used.min(initial=0)), int(used.max(initial=-1)) + 1))
    return hi.astype(np.float32), lo.astype(np.float32), lo_bits, tuple(bands)


def apply(images: np.ndarray, op: Operator) -> np.ndarray:
    """Apply ``op`` to every sample and channel of uint8 ``images: (N, H, W, C)``; float64 ``(N, H', W', C)``.

    Exact integer arithmetic (float32 for the dense map, float64 for the terms), then one division by a power of
    two, so every image gets the same bytes whatever else is in the batch.
    """
    if images.dtype != np.uint8:
        raise TypeError("apply() needs uint8 images so that its arithmetic is exact")
    n, h, w, c = images.shape
    k, h2, _ = op.rows.shape
    w2 = op.cols.shape[1]
    if op.sparse is not None:
        planar = np.ascontiguousarray(images.transpose(1, 2, 0, 3), dtype=np.float64).reshape(h * w, n * c)
        if n * c == 1:  # keep scipy on its many-vector loop (the same sums as its one-vector loop, but no doubt)
            planar = np.hstack([planar, np.zeros_like(planar)])
        out = (op.sparse @ planar)[:, : n * c]
        return out.reshape(h2, w2, n, c).transpose(2, 0, 1, 3)
    if op.dense is not None:
        hi, lo, lo_bits, bands = op.dense
        rows = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32).reshape(n * c, h * w)
        out = np.zeros((n * c, h2 * w2), np.float64)
        for o0, o1, i0, i1 in bands:
            part = rows[:, i0:i1]
            out[:, o0:o1] = (part @ hi[i0:i1, o0:o1]).astype(np.float64) + (part @ lo[i0:i1, o0:o1]).astype(
                np.float64
            ) * 2.0**-lo_bits
        return out.reshape(n, c, h2, w2).transpose(0, 2, 3, 1) * 2.0**-DENSE_BITS
    if h * w > DENSE_MAX_PIXELS:
        return _apply_sparse(images.astype(np.float64), op.rows, op.cols) * 2.0 ** (-2 * TERM_BITS)
    flat = np.ascontiguousarray(images.transpose(1, 0, 3, 2), dtype=np.float64).reshape(h, n * c * w)  # (H, N C W)
    y = (op.rows.reshape(k * h2, h) @ flat).reshape(k, h2, n, c, w)
    y = np.ascontiguousarray(y.transpose(1, 2, 3, 0, 4)).reshape(h2 * n * c, k * w)
    z = y @ op.cols.transpose(0, 2, 1).reshape(k * w, w2)  # the product sums the terms
    return z.reshape(h2, n, c, w2).transpose(1, 0, 3, 2) * 2.0 ** (-2 * TERM_BITS)


def _apply_sparse(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    flat = np.ascontiguousarray(x.transpose(1, 0, 3, 2)).reshape(h, n * c * w)
    out = 0.0
    for r, col in zip(rows, cols, strict=True):
        y = (sparse.csr_matrix(r) @ flat).reshape(-1, w)  # (H' N C, W)
        out = out + (sparse.csr_matrix(col) @ y.T).T
    return np.asarray(out).reshape(rows.shape[1], n, c, cols.shape[1]).transpose(1, 0, 3, 2)


def gaussian_taps(sigma: float, truncate: float) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian: radius ``int(truncate * sigma + 0.5)``, normalised weights."""
    radius = int(truncate * float(sigma) + 0.5)
    if sigma <= 0 or radius == 0:
        return np.ones(1)
    t = np.exp(-0.5 * (np.arange(-radius, radius + 1) / float(sigma)) ** 2)
    return t / t.sum()


@lru_cache(maxsize=32)
def gaussian_operator(h: int, w: int, sigma: float, mode: str = "nearest", truncate: float = 4.0):
    """Rows and columns of a Gaussian blur (scipy's ``gaussian_filter`` over the two image axes)."""
    taps = gaussian_taps(sigma, truncate)
    return operator(filter_matrix(h, taps, mode)[None], filter_matrix(w, taps, mode)[None])


@lru_cache(maxsize=32)
def zoom_blur_operator(h: int, w: int, factors: tuple[float, ...], centre: bool):
    """Rows and columns of ``(x + sum_z clipped_zoom(x, z)) / (len(factors) + 1)``."""
    rows = [np.eye(h)] + [clipped_zoom_matrix(h, f, centre=centre) for f in factors]
    cols = [np.eye(w)] + [clipped_zoom_matrix(w, f, centre=centre) for f in factors]
    return operator(np.stack(rows) / (len(factors) + 1), np.stack(cols))
