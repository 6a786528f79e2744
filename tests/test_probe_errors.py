"""Every bad input of the probe: one sentence, exit code 1, no traceback, nothing written."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from _probe_models import gemm_trans_b0, keras_style, squeezenet_tail, two_heads, typed_input
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from onnx_geom.cli.app import app
from onnx_geom.errors import HeadNotFoundError, InvalidModelError
from onnx_geom.probe import find_heads, load_model, probe


def cli_fails(args, *, contains):
    result = CliRunner().invoke(app, ["probe", *map(str, args)])
    text = result.output.strip()
    assert result.exit_code == 1, text
    assert "Traceback" not in text
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert text.startswith("error:") and "\n" not in text, text
    assert contains in text, text
    return text


@pytest.fixture
def good(tmp_path):
    model, _ = gemm_trans_b0(np.random.default_rng(0))
    path = tmp_path / "good.onnx"
    onnx.save(model, path)
    return path


def test_not_a_file(tmp_path):
    cli_fails([tmp_path / "missing.onnx", "-o", tmp_path / "p.onnx"], contains="missing, not a model file")
    cli_fails([tmp_path, "-o", tmp_path / "p.onnx"], contains="is a folder")
    assert not (tmp_path / "p.onnx").exists()


def test_not_onnx_and_truncated(tmp_path, good):
    (tmp_path / "notes.onnx").write_text("these are my notes, not a model\n" * 20)
    cli_fails([tmp_path / "notes.onnx", "-o", tmp_path / "p.onnx"], contains="not an ONNX model")
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 7, 3):
        (tmp_path / "cut.onnx").write_bytes(data[:cut])
        cli_fails([tmp_path / "cut.onnx", "-o", tmp_path / "p.onnx"], contains="truncated")
    (tmp_path / "empty.onnx").write_bytes(b"")
    cli_fails([tmp_path / "empty.onnx", "--inspect"], contains="not an ONNX model")
    assert not (tmp_path / "p.onnx").exists()


def test_squeezenet_style_tail_is_refused_saying_why(tmp_path):
    onnx.save(squeezenet_tail(np.random.default_rng(0)), tmp_path / "sq.onnx")
    text = cli_fails([tmp_path / "sq.onnx", "-o", tmp_path / "p.onnx"], contains="not linear in any feature vector")
    assert "Conv -> Relu -> GlobalAveragePool -> Flatten -> Softmax" not in text  # the walk stops at the Relu
    assert "Relu 'final_relu'" in text and "Relu -> GlobalAveragePool -> Flatten -> Softmax" in text


def test_several_equally_good_heads_then_the_override_picks_one(tmp_path):
    model, _reference = two_heads(np.random.default_rng(0))
    onnx.save(model, tmp_path / "two.onnx")
    text = cli_fails([tmp_path / "two.onnx", "-o", tmp_path / "p.onnx"], contains="2 equally good head candidates")
    assert "main_head" in text and "aux_head" in text and "--features TENSOR --logits TENSOR" in text
    result = CliRunner().invoke(
        app,
        [
            "probe",
            str(tmp_path / "two.onnx"),
            "-o",
            str(tmp_path / "p.onnx"),
            "--features",
            "f",
            "--logits",
            "aux",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"num_classes": 6' in result.output
    cli_fails([tmp_path / "two.onnx", "-o", tmp_path / "q.onnx", "--logits", "pooled"], contains="no linear layer")


def test_inspect_lists_each_candidate_and_why(tmp_path):
    model, _ = keras_style(np.random.default_rng(0))
    onnx.save(model, tmp_path / "k.onnx")
    result = CliRunner().invoke(app, ["probe", "--inspect", str(tmp_path / "k.onnx"), "--json"])
    assert result.exit_code == 0, result.output
    candidates = {c["node"]: c for c in __import__("json").loads(result.output)["candidates"]}
    assert candidates["dense_1/MatMul"]["chosen"] and (
        candidates["dense_1/MatMul"]["K"],
        candidates["dense_1/MatMul"]["D"],
    ) == (4, 6)
    assert not candidates["dense/MatMul"]["chosen"] and "Relu" in candidates["dense/MatMul"]["reason"]
    table = CliRunner().invoke(app, ["probe", "--inspect", str(tmp_path / "k.onnx")])
    assert table.exit_code == 0 and "dense_1/MatMul" in table.output and "yes" in table.output


@pytest.mark.parametrize(
    ("elem_type", "shape", "embed", "message"),
    [
        (TensorProto.INT32, ["N", 8, 8, 4], False, "takes int32 values, not floats"),
        (TensorProto.INT64, ["N", 12], True, "takes int64 values, not floats"),
        (TensorProto.FLOAT, ["N", 12, 4], False, "cannot take images"),
    ],
    ids=["integer-images", "token-ids", "float-sequence"],
)
def test_inputs_that_cannot_take_images(tmp_path, elem_type, shape, embed, message):
    onnx.save(typed_input(elem_type, shape, embed=embed), tmp_path / "m.onnx")
    cli_fails([tmp_path / "m.onnx", "-o", tmp_path / "p.onnx"], contains=message)


def test_quantized_head_is_not_a_float_head():
    W = np.ones((4, 3), np.int8)
    nodes = [
        helper.make_node("Cast", ["x"], ["xi"], to=TensorProto.INT8),
        helper.make_node("MatMulInteger", ["xi", "W"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["y"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["y", "Wi"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 12])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(W.T.copy(), "W"), numpy_helper.from_array(np.ones((4, 2), np.int8), "Wi")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    [candidate] = find_heads(model)
    assert "int8, not floating point" in candidate.reason
    with pytest.raises(HeadNotFoundError, match="int8, not floating point"):
        probe(model)


def _with_external_weights(tmp_path, location):
    model, _ = gemm_trans_b0(np.random.default_rng(0))
    B = model.graph.initializer[0]
    raw = numpy_helper.to_array(B).tobytes()
    B.ClearField("float_data")
    B.ClearField("raw_data")
    B.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(raw)))):
        B.external_data.add(key=key, value=value)
    (tmp_path / "models").mkdir(exist_ok=True)
    target = (tmp_path / "models" / location) if not location.startswith("/") else tmp_path / "abs.bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(raw)
    path = tmp_path / "models" / "m.onnx"
    onnx.save(model, path)
    return path, raw


@pytest.mark.parametrize("location", ["../outside.bin", "sub/../../outside.bin", "ABSOLUTE"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, location):
    location = str(tmp_path / "abs.bin") if location == "ABSOLUTE" else location
    path, _ = _with_external_weights(tmp_path, location)
    cli_fails([path, "-o", tmp_path / "p.onnx"], contains="outside the model's folder")
    assert not (tmp_path / "p.onnx").exists()


def test_external_data_inside_the_folder_is_loaded_and_truncation_is_caught(tmp_path):
    path, raw = _with_external_weights(tmp_path, "weights/B.bin")
    model = load_model(path)
    np.testing.assert_array_equal(numpy_helper.to_array(model.graph.initializer[0]).tobytes(), raw)
    assert CliRunner().invoke(app, ["probe", str(path), "-o", str(tmp_path / "p.onnx")]).exit_code == 0
    (tmp_path / "models" / "weights" / "B.bin").write_bytes(raw[:-4])
    with pytest.raises(InvalidModelError, match="truncated"):
        load_model(path)


def test_bad_options_are_one_sentence(tmp_path, good):
    out = tmp_path / "p.onnx"
    cli_fails([good], contains="-o PROBE.onnx")
    cli_fails(
        [good, "-o", out, "--preset", "mnist"],
        contains="'mnist' is not one of 'none', 'cifar10', 'cifar100', 'imagenet'",
    )
    cli_fails([good, "-o", out, "--mean", "0.5,x"], contains="--mean must be numbers")
    cli_fails([good, "-o", out, "--mean", "0.5,0.5"], contains="mean has 2 values but the images have 3")
    cli_fails([good, "-o", out, "--std", "0"], contains="std > 0")
    cli_fails([good, "-o", out, "--layout", "CHW"], contains="'CHW' is not one of 'NCHW', 'NHWC', 'flat'")
    cli_fails([good, "-o", good], contains="is the input file")
    cli_fails([good, "--inspect", "--check"], contains="not both")
    assert not out.exists()
    # a missing parent folder is created, as by every command that writes a file (docs/guarantees.md)
    assert CliRunner().invoke(app, ["probe", str(good), "-o", str(tmp_path / "no" / "p.onnx")]).exit_code == 0
    assert (tmp_path / "no" / "p.onnx").is_file()


def test_image_size_must_be_given_when_the_input_does_not_fix_it(tmp_path):
    model, _ = gemm_trans_b0(np.random.default_rng(0))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    onnx.save(model, tmp_path / "dyn.onnx")
    cli_fails([tmp_path / "dyn.onnx", "-o", tmp_path / "p.onnx"], contains="pass --size WIDTHxHEIGHT")
    cli_fails(
        [tmp_path / "dyn.onnx", "-o", tmp_path / "p.onnx", "--size", "6by5"], contains="'6by5' is not WIDTHxHEIGHT"
    )
    result = CliRunner().invoke(
        app, ["probe", str(tmp_path / "dyn.onnx"), "-o", str(tmp_path / "p.onnx"), "--size", "6x5"]
    )
    assert result.exit_code == 0, result.output
    from onnx_geom.probe_info import read_probe_info

    assert read_probe_info(tmp_path / "p.onnx").input_shape == (5, 6, 3)  # 6 wide, 5 high


def test_check_of_a_model_that_is_not_a_probe(good):
    cli_fails(["--check", good], contains="not an onnx-geom probe")


def test_a_probe_is_not_probed_again(tmp_path, good):
    assert CliRunner().invoke(app, ["probe", str(good), "-o", str(tmp_path / "p.onnx")]).exit_code == 0
    cli_fails([tmp_path / "p.onnx", "-o", tmp_path / "pp.onnx"], contains="already an onnx-geom probe")


def test_models_over_the_single_file_limit_are_refused_up_front(monkeypatch, good):
    import onnx_geom.probe._surgery as surgery

    monkeypatch.setattr(surgery, "_TWO_GB", 64)  # stand-in for 2 GB: the test model is a few hundred bytes
    with pytest.raises(InvalidModelError, match="larger than 2 GB"):
        probe(good)


def test_a_bias_computed_at_run_time_is_not_a_head():
    model, _ = gemm_trans_b0(np.random.default_rng(0))
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    gemm.input[2] = "batch_bias"  # (N, 1): depends on the sample, so the layer is not z = f W^T + b
    model.graph.node.insert(2, helper.make_node("ReduceMean", ["flat"], ["batch_bias"], axes=[1], keepdims=1))
    [candidate] = find_heads(model)
    assert not candidate.viable and "bias is not a constant" in candidate.reason
    with pytest.raises(HeadNotFoundError, match="bias is not a constant"):
        probe(model)


def test_nan_in_the_head_weights_is_the_models_fault_not_ours(tmp_path):
    model, _ = keras_style(np.random.default_rng(0))
    head = next(i for i in model.graph.initializer if i.name == "dense_1/kernel")
    weights = numpy_helper.to_array(head).copy()
    weights[0, 0], weights[1, 2] = np.nan, np.inf
    head.CopyFrom(numpy_helper.from_array(weights, head.name))
    onnx.save(model, tmp_path / "nan.onnx")
    text = cli_fails([tmp_path / "nan.onnx", "-o", tmp_path / "p.onnx"], contains="2 of its weights and biases are NaN")
    assert "please report" not in text and "the model itself is broken" in text
    assert not (tmp_path / "p.onnx").exists()


@pytest.mark.parametrize(
    ("dims", "contains"),
    [(["N", 3, 100_000, 100_000], "larger than onnx-geom handles"), (["N", 3, 20_000, 8], "sides up to 16,384")],
)
def test_absurd_declared_image_sizes_are_refused_before_any_image_is_made(tmp_path, dims, contains):
    model, _ = gemm_trans_b0(np.random.default_rng(0))
    model.graph.input[0].type.tensor_type.ClearField("shape")
    for d in dims:
        dim = model.graph.input[0].type.tensor_type.shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = d
    onnx.save(model, tmp_path / "huge.onnx")
    cli_fails([tmp_path / "huge.onnx", "-o", tmp_path / "p.onnx"], contains=contains)
    assert not (tmp_path / "p.onnx").exists()


def test_an_absurd_size_option_is_refused_the_same_way(tmp_path, good):
    model = load_model(good)
    for d in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "free"
    onnx.save(model, tmp_path / "free.onnx")
    cli_fails(
        [tmp_path / "free.onnx", "-o", tmp_path / "p.onnx", "--size", "90000x90000"],
        contains="larger than onnx-geom handles",
    )
    cli_fails([tmp_path / "free.onnx", "-o", tmp_path / "p.onnx", "--size", "0x5"], contains="WIDTHxHEIGHT")
