"""Benchmarks: each ``bench_<area>.py`` times onnx-geom against the peer a user would otherwise use, in one run."""

from pathlib import Path


def publish(path: Path, lines: list[str]) -> None:
    """Print a benchmark's results and write them to ``path`` (``benchmarks/results/<area>.md``)."""
    text = "\n".join(lines)
    print(text)
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
