"""Faithfulness of attributions: deletion curves on the demo zoo for linearization, occlusion, gradient x input
and integrated gradients, one run.

    python -m benchmarks faithfulness          # about 2 minutes on 2 shared cores

For each model and each correctly classified test image (of the zoo's 359), each method ranks the pixels (most
positive contribution first); the pixels are then removed in that order, 32 at a time (set to 0, black, or to the
image's mean grey), and the probe is run on every step. The curves follow the logit of the true class and the
margin (recomputed from the features at each step, nearest rival not frozen). The area under the mean curve over
the fraction removed (0..1) is reported; lower is more faithful (the evidence the method points at goes first).

Methods (every score is per pixel; the images have one channel):

- ``linearize margin``: the margin map of :mod:`onnx_geom.linearize` (onnxruntime, the probe file);
- ``linearize true logit``: ``W(x)[y] * x``, the true logit's map (the same engine run);
- ``gradient x input``: torch autograd on the zoo model rebuilt in torch from its ONNX weights, true logit;
- ``integrated gradients``: Captum's IntegratedGradients on the same torch model, 50 steps, black baseline, true
  logit;
- ``occlusion 4x4`` / ``occlusion 2x2``: the viewer's occlusion (``onnx_geom.viewers.attribution.occlusion``,
  patches filled with the image's mean grey), the drop of the margin when a patch is occluded, given to each of
  its pixels;
- ``random``: a random order (seeded), the floor any method should beat.

The zoo's models are piecewise linear (ReLU, max-pool): there W(x) is the Jacobian, so ``linearize true logit``
and ``gradient x input`` are the same map (the run checks it and reports the largest difference), and the margin
map is gradient x input of the margin itself. What linearization adds there is the exact bias term and the maps
of margin, angle and length; on networks with smooth gates (GELU, LayerNorm, attention) the maps differ from
gradients (docs/linearize.md). ``BENCH_MODELS`` (default dense,magnitude_95,mlp_sklearn) and ``BENCH_N``
(default all 359 test images) size the run. Writes benchmarks/results/faithfulness.md and
docs/linearize_faithfulness.png.
"""

from __future__ import annotations

import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import publish

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "faithfulness.md"
FIGURE = HERE.parent / "docs" / "linearize_faithfulness.png"
STEP = 32  # pixels removed per step
METHODS = (
    "linearize margin",
    "linearize true logit",
    "gradient x input",
    "integrated gradients",
    "occlusion 4x4",
    "occlusion 2x2",
    "random",
)
FILLS = ("0", "mean")
FOLLOWED = ("true logit", "margin")


def torch_model(source: Path):
    """The zoo model rebuilt in torch from its ONNX weights, as a function of uint8 values (as floats) NHWC."""
    import onnx
    import torch
    from onnx import numpy_helper

    from onnx_geom.demo._train import DigitNet

    weights = {
        t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in onnx.load(str(source)).graph.initializer
    }
    if "conv1.weight" in weights:
        net = DigitNet()
        net.load_state_dict(weights)
        net.eval()
        return lambda x: net(x.permute(0, 3, 1, 2) / 255.0)
    hidden = torch.nn.Linear(1024, 64)  # the scikit-learn MLP: MatMul + Add, ReLU, MatMul + Add
    head = torch.nn.Linear(64, 10)
    with torch.no_grad():
        hidden.weight.copy_(weights["coefficient"].T)
        hidden.bias.copy_(weights["intercepts"].reshape(-1))
        head.weight.copy_(weights["coefficient1"].T)
        head.bias.copy_(weights["intercepts1"].reshape(-1))
    return lambda x: head(torch.relu(hidden(x.reshape(len(x), -1) / 255.0)))


