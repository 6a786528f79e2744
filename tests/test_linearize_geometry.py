"""The margin's frozen direction when two classes share a direction: map . f + bias is still the margin."""

import numpy as np
import pytest

from onnx_geom.linearize._geometry import directions

W = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # classes 0 and 1 share one direction
F = np.array([[3.0, 1.0]])


@pytest.mark.parametrize(
    ("b", "margin", "rival"),
    [
        ([0.0, 0.0, 0.0], 0.0, -1),  # z_0 = z_1 everywhere on that direction: the boundary is everywhere
        ([0.0, 1.0, 0.0], -np.inf, -1),  # z_1 > z_0 everywhere: never crossed, on the wrong side
        ([1.0, 0.0, 0.0], 3 / np.sqrt(2), 2),  # class 1 never wins; class 2: (4 - 1) / ||(1, -1)||
    ],
)
def test_the_margin_decided_by_a_shared_direction_adds_up(b, margin, rival):
    u, c, values, j = directions(F, W, np.array(b), np.array([0]))
    assert values[0, 0] == pytest.approx(margin) and j[0] == rival
    assert u[0, 0] @ F[0] + c[0, 0] == pytest.approx(margin)
