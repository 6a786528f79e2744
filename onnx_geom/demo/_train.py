"""The zoo's CNN and its training loop (torch, CPU, deterministic).

>>> import torch
>>> net = DigitNet()
>>> net(torch.zeros(2, 1, 32, 32)).shape
torch.Size([2, 10])

The last layer is a ``Linear`` (``net.head``) on 64 penultimate features, so the probe finds the head. Masks
(``{parameter name: 0/1 tensor}``) are re-applied after every optimiser step, so pruned weights stay exactly 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DigitNet", "Masks", "accuracy", "apply_masks", "deterministic", "prunable", "to_tensor", "train"]

Masks = Mapping[str, torch.Tensor]
BATCH = 64


class DigitNet(nn.Module):
    """Three 3x3 conv blocks (8, 16, 32 channels, each ReLU + 2x2 max-pool), Linear(512, 64) + ReLU, Linear head.

    Input: float32 (N, 1, 32, 32) in [0, 1]; output: logits (N, 10); penultimate features: (N, 64).
    """

    def __init__(self, *, widths: tuple[int, int, int] = (8, 16, 32), hidden: int = 64, classes: int = 10) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.fc = nn.Linear(c3 * 4 * 4, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        x = F.relu(self.fc(torch.flatten(x, 1)))
        return self.head(x)


def prunable(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{name: weight}`` of every Conv2d and Linear weight (biases are never pruned or counted)."""
    return {f"{name}.weight": m.weight for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


@contextlib.contextmanager
def deterministic(*, threads: int = 1) -> Iterator[None]:
    """Deterministic algorithms on ``threads`` threads inside the block; the previous settings come back after."""
    old_threads, old_flag = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old_flag)
        torch.set_num_threads(old_threads)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 1) -> float32 (N, 1, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 255.0


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks | None) -> None:
    """Zero every masked entry of ``model``'s parameters in place."""
    if masks:
        params = dict(model.named_parameters())
        for name, mask in masks.items():
            params[name].mul_(mask)


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    seed: int,
    masks: Masks | None = None,
) -> nn.Module:
    """Train ``model`` in place with Adam on shuffled mini-batches of 64, keeping ``masks`` applied.

    ``x``: float32 (N, 1, 32, 32); ``y``: int64 (N,). The shuffling comes from ``seed`` alone.
    """
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    apply_masks(model, masks)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), BATCH):
            idx = order[start : start + BATCH]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            apply_masks(model, masks)
    model.eval()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` (float32 (N, 1, 32, 32)) whose argmax logit is ``y`` (N,)."""
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())