def scores(name: str, probe: Path, source: Path, images: np.ndarray, labels: np.ndarray) -> tuple[dict, dict]:
    """Per-pixel scores (S, H, W) of every method, seconds per image of each, and checks."""
    import torch
    from captum.attr import IntegratedGradients

    from onnx_geom.linearize import Linearizer
    from onnx_geom.runner import ProbeSession
    from onnx_geom.viewers.attribution import occlusion

    out, seconds, checks = {}, {}, {}
    start = time.perf_counter()
    res = Linearizer(probe, device="cpu")(images, labels)
    seconds["linearize margin"] = seconds["linearize true logit"] = (time.perf_counter() - start) / len(images)
    rows = np.arange(len(images))
    out["linearize margin"] = res.margin.map.sum(-1)
    out["linearize true logit"] = (res.W[rows, labels] * images).sum(-1)
    checks["identity residual"] = float(res.residual.max())

    model = torch_model(source)
    x = torch.from_numpy(images.astype(np.float32))
    y = torch.from_numpy(labels)
    with torch.no_grad():
        checks["torch vs probe logits"] = float(np.abs(model(x).numpy() - res.value).max())
    start = time.perf_counter()
    xg = x.clone().requires_grad_(True)
    model(xg)[torch.arange(len(x)), y].sum().backward()
    out["gradient x input"] = (xg.grad * x).sum(-1).numpy()
    seconds["gradient x input"] = (time.perf_counter() - start) / len(images)
    gap = np.abs(out["gradient x input"] - out["linearize true logit"]).max(axis=(1, 2))
    gap /= np.maximum(np.abs(out["linearize true logit"]).max(axis=(1, 2)), 1e-30)
    checks["gradient x input vs linearize true logit"] = float(np.median(gap))
    checks["images where they differ"] = int((gap > 1e-4).sum())
    start = time.perf_counter()
    ig = IntegratedGradients(model)
    parts = [
        ig.attribute(x[i : i + 32], baselines=x[i : i + 32] * 0, target=y[i : i + 32], n_steps=50,
                     internal_batch_size=1600).sum(-1).detach().numpy()
        for i in range(0, len(x), 32)
    ]  # fmt: skip
    out["integrated gradients"] = np.concatenate(parts)
    seconds["integrated gradients"] = (time.perf_counter() - start) / len(images)

    session = ProbeSession.open(probe, device="cpu")
    W, b = session.info.W, session.info.b
    features = lambda batch: session.run(batch)[0]
    for patch, method in ((4, "occlusion 4x4"), (2, "occlusion 2x2")):
        start = time.perf_counter()
        maps = [
            occlusion(im, int(label), features, W, b, patch=patch)["margin"]
            for im, label in zip(images, labels, strict=True)
        ]
        seconds[method] = (time.perf_counter() - start) / len(images)
        # a patch's drop of the margin, given to each of its pixels (the drop: minus the change)
        out[method] = -np.stack(
            [np.kron(m, np.ones((patch, patch)))[: images.shape[1], : images.shape[2]] for m in maps]
        )
    out["random"] = np.random.default_rng(0).random(images.shape[:3])
    seconds["random"] = 0.0
    return out, {"seconds": seconds, "checks": checks}


def deletion(probe: Path, images: np.ndarray, labels: np.ndarray, score: np.ndarray, fill: str) -> dict:
    """Mean curves (steps + 1,) of the true logit and the margin as the pixels go, most positive score first."""
    from onnx_geom.geometry import sample_geometry
    from onnx_geom.runner import ProbeSession

    session = ProbeSession.open(probe, device="cpu")
    s, h, w, c = images.shape
    order = np.argsort(-score.reshape(s, -1), axis=1, kind="stable")
    steps = np.arange(0, h * w + 1, STEP)
    batch = np.repeat(images[:, None], len(steps), axis=1).reshape(s, len(steps), h * w, c)
    values = (
        np.zeros((s, 1, c), np.uint8) if fill == "0" else np.round(images.mean(axis=(1, 2)))[:, None].astype(np.uint8)
    )
    rank = np.empty_like(order)
    rank[np.arange(s)[:, None], order] = np.arange(h * w)  # each pixel's place in its image's order
    gone = rank[:, None, :] < steps[None, :, None]  # (S, steps, P)
    batch = np.where(gone[..., None], values[:, None], batch).reshape(-1, h, w, c)
    feats, logits = zip(*(session.run(batch[i : i + 4096]) for i in range(0, len(batch), 4096)), strict=True)
    f, z = np.concatenate(feats), np.concatenate(logits)
    y = np.repeat(labels, len(steps))
    margin = sample_geometry(f, session.info.W, session.info.b, y)["margin"].astype(np.float64)
    return {
        "fraction": steps / (h * w),
        "true logit": z[np.arange(len(z)), y].reshape(s, -1).mean(0),
        "margin": margin.reshape(s, -1).mean(0),
    }


def area(curve: np.ndarray, fraction: np.ndarray) -> float:
    """Area under ``curve`` over ``fraction`` (trapezoids)."""
    return float(((curve[1:] + curve[:-1]) / 2 * np.diff(fraction)).sum())


def plot(curves: dict, model: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(9, 6.2), sharex=True, constrained_layout=True)
    styles = {"linearize margin": ("#542788", "-"), "linearize true logit": ("#998ec3", "-"),
              "gradient x input": ("#b35806", ":"), "integrated gradients": ("#f1a340", "-"),
              "occlusion 4x4": ("#1b7837", "-"), "occlusion 2x2": ("#5aae61", "--"), "random": ("#777777", "-")}  # fmt: skip
    for row, followed in enumerate(FOLLOWED):
        for col, fill in enumerate(FILLS):
            ax = axes[row, col]
            for method in METHODS:
                curve = curves[(model, method, fill)]
                colour, line = styles[method]
                ax.plot(curve["fraction"], curve[followed], line, color=colour, lw=1.6,
                        label=f"{method} ({area(curve[followed], curve['fraction']):.2f})")  # fmt: skip
            ax.axhline(0, color="#bbbbbb", lw=0.8)
            ax.set_title(f"{followed}, pixels set to {'0 (black)' if fill == '0' else 'the mean grey'}", fontsize=10)
            ax.set_ylabel(f"mean {followed}")
            ax.legend(fontsize=7, title="method (area, lower is better)", title_fontsize=7, loc="best", framealpha=0.85)
            if row == 1:
                ax.set_xlabel("fraction of pixels removed, most positive attribution first")
    fig.suptitle(f"Deletion curves, demo zoo model {model}", fontsize=11)
    FIGURE.parent.mkdir(exist_ok=True)
    fig.savefig(FIGURE, dpi=90)
    plt.close(fig)


