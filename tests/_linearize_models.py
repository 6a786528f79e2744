"""Tiny torch models for the linearize tests, and the independent oracle: torch autograd in float64 through the
probe's own preprocessing (uint8 values as floats -> /255 -> normalise -> NCHW)."""

from __future__ import annotations

import copy

import numpy as np


def cnn(torch):
    """BN, residual add, overlapping max pool, average pool (padded, count_include_pad=False), strided, grouped
    and dilated convs, concat, a linear head. Input 3 x 12 x 12."""
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2)
            self.dil = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
            self.bn2 = nn.BatchNorm2d(8)
            self.side = nn.Conv2d(8, 4, 1, stride=2)
            self.fc = nn.Linear(20, 5)
            with torch.no_grad():
                for bn in (self.bn, self.bn2):
                    bn.running_mean.uniform_(-0.3, 0.3)
                    bn.running_var.uniform_(0.5, 2.0)
                    bn.weight.uniform_(0.5, 1.5)

        def forward(self, x):
            return self.fc(self.features(x))

        def features(self, x):
            h = torch.relu(self.bn(self.stem(x)))  # 8 x 12 x 12
            pooled = nn.functional.max_pool2d(h, 3, stride=2, padding=1)  # 8 x 6 x 6, overlapping windows
            d = torch.relu(self.down(h))  # 8 x 6 x 6
            r = torch.relu(self.bn2(self.dil(d)) + pooled)  # residual add
            a = nn.functional.avg_pool2d(r, 3, stride=2, padding=1, count_include_pad=False)  # 8 x 3 x 3
            s = self.side(r)  # 4 x 3 x 3
            return torch.cat([a.mean((2, 3)), nn.functional.adaptive_avg_pool2d(r, 1).flatten(1), s.amax((2, 3))], 1)

    return Net().eval()


def features_of(torch, net):
    """A module whose forward is ``net.features``: the oracle of the features' Jacobian."""

    class Features(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.features(x)

    return Features()


def conv_head(torch, *, cin=3, cout=4, k=3, stride=2, padding=1, dilation=1, groups=1, size=9):
    """One Conv2d (the configuration under test) -> ReLU -> flatten -> Linear."""
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups)
            with torch.no_grad():
                out = self.conv(torch.zeros(1, cin, size, size))
            self.fc = nn.Linear(out.numel(), 3)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    return Net().eval()


def images(n, size, seed=0, channels=3):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def oracle(torch, net, imgs, mean, std, *, output=lambda out: out, nchw=True):
    """(J (S, K, H, W, C), F (S, K)) in float64: torch.func.jacrev of the network composed with the probe's
    preprocessing, differentiated with respect to the uint8 values taken as floats."""
    net64 = copy.deepcopy(net).double().eval()
    m = torch.tensor(mean, dtype=torch.float64)
    s = torch.tensor(std, dtype=torch.float64)

    def f(x):
        z = (x / 255.0 - m) / s
        z = z.permute(2, 0, 1)[None] if nchw else z[None]
        return output(net64(z))[0].reshape(-1)

    jac, val = [], []
    for im in imgs:
        x = torch.tensor(im, dtype=torch.float64)
        jac.append(torch.func.jacrev(f)(x).detach().numpy())
        with torch.no_grad():
            val.append(f(x).numpy())
    return np.stack(jac), np.stack(val)


def rel(a, b):
    """max |a - b| relative to max |b|."""
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-30))
