"""The ``onnx-geom`` command line (installed as ``onnx_geom.cli``): a thin Typer layer over the core."""