def main() -> None:
    import captum
    import onnxruntime as ort
    import torch

    from onnx_geom.demo import load_manifest, load_test_split, zoo_models
    from onnx_geom.demo.pipeline import _probe_zoo

    torch.set_num_threads(os.cpu_count() or 1)
    models = os.environ.get("BENCH_MODELS", "dense,magnitude_95,mlp_sklearn").split(",")
    images, labels = load_test_split()
    n = int(os.environ.get("BENCH_N", len(images)))
    images, labels = images[:n], labels[:n]
    entries = [e for e in load_manifest() if e["name"] in models]
    curves, info, used = {}, {}, {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        probes = _probe_zoo(entries, Path(tmp), lambda *_: None)
        for model in models:
            from onnx_geom.runner import ProbeSession

            session = ProbeSession.open(probes[model], device="cpu")
            right = session.run(images)[1].argmax(1) == labels
            im, lab = images[right], labels[right]
            used[model] = int(right.sum())
            score, info[model] = scores(model, probes[model], zoo_models()[model], im, lab)
            for method in METHODS:
                for fill in FILLS:
                    curves[(model, method, fill)] = deletion(probes[model], im, lab, score[method], fill)
            print(f"{model}: {used[model]} images, {time.perf_counter() - start:.0f} s", flush=True)
    total = time.perf_counter() - start
    plot(curves, models[0])
    lines = [
        "# Faithfulness benchmark: deletion curves of linearization, occlusion, gradient x input, integrated gradients",
        "",
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared), torch "
        f"{torch.__version__}, onnxruntime {ort.__version__}, captum {captum.__version__}; the demo zoo's test images "
        f"(32x32 grey digits) each model classifies correctly; {STEP} pixels removed per step; {total:.0f} s in all. "
        "Command: `python -m benchmarks faithfulness`.",
        "",
        "Area under the mean deletion curve over the fraction of pixels removed (0..1): **lower is more faithful**. "
        "Columns: what is followed (the true class's logit, the margin) and what a removed pixel becomes (0: black, "
        "the digits' background; mean: the image's mean grey). The last column is the time to attribute one image.",
        "",
    ]
    for model in models:
        start_logit = curves[(model, "random", "0")]["true logit"][0]
        start_margin = curves[(model, "random", "0")]["margin"][0]
        checks = info[model]["checks"]
        lines += [
            f"## {model} ({used[model]} images; at the start: mean true logit {start_logit:.2f}, mean margin "
            f"{start_margin:.2f})",
            "",
            "| method | true logit, 0 | margin, 0 | true logit, mean | margin, mean | ms per image |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        best = {(f, fill): min(area(curves[(model, m, fill)][f], curves[(model, m, fill)]["fraction"]) for m in METHODS)
                for f in FOLLOWED for fill in FILLS}  # fmt: skip
        for method in METHODS:
            cells = []
            for fill in FILLS:
                for followed in FOLLOWED:
                    curve = curves[(model, method, fill)]
                    value = area(curve[followed], curve["fraction"])
                    cells.append(
                        (fill, followed, f"**{value:.2f}**" if value == best[(followed, fill)] else f"{value:.2f}")
                    )
            order = [("0", "true logit"), ("0", "margin"), ("mean", "true logit"), ("mean", "margin")]
            shown = [next(c for f, fo, c in cells if (f, fo) == key) for key in order]
            ms = 1000 * info[model]["seconds"][method]
            lines.append(f"| {method} | {' | '.join(shown)} | {ms:.1f} |")
        lines += [
            "",
            f"Checks: identity residual of the linearization {checks['identity residual']:.1e}; the torch rebuild "
            f"gives the probe's logits to {checks['torch vs probe logits']:.1e}; gradient x input equals the "
            f"linearization's true-logit map (the model is piecewise linear, so W(x) is its Jacobian) to "
            f"{checks['gradient x input vs linearize true logit']:.1e} relative (median over images), and by more than "
            f"1e-4 on {checks['images where they differ']} of {used[model]} images (a max-pool window holding equal "
            "values, on the flat background, is a kink: torch and onnxruntime may pick different maxima there, both "
            "exact).",
            "",
        ]
    lines += [
        f"Figure: [docs/linearize_faithfulness.png](../../docs/linearize_faithfulness.png) ({models[0]}). The "
        "linearization's two rows read: its margin map ranks the pixels that hold the margin up (the margin falls "
        "fastest when they go), its true-logit map (= gradient x input here) those that hold the logit up.",
        "",
    ]
    publish(RESULTS, lines)


if __name__ == "__main__":
    main()
