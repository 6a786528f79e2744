"""Heads on token-pooled features: (N, 1, D) heads exposed as (N, D) / (N, K), per-token heads rejected.

Real torch exports (legacy and dynamo) of a one-block vision transformer are compared with torch's own head
input and output (a forward hook); hand-built graphs cover the spellings the exporters do not produce and are
compared with a numpy forward pass (tests/_probe_models.py).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from _probe_models import CIFAR10, TOKEN_TAILS, assert_close, preprocess, random_images, tiny_vit, token_model
from _probe_models import run_probe as run
from onnx import TensorProto, numpy_helper
from typer.testing import CliRunner

from onnx_geom.cli.app import app
from onnx_geom.errors import HeadNotFoundError, ProbeCheckError
from onnx_geom.probe import check_probe, find_heads, probe, save_probe
from onnx_geom.probe_info import FEATURES, LOGITS, read_probe_info


def assert_typed_outputs(model, K, D):
    """``logits`` (N, K) and ``features`` (N, D): float32 with a dynamic batch."""
    typed = {o.name: o.type.tensor_type for o in model.graph.output}
    for name, width in ((LOGITS, K), (FEATURES, D)):
        dims = typed[name].shape.dim
        assert typed[name].elem_type == TensorProto.FLOAT, name
        assert [d.dim_param or d.dim_value for d in dims] == ["N", width], name


def inspect_json(tmp_path, model):
    onnx.save(model, tmp_path / "m.onnx")
    result = CliRunner().invoke(app, ["probe", "--inspect", str(tmp_path / "m.onnx"), "--json"])
    assert result.exit_code == 0, result.output
    return {c["node"]: c for c in json.loads(result.output)["candidates"]}


# ---------------------------------------------------------------------------------------------- hand-built


@pytest.mark.parametrize("tail", TOKEN_TAILS)
def test_hand_built_token_heads_probe_to_the_numpy_forward_pass(tail):
    source, reference = token_model(tail)
    model = probe(source, preset="cifar10")  # runs the self-check: optimisation on and off
    [head] = [c for c in find_heads(source) if c.chosen]
    on_tokens = tail != "slice_squeeze_layernorm"  # the one spelling whose head already acts on (N, D)
    expected_shape = "(1, N, 6)" if tail == "tokens_first_slice" else "(N, 1, 6)" if on_tokens else "(N, 6)"
    assert (head.node, head.spelling, head.reshape, head.input_shape) == (
        "head/MatMul",
        "MatMul+Add",
        on_tokens,
        expected_shape,
    )
    info = read_probe_info(model)
    assert (info.num_classes, info.feature_dim) == (5, 6)
    assert info.head.get("reshaped_from") == (expected_shape if on_tokens else None)
    assert [o.name for o in model.graph.output] == ["scores", LOGITS, FEATURES]  # the original output first
    assert_typed_outputs(model, 5, 6)

    for n in (1, 4):  # the batch stays dynamic
        images = random_images(model, n)
        features, logits, outputs = reference(preprocess(images, *CIFAR10, "NCHW"))
        out = run(model, images)
        assert out[FEATURES].shape == (n, 6) and out[LOGITS].shape == (n, 5)
        assert_close(out[FEATURES], features, "features")
        assert_close(out[LOGITS], logits, "logits")
        assert_close(out["scores"], outputs["scores"], "the original output")


def test_a_head_applied_per_token_is_rejected_saying_so(tmp_path):
    source, _ = token_model("per_token")
    [head] = find_heads(source)
    assert not head.viable and head.input_shape == "(N, 4, 6)"
    assert head.reason == "applied per token: its input is (N, 4, D) with D = 6, not one vector per image"
    assert inspect_json(tmp_path, source)["head/MatMul"]["reason"] == head.reason
    with pytest.raises(HeadNotFoundError) as caught:
        probe(source)
    message = str(caught.value)
    assert "output 'scores' comes from MatMul -> Add" in message  # not "Add is not a linear layer"
    assert "head/MatMul [MatMul+Add] features 'tokens' -> logits 'scores': applied per token" in message
    assert "--features TENSOR --logits TENSOR" in message and "\n" not in message
    result = CliRunner().invoke(app, ["probe", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "p.onnx")])
    assert result.exit_code == 1 and result.output.startswith("error:") and "applied per token" in result.output
    assert not (tmp_path / "p.onnx").exists()


def test_an_if_that_changes_the_scores_in_one_branch_is_not_passed_through():
    source, _ = token_model("if_squeeze")
    node = next(n for n in source.graph.node if n.op_type == "If")
    else_branch = next(a.g for a in node.attribute if a.name == "else_branch")
    else_branch.node[0].op_type = "Relu"  # If(..., Squeeze(z), Relu(z)): not the scores in the else case
    [head] = find_heads(source)
    assert not head.viable
    assert "next: If 'if_squeeze', which reads it in a subgraph" in head.reason


def test_an_unknown_token_count_is_not_guessed():
    """Dynamic H, W: the number of tokens is not in the graph. Mean pooling with keepdims still leaves a 1
    there; a per-token head is neither accepted nor called per-token, and forcing it fails the self-check."""
    source, reference = token_model("mean_keepdims_squeeze", spatial=("H", "W"))
    model = probe(source, image_size=(8, 8))
    images = random_images(model, 3)
    features, logits, _ = reference(preprocess(images, (0, 0, 0), (1, 1, 1), "NCHW"))
    out = run(model, images)
    assert_close(out[FEATURES], features, "features")
    assert_close(out[LOGITS], logits, "logits")

    source, _ = token_model("per_token", spatial=("H", "W"))
    [head] = find_heads(source)
    assert not head.viable and head.input_shape == "(N, ?, 6)"
    assert head.reason.startswith("its input is (N, ?, D) with D = 6, and the graph does not say whether ? is 1")
    with pytest.raises(ProbeCheckError, match=r"'logits' output is float32 \(32, 5\), not float32 \(8, 5\)"):
        probe(source, image_size=(8, 8), features="tokens", logits="scores")


def test_float16_token_head_gives_float32_outputs():
    source, reference = token_model("slice_layernorm", seed=3)
    for tensor in source.graph.initializer:
        value = numpy_helper.to_array(tensor)
        if value.dtype == np.float32:
            tensor.CopyFrom(numpy_helper.from_array(value.astype(np.float16), tensor.name))
    for value in (*source.graph.input, *source.graph.output):
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
    model = probe(source)
    assert read_probe_info(model).head["weight_dtype"] == "float16"
    assert_typed_outputs(model, 5, 6)
    images = random_images(model, 3)
    features, logits, _ = reference(preprocess(images, (0, 0, 0), (1, 1, 1), "NCHW"))
    out = run(model, images)
    assert out[FEATURES].dtype == np.float32 and out[LOGITS].shape == (3, 5)
    np.testing.assert_allclose(out[FEATURES], features, rtol=2e-2, atol=2e-2 * np.abs(features).max())
    np.testing.assert_allclose(out[LOGITS], logits, rtol=2e-2, atol=2e-2 * np.abs(logits).max())
    assert out["scores"].dtype == np.float16


def test_token_head_tensors_named_features_and_logits_are_renamed_not_reused(tmp_path):
    from onnx_geom.probe._graph import rename_tensors

    source, reference = token_model("mean_keepdims_squeeze", seed=4)
    rename_tensors(source.graph, {"pooled": FEATURES, "head_out": LOGITS})  # (N, 1, D) and (N, 1, K)
    model = probe(source)
    assert read_probe_info(model).head["renamed"] == {FEATURES: "features_source", LOGITS: "logits_source"}
    save_probe(model, tmp_path / "p.onnx")
    check_probe(tmp_path / "p.onnx", source=source)
    images = random_images(model, 2)
    features, logits, _ = reference(preprocess(images, (0, 0, 0), (1, 1, 1), "NCHW"))
    out = run(onnx.load(tmp_path / "p.onnx"), images)
    assert_close(out[FEATURES], features, "features")
    assert_close(out[LOGITS], logits, "logits")


# ---------------------------------------------------------------------------------------------- torch

#: (exporter, pool) -> the head found: (spelling, its input's shape). What the exporters wrote after the head
#: (torch 2.13): mean_keepdim: Squeeze (both); mean_keepdim_flatten: Flatten (legacy), Reshape (dynamo);
#: cls_slice: If(dim 1 == 1, Squeeze, Identity) after Shape/Gather/Equal (legacy), Squeeze (dynamo); legacy's
#: cls_slice_squeeze puts that If before the LayerNorm, so the Gemm's input shape is unknown there.
EXPECTED = {
    "mean": ("Gemm(transB=1)", "(N, 16)"),
    "mean_keepdim": ("MatMul+Add", "(N, 1, 16)"),
    "mean_keepdim_flatten": ("MatMul+Add", "(N, 1, 16)"),
    "cls_gather": ("Gemm(transB=1)", "(N, 16)"),
    "cls_slice": ("MatMul+Add", "(N, 1, 16)"),
    "cls_slice_squeeze": ("Gemm(transB=1)", "(N, 16)"),
}


@pytest.fixture(scope="module")
def exported(torch, onnxscript):
    """exported(pool, exporter) -> (net, onnx model), each exported once; the legacy exporter cannot export
    nn.MultiheadAttention's inference fast path, so it gets the hand-written attention."""
    from onnx_geom.export import torch_to_onnx

    cache = {}

    def export(pool, exporter):
        if (pool, exporter) not in cache:
            net = tiny_vit(pool, attention="mha" if exporter == "dynamo" else "hand")
            model = torch_to_onnx(net, torch.rand(2, 3, 32, 32), dynamo=exporter == "dynamo")
            cache[pool, exporter] = net, model
        return cache[pool, exporter]

    return export


