"""The screenshots of docs/view.md at 10, 100 and 1,000 classes (synthetic studies, 20,000 samples each).

    python tools/view_screenshots.py            # writes docs/view-k10.png, view-k100.png, view-k1000.png

Each is the whole window (1400 x 860) of the model ``dense`` under fog 3 with 20 samples selected; at 1,000
classes group 5 is picked. The PNGs are stored with a 256-colour palette (a few hundred KB each).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from onnx_geom.viewers import Selection, ViewerData, render
from onnx_geom.viewers._synthetic import synthetic_services

DOCS = Path(__file__).resolve().parent.parent / "docs"
CASES = {10: (16, ""), 100: (64, ""), 1000: (128, "g5")}  # classes: (feature dimension, classes picked)


def main(argv: list[str]) -> None:
    chosen = [int(a) for a in argv] or list(CASES)
    for k in chosen:
        dim, picked = CASES[k]
        n = 20_000
        data = ViewerData.synthetic(n, k, models=("dense", "magnitude-50", "magnitude-90"), dim=dim, seed=0)
        selection = Selection(models=("dense",), condition=("fog", 3), indices=range(0, n, n // 20))
        if picked:
            selection.classes = data.class_order().parse(picked)
        image = render(data, size=(1400, 860), selection=selection, services=synthetic_services(data))
        out = DOCS / f"view-k{k}.png"
        Image.fromarray(image[..., :3]).quantize(256, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
        print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main(sys.argv[1:])
