"""Run every benchmark (``python -m benchmarks``) or some (``python -m benchmarks corruptions runner``).

Each ``benchmarks/bench_<area>.py`` has a ``main()`` that prints its table and writes
``benchmarks/results/<area>.md``; afterwards ``benchmarks/RESULTS.md`` is rebuilt from the latest result of
every area (``python -m benchmarks --collect`` rebuilds it without running anything).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

ORDER = ("corruptions", "runner", "ray", "store", "geometry", "viewer", "probe", "demo", "linearize", "faithfulness")


def collect(here: Path) -> Path:
    """Rebuild RESULTS.md: a short preface, then every ``results/<area>.md`` (known areas first)."""
    found = {p.stem: p for p in sorted((here / "results").glob("*.md"))}
    areas = [a for a in ORDER if a in found] + [a for a in found if a not in ORDER]
    parts = [
        "# Benchmark results\n\nLatest figures per area, each with its machine, date and command; every speed is a ratio "
        "against the tool a user would otherwise use, measured in the same run. Rebuilt by `python -m benchmarks` "
        "from `benchmarks/results/*.md`.\n"
    ]
    demote = lambda text: "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())
    parts += [demote(found[a].read_text()) + "\n" for a in areas]
    target = here / "RESULTS.md"
    target.write_text("\n".join(parts))
    return target


def main(argv: list[str]) -> None:
    here = Path(__file__).parent
    if argv == ["--collect"]:
        print(f"wrote {collect(here)}")
        return
    areas = sorted(
        m.name.removeprefix("bench_") for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_")
    )
    chosen = argv or areas
    unknown = sorted(set(chosen) - set(areas))
    if unknown:
        sys.exit(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(areas)}")
    for area in chosen:
        print(f"== {area}", flush=True)
        importlib.import_module(f"benchmarks.bench_{area}").main()
    print(f"wrote {collect(here)}")


if __name__ == "__main__":
    main(sys.argv[1:])
