"""The worked example of docs/linearize.md: one test digit under fog/3, its margin map for the dense zoo model and
for magnitude_95, and their difference; plus the viewer's attribution panel on the same sample.

    python tools/linearize_example.py [--sample 197] [--out docs]

Builds a small demo study (dense and magnitude_95, clean and fog/3, all 359 test images, seed 0: the same images
as `onnx-geom demo`) in a temporary folder, runs the same computation as
`onnx-geom explain STUDY --model M --condition fog/3 --samples 197`, checks that each map plus its bias gives the
margin the study stored, and writes docs/linearize_example.png and docs/linearize_view.png.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=197)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from onnx_geom.demo.pipeline import run_demo
    from onnx_geom.explain import condition_images, study_probe
    from onnx_geom.linearize import Linearizer
    from onnx_geom.store import Study, Unit
    from onnx_geom.viewers import Selection, screenshot

    i, condition, models = args.sample, ("fog", 3), ("dense", "magnitude_95")
    with tempfile.TemporaryDirectory() as tmp:
        result = run_demo(Path(tmp) / "demo", models=list(models), corruptions=["fog"], severities=[3])
        study = Study.open(result.study)
        image = condition_images(study, condition, np.array([i]))
        label = study.labels[[i]]
        parts = {}
        for model in models:
            res = Linearizer(study_probe(study, model), device="cpu")(image, label)
            stored = float(study.read(Unit(model, *condition), "geometry/margin")[i])
            total = float(res.margin.map.sum(dtype=np.float64) + res.margin.bias[0])
            assert abs(total - stored) <= 1e-4 * max(1.0, abs(stored)), (model, total, stored)
            pred = int(res.value[0].argmax())
            parts[model] = (res.margin.map[0, ..., 0].astype(np.float64), float(res.margin.bias[0]), stored, pred)
            print(
                f"{model}: margin {stored:.3f} = {total - parts[model][1]:.3f} + {parts[model][1]:.3f}, predicts {pred}"
            )
        screenshot(
            result.study, args.out / "linearize_view.png", panel="attribution", size=(620, 560),
            selection=Selection(models=("magnitude_95",), condition=condition, indices=[i]),
        )  # fmt: skip

    (dense, db, dv, dp), (pruned, pb, pv, pp) = parts["dense"], parts["magnitude_95"]
    vmax = np.percentile(np.abs(np.concatenate([dense.ravel(), pruned.ravel()])), 99)
    diff = pruned - dense
    dmax = np.percentile(np.abs(diff), 99)
    fig, axes = plt.subplots(1, 4, figsize=(11, 3.2), constrained_layout=True)
    axes[0].imshow(image[0, ..., 0], cmap="gray", vmin=0, vmax=255)
    axes[0].set_title(f"test digit #{i} (a {int(label[0])}), fog/3", fontsize=9)
    panels = [
        (dense, vmax, f"dense: predicts {dp}\nmargin {dv:.2f} = {dense.sum():.2f} {'+' if db >= 0 else '-'} {abs(db):.2f}"),
        (pruned, vmax, f"magnitude_95: predicts {pp}\nmargin {pv:.2f} = {pruned.sum():.2f} {'+' if pb >= 0 else '-'} {abs(pb):.2f}"),
        (diff, dmax, f"magnitude_95 - dense\n{pv - dv:.2f} = {diff.sum():.2f} {'+' if pb - db >= 0 else '-'} {abs(pb - db):.2f}"),
    ]  # fmt: skip
    for ax, (values, scale, title) in zip(axes[1:], panels, strict=True):
        shown = ax.imshow(values, cmap="PuOr", vmin=-scale, vmax=scale)
        ax.set_title(title, fontsize=9)
        fig.colorbar(shown, ax=ax, shrink=0.8, label="contribution to the margin")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.savefig(args.out / "linearize_example.png", dpi=90)
    plt.close(fig)
    print(f"wrote {args.out / 'linearize_example.png'} and {args.out / 'linearize_view.png'}")


if __name__ == "__main__":
    main()
