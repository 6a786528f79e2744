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
    return bw.b.op("Reshape", [g, bw.b.const((-1, *shape[1:]), np.int64)])


def _split(bw: Any, x: str, shape: tuple[int, ...]) -> str:
    return bw.b.op("Reshape", [x, bw.b.const((bw.R, *shape), np.int64)])


def _conv_vjp(site: Site, bw: Any, g: list[str | None]) -> list[str | None]:
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
        flipped = flipped[(slice(None), slice(None), *([slice(None, None, -1)] * n))]
        pads = [r - b for r, b in zip(reach, begin, strict=True)] + [r - e for r, e in zip(reach, end, strict=True)]
        out = bw.b.op(
            "Conv",
            [flat, bw.b.const(flipped, base="w_flipped")],
            dilations=dil,
            group=group,
            pads=pads,
            kernel_shape=kernel,
        )
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
    return [_split(bw, out, s_in)] + [None] * (len(site.ins) - 1)


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


def _avgpool_vjp(site: Site, bw: Any, g: list[str | None]) -> list[str | None]:
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
    return [_split(bw, out, s_in)]


rule("Conv", classify=linear(0), vjp=_conv_vjp)
rule("AveragePool", classify=linear(0), vjp=_avgpool_vjp)
