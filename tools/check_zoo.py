"""Quick robustness check of a built zoo under a few ad hoc corruptions (not the real corruptions module).

    python tools/check_zoo.py [ZOO_DIR] [--markdown] [--reference]

Each corruption works on the uint8 test images in [0, 1] floats and is quantised back to uint8, as the probe
will see them: gaussian noise (std .08 / .16, seeded), gaussian blur (sigma 0.8 / 1.2 px), contrast
(``(x - mean) * c + mean`` with c = .3 / .15), impulse noise (salt and pepper, 5% / 10%). Prints per model the
clean accuracy, each corrupted accuracy and the mean corrupted accuracy.

``--reference`` instead uses the ``imagecorruptions`` package (ImageNet-C constants, stronger than the CIFAR
ones) for the 15 benchmark corruptions at severities 2 and 4, on every third test image (the package works on
RGB, so the grey image is repeated to three channels and the result averaged back to grey).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from scipy import ndimage


def _noise(x: np.ndarray, std: float) -> np.ndarray:
    return x + np.random.default_rng(0).normal(0.0, std, x.shape)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="reflect")


def _contrast(x: np.ndarray, c: float) -> np.ndarray:
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return (x - mean) * c + mean


def _impulse(x: np.ndarray, amount: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    hit = rng.random(x.shape) < amount
    return np.where(hit, rng.integers(0, 2, x.shape).astype(float), x)


CORRUPTIONS = {
    "noise .08": lambda x: _noise(x, 0.08),
    "noise .16": lambda x: _noise(x, 0.16),
    "blur .8": lambda x: _blur(x, 0.8),
    "blur 1.2": lambda x: _blur(x, 1.2),
    "contrast .3": lambda x: _contrast(x, 0.3),
    "contrast .15": lambda x: _contrast(x, 0.15),
    "impulse 5%": lambda x: _impulse(x, 0.05),
    "impulse 10%": lambda x: _impulse(x, 0.10),
}


def _reference_sets(images: np.ndarray) -> dict[str, np.ndarray]:
    import warnings

    from imagecorruptions import corrupt, get_corruption_names

    rgb = np.repeat(images, 3, axis=3)
    sets = {"clean": images}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in get_corruption_names("common"):
            for severity in (2, 4):
                np.random.seed(0)  # the package draws from numpy's global generator
                out = np.stack([np.asarray(corrupt(im, corruption_name=name, severity=severity)) for im in rgb])
                grey = out.astype(np.float64).mean(-1, keepdims=True) if out.ndim == 4 else out[..., None]
                sets[f"{name} {severity}"] = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return sets


def _predict(path: Path, images: np.ndarray, layout: str) -> np.ndarray:
    x = images.astype(np.float32) / 255.0
    x = x.reshape(len(x), -1) if layout == "flat" else x.transpose(0, 3, 1, 2)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x)})
    return next(o for o in outputs if o.ndim == 2).argmax(1)


def _accuracy(zoo: Path, entry: dict, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(_predict(zoo / entry["file"], images, entry["layout"]) == labels))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("zoo", nargs="?", type=Path, default=Path(__file__).parents[1] / "onnx_geom/demo/zoo")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--reference", action="store_true", help="imagecorruptions (ImageNet-C constants) instead")
    args = parser.parse_args()
    manifest = json.loads((args.zoo / "manifest.json").read_text())["models"]
    with np.load(args.zoo / "digits_test.npz") as data:
        images, labels = data["images"], data["labels"]
    if args.reference:  # one row per corruption x severity, one column per model
        images, labels = images[::3], labels[::3]
        sets = _reference_sets(images)
        names = [e["name"] for e in manifest]
        accs = {e["name"]: {k: _accuracy(args.zoo, e, x, labels) for k, x in sets.items()} for e in manifest}
        rows = [[k, *(f"{100 * accs[n][k]:.0f}" for n in names)] for k in sets]
        rows.append(
            ["mean corr.", *(f"{100 * np.mean([v for k, v in accs[n].items() if k != 'clean']):.1f}" for n in names)]
        )
        _print(["set", *names], rows, markdown=args.markdown)
        return
    sets = {"clean": images}
    for name, fn in CORRUPTIONS.items():
        sets[name] = np.clip(np.rint(fn(images.astype(np.float64) / 255.0) * 255.0), 0, 255).astype(np.uint8)
    rows = []
    for entry in manifest:
        accs = [_accuracy(args.zoo, entry, x, labels) for x in sets.values()]
        mean = f"{100 * np.mean(accs[1:]):.1f}"
        rows.append([entry["name"], f"{entry['sparsity']:.3f}", *(f"{100 * a:.1f}" for a in accs), mean])
    _print(["model", "sparsity", *sets, "mean corr."], rows, markdown=args.markdown)


def _print(header: list[str], rows: list[list[str]], *, markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(str(v).rjust(w) for v, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
