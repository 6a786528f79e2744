"""A made-up study for tests, demos and benchmarks (see :meth:`ViewerData.synthetic`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from onnx_geom.comparison import default_reference
from onnx_geom.conditions import CLEAN
from onnx_geom.geometry import GEOMETRY_ARRAYS, iter_geometry, sample_geometry
from onnx_geom.similarity import classical_mds, minimum_spanning_tree
from onnx_geom.viewers.classes import ORDERED_FROM
from onnx_geom.viewers.services import FunctionExplain, FunctionFeatures, Services


class SyntheticImages:
    """Array-like (N, H, W, 3) uint8 made on demand: the class prototype plus noise seeded by the index."""

    def __init__(self, labels: np.ndarray, prototypes: np.ndarray, seed: int, probe: np.ndarray) -> None:
        self.labels, self.prototypes, self.seed = labels, prototypes, seed
        self.probe = probe  # (H * W * 3, D): how every synthetic model maps an image to its features
        self.shape = (labels.shape[0], *prototypes.shape[1:])
        self.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx) -> np.ndarray:
        idx = np.arange(self.shape[0])[idx]
        scalar = idx.ndim == 0
        idx = np.atleast_1d(idx)
        out = np.empty((idx.size, *self.shape[1:]), np.uint8)
        for row, i in enumerate(idx):
            noise = np.random.default_rng((self.seed, int(i))).normal(0, 25, self.shape[1:])
            out[row] = np.clip(self.prototypes[self.labels[i]] + noise, 0, 255)
        return out[0] if scalar else out


#: Units of more samples x classes than this keep their features and compute the (N, K) cosines by columns, on
#: demand (1,000,000 x 1,000 would be 4 GB).
LAZY_COS_CELLS = 1 << 25


class SyntheticGeometry(Mapping):
    """A synthetic unit's geometry without its (N, K) cosines: every other array computed, chunk by chunk; the
    cosines of a band of classes computed on demand from the kept features (:meth:`columns`)."""

    def __init__(self, features: np.ndarray, W: np.ndarray, b: np.ndarray, labels: np.ndarray) -> None:
        self.features, self.W = features, np.asarray(W, np.float32)
        n = len(features)
        self._arrays: dict[str, np.ndarray] = {
            name: np.empty(n, t) for name, t in GEOMETRY_ARRAYS.items() if name != "cos"
        }
        for sl, part in iter_geometry(features, W, b, labels):
            for name, out in self._arrays.items():
                out[sl] = part[name]

    def columns(self, key: str, cols: np.ndarray) -> np.ndarray:
        if key != "cos":
            raise KeyError(key)
        W = self.W[np.asarray(cols, np.int64)]
        dot = self.features @ W.T
        length = np.linalg.norm(self.features, axis=1, keepdims=True)
        norms = np.linalg.norm(W, axis=1)
        return np.clip(dot / np.where(length > 0, length, 1) / np.where(norms > 0, norms, 1), -1, 1).astype(np.float32)

    def __getitem__(self, key: str) -> np.ndarray:
        if key == "cos":
            return self.columns("cos", np.arange(len(self.W)))
        return self._arrays[key]

    def __iter__(self):
        return iter(GEOMETRY_ARRAYS)

    def __len__(self) -> int:
        return len(GEOMETRY_ARRAYS)


def make_synthetic(
    cls,
    n: int,
    k: int,
    *,
    models: list[str],
    seed: int,
    corruptions: list[str],
    severities: list[int],
    dim: int,
    image_size: int,
):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n).astype(np.int64)
    directions = rng.standard_normal((k, dim)).astype(np.float32)
    if k >= ORDERED_FROM:  # many classes come in families (CIFAR-100's superclasses): alike class directions
        family = np.random.default_rng((seed, 7))
        groups = max(2, round(np.sqrt(k)))
        parents = family.standard_normal((groups, dim))
        member = family.permutation(np.arange(k) % groups)  # shuffled: the viewer has to find the families
        directions = (parents[member] + 0.55 * family.standard_normal((k, dim))).astype(np.float32)
    coarse = rng.uniform(30, 225, (k, 4, 4, 3))
    prototypes = np.kron(coarse, np.ones((image_size // 4, image_size // 4, 1)))
    pixels = image_size * image_size * 3
    # Image -> feature map: each class prototype lands on its class direction (least squares).
    flat = (prototypes.reshape(k, pixels) / 255.0) - 0.5
    mix = np.linalg.lstsq(flat, 3.0 * directions, rcond=None)[0].astype(np.float32)  # (pixels, D)
    heads, tags = {}, {}
    for i, m in enumerate(models):
        W = (directions + 0.15 * i * rng.standard_normal((k, dim))).astype(np.float32)
        heads[m] = (W, np.zeros(k, np.float32))
        method, _, sparsity = m.partition("-")
        tags[m] = {"method": method, "sparsity": float(sparsity) / 100 if sparsity.isdigit() else 0.0}
    units = {(m, CLEAN, 0) for m in models} | {(m, c, s) for m in models for c in corruptions for s in severities}
    conditions = [CLEAN, *corruptions]

    def loader(model: str, corruption: str, severity: int):
        i = models.index(model)
        g = np.random.default_rng((seed, i, conditions.index(corruption), severity))
        # noisier for each later model (spread over the same range when there are many)
        noise = 1.2 + (0.5 * i if len(models) <= 10 else 2.5 * i / (len(models) - 1)) + 0.6 * severity
        scale = g.lognormal(1.0, 0.25, (n, 1)).astype(np.float32)
        features = scale * directions[labels] + g.normal(0, noise, (n, dim)).astype(np.float32)
        W, b = heads[model]
        if n * k <= LAZY_COS_CELLS:
            return sample_geometry(features, W, b, labels)
        return SyntheticGeometry(features, W, b, labels)

    flat_heads = np.stack([heads[m][0].ravel() for m in models]).astype(np.float64)
    gram = flat_heads @ flat_heads.T
    sq = np.diag(gram)
    distance = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * gram, 0.0))  # (M, M) head distances
    np.fill_diagonal(distance, 0.0)
    embedding, mst = classical_mds(distance, k=2), minimum_spanning_tree(distance)
    return cls(
        models=list(models),
        tags=tags,
        corruptions=corruptions,
        severities=severities,
        labels=labels,
        class_names=[f"class {c}" for c in range(k)],
        loader=loader,
        units=units,
        embedding=embedding,
        mst=mst,
        images=SyntheticImages(labels, prototypes, seed, mix),
        heads=heads,
        probe_notes=dict.fromkeys(models, "a synthetic study has no probe files"),
        reference=default_reference(list(models), tags),
        title=f"synthetic ({n:,} samples)",
    )


def synthetic_services(data) -> Services:
    """Services for a synthetic study: every model's "probe" is the fixed linear map its images were made for,
    ``features = (images / 255 - 0.5) @ probe``, then the model's own head; its linearization is that map."""
    probe = data.images.probe

    def features(images: np.ndarray) -> np.ndarray:
        return ((images.reshape(len(images), -1) / 255.0) - 0.5).astype(np.float32) @ probe

    def explainer(model: str):
        W, b = data.heads[model]
        return lambda images, labels: linear_linearization(probe, W, b, images, labels)

    return Services(
        features=FunctionFeatures(dict.fromkeys(data.models, features)),
        explain=FunctionExplain({m: explainer(m) for m in data.models}),
    )


