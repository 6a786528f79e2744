"""Convolutions and average pooling, and their transposes.

A Conv's transpose is the ConvTranspose with the same weight, strides, dilations and groups, whose pads and
output_padding are chosen so that it returns exactly the input's size. For stride 1 it is also a plain Conv with
the kernel flipped and its in/out channels swapped per group, which onnxruntime runs faster on the CPU (its Conv
gets the blocked NCHWc kernels, its ConvTranspose does not): that is the default (``ADJOINT``; see
docs/linearize.md for the measurement). AveragePool's transpose is a depthwise ConvTranspose of ones after
dividing each output cotangent by that window's divisor (which depends on count_include_pad and the borders).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnx_geom.linearize._graph import Site, refuse
from onnx_geom.linearize._rules import linear, rule

#: "auto": a flipped-kernel Conv for stride-1 convolutions, ConvTranspose otherwise; "transpose": always ConvTranspose.
ADJOINT = {"conv": "auto"}


def pads_of(
    site: Site, in_sp: tuple[int, ...], out_sp: tuple[int, ...], k: list[int], s: list[int], d: list[int]
) -> tuple[list[int], list[int]]:
    """(begin, end) padding per spatial axis, explicit or from auto_pad."""
    n = len(in_sp)
    auto = site.attr("auto_pad", "NOTSET") or "NOTSET"
    if auto == "NOTSET":
        pads = list(site.attr("pads") or [0] * (2 * n))
        return pads[:n], pads[n:]
    if auto == "VALID":
        return [0] * n, [0] * n
    total = [
        max((o - 1) * si + (ki - 1) * di + 1 - i, 0) for i, o, ki, si, di in zip(in_sp, out_sp, k, s, d, strict=True)
    ]
    small = [t // 2 for t in total]
    big = [t - t // 2 for t in total]
    return (small, big) if auto == "SAME_UPPER" else (big, small)


def transpose_geometry(in_sp, out_sp, k, s, d, begin, end) -> tuple[list[int], list[int]]:
    """End pads and output_padding of the ConvTranspose that maps ``out_sp`` back onto exactly ``in_sp``."""
    ends, extra = [], []
    for i, o, ki, si, di, b, e in zip(in_sp, out_sp, k, s, d, begin, end, strict=True):
        full = si * (o - 1) + di * (ki - 1) + 1
        if full - b - e <= i:
            ends.append(e)
            extra.append(i - (full - b - e))
        else:  # a ceil_mode window that hangs over the end: crop it
            ends.append(full - b - i)
            extra.append(0)
    return ends, extra


def _merge(bw: Any, g: str, shape: tuple[int, ...]) -> str:
    """(R, N, C, *sp) -> (R * N, C, *sp): the cotangent directions become batch entries."""
    return bw.b.reshape(g, (-1, *shape[1:]))


def _conv_vjp(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    x, w = site.ins[0], site.ins[1]
    s_in, s_out = bw.shape(x), bw.shape(site.outs[0])
    in_sp, out_sp = s_in[2:], s_out[2:]
    n = len(in_sp)
    kernel = list(bw.shape(w)[2:])
    strides = list(site.attr("strides") or [1] * n)
    dil = list(site.attr("dilations") or [1] * n)
    group = int(site.attr("group", 1))
    begin, end = pads_of(site, in_sp, out_sp, kernel, strides, dil)
    weight = bw.const(w)
    reach = [di * (ki - 1) for ki, di in zip(kernel, dil, strict=True)]
    flat = _merge(bw, g[0], s_out)
    if (
        ADJOINT["conv"] == "auto"
        and weight is not None
        and all(si == 1 for si in strides)
        and all(b <= r and e <= r for b, e, r in zip(begin, end, reach, strict=True))
    ):
        m, c_g = weight.shape[:2]
        flipped = (
            weight.reshape(group, m // group, c_g, *kernel).swapaxes(1, 2).reshape(c_g * group, m // group, *kernel)
        )
        flipped = flipped[tuple([slice(None), slice(None)] + [slice(None, None, -1)] * n)]
        pads = [r - b for r, b in zip(reach, begin, strict=True)] + [r - e for r, e in zip(reach, end, strict=True)]
        out = bw.b.op(
            "Conv",
            [flat, bw.b.const(flipped, base="w_flipped")],
            dilations=dil,
            group=group,
            pads=pads,
            kernel_shape=kernel,
        )
    elif ADJOINT["conv"] == "auto" and weight is not None and n == 2 and strides[0] == strides[1] > 1 and dil == [1, 1]:
        out = _polyphase(bw, flat, bw.R * s_out[0], weight, group, strides[0], begin, in_sp, out_sp)
    else:
        ends, extra = transpose_geometry(in_sp, out_sp, kernel, strides, dil, begin, end)
        out = bw.b.op(
            "ConvTranspose",
            [flat, bw.value(w)],
            strides=strides,
            dilations=dil,
            group=group,
            pads=begin + ends,
            output_padding=extra,
            kernel_shape=kernel,
        )
    return [bw.b.reshape(out, (bw.R, *s_in))] + [None] * (len(site.ins) - 1)


def _phase(a: int, s: int, k: int, pb: int, n_in: int, n_out: int) -> tuple[list[int], int, int, int] | None:
    """Along one axis, output phase ``a`` (positions a, a+s, ...) of a stride-``s`` transpose as a stride-1
    correlation: (kernel taps, flipped; crop of the cotangent at the start; begin pad; end pad), or None if no
    tap reaches it. Derivation: x[s i + a] = sum_m W[r + s m] y[i + q - m] with r = (a + pb) mod s,
    q = (a + pb) // s."""
    r, q = (a + pb) % s, (a + pb) // s
    taps = list(range(r, k, s))
    length = len(range(a, n_in, s))
    if not taps or not length:
        return None
    m = len(taps)
    begin = m - 1 - q
    end = length - 1 + m - n_out - begin
    return taps[::-1], max(-begin, 0), max(begin, 0), end


