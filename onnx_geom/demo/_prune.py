"""Pruning masks for the zoo's :class:`~onnx_geom.demo._train.DigitNet` (``{parameter name: 0/1 tensor}``).

>>> from onnx_geom.demo._train import DigitNet
>>> net = DigitNet()
>>> masks = magnitude_masks(net, sparsity=0.8)
>>> round(mask_sparsity(net, masks), 3)
0.8

Unstructured masks (:func:`magnitude_masks`, :func:`random_masks`, :func:`snip_masks`) rank all Conv2d and
Linear weights together (global); :func:`l1_channel_masks` removes whole output channels and hidden units. The
true sparsity of a model is counted from its weights with :func:`weight_sparsity`.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from onnx_geom.demo._train import DigitNet, prunable

__all__ = [
    "erk_densities",
    "l1_channel_masks",
    "magnitude_masks",
    "mask_sparsity",
    "random_masks",
    "snip_masks",
    "weight_sparsity",
]


def _global_masks(weights: dict[str, torch.Tensor], order: torch.Tensor, sparsity: float) -> dict[str, torch.Tensor]:
    """Prune the first ``round(sparsity * total)`` entries of ``order`` (indices into the concatenated weights)."""
    total = sum(w.numel() for w in weights.values())
    keep = torch.ones(total)
    keep[order[: round(sparsity * total)]] = 0.0
    masks, start = {}, 0
    for name, w in weights.items():
        masks[name] = keep[start : start + w.numel()].reshape(w.shape).clone()
        start += w.numel()
    return masks


@torch.no_grad()
def magnitude_masks(model: nn.Module, *, sparsity: float) -> dict[str, torch.Tensor]:
    """Global magnitude pruning: zero the ``sparsity`` fraction of weights with the smallest ``|w|``.

    Ties are broken by position (stable sort), so the mask is deterministic; weights already at zero are the
    smallest, so pruning a pruned model further keeps its old mask (nested masks, as iterative pruning needs).
    """
    weights = prunable(model)
    magnitudes = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    return _global_masks(weights, torch.argsort(magnitudes, stable=True), sparsity)


def erk_densities(shapes: dict[str, tuple[int, ...]], *, sparsity: float) -> dict[str, float]:
    """Erdos-Renyi-Kernel layer densities (Evci et al. 2020): density proportional to ``sum(shape) / prod(shape)``,
    scaled so that the weights kept add up to ``(1 - sparsity)`` of all, with layers capped at fully dense
    (below: ``a`` is capped, so ``b`` keeps ``(0.1 * 10036 - 36) / 10000``).

    >>> d = erk_densities({"a": (4, 1, 3, 3), "b": (100, 100)}, sparsity=0.9)
    >>> d["a"], round(d["b"], 4)
    (1.0, 0.0968)
    """
    sizes = {n: int(np.prod(s)) for n, s in shapes.items()}
    raw = {n: sum(s) / sizes[n] for n, s in shapes.items()}
    dense: set[str] = set()
    while True:
        budget = (1.0 - sparsity) * sum(sizes.values()) - sum(sizes[n] for n in dense)
        scale = budget / sum(raw[n] * sizes[n] for n in shapes if n not in dense)
        over = {n for n in shapes if n not in dense and scale * raw[n] > 1.0}
        if not over:
            return {n: 1.0 if n in dense else scale * raw[n] for n in shapes}
        dense |= over


def random_masks(model: nn.Module, *, sparsity: float, seed: int) -> dict[str, torch.Tensor]:
    """Random unstructured pruning with Erdos-Renyi-Kernel layer densities (:func:`erk_densities`; a uniform
    random mask at 95% would cut the 72-weight first conv to a handful), each layer's kept weights drawn at
    random (seeded)."""
    weights = prunable(model)
    densities = erk_densities({n: tuple(w.shape) for n, w in weights.items()}, sparsity=sparsity)
    generator = torch.Generator().manual_seed(seed)
    masks = {}
    for name, w in weights.items():
        keep = torch.zeros(w.numel())
        keep[torch.randperm(w.numel(), generator=generator)[: round(densities[name] * w.numel())]] = 1.0
        masks[name] = keep.reshape(w.shape)
    return masks


def _channel_masks(model: DigitNet, fraction: float) -> dict[str, torch.Tensor]:
    """Remove ``fraction`` of the output channels (units) of conv1..3 and fc, lowest L1 norm first.

    A removed channel loses its filter and bias, and the next layer's weights that read it (for ``fc``, the
    4x4 block of flattened inputs per channel of conv3); the head keeps all its classes.
    """
    chain = ["conv1", "conv2", "conv3", "fc", "head"]
    layers = {name: getattr(model, name) for name in chain}
    masks = {f"{n}.{p}": torch.ones_like(getattr(layers[n], p)) for n in chain for p in ("weight", "bias")}
    for name, following in itertools.pairwise(chain):
        weight = layers[name].weight.detach()
        norms = weight.abs().flatten(1).sum(1)
        n_keep = max(1, round((1.0 - fraction) * len(norms)))
        dropped = torch.argsort(-norms, stable=True)[n_keep:]
        masks[f"{name}.weight"][dropped] = 0.0
        masks[f"{name}.bias"][dropped] = 0.0
        inputs_per_channel = layers[following].weight.shape[1] // len(norms) if following == "fc" else 1
        next_mask = masks[f"{following}.weight"]
        for channel in dropped.tolist():
            next_mask[:, channel * inputs_per_channel : (channel + 1) * inputs_per_channel] = 0.0
    return masks


@torch.no_grad()
def l1_channel_masks(model: DigitNet, *, sparsity: float) -> dict[str, torch.Tensor]:
    """L1-norm structured channel pruning (Li et al. 2017) at the smallest channel fraction whose weight
    sparsity reaches ``sparsity`` (channels are discrete, so the true sparsity is a little above it)."""
    for fraction in np.arange(0.0, 1.0, 0.005):
        masks = _channel_masks(model, float(fraction))
        if mask_sparsity(model, masks) >= sparsity:
            return masks
    return masks


def snip_masks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, sparsity: float) -> dict[str, torch.Tensor]:
    """SNIP (Lee et al. 2019): keep the weights with the largest connection sensitivity ``|w * dL/dw|`` on one
    batch ``x`` (N, 1, 32, 32), ``y`` (N,), measured at the model's current (usually initial) weights."""
    weights = prunable(model)
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        scores = torch.cat([(w.detach() * _grad(w)).abs().flatten() for w in weights.values()])
    model.zero_grad(set_to_none=True)
    return _global_masks(weights, torch.argsort(scores, stable=True), sparsity)


def mask_sparsity(model: nn.Module, masks: dict[str, torch.Tensor]) -> float:
    """Fraction of prunable weights (Conv2d and Linear weights) that ``masks`` zero."""
    names = prunable(model)
    zeros = sum(int((masks[n] == 0).sum()) if n in masks else 0 for n in names)
    return zeros / sum(w.numel() for w in names.values())


def weight_sparsity(arrays: list[np.ndarray]) -> float:
    """True sparsity: the fraction of exact zeros over all entries of the weight ``arrays``.

    >>> weight_sparsity([np.array([0.0, 1.0]), np.zeros((2, 3))])
    0.875
    """
    return sum(int(np.count_nonzero(a == 0)) for a in arrays) / sum(a.size for a in arrays)


def _grad(weight: torch.Tensor) -> torch.Tensor:
    """The gradient of a weight after ``backward()``; a weight the loss does not reach has none, so zero."""
    return weight.grad if weight.grad is not None else torch.zeros_like(weight)
