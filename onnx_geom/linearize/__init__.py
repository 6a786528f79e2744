"""Exact local linearization of a probe: ``F(x) = W(x) x + b(x)`` with the activation pattern frozen at x.

    from onnx_geom.linearize import Linearizer

    lin = Linearizer("resnet.probe.onnx", output="logits")   # a path or a ModelProto; device="auto"|"cpu"|"cuda"
    res = lin(images, labels)                                # uint8 (S, H, W, C); labels (S,) or None
    res.W.shape, res.b.shape, res.report.kind                # (S, 10, 32, 32, 3), (S, 10), 'exact local linear map'
    res.margin.map.shape, res.margin.bias, res.margin.value  # (S, 32, 32, 3), (S,), (S,): value == map.sum() + bias

Modules: ``_graph`` (kinds, graph builder), ``_rules`` (the rule table; linear ops), ``_frozen`` (piecewise-linear
ops and gates), ``_select`` (index-map ops), ``_conv`` (convolutions, pools), ``_analyze`` (classification),
``_build`` (the forward and backward graphs), ``_geometry`` (margin, cos, length as linear functions of the
features), ``_engine`` (sessions, chunks, results). See docs/linearize.md.
"""

from onnx_geom.linearize._engine import EXACT, Decomposition, Linearization, Linearizer, Report, linearize
from onnx_geom.linearize._rules import RULES

__all__ = ["EXACT", "RULES", "Decomposition", "Linearization", "Linearizer", "Report", "linearize"]
