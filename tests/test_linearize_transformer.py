"""The frozen-gate case: a transformer block (patch-embedding conv, LayerNorm, softmax attention, GELU MLP).

The oracle is the same block written in torch with its gates (1/sigma of each LayerNorm, the attention
weights, GELU's Phi) computed at x and then held fixed: its jacrev is W(x) and its value at the zero image is
b(x). The exported graph uses the ordinary ops (LayerNormalization, Softmax, Erf/Gelu)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _linearize_models import images, oracle, rel
from _probe_models import CIFAR10

from onnx_geom.linearize import Linearizer


def block(torch):
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self, dim=8, heads=2):
            super().__init__()
            torch.manual_seed(2)
            self.heads = heads
            self.patch = nn.Conv2d(3, dim, 4, stride=4)  # 8 x 8 image -> 4 tokens
            self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.fc1, self.fc2 = nn.Linear(dim, 16), nn.Linear(16, dim)
            self.head = nn.Linear(dim, 5)
            with torch.no_grad():
                for ln in (self.ln1, self.ln2):
                    ln.weight.uniform_(0.5, 1.5)
                    ln.bias.uniform_(-0.2, 0.2)
            self.frozen = None  # None: compute the gates (export); a dict: use these values

        def gate(self, name, compute):
            if self.frozen is not None:
                return self.frozen[name]
            value = compute()
            self.seen[name] = value
            return value

        def norm(self, x, ln, name):
            if self.frozen is None and not self.recording:
                return ln(x)
            inv = self.gate(name, lambda: 1.0 / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + ln.eps))
            return (x - x.mean(-1, keepdim=True)) * inv * ln.weight + ln.bias

        def forward(self, x):
            n = x.shape[0]
            t = self.patch(x).flatten(2).transpose(1, 2)  # (N, T, D)
            h = self.norm(t, self.ln1, "ln1")
            q, k, v = (p.reshape(n, -1, self.heads, 4).transpose(1, 2) for p in self.qkv(h).chunk(3, dim=-1))
            if self.frozen is None and not self.recording:
                attn = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)
            else:
                attn = self.gate("attn", lambda: torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1))
            t = t + self.proj((attn @ v).transpose(1, 2).reshape(n, -1, 4 * self.heads))
            u = self.fc1(self.norm(t, self.ln2, "ln2"))
            if self.frozen is None and not self.recording:
                act = F.gelu(u)
            else:
                act = u * self.gate("phi", lambda: 0.5 * (1.0 + torch.erf(u / math.sqrt(2.0))))
            t = t + self.fc2(act)
            return self.head(t.mean(1))

    net = Block().eval()
    net.recording, net.seen = False, {}
    return net


def frozen_oracle(torch, net, im):
    """(W, b, F) of the block with every gate frozen at ``im``, in float64 torch."""
    import copy

    net64 = copy.deepcopy(net).double()
    m, s = (torch.tensor(v, dtype=torch.float64) for v in CIFAR10)
    prep = lambda x: ((x / 255.0 - m) / s).permute(2, 0, 1)[None]
    x = torch.tensor(im, dtype=torch.float64)
    net64.recording, net64.seen = True, {}
    with torch.no_grad():
        value = net64(prep(x))[0].numpy()
    net64.frozen, net64.recording = dict(net64.seen), False
    W = torch.func.jacrev(lambda z: net64(prep(z))[0])(x).detach().numpy()
    with torch.no_grad():
        b = net64(prep(torch.zeros_like(x)))[0].numpy()
    return W, b, value


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_transformer_block_is_an_exact_decomposition_with_frozen_gates(torch, exporter):
    from onnx_geom.export import torch_to_probe

    net = block(torch)
    model = torch_to_probe(net, torch.rand(2, 3, 8, 8), head=net.head, preset="cifar10", dynamo=exporter == "dynamo")
    imgs = images(3, 8, seed=21)
    res = Linearizer(model, device="cpu", chunk=2)(imgs)
    x = imgs.astype(np.float64)
    assert res.residual.max() < 1e-4
    recon = np.einsum("skhwc,shwc->sk", res.W.astype(np.float64), x) + res.b
    assert rel(recon, res.value) < 1e-4
    for s, im in enumerate(imgs):
        W, b, value = frozen_oracle(torch, net, im)
        assert rel(res.W[s], W) < 1e-4, exporter
        assert rel(res.b[s], b) < 1e-4, exporter
        assert rel(res.value[s], value) < 1e-5, exporter
    J, _ = oracle(torch, net, imgs, *CIFAR10)
    assert rel(res.W, J) > 1e-3  # with gates frozen, W(x) is not the Jacobian
    report = res.report
    assert not report.exact
    ops = {op for op, _ in report.gates}
    assert {"LayerNormalization", "Softmax"} <= ops and ops & {"Erf", "Gelu"}, ops
    assert report.kind.startswith("exact decomposition with frozen gates at: ")
    assert all(f"{op} (" in report.kind for op in ops)
    for name in ("margin", "cos", "length"):
        dec = getattr(res, name)
        assert dec.residual.max() < 1e-4, name