def linear_linearization(mix: np.ndarray, W: np.ndarray, b: np.ndarray, images: np.ndarray, labels: np.ndarray):
    """The exact :class:`~onnx_geom.linearize.Linearization` of a model whose features are the affine map
    ``f = (x / 255 - 0.5) @ mix`` of the uint8 image x and whose logits are ``W f + b``, computed in numpy:
    ``W(x) = W mix^T / 255`` and ``b(x) = W b_f + b`` with ``b_f = -0.5 * mix.sum(0)``; the geometry by the same
    frozen directions as the engine (:mod:`onnx_geom.linearize._geometry`)."""
    from onnx_geom.linearize import Decomposition, Linearization, Report
    from onnx_geom.linearize._geometry import GEOMETRY, directions

    n, shape = len(images), images.shape[1:]
    x = images.reshape(n, -1).astype(np.float64)
    J = np.asarray(mix, np.float64).T / 255.0  # (D, P): d f / d x
    b_f = -0.5 * np.asarray(mix, np.float64).sum(axis=0)
    f = x @ J.T + b_f
    W64, b64 = np.asarray(W, np.float64), np.asarray(b, np.float64)
    rows = W64 @ J  # (K, P)
    bias = W64 @ b_f + b64
    value = f @ W64.T + b64
    recon = x @ rows.T + bias
    residual = np.abs(recon - value).max(axis=1) / np.maximum(np.abs(value).max(axis=1), 1e-30)
    labels = np.asarray(labels, np.int64)
    u, c, values, rival = directions(f, W64, b64, labels)
    parts = {}
    for g, name in enumerate(GEOMETRY):
        gmap = (u[:, g] @ J) * x  # (n, P) float64: the residual is that of the float64 map
        parts[name] = Decomposition.of(gmap.reshape(n, *shape), u[:, g] @ b_f + c[:, g], values[:, g])
    W_full = np.broadcast_to(rows.astype(np.float32), (n, *rows.shape)).reshape(n, len(b64), *shape)
    return Linearization(
        "logits", np.ascontiguousarray(W_full), np.repeat(bias[None], n, 0), value, residual,
        Report("logits", (), ()), labels, rival, **parts,
    )  # fmt: skip
