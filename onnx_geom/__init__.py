"""onnx-geom: the feature-space geometry of any ONNX classifier, clean and under common corruptions.

The pipeline, one module per arrow::

    model.onnx --probe--> probe.onnx --run (with corruptions)--> study --geometry/compare--> tables --view--> window

>>> import onnx_geom
>>> onnx_geom.__version__
'0.1.0'
"""

from onnx_geom.errors import OnnxGeomError

__version__ = "0.1.0"

__all__ = ["OnnxGeomError", "__version__"]
