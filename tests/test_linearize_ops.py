"""Op coverage through torch's exporters: ops that move values (Pad, Slice, Gather, Tile/Expand, DepthToSpace,
nearest Resize, Split, Transpose, Where), piecewise-linear ops (LeakyRelu, PRelu, Clip, Abs, Max, Min,
HardSigmoid, ReduceSum/Mean) against jacrev; smooth gates (SiLU, HardSwish, InstanceNorm, a Div by a norm,
tanh-GELU) through the identity and the report."""

from __future__ import annotations

import numpy as np
import pytest
from _linearize_models import images, oracle, rel

from onnx_geom.linearize import EXACT, Linearizer


def piecewise_zoo(torch):
    nn, F = torch.nn, torch.nn.functional

    class Zoo(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(6)
            self.conv = nn.Conv2d(3, 6, 3, padding=1)
            self.prelu = nn.PReLU(4, init=0.3)
            self.register_buffer("mask", torch.rand(1, 4, 8, 8) > 0.3)
            self.register_buffer("pick", torch.tensor([3, 0, 2]))
            self.fc = nn.Linear(34, 4)

        def forward(self, x):
            h = self.conv(x)  # 6 x 8 x 8
            h = F.pad(h, (1, 0, 0, 2))[:, :, 1:-1, :-1]  # Pad, Slice
            h = F.leaky_relu(h, 0.1)
            a, b = h.split([2, 4], dim=1)  # Split
            a = F.pixel_shuffle(a.repeat(1, 2, 1, 1), 2)  # Tile, DepthToSpace: 1 x 16 x 16
            a = F.max_pool2d(F.interpolate(a[:, :, ::4, ::4], scale_factor=2.0, mode="nearest"), 2)  # Resize: 1 x 4 x 4
            b = torch.clamp(self.prelu(b), -0.5, 0.8)  # PRelu, Clip
            b = torch.maximum(b, -0.5 * b.abs()) + torch.minimum(b, torch.zeros_like(b) + 0.1)  # Max, Abs, Min
            b = torch.where(self.mask, b, 0.25 * b)  # Where with a constant condition
            c = F.hardsigmoid(b.index_select(1, self.pick))  # Gather, HardSigmoid: 3 x 8 x 8
            t = c.permute(0, 2, 3, 1).unsqueeze(1).squeeze(1)  # Transpose, Unsqueeze, Squeeze
            return self.fc(
                torch.cat(
                    [
                        a.flatten(1),
                        t.sum((1, 2)),
                        b.mean((2, 3)).unsqueeze(2).expand(-1, 4, 3).reshape(x.shape[0], -1),
                        t.amin(1).mean(1),
                    ],
                    1,
                )
            )

    return Zoo().eval()


def gate_zoo(torch):
    nn, F = torch.nn, torch.nn.functional

    class Gates(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(7)
            self.conv = nn.Conv2d(3, 6, 3, padding=1)
            self.inorm = nn.InstanceNorm2d(6, affine=True)
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            h = F.silu(self.conv(x))  # Sigmoid gate times its input
            h = F.hardswish(self.inorm(h))
            h = F.gelu(h, approximate="tanh")
            f = h.mean((2, 3))
            return self.fc(f / (f.norm(dim=1, keepdim=True) + 1.0))  # a Div by a norm of the input

    return Gates().eval()


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_piecewise_ops_give_the_jacobian(torch, exporter):
    from onnx_geom.export import torch_to_probe

    net = piecewise_zoo(torch)
    model = torch_to_probe(net, torch.rand(2, 3, 8, 8), head=net.fc, dynamo=exporter == "dynamo")
    graph_ops = {node.op_type for node in model.graph.node}
    moved = {"Pad", "Slice", "Gather", "Tile", "DepthToSpace", "Resize", "Expand", "Where", "Split", "Transpose"}
    assert moved <= graph_ops, moved - graph_ops
    imgs = images(3, 8, seed=31)
    res = Linearizer(model, device="cpu", chunk=2)(imgs)
    J, F = oracle(torch, net, imgs, (0, 0, 0), (1, 1, 1))
    assert rel(res.W, J) < 1e-4, exporter
    assert rel(res.value, F) < 1e-5 and res.residual.max() < 1e-4
    assert res.report.kind == EXACT
    found = {op for op, _ in res.report.patterns}
    assert {"LeakyRelu", "PRelu", "Clip", "Max", "Min", "HardSigmoid", "MaxPool", "ReduceMin"} <= found, found


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_smooth_gates_close_the_identity_and_are_named(torch, exporter):
    from onnx_geom.export import torch_to_probe

    net = gate_zoo(torch)
    model = torch_to_probe(net, torch.rand(2, 3, 6, 6), head=net.fc, dynamo=exporter == "dynamo")
    imgs = images(3, 6, seed=41)
    res = Linearizer(model, device="cpu")(imgs)
    _, F = oracle(torch, net, imgs, (0, 0, 0), (1, 1, 1))
    assert rel(res.value, F) < 1e-5
    assert res.residual.max() < 1e-4
    recon = np.einsum("skhwc,shwc->sk", res.W.astype(np.float64), imgs.astype(np.float64)) + res.b
    assert rel(recon, F) < 1e-4
    assert not res.report.exact
    ops = {op for op, _ in res.report.gates}
    assert "Sigmoid" in ops and "InstanceNormalization" in ops and ops & {"HardSwish", "HardSigmoid"}, ops
    assert ops & {"Div", "Sqrt", "ReduceL2", "Pow"}, ops
