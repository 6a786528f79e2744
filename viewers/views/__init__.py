"""The six linked views; each draws into one VisPy ViewBox and subscribes to the shared selection."""

from onnx_geom.viewers.views.attribution import AttributionView
from onnx_geom.viewers.views.global_geometry import GlobalView
from onnx_geom.viewers.views.local_geometry import LocalView
from onnx_geom.viewers.views.samples import SamplesView
from onnx_geom.viewers.views.similarity import SimilarityView
from onnx_geom.viewers.views.table import TableView

#: panel name -> view class, in layout order (row-major, 3 columns).
VIEWS = {
    "table": TableView,
    "similarity": SimilarityView,
    "samples": SamplesView,
    "local": LocalView,
    "global": GlobalView,
    "attribution": AttributionView,
}

__all__ = ["VIEWS", "AttributionView", "GlobalView", "LocalView", "SamplesView", "SimilarityView", "TableView"]
