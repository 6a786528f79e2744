"""Benchmarks: each ``bench_<area>.py`` times onnx-geom against the peer a user would otherwise use, in one run."""
