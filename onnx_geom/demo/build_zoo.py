"""Build the demo zoo: a dense CNN on 32x32 digits, pruned variants by five methods, and a scikit-learn MLP.

    python -m onnx_geom.demo.build_zoo -o onnx_geom/demo/zoo          # the shipped zoo (about a minute)
    python -m onnx_geom.demo.build_zoo -o /tmp/zoo --small             # a reduced zoo for tests (seconds)

>>> models = build_zoo("/tmp/zoo", small=True)                      # doctest: +SKIP
>>> [m["name"] for m in models][:2]                                  # doctest: +SKIP
['dense', 'magnitude_80']

Deterministic: every random choice has a fixed seed (derived from the model's name), torch runs with
deterministic algorithms on one thread, and the same machine writes byte-identical ONNX files. Each ONNX file
carries ``onnx_geom.tags`` = ``{"method", "sparsity", "framework", "clean_accuracy"}`` in its metadata, where
``sparsity`` is the measured fraction of exact zeros over the Conv/Linear (MatMul) weights and
``clean_accuracy`` is measured in onnxruntime on the test split. Writes ``<name>.onnx``, ``digits_test.npz``
(images uint8 (N, 32, 32, 1), labels int64 (N,), indices int64 (N,) into ``load_digits``) and ``manifest.json``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FULL", "SMALL", "Recipe", "build_zoo", "main"]


@dataclass(frozen=True)
class Recipe:
    """How long each model trains, and at which sparsities (targets; the true sparsity is measured)."""

    dense_epochs: int
    rewind_epochs: int  # lottery-ticket rewind point: the weights after this many epochs of dense training
    finetune_epochs: int
    gmp_epochs: int  # epochs over which gradual magnitude pruning ramps up (cubic schedule), before fine-tuning
    lth_epochs: int  # retraining epochs per round of iterative magnitude pruning
    sparsities: tuple[float, ...]
    lth_schedule: tuple[float, ...]  # sparsity after each round of iterative pruning
    mlp_iterations: int
    train_limit: int | None = None  # train on the first n training images only (reduced builds)


FULL = Recipe(
    dense_epochs=20,
    rewind_epochs=1,
    finetune_epochs=8,
    gmp_epochs=6,
    lth_epochs=10,
    sparsities=(0.8, 0.95),
    lth_schedule=(0.5, 0.8, 0.9, 0.95),
    mlp_iterations=200,
)
SMALL = Recipe(
    dense_epochs=2,
    rewind_epochs=1,
    finetune_epochs=1,
    gmp_epochs=1,
    lth_epochs=1,
    sparsities=(0.8,),
    lth_schedule=(0.8,),
    mlp_iterations=15,
    train_limit=300,
)
LR_TRAIN, LR_FINETUNE = 2e-3, 1e-3


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


def _label(method: str, sparsity: float) -> str:
    return f"{method}_{round(sparsity * 100)}"


def _cnn_variants(x: Any, y: Any, recipe: Recipe) -> Iterator[tuple[str, str, float, Any]]:
    """Train the dense CNN, then each pruned variant; yields ``(name, method, target sparsity, module)``."""
    import torch

    from onnx_geom.demo import _prune as prune
    from onnx_geom.demo._train import DigitNet, train

    def finetune(name: str, model: Any, masks: dict) -> Any:
        return train(model, x, y, epochs=recipe.finetune_epochs, lr=LR_FINETUNE, seed=_seed(name), masks=masks)

    torch.manual_seed(_seed("dense"))
    dense = DigitNet()
    initial = copy.deepcopy(dense.state_dict())
    train(dense, x, y, epochs=recipe.rewind_epochs, lr=LR_TRAIN, seed=_seed("dense"))
    rewind = copy.deepcopy(dense.state_dict())
    train(dense, x, y, epochs=recipe.dense_epochs - recipe.rewind_epochs, lr=LR_TRAIN, seed=_seed("dense") + 1)
    yield "dense", "dense", 0.0, dense

    for s in recipe.sparsities:
        name = _label("magnitude", s)
        model = copy.deepcopy(dense)
        yield name, "magnitude", s, finetune(name, model, prune.magnitude_masks(model, sparsity=s))

        name = _label("random", s)
        model = copy.deepcopy(dense)
        yield name, "random", s, finetune(name, model, prune.random_masks(model, sparsity=s, seed=_seed(name)))

        name = _label("l1_channel", s)
        model = copy.deepcopy(dense)
        yield name, "l1_channel", s, finetune(name, model, prune.l1_channel_masks(model, sparsity=s))

        name = _label("gmp", s)  # gradual magnitude pruning (Zhu & Gupta 2017), cubic ramp per epoch
        model = copy.deepcopy(dense)
        for t in range(1, recipe.gmp_epochs + 1):
            step = s * (1.0 - (1.0 - t / recipe.gmp_epochs) ** 3)
            masks = prune.magnitude_masks(model, sparsity=step)
            train(model, x, y, epochs=1, lr=LR_FINETUNE, seed=_seed(name) + t, masks=masks)
        yield name, "gmp", s, finetune(name, model, masks)

        name = _label("snip", s)  # pruning at initialisation, then training from scratch
        model = DigitNet()
        model.load_state_dict(initial)
        masks = prune.snip_masks(model, x[:512], y[:512], sparsity=s)
        yield (
            name,
            "snip",
            s,
            train(model, x, y, epochs=recipe.dense_epochs, lr=LR_TRAIN, seed=_seed(name), masks=masks),
        )

    # Iterative magnitude pruning with weight rewinding (lottery ticket, Frankle et al. 2019/2020).
    ticket = copy.deepcopy(dense)
    for s in recipe.lth_schedule:
        masks = prune.magnitude_masks(ticket, sparsity=s)
        ticket.load_state_dict(rewind)
        train(ticket, x, y, epochs=recipe.lth_epochs, lr=LR_TRAIN, seed=_seed(_label("lth", s)), masks=masks)
        if any(abs(s - t) < 1e-9 for t in recipe.sparsities):
            yield _label("lth", s), "lth_rewind", s, copy.deepcopy(ticket)


def _mlp(x_flat: np.ndarray, y: np.ndarray, recipe: Recipe) -> Any:
    """scikit-learn MLPClassifier (one hidden layer of 64) on flat (N, 1024) float inputs in [0, 1]."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=recipe.mlp_iterations, random_state=_seed("mlp"))
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_flat, y)
    return clf


