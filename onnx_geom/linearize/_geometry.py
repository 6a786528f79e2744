"""The three geometry quantities of onnx_geom.geometry as linear functions of the features, frozen at f(x).

With ``z = W f + b`` (the probe's head), ``y`` the true class and ``j*`` the nearest competing class:

- margin ``((W_y - W_j*) . f + b_y - b_j*) / ||W_y - W_j*||``: linear in f once j* is frozen;
- cosine to the true class ``W_y . f / (||W_y|| ||f||)``: linear in f once both norms are frozen at x;
- length ``||f|| = (f / ||f||) . f``: linear in f once the first factor is frozen at x.

Each is ``u . f + c`` with a direction ``u`` (D,) and an offset ``c``; the values are those of
:func:`onnx_geom.geometry.sample_geometry` on the same features.

>>> W = np.array([[1.0, 0.0], [0.0, 1.0]]); b = np.zeros(2)
>>> u, c, v, rival = directions(np.array([[3.0, 1.0]], np.float32), W, b, np.array([0]))
>>> v.round(4), (np.einsum("sgd,d->sg", u, [3.0, 1.0]) + c).round(4), rival
(array([[1.4142, 0.9487, 3.1623]]), array([[1.4142, 0.9487, 3.1623]]), array([1]))
"""

from __future__ import annotations

import numpy as np

from onnx_geom.geometry import _boundary_distances, _boundary_norms, sample_geometry

#: The quantities the linearization decomposes by itself (with the logits' head), in the order of its rows.
GEOMETRY = ("margin", "cos", "length")


def directions(
    features: np.ndarray, W: np.ndarray, b: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``features`` (S, D), head ``W`` (K, D), ``b`` (K,), ``labels`` (S,) ->
    ``(u (S, 3, D), c (S, 3), values (S, 3), rival (S,))`` for (margin, cos, length), float64; ``rival`` is j*
    (-1 when there is none: a one-class head or a class direction shared with the true class)."""
    geom = sample_geometry(features, W, b, labels)
    W64, b64 = np.asarray(W, np.float64), np.asarray(b, np.float64)
    f = np.asarray(features, np.float64)
    s = len(f)
    rows = np.arange(s)
    y = np.asarray(labels, np.int64)
    values = np.stack([geom["margin"], geom["cos"][rows, y], geom["length"]], axis=1).astype(np.float64)
    u = np.zeros((s, 3, f.shape[1]))
    c = np.zeros((s, 3))
    rival = np.full(s, -1, np.int64)

    pair_norm = _boundary_norms(W64)
    pair = pair_norm[y]  # (S, K) ||W_y - W_j||
    dist = _boundary_distances(f @ W64.T + b64, y, pair_norm)  # the distances the margin is the minimum of
    if W64.shape[0] > 1:
        j = dist.argmin(axis=1)  # the rival: a class sharing W_y's direction when the margin is decided there
        ok = (pair[rows, j] > 0) & np.isfinite(dist[rows, j]) & np.isfinite(values[:, 0])
        rival[ok] = j[ok]
        norm = pair[rows, j][:, None]
        u[ok, 0] = ((W64[y] - W64[j]) / np.where(norm > 0, norm, 1.0))[ok]
        c[ok, 0] = ((b64[y] - b64[j]) / np.where(norm[:, 0] > 0, norm[:, 0], 1.0))[ok]
    c[rival < 0, 0] = values[rival < 0, 0]  # no boundary: the value is all offset (+inf, or 0 on a tie)

    length = np.linalg.norm(f, axis=1)
    w_norm = np.linalg.norm(W64[y], axis=1)
    live = (length > 0) & (w_norm > 0)
    u[live, 1] = W64[y][live] / (w_norm[live] * length[live])[:, None]
    u[length > 0, 2] = f[length > 0] / length[length > 0, None]
    return u, c, values, rival