def _polyphase(
    bw: Any, flat: str, batch: int, weight: np.ndarray, group: int, s: int, begin: list[int], in_sp, out_sp
) -> str:
    """The transpose of a stride-``s`` 2-D Conv as s*s stride-1 Convs (one per output phase, each with its
    slice of the flipped kernel) interleaved by DepthToSpace: the FLOPs of the transpose at the speed of Conv."""
    b = bw.b
    m_out, c_g = weight.shape[:2]
    channels = c_g * group
    size = [-(-n // s) for n in in_sp]  # ceil(n_in / s): the longest phase
    phases = []
    for a in range(s):
        for c in range(s):
            found = [
                _phase(p, s, k, pb, n, o)
                for p, k, pb, n, o in zip((a, c), weight.shape[2:], begin, in_sp, out_sp, strict=True)
            ]
            rows, cols = found
            if rows is None or cols is None:
                phases.append(b.expand(b.const(0.0), (batch, channels, 1, *size)))
                continue
            (th, ch, bh, eh), (tw, cw, bw_, ew) = rows, cols
            sub = weight[:, :, th][:, :, :, tw]
            sub = (
                sub.reshape(group, m_out // group, c_g, len(th), len(tw))
                .swapaxes(1, 2)
                .reshape(channels, m_out // group, len(th), len(tw))
            )
            y = flat
            if ch or cw or eh < 0 or ew < 0:
                stops = [out_sp[0] + min(eh, 0), out_sp[1] + min(ew, 0)]
                y = b.op("Slice", [y, b.const([ch, cw], np.int64), b.const(stops, np.int64), b.const([2, 3], np.int64)])
            part = b.op(
                "Conv",
                [y, b.const(sub, base="w_phase")],
                group=group,
                pads=[bh, bw_, max(eh, 0), max(ew, 0)],
                kernel_shape=[len(th), len(tw)],
            )
            lengths = [len(range(a, in_sp[0], s)), len(range(c, in_sp[1], s))]
            if lengths != size:
                part = b.op(
                    "Pad", [part, b.const([0, 0, 0, 0, 0, 0, size[0] - lengths[0], size[1] - lengths[1]], np.int64)]
                )
            phases.append(b.op("Unsqueeze", [part, b.const([2], np.int64)]))
    joined = b.reshape(b.op("Concat", phases, axis=2), (batch, channels * s * s, *size))
    out = b.op("DepthToSpace", [joined], blocksize=s, mode="CRD")
    if [s * n for n in size] != list(in_sp):
        out = b.op("Slice", [out, b.const([0, 0], np.int64), b.const(list(in_sp), np.int64), b.const([2, 3], np.int64)])
    return out


def divisors(site: Site, in_sp, out_sp, k, s, begin, end) -> np.ndarray:
    """Each AveragePool window's divisor (out_sp): its size within the padded input with count_include_pad,
    else its number of real input elements (as onnxruntime counts them)."""
    include = int(site.attr("count_include_pad", 0))
    per_axis = []
    for i, o, ki, si, b, e in zip(in_sp, out_sp, k, s, begin, end, strict=True):
        start = np.arange(o) * si - b
        if include:
            per_axis.append(np.minimum(start + ki, i + e) - start)
        else:
            per_axis.append(np.minimum(start + ki, i) - np.maximum(start, 0))
    return np.prod(np.meshgrid(*per_axis, indexing="ij"), axis=0).astype(np.float64)


def _avgpool_vjp(site: Site, bw: Any, g: list[Any]) -> list[str | None]:
    x = site.ins[0]
    s_in, s_out = bw.shape(x), bw.shape(site.outs[0])
    in_sp, out_sp = s_in[2:], s_out[2:]
    n = len(in_sp)
    kernel = list(site.attr("kernel_shape"))
    strides = list(site.attr("strides") or [1] * n)
    if any(di != 1 for di in site.attr("dilations") or [1] * n):
        refuse(site, "pools with dilations, which linearize does not support for AveragePool")
    begin, end = pads_of(site, in_sp, out_sp, kernel, strides, [1] * n)
    weights = bw.b.const(1.0 / divisors(site, in_sp, out_sp, kernel, strides, begin, end), base="inv_divisor")
    flat = _merge(bw, bw.b.op("Mul", [g[0], weights]), s_out)
    ends, extra = transpose_geometry(in_sp, out_sp, kernel, strides, [1] * n, begin, end)
    channels = s_in[1]
    ones = bw.b.const(np.ones((channels, 1, *kernel)), base="ones_kernel")
    out = bw.b.op(
        "ConvTranspose",
        [flat, ones],
        strides=strides,
        group=channels,
        pads=begin + ends,
        output_padding=extra,
        kernel_shape=kernel,
    )
    return [bw.b.reshape(out, (bw.R, *s_in))]


rule("Conv", classify=linear(0), vjp=_conv_vjp)
rule("AveragePool", classify=linear(0), vjp=_avgpool_vjp)
