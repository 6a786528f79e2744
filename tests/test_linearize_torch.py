"""linearize on torch models exported to probes, against torch autograd (jacrev, float64) as the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from _linearize_models import cnn, conv_head, features_of, images, oracle, rel
from _probe_models import CIFAR10

from onnx_geom.linearize import EXACT, Linearizer


@pytest.fixture(scope="module", params=["legacy", "dynamo"])
def cnn_probe(request, torch):
    from onnx_geom.export import torch_to_probe

    net = cnn(torch)
    model = torch_to_probe(
        net, torch.rand(2, 3, 12, 12), head=net.fc, preset="cifar10", dynamo=request.param == "dynamo"
    )
    return request.param, net, model


def test_cnn_W_is_the_jacobian_and_b_closes_the_identity(cnn_probe, torch):
    kind, net, model = cnn_probe
    imgs = images(5, 12, seed=3)
    lin = Linearizer(model, device="cpu", chunk=2, geometry=False)
    res = lin(imgs)
    J, F = oracle(torch, net, imgs, *CIFAR10)
    assert res.W.shape == (5, 5, 12, 12, 3) and res.b.shape == (5, 5)
    assert rel(res.W, J) < 1e-4, kind
    assert rel(res.value, F) < 1e-5, kind
    # b(x) from the zero-input twin against torch's F(x) - J x: an independent value of the bias
    expected_b = F - np.einsum("skhwc,shwc->sk", J, imgs.astype(np.float64))
    assert rel(res.b, expected_b) < 1e-4, kind
    recon = np.einsum("skhwc,shwc->sk", res.W.astype(np.float64), imgs.astype(np.float64)) + res.b
    assert rel(recon, F) < 1e-4 and res.residual.max() < 1e-4, kind
    assert res.report.kind == EXACT and res.report.exact and not res.report.gates
    assert {op for op, _ in res.report.patterns} >= {"Relu", "MaxPool"}


def test_geometry_maps_against_numpy(cnn_probe, torch):
    """margin, cos and length: maps = (u . J_f) * x with u from numpy loops over the classes; values from their
    definitions on torch's features; biases = u . (f - J_f x)."""
    _, net, model = cnn_probe
    imgs = images(4, 12, seed=5)
    labels = np.array([0, 3, 4, 1])
    res = Linearizer(model, device="cpu", chunk=3)(imgs, labels)
    Jf, f = oracle(torch, features_of(torch, net), imgs, *CIFAR10)
    W = net.fc.weight.detach().double().numpy()
    b = net.fc.bias.detach().double().numpy()
    x = imgs.astype(np.float64)
    for s, y in enumerate(labels):
        z = W @ f[s] + b
        dists = [((z[y] - z[j]) / np.linalg.norm(W[y] - W[j]), j) for j in range(len(b)) if j != y]
        margin, rival = min(dists)
        u = {
            "margin": (W[y] - W[rival]) / np.linalg.norm(W[y] - W[rival]),
            "cos": W[y] / (np.linalg.norm(W[y]) * np.linalg.norm(f[s])),
            "length": f[s] / np.linalg.norm(f[s]),
        }
        offset = {"margin": (b[y] - b[rival]) / np.linalg.norm(W[y] - W[rival]), "cos": 0.0, "length": 0.0}
        value = {"margin": margin, "cos": W[y] @ f[s] / (np.linalg.norm(W[y]) * np.linalg.norm(f[s])),
                 "length": np.linalg.norm(f[s])}  # fmt: skip
        assert res.rival[s] == rival
        bf = f[s] - np.einsum("dhwc,hwc->d", Jf[s], x[s])
        for name, direction in u.items():
            dec = getattr(res, name)
            expected_map = np.einsum("d,dhwc->hwc", direction, Jf[s]) * x[s]
            assert rel(dec.map[s], expected_map) < 1e-4, name
            assert abs(dec.bias[s] - (direction @ bf + offset[name])) < 1e-4 * max(1.0, abs(value[name])), name
            assert dec.value[s] == pytest.approx(value[name], rel=1e-5, abs=1e-6), name
            assert dec.map[s].sum(dtype=np.float64) + dec.bias[s] == pytest.approx(value[name], rel=1e-4, abs=1e-5)
            assert dec.residual[s] < 1e-4


def test_chunks_and_direction_slices_give_the_same_answer_and_iter_streams(cnn_probe):
    _, _, model = cnn_probe
    imgs = images(7, 12, seed=8)
    whole = Linearizer(model, device="cpu", chunk=8)(imgs)
    parts = list(Linearizer(model, device="cpu", chunk=3).iter(imgs))
    assert [len(p.W) for p in parts] == [3, 3, 1]
    np.testing.assert_allclose(np.concatenate([p.W for p in parts]), whole.W, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.concatenate([p.margin.map for p in parts]), whole.margin.map, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([p.labels for p in parts]), whole.labels)
    few = Linearizer(model, device="cpu", chunk=3, directions=3)  # 5 classes + 3 geometry rows, 3 per backward run
    assert few.plan.directions == 3 and few.R == 8
    sliced = few(imgs)
    np.testing.assert_allclose(sliced.W, whole.W, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sliced.length.map, whole.length.map, rtol=1e-4, atol=1e-6)


