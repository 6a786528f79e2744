"""The linearizer: sessions of the forward and backward graphs, run chunk by chunk, and the results.

Per chunk of S images: one forward run (F(x), the frozen pattern, and the zero-input twin b(x)), the geometry
directions in numpy from the features, one backward run on R = K_out (+ 3 geometry) cotangent directions, then
W(x) = the first K_out rows, and the identity residual |W x + b - F(x)| in float64.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnx_geom.errors import DataError, DeviceError
from onnx_geom.linearize._analyze import analyze
from onnx_geom.linearize._build import GRAD, build
from onnx_geom.linearize._geometry import GEOMETRY, directions
from onnx_geom.probe_info import FEATURES, LOGITS, PROBE_INPUT

EXACT = "exact local linear map"


@dataclass(frozen=True)
class Decomposition:
    """One scalar per sample as a sum of per-input-value contributions plus a bias: ``value == map.sum() + bias``.

    ``map`` (S, H, W, C) float32, ``bias`` (S,) and ``value`` (S,) float64; ``residual`` (S,) float64 is
    ``|map.sum() + bias - value|`` relative to ``max(|value|, sum |map| + |bias|)``."""

    map: np.ndarray
    bias: np.ndarray
    value: np.ndarray
    residual: np.ndarray

    @classmethod
    def of(cls, map: np.ndarray, bias: np.ndarray, value: np.ndarray) -> Decomposition:
        """``map`` (S, ...) with its ``bias`` and ``value`` (S,): the residual computed from ``map`` as given (sums
        in float64), the map kept as float32. A non-finite value (a margin of +inf: no boundary) has residual 0."""
        flat = map.reshape(len(map), -1)
        total = flat.sum(axis=1, dtype=np.float64) + bias
        size = np.maximum(np.abs(value), np.abs(flat).sum(axis=1, dtype=np.float64) + np.abs(bias))
        with np.errstate(invalid="ignore"):
            residual = np.where(np.isfinite(value), np.abs(total - value) / np.maximum(size, 1e-30), 0.0)
        return cls(np.asarray(map, np.float32), bias, value, residual)


@dataclass(frozen=True)
class Report:
    """Which case the model is in: ``gates`` are the (op type, node) pairs where a smooth gate is frozen (empty:
    a piecewise-linear network, W(x) is its Jacobian); ``patterns`` the (op, node) pairs of frozen
    piecewise-linear patterns (ReLU masks, max-pool argmax, comparisons)."""

    output: str
    gates: tuple[tuple[str, str], ...]
    patterns: tuple[tuple[str, str], ...]

    @property
    def exact(self) -> bool:
        return not self.gates

    @property
    def kind(self) -> str:
        """``"exact local linear map"`` or ``"exact decomposition with frozen gates at: Op ('node', ...), ..."``."""
        if not self.gates:
            return EXACT
        by_op: dict[str, list[str]] = {}
        for op, node in self.gates:
            by_op.setdefault(op, []).append(node)
        parts = []
        for op, nodes in by_op.items():
            shown = ", ".join(f"'{n}'" for n in nodes[:3]) + (f" and {len(nodes) - 3} more" if len(nodes) > 3 else "")
            parts.append(f"{op} ({shown})")
        return "exact decomposition with frozen gates at: " + ", ".join(parts)


@dataclass(frozen=True)
class Linearization:
    """``F(x) = W(x) x + b(x)`` for S images x (uint8 values as floats) and the output ``output``.

    ``W`` (S, K, H, W, C) float32; ``b`` (S, K) and ``value`` (S, K) float64 (F(x) as the probe computes it,
    flattened to K values); ``residual`` (S,) the largest ``|W x + b - F(x)|`` over the K values relative to
    ``max |F(x)|``; ``margin``, ``cos``, ``length`` (:class:`Decomposition`, or None without geometry) with
    ``labels`` (S,) the classes used and ``rival`` (S,) the frozen nearest competing class j* (-1: none)."""

    output: str
    W: np.ndarray
    b: np.ndarray
    value: np.ndarray
    residual: np.ndarray
    report: Report
    labels: np.ndarray | None = None
    rival: np.ndarray | None = None
    margin: Decomposition | None = None
    cos: Decomposition | None = None
    length: Decomposition | None = None


class Linearizer:
    """Build once per probe and output, then call on uint8 images (S, H, W, C) any number of times."""

    def __init__(
        self,
        probe: Any,
        *,
        output: str = LOGITS,
        geometry: bool = True,
        device: str = "auto",
        chunk: int | None = None,
        directions: int | None = None,
        threads: int | None = None,
    ) -> None:
        from onnx_geom.runner import DEVICES, _auto_device, _load

        if device not in DEVICES or device == "tensorrt":
            raise DeviceError(f"unknown device {device!r} for linearize; choose one of auto, cpu, cuda.")
        model, self.info, _ = _load(probe, weights=True)
        self.output, self.geometry = output, geometry
        self.directions = int(directions or 64)
        if (chunk is not None and chunk < 1) or self.directions < 1:
            raise DataError(f"chunk and directions must be at least 1, not {chunk} and {directions}.")
        extra = len(GEOMETRY) if geometry else 0
        per_run = lambda k: min(k + extra, self.directions)
        sized = lambda k: int(chunk) if chunk else max(1, min(8, 128 // per_run(k)))
        guess = {LOGITS: self.info.num_classes, FEATURES: self.info.feature_dim}.get(output, 10)
        targets = list(dict.fromkeys([output, *([FEATURES] if geometry else [])]))
        self.chunk = sized(guess)
        an = analyze(model, targets, tuple(self.info.input_shape), self.chunk)
        shape = an.shapes[output]
        if not shape or shape[0] != self.chunk:
            raise DataError(
                f"the output '{output}' has shape {shape}, which has no batch axis first; linearize a per-image output."
            )
        self.out_shape = tuple(int(d) for d in shape[1:])
        self.K = int(np.prod(self.out_shape))
        if sized(self.K) != self.chunk:  # an output of another size than guessed: redo at the chunk that suits it
            self.chunk = sized(self.K)
            an = analyze(model, targets, tuple(self.info.input_shape), self.chunk)
        self.R = self.K + extra
        self.plan = build(an, per_run(self.K))
        self.report = Report(
            output,
            tuple((op, node) for op, node, how in an.sources if how == "smooth"),
            tuple((op, node) for op, node, how in an.sources if how == "piecewise"),
        )
        self.device = _auto_device(False) if device == "auto" else device
        self._forward = _session(self.plan.forward, self.device, threads)
        self._backward = _session(self.plan.backward, self.device, threads)
        self._seeds = self._identity_seeds()

    def _identity_seeds(self) -> dict[str, np.ndarray]:
        seeds = {}
        for target, name in self.plan.seeds.items():
            shape = (self.R, self.chunk, *(self.out_shape if target == self.output else (self.info.feature_dim,)))
            seed = np.zeros((self.R, self.chunk, int(np.prod(shape[2:]))), np.float32)
            if target == self.output:
                seed[np.arange(self.K), :, np.arange(self.K)] = 1.0
            seeds[name] = seed.reshape(shape)
        return seeds

    def __call__(self, images: np.ndarray, labels: np.ndarray | None = None) -> Linearization:
        """All of ``images`` at once (memory grows with S: use :meth:`iter` for large sets)."""
        parts = list(self.iter(images, labels))
        if len(parts) == 1:
            return parts[0]
        join: Any = lambda name: (
            None if getattr(parts[0], name) is None else np.concatenate([getattr(p, name) for p in parts])
        )
        decomp = lambda name: None if getattr(parts[0], name) is None else Decomposition(
            *(np.concatenate([getattr(getattr(p, name), f) for p in parts]) for f in ("map", "bias", "value", "residual"))
        )  # fmt: skip
        return Linearization(
            self.output, join("W"), join("b"), join("value"), join("residual"), self.report, join("labels"),
            join("rival"), decomp("margin"), decomp("cos"), decomp("length"),
        )  # fmt: skip

    def iter(self, images: np.ndarray, labels: np.ndarray | None = None) -> Iterator[Linearization]:
        """One :class:`Linearization` per chunk of ``chunk`` images: memory stays flat in the number of images."""
        images = _check_images(images, self.info.input_shape)
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
                raise DataError(
                    f"labels must be integers of shape ({len(images)},), one per image, not {labels.dtype} {labels.shape}."
                )
            if len(labels) and (labels.min() < 0 or labels.max() >= self.info.num_classes):
                raise DataError(
                    f"labels run from {labels.min()} to {labels.max()} but the probe has {self.info.num_classes} classes."
                )
        for start in range(0, len(images), self.chunk):
            stop = min(start + self.chunk, len(images))
            yield self._run(images[start:stop], None if labels is None else labels[start:stop])

    def _run(self, images: np.ndarray, labels: np.ndarray | None) -> Linearization:
        n, plan = len(images), self.plan
        batch = np.concatenate([images, np.repeat(images[-1:], self.chunk - n, axis=0)]) if n < self.chunk else images
        names = [self.output, plan.twins[self.output], *(t for t, _ in plan.taps)]
        if self.geometry:
            names += [FEATURES, plan.twins[FEATURES]]
        found = dict(
            zip(
                names,
                self._forward.run(names, {PROBE_INPUT: batch, plan.zero_input: np.zeros_like(batch)}),
                strict=True,
            )
        )
        feeds = {tap: found[t] for t, tap in plan.taps}
        seeds = {name: seed.copy() if self.geometry else seed for name, seed in self._seeds.items()}
        geometry: tuple[np.ndarray, ...] = ()
        if self.geometry:
            f = found[FEATURES]
            y = np.asarray(labels, np.int64) if labels is not None else None
            if y is None or n < self.chunk:
                pred = (f.astype(np.float64) @ self.info.W.T.astype(np.float64) + self.info.b).argmax(1)
                y = np.concatenate([y, pred[n:]]) if y is not None else pred
            u, c, values, rival = directions(f, self.info.W, self.info.b, y)
            seed = seeds[plan.seeds[FEATURES]]
            seed[self.K :] += u.transpose(1, 0, 2).astype(np.float32)
            geometry = (u, c, values, rival, y)
        grad = self._backward_rows(feeds, seeds)  # (R, S, H, W, C)
        W = np.ascontiguousarray(grad[: self.K, :n].swapaxes(0, 1))
        x = batch[:n].reshape(n, -1).astype(np.float64)
        value = found[self.output][:n].reshape(n, self.K).astype(np.float64)
        b = found[plan.twins[self.output]][:n].reshape(n, self.K).astype(np.float64)
        recon = np.einsum("skp,sp->sk", W.reshape(n, self.K, -1), x) + b
        scale = np.maximum(np.abs(value).max(axis=1), 1e-30)
        residual = np.abs(recon - value).max(axis=1) / scale
        result: dict[str, Any] = {}
        if geometry:
            u, c, values, rival, y = geometry
            bias = np.einsum("sgd,sd->sg", u, found[plan.twins[FEATURES]].astype(np.float64)) + c
            for g, name in enumerate(GEOMETRY):
                gmap = (grad[self.K + g, :n] * batch[:n]).astype(np.float32)
                result[name] = Decomposition.of(gmap, bias[:n, g], values[:n, g])
            result.update(labels=y[:n], rival=rival[:n])
        return Linearization(self.output, W, b, value, residual, self.report, **result)

    def _backward_rows(self, feeds: dict[str, np.ndarray], seeds: dict[str, np.ndarray]) -> np.ndarray:
        """The R rows of the cotangent of the images, ``plan.directions`` rows per backward run."""
        width = self.plan.directions
        if width >= self.R:
            return self._backward.run([GRAD], {**feeds, **seeds})[0]
        parts = [
            self._backward.run([GRAD], {**feeds, **_rows(seeds, start, width)})[0] for start in range(0, self.R, width)
        ]
        return np.concatenate(parts)[: self.R]


def _rows(seeds: dict[str, np.ndarray], start: int, width: int) -> dict[str, np.ndarray]:
    """Rows start .. start + width of every seed, zero-padded to ``width`` rows."""
    out = {}
    for name, seed in seeds.items():
        part = seed[start : start + width]
        if len(part) < width:
            part = np.concatenate([part, np.zeros((width - len(part), *part.shape[1:]), part.dtype)])
        out[name] = part
    return out


def _check_images(images: Any, shape: tuple[int, ...]) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise DataError(f"images must be uint8 (the probe's input), not {images.dtype}.")
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(shape):
        raise DataError(f"images must have shape (S, {', '.join(map(str, shape))}), not {images.shape}.")
    if len(images) == 0:
        raise DataError("there are no images to linearize; give at least one.")
    return np.ascontiguousarray(images)


def _session(model: Any, device: str, threads: int | None) -> Any:
    import onnxruntime as ort

    from onnx_geom.runner import _PROVIDERS

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
    # no busy-waiting between runs: numpy works between the two sessions, and other work shares the CPU
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = _PROVIDERS[device]
    if providers[0] not in ort.get_available_providers():
        raise DeviceError(f"{device} was asked for but this onnxruntime has no {providers[0]}; use device='cpu'.")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
    if session.get_providers()[0] != providers[0]:
        raise DeviceError(
            f"{device} was asked for but onnxruntime fell back to {session.get_providers()[0]}; use device='cpu'."
        )
    return session


def linearize(
    probe: Any,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    output: str = LOGITS,
    geometry: bool = True,
    device: str = "auto",
    chunk: int | None = None,
    directions: int | None = None,
) -> Linearization:
    """One call: build a :class:`Linearizer` for ``probe`` (a path or an onnx.ModelProto) and run it on
    ``images`` uint8 (S, H, W, C). ``labels`` (S,) are the true classes for the geometry (default: the predicted
    ones). See docs/linearize.md."""
    return Linearizer(probe, output=output, geometry=geometry, device=device, chunk=chunk, directions=directions)(
        images, labels
    )


__all__ = ["EXACT", "Decomposition", "Linearization", "Linearizer", "Report", "linearize"]
