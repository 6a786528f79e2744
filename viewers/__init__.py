"""The VisPy viewer of a study (installed as ``onnx_geom.viewers``); it only reads what the core wrote."""
