"""``python -m onnx_geom`` does what the ``onnx-geom`` command does."""

from onnx_geom.cli.app import main

if __name__ == "__main__":
    main()
