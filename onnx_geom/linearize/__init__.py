"""Exact local linearization of a probe: ``F(x) = W(x) x + b(x)`` with the activation pattern frozen at x.

>>> from onnx_geom.linearize import Linearizer
>>> lin = Linearizer("resnet.probe.onnx", output="logits")       # doctest: +SKIP
>>> res = lin(images, labels)                                     # doctest: +SKIP
>>> res.W.shape, res.b.shape, res.report.kind                      # doctest: +SKIP
((8, 10, 32, 32, 3), (8, 10), 'exact local linear map')
>>> res.margin.map.shape, res.margin.value                         # doctest: +SKIP
((8, 32, 32, 3), array([...]))

Modules: ``_graph`` (kinds, graph builder), ``_rules`` (the rule table; linear ops), ``_frozen`` (piecewise-linear
ops and gates), ``_select`` (index-map ops), ``_conv`` (convolutions, pools), ``_analyze`` (classification),
``_build`` (the forward and backward graphs), ``_geometry`` (margin, cos, length as linear functions of the
features), ``_engine`` (sessions, chunks, results). See docs/linearize.md.
"""

from onnx_geom.linearize._engine import EXACT, Decomposition, Linearization, Linearizer, Report, linearize
from onnx_geom.linearize._rules import RULES

__all__ = ["EXACT", "RULES", "Decomposition", "Linearization", "Linearizer", "Report", "linearize"]
