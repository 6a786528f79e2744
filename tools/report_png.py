"""The picture of a report in docs/: its top in headless Chromium (tests/_chromium.py), palette PNG.

    python tools/report_png.py onnx-geom-demo/report.html docs/report.png [--size 1100x1000]

Fails if the page logs an error or requests anything but the file itself and its data URIs.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _chromium import Browser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", default="1100x1000", help="viewport WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    with Browser() as browser:
        page = browser.open(args.report.resolve().as_uri(), width=width, height=height)
        errors = page.errors()
        outside = [url for url in page.requests[1:] if not url.startswith("data:")]
        if errors or outside:
            raise SystemExit(f"the report is not clean: {errors + outside}")
        png = page.screenshot()
    picture = Image.open(io.BytesIO(png)).convert("RGB")
    picture.quantize(64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
