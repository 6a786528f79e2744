"""A made-up study for tests, demos and benchmarks (see :meth:`ViewerData.synthetic`)."""

from __future__ import annotations

import numpy as np

from onnx_geom.conditions import CLEAN
from onnx_geom.geometry import sample_geometry
from onnx_geom.similarity import classical_mds, minimum_spanning_tree
from onnx_geom.viewers.services import FunctionFeatures, Services


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

    def loader(model: str, corruption: str, severity: int) -> dict[str, np.ndarray]:
        g = np.random.default_rng((seed, models.index(model), conditions.index(corruption), severity))
        noise = 1.2 + 0.5 * models.index(model) + 0.6 * severity
        scale = g.lognormal(1.0, 0.25, (n, 1)).astype(np.float32)
        features = scale * directions[labels] + g.normal(0, noise, (n, dim)).astype(np.float32)
        W, b = heads[model]
        return sample_geometry(features, W, b, labels)

    flat_heads = np.stack([heads[m][0].ravel() for m in models]).astype(np.float64)
    distance = np.linalg.norm(flat_heads[:, None] - flat_heads[None], axis=-1)  # (M, M) head distances
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
        title=f"synthetic ({n:,} samples)",
    )


def synthetic_services(data) -> Services:
    """Services for a synthetic study: every model's "probe" is the fixed linear map its images were made for."""
    probe = data.images.probe

    def features(images: np.ndarray) -> np.ndarray:
        return ((images.reshape(len(images), -1) / 255.0) - 0.5).astype(np.float32) @ probe

    return Services(features=FunctionFeatures(dict.fromkeys(data.models, features)))