def _save(
    out: Path,
    name: str,
    proto: Any,
    *,
    method: str,
    framework: str,
    target: float,
    accuracy: float,
    weights: list[np.ndarray],
    params: list[np.ndarray],
    layout: str,
) -> dict[str, Any]:
    """Tag ``proto``, write it to ``out/<name>.onnx`` and return its manifest entry.

    ``weights``: the prunable weight arrays (their zero fraction is the sparsity); ``params``: every parameter.
    """
    from onnx_geom.demo._export import set_tags
    from onnx_geom.demo._prune import weight_sparsity

    sparsity = weight_sparsity(weights)
    set_tags(proto, {"method": method, "sparsity": sparsity, "framework": framework, "clean_accuracy": accuracy})
    blob = proto.SerializeToString()
    (out / f"{name}.onnx").write_bytes(blob)
    return {
        "name": name,
        "file": f"{name}.onnx",
        "method": method,
        "framework": framework,
        "sparsity": sparsity,
        "target_sparsity": target,
        "accuracy": accuracy,
        "params": int(sum(p.size for p in params)),
        "nonzero_params": int(sum(np.count_nonzero(p) for p in params)),
        "layout": layout,
        "input_shape": [32, 32, 1],
        "sha256": hashlib.sha256(blob).hexdigest(),
    }


def _flat(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 1) -> float32 (N, H * W) in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)


