"""onnx-geom: the feature-space geometry of any ONNX classifier, clean and under common corruptions.

The pipeline, one module per arrow::

    model.onnx --probe--> probe.onnx --run (with corruptions)--> study --geometry/compare--> tables --view--> window

>>> import onnx_geom
>>> onnx_geom.__version__
'0.1.0'

``onnx_geom.tables(study)`` gives a study's tables as pandas DataFrames (:func:`onnx_geom.frames.tables`).
"""

from onnx_geom.errors import OnnxGeomError

__version__ = "0.1.0"

__all__ = ["OnnxGeomError", "__version__", "tables"]


def tables(study, *, reference=None, samples=False, comparison=None):
    """Every table of a study as a pandas DataFrame, by name; see :func:`onnx_geom.frames.tables`."""
    from onnx_geom.frames import tables as _tables

    return _tables(study, reference=reference, samples=samples, comparison=comparison)
