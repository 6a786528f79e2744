"""Reference formulas the tests check onnx-geom against, written the slow, textbook way (no code of onnx-geom):
linear CKA through explicit N x N Gram matrices, and the margin by a loop over the other classes."""

from __future__ import annotations

import numpy as np


def song_unbiased_hsic(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. (2012) eq. 5, written out on explicit Grams."""
    n = K.shape[0]
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    one = np.ones(n)
    return (
        np.trace(Kt @ Lt)
        + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * one @ Kt @ Lt @ one
    ) / (n * (n - 3))


def gram_cka(X: np.ndarray, Y: np.ndarray, debiased: bool = False) -> float:
    """Linear CKA from N x N Grams: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), with the centred HSIC
    tr(K H L H) (biased) or Song et al.'s unbiased estimator (``debiased``)."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    n = len(X)
    K, L = X @ X.T, Y @ Y.T
    if debiased:
        hsic = song_unbiased_hsic
    else:
        H = np.eye(n) - 1.0 / n
        hsic = lambda A, B: np.trace(A @ H @ B @ H)
    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def loop_margins(z: np.ndarray, W: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Distance to the nearest decision boundary of the true class, by a loop: min over j != y of
    (z_y - z_j) / ||W_y - W_j|| (negative when the sample is misclassified)."""
    return np.array(
        [
            min((z[i, y] - z[i, j]) / np.linalg.norm(W[y] - W[j]) for j in range(len(W)) if j != y)
            for i, y in enumerate(labels)
        ]
    )
