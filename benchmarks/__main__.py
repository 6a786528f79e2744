"""Run every benchmark (``python -m benchmarks``) or some (``python -m benchmarks corruptions runner``).

Each ``benchmarks/bench_<area>.py`` has a ``main()`` that prints its table and writes
``benchmarks/results/<area>.md``; ``benchmarks/RESULTS.md`` collects the latest figures.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    here = Path(__file__).parent
    areas = sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    chosen = argv or areas
    unknown = sorted(set(chosen) - set(areas))
    if unknown:
        sys.exit(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(areas)}")
    for area in chosen:
        print(f"== {area}", flush=True)
        importlib.import_module(f"benchmarks.bench_{area}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