def torch_head_io(net, x):
    """torch's own head input and output (a forward hook on net.head), and the model's output."""
    import torch

    seen = {}
    hook = net.head.register_forward_hook(lambda _m, inputs, output: seen.update(f=inputs[0], z=output))
    try:
        with torch.no_grad():
            output = net(torch.from_numpy(x.astype(np.float32)))
    finally:
        hook.remove()
    n = len(x)
    return seen["f"].reshape(n, -1).double().numpy(), seen["z"].reshape(n, -1).double().numpy(), output.numpy()


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
@pytest.mark.parametrize("pool", list(EXPECTED))
def test_torch_token_models_probe_to_torchs_own_features_and_logits(exported, pool, exporter):
    net, source = exported(pool, exporter)
    model = probe(source, preset="cifar10")
    [head] = [c for c in find_heads(source) if c.chosen]
    spelling, shape = EXPECTED[pool]
    if (pool, exporter) == ("cls_slice_squeeze", "legacy"):
        shape = ""  # the If's output has no inferred shape
    assert (head.spelling, head.input_shape, head.reshape) == (spelling, shape, spelling == "MatMul+Add")
    info = read_probe_info(model)
    np.testing.assert_array_equal(info.W, net.head.weight.detach().numpy())
    np.testing.assert_array_equal(info.b, net.head.bias.detach().numpy())
    assert_typed_outputs(model, 10, 16)
    assert [o.name for o in model.graph.output] == ["output", LOGITS, FEATURES]

    for n in (1, 3):
        images = random_images(model, n)
        features, logits, output = torch_head_io(net, preprocess(images, *CIFAR10, "NCHW"))
        out = run(model, images)
        assert out[FEATURES].shape == (n, 16) and out[LOGITS].shape == (n, 10)
        assert_close(out[FEATURES], features, "features")
        assert_close(out[LOGITS], logits, "logits")
        assert_close(out["output"], output, "the model's own output")


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_torch_token_classifier_is_rejected_as_applied_per_token(exported, exporter, tmp_path):
    net, source = exported("tokens", exporter)
    [head] = [
        c for c in find_heads(source) if c.W is not None and np.array_equal(c.W, net.head.weight.detach().numpy())
    ]
    assert not head.viable and head.input_shape == "(N, 16, 16)"
    assert head.reason == "applied per token: its input is (N, 16, D) with D = 16, not one vector per image"
    assert inspect_json(tmp_path, source)[head.node]["reason"] == head.reason
    with pytest.raises(HeadNotFoundError, match="--features TENSOR --logits TENSOR") as caught:
        probe(source)
    assert f"{head.node} [MatMul+Add] features '{head.features}' -> logits 'output': applied per token" in str(
        caught.value
    )


@pytest.mark.slow
def test_torch_to_probe_with_the_head_named_on_a_class_token_slice(tmp_path, torch):
    from onnx_geom.export import torch_to_probe

    net = tiny_vit("cls_slice", seed=2)
    model = torch_to_probe(net, torch.rand(1, 3, 32, 32), tmp_path / "vit.probe.onnx", head=net.head, dynamo=False)
    assert read_probe_info(tmp_path / "vit.probe.onnx").head["reshaped_from"] == "(N, 1, 16)"
    images = random_images(model, 2)
    features, logits, _ = torch_head_io(net, preprocess(images, (0, 0, 0), (1, 1, 1), "NCHW"))
    out = run(model, images)
    assert_close(out[FEATURES], features, "features")
    assert_close(out[LOGITS], logits, "logits")
