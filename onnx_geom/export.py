"""PyTorch -> probe in one step (optional extra ``[torch]``; torch is imported only here).

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
>>> model = torch_to_probe(net, torch.rand(2, 3, 8, 8), "net.probe.onnx", head=net[1])   # doctest: +SKIP
>>> [o.name for o in model.graph.output]                                                 # doctest: +SKIP
['linear', 'logits', 'features']
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any

import numpy as np
from onnx import ModelProto

from onnx_geom.errors import HeadNotFoundError, InvalidModelError
from onnx_geom.probe import find_heads, probe, save_probe
from onnx_geom.probe_info import TAGS_KEY, set_metadata

__all__ = ["torch_to_onnx", "torch_to_probe"]


def torch_to_probe(
    module: Any,
    example_input: Any,
    path: str | PathLike[str] | None = None,
    *,
    head: Any = None,
    preset: str = "none",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    layout: str | None = None,
    tags: Mapping[str, Any] | None = None,
    dynamo: bool = True,
    opset: int | None = None,
    check: bool = True,
) -> ModelProto:
    """Export ``module`` (a torch ``nn.Module``) and turn it into a probe; write it to ``path`` if given.

    ``example_input``: one float tensor as the model takes it, e.g. (N, C, H, W); the batch axis is exported
    as dynamic. ``head``: the final ``nn.Linear`` (or any module with a 2-D ``weight`` and optional ``bias``);
    the ONNX layer whose weights equal it becomes the head, which settles models with several candidates.
    ``dynamo`` picks torch's default (dynamo) exporter, else the legacy TorchScript one; the file is always
    self-contained. ``tags`` (e.g. ``{"method": "magnitude", "sparsity": 0.9}``) go into ProbeInfo.tags.
    Other options as in :func:`onnx_geom.probe.probe`.
    """
    model = torch_to_onnx(module, example_input, dynamo=dynamo, opset=opset)
    if tags:
        set_metadata(model, {TAGS_KEY: json.dumps(dict(tags))})
    features = logits = None
    if head is not None:
        features, logits = _match_head(model, head)
    result = probe(
        model, preset=preset, mean=mean, std=std, layout=layout, features=features, logits=logits, check=check
    )
    if path is not None:
        save_probe(result, path)
    return result


def torch_to_onnx(module: Any, example_input: Any, *, dynamo: bool = True, opset: int | None = None) -> ModelProto:
    """Export ``module`` to an in-memory ``onnx.ModelProto`` with a dynamic batch axis (input named ``input``,
    outputs ``output`` or ``output_0``, ``output_1``...)."""
    import torch

    if example_input.shape[0] == 1:  # a batch of 1 would be specialised to a static batch size
        example_input = torch.cat([example_input, example_input])
    was_training = module.training
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        module.eval()  # inference behaviour of dropout and batch norm; the caller's mode is restored below
        with torch.no_grad():
            sample = module(example_input)
        count = 1 if isinstance(sample, torch.Tensor) else len(sample)
        output_names = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
        return _export(module, example_input, output_names, dynamo=dynamo, opset=opset)
    finally:
        exporter_log.setLevel(level)
        module.train(was_training)


def _export(module: Any, example_input: Any, output_names: list[str], *, dynamo: bool, opset: int | None) -> ModelProto:
    import onnx
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(
                module,
                (example_input,),
                dynamo=True,
                external_data=False,
                verbose=False,
                opset_version=opset,
                input_names=["input"],
                output_names=output_names,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                optimize=True,
            )
            if program is None:
                raise InvalidModelError("torch.onnx.export returned no program; export the model with dynamo=False.")
            return program.model_proto
        buffer = io.BytesIO()
        torch.onnx.export(
            module,
            (example_input,),
            buffer,  # type: ignore[arg-type]  # the legacy exporter writes to any binary file object
            dynamo=False,
            input_names=["input"],
            output_names=output_names,
            dynamic_axes={"input": {0: "N"}},
            opset_version=opset,
        )
        return onnx.load_from_string(buffer.getvalue())


def _match_head(model: ModelProto, head: Any) -> tuple[str, str]:
    """The (features, logits) tensor names of the ONNX layer whose W, b equal ``head``'s weight and bias."""
    weight = getattr(head, "weight", None)
    if weight is None or weight.ndim != 2:
        raise InvalidModelError("head must be the final linear layer (a module with a 2-D weight, e.g. nn.Linear).")
    W = weight.detach().cpu().double().numpy()
    bias = getattr(head, "bias", None)
    b = np.zeros(W.shape[0]) if bias is None else bias.detach().cpu().double().numpy()
    matches = [
        c
        for c in find_heads(model)
        if c.W is not None
        and c.b is not None
        and c.W.shape == W.shape
        and np.allclose(c.W, W, rtol=1e-6, atol=1e-7)
        and np.allclose(c.b, b, rtol=1e-6, atol=1e-7)
    ]
    if len(matches) != 1:
        raise HeadNotFoundError(
            f"{len(matches)} layers of the exported graph have the weights of the given head "
            f"(shape {W.shape}); pass the final nn.Linear itself as head."
        )
    return matches[0].features, matches[0].logits