def build_zoo(
    out_dir: str | Path, *, small: bool = False, log: Callable[[str], None] = lambda _: None
) -> list[dict[str, Any]]:
    """Build the zoo into ``out_dir`` (created if needed) and return the manifest's model entries."""
    import torch

    from onnx_geom.demo._data import SPLIT_SEED, TEST_FRACTION, digits_32, stratified_split
    from onnx_geom.demo._export import export_sklearn, export_torch, onnx_logits
    from onnx_geom.demo._train import accuracy, deterministic, prunable, to_tensor

    recipe = SMALL if small else FULL
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = digits_32()
    train_idx, test_idx = stratified_split(data.labels, test_fraction=TEST_FRACTION, seed=SPLIT_SEED)
    train_idx = train_idx[: recipe.train_limit]
    test_images, test_labels = data.images[test_idx], data.labels[test_idx]
    x_test = test_images.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    models = []

    with deterministic(threads=1):
        x, y = to_tensor(data.images[train_idx]), torch.from_numpy(data.labels[train_idx])
        for name, method, target, module in _cnn_variants(x, y, recipe):
            proto = export_torch(module)
            acc = float(np.mean(onnx_logits(proto, x_test).argmax(1) == test_labels))
            torch_acc = accuracy(module, torch.from_numpy(x_test), torch.from_numpy(test_labels))
            if abs(acc - torch_acc) > 1.5 / len(test_labels):
                raise RuntimeError(f"{name}: accuracy {acc:.4f} in onnxruntime but {torch_acc:.4f} in torch")
            models.append(
                _save(
                    out,
                    name,
                    proto,
                    method=method,
                    framework="pytorch",
                    target=target,
                    accuracy=acc,
                    layout="NCHW",
                    weights=[w.detach().numpy() for w in prunable(module).values()],
                    params=[p.detach().numpy() for p in module.parameters()],
                )
            )
            log(f"{name}: sparsity {models[-1]['sparsity']:.3f}, accuracy {acc:.4f}")

    clf = _mlp(_flat(data.images[train_idx]), data.labels[train_idx], recipe)
    proto = export_sklearn(clf, n_features=32 * 32)
    acc = float(np.mean(onnx_logits(proto, _flat(test_images)).argmax(1) == test_labels))
    models.append(
        _save(
            out,
            "mlp_sklearn",
            proto,
            method="dense",
            framework="scikit-learn",
            target=0.0,
            accuracy=acc,
            layout="flat",
            weights=list(clf.coefs_),
            params=[*clf.coefs_, *clf.intercepts_],
        )
    )
    log(f"mlp_sklearn: accuracy {acc:.4f}")

    np.savez_compressed(out / "digits_test.npz", images=test_images, labels=test_labels, indices=data.indices[test_idx])
    manifest = {
        "version": 1,
        "dataset": {
            "name": "sklearn-digits-32",
            "n_test": len(test_idx),
            "n_train": len(train_idx),
            "image_shape": [32, 32, 1],
            "class_names": [str(c) for c in range(10)],
            "test_fraction": TEST_FRACTION,
            "split_seed": SPLIT_SEED,
            "preprocess": "load_digits images * 255/16 rounded to uint8, Pillow bilinear resize 8x8 -> 32x32",
        },
        "recipe": {**asdict(recipe), "small": small},
        "models": models,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return models


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m onnx_geom.demo.build_zoo -o DIR [--small]``."""
    parser = argparse.ArgumentParser(prog="python -m onnx_geom.demo.build_zoo", description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", required=True, type=Path, help="folder to write the zoo into")
    parser.add_argument("--small", action="store_true", help="reduced build (fewer epochs and models) for tests")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        models = build_zoo(args.output, small=args.small, log=lambda line: print(line, flush=True))
    except OSError as err:
        reason = err.strerror or err
        raise SystemExit(
            f"cannot write the zoo to {args.output} ({reason}); choose a writable folder with -o."
        ) from None
    print(f"wrote {len(models)} models to {args.output} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