# stride, kernel, padding, dilation, groups, size: the polyphase and flipped-kernel transposes, odd sizes
CONV_CASES = [
    (2, 3, 1, 1, 1, 9),
    (2, 3, 0, 1, 1, 8),
    (2, 1, 0, 1, 1, 7),
    (3, 5, 2, 1, 1, 11),
    (2, 4, 1, 1, 2, 10),
    (3, 2, 0, 1, 1, 8),
    (1, 3, 2, 2, 1, 9),
    (1, 5, 1, 1, 4, 9),
    (2, 3, 1, 2, 1, 9),
]


@pytest.mark.parametrize("stride,k,padding,dilation,groups,size", CONV_CASES)
def test_conv_transposes_match_autograd(torch, stride, k, padding, dilation, groups, size):
    from onnx_geom.export import torch_to_probe

    net = conv_head(
        torch,
        cin=4 if groups > 1 else 3,
        k=k,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        size=size,
    )
    cin = net.conv.in_channels
    if cin != 3:  # a 4-channel image: normalise all four
        model = torch_to_probe(
            net, torch.rand(2, cin, size, size), head=net.fc, mean=[0.5], std=[0.25], layout="NCHW", dynamo=False
        )
        mean, std = (0.5,) * cin, (0.25,) * cin
    else:
        model = torch_to_probe(net, torch.rand(2, 3, size, size), head=net.fc, preset="cifar10", dynamo=False)
        mean, std = CIFAR10
    imgs = images(2, size, seed=stride * 10 + k, channels=cin)
    res = Linearizer(model, device="cpu", chunk=2, geometry=False)(imgs)
    J, F = oracle(torch, net, imgs, mean, std)
    assert rel(res.W, J) < 1e-4 and rel(res.value, F) < 1e-5
    assert res.residual.max() < 1e-4


def test_other_named_outputs_features_and_a_user_embedding(torch):
    """output='features' and a second model output (a 2-D embedding) are linearized like the logits."""
    from onnx_geom.export import torch_to_probe

    nn = torch.nn

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(4)
            self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.fc = nn.Linear(6, 4)
            self.embed = nn.Linear(6, 2)

        def forward(self, x):
            h = self.body(x)
            return self.fc(h), self.embed(torch.relu(h))

    net = TwoHeads().eval()
    model = torch_to_probe(net, torch.rand(2, 3, 6, 6), head=net.fc, dynamo=False)
    imgs = images(3, 6, seed=11)
    outputs = {o.name for o in model.graph.output}
    assert "output_1" in outputs
    emb = Linearizer(model, output="output_1", device="cpu", geometry=False)(imgs)
    J, F = oracle(torch, net, imgs, (0, 0, 0), (1, 1, 1), output=lambda out: out[1])
    assert emb.W.shape == (3, 2, 6, 6, 3) and rel(emb.W, J) < 1e-4 and rel(emb.value, F) < 1e-5
    feats = Linearizer(model, output="features", device="cpu")(imgs)
    Jf, f = oracle(torch, net.body, imgs, (0, 0, 0), (1, 1, 1))
    assert feats.W.shape == (3, 6, 6, 6, 3) and rel(feats.W, Jf) < 1e-4 and rel(feats.value, f) < 1e-5
    assert feats.length.value == pytest.approx(np.linalg.norm(f, axis=1), rel=1e-5)


# kind, kernel, stride, padding, ceil_mode, count_include_pad, size
POOL_CASES = [
    ("avg", 3, 2, 1, False, False, 9),
    ("avg", 3, 2, 1, False, True, 9),
    ("avg", 2, 2, 0, True, True, 7),
    ("avg", 3, 2, 1, True, False, 8),
    ("max", 3, 2, 1, True, False, 8),
    ("max", 2, 1, 0, False, False, 7),
]


@pytest.mark.parametrize("kind,k,stride,padding,ceil,include,size", POOL_CASES)
def test_pooling_transposes_match_autograd(torch, kind, k, stride, padding, ceil, include, size):
    from onnx_geom.export import torch_to_probe

    nn = torch.nn
    if kind == "avg":
        pool = nn.AvgPool2d(k, stride, padding, ceil_mode=ceil, count_include_pad=include)
    else:
        pool = nn.MaxPool2d(k, stride, padding, ceil_mode=ceil)
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    out = pool(conv(torch.zeros(1, 3, size, size))).numel()
    net = nn.Sequential(conv, nn.ReLU(), pool, nn.Flatten(), nn.Linear(out, 3)).eval()
    model = torch_to_probe(net, torch.rand(2, 3, size, size), head=net[4], dynamo=False)
    imgs = images(2, size, seed=k * 7 + stride)
    res = Linearizer(model, device="cpu", geometry=False)(imgs)
    J, F = oracle(torch, net, imgs, (0, 0, 0), (1, 1, 1))
    assert rel(res.W, J) < 1e-4 and rel(res.value, F) < 1e-5
    assert res.residual.max() < 1e-4
