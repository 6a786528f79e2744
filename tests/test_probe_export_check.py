"""torch_to_probe in one step (dynamo and legacy), and the self-check catching broken probes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from _probe_models import gemm_trans_b0, keras_style, preprocess
from onnx import TensorProto
from typer.testing import CliRunner

from onnx_geom.cli.app import app
from onnx_geom.errors import ProbeCheckError
from onnx_geom.probe import check_probe, probe, save_probe
from onnx_geom.probe_info import FEATURES, LOGITS, PROBE_INPUT, ProbeInfo, read_probe_info, write_probe_info

CIFAR100 = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))  # mean, std of the CIFAR-100 training set


def two_heads_net(torch):
    """An MLP on NCHW images with an auxiliary head: only `head=` can say which one is the classifier."""

    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 8), torch.nn.Tanh())
            self.fc = torch.nn.Linear(8, 3)
            self.aux = torch.nn.Linear(8, 2, bias=False)

        def forward(self, x):
            f = self.body(x)
            return self.fc(f), self.aux(f)

    return TwoHeads()


def numpy_forward(net, x):
    w1, b1 = net.body[1].weight.detach().double().numpy(), net.body[1].bias.detach().double().numpy()
    features = np.tanh(x.reshape(len(x), -1) @ w1.T + b1)  # x: NCHW, flattened C, H, W as torch does
    return features, features @ net.fc.weight.detach().double().numpy().T + net.fc.bias.detach().double().numpy()


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy"])
def test_torch_to_probe_writes_one_self_contained_file(tmp_path, dynamo, torch):
    from onnx_geom.export import torch_to_probe

    net = two_heads_net(torch).train()
    path = tmp_path / "net.probe.onnx"
    torch_to_probe(
        net,
        torch.rand(1, 3, 4, 4),
        path,
        head=net.fc,
        preset="cifar100",
        dynamo=dynamo,
        tags={"method": "magnitude", "sparsity": 0.5},
    )
    assert [p.name for p in tmp_path.iterdir()] == ["net.probe.onnx"]
    assert net.training  # the caller's mode is restored
    model = onnx.load(path, load_external_data=False)
    assert all(t.data_location != TensorProto.EXTERNAL for t in model.graph.initializer)
    info = read_probe_info(path)
    assert info.tags == {"method": "magnitude", "sparsity": 0.5} and (info.num_classes, info.feature_dim) == (3, 8)
    np.testing.assert_array_equal(info.W, net.fc.weight.detach().numpy())

    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).integers(0, 256, size=(7, 4, 4, 3), dtype=np.uint8)
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {PROBE_INPUT: images}), strict=True))
    features, logits = numpy_forward(net, preprocess(images, *CIFAR100, "NCHW"))  # published constants, not the probe's
    np.testing.assert_allclose(out[FEATURES], features, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[LOGITS], logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["output_0"], logits, rtol=1e-4, atol=1e-5)  # original outputs kept
    assert out["output_1"].shape == (7, 2)
    result = CliRunner().invoke(app, ["probe", "--check", str(path), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["ok"] is True


def test_check_compares_original_outputs_with_the_source(tmp_path):
    source, _ = keras_style(np.random.default_rng(0))
    onnx.save(source, tmp_path / "k.onnx")
    model = probe(tmp_path / "k.onnx", preset="cifar10")
    save_probe(model, tmp_path / "p.onnx")
    report = check_probe(tmp_path / "p.onnx", source=tmp_path / "k.onnx", n=5, seed=3)
    assert report.outputs_compared == ["dense_1"] and report.n == 5
    result = CliRunner().invoke(
        app, ["probe", "--check", str(tmp_path / "p.onnx"), "--source", str(tmp_path / "k.onnx")]
    )
    assert result.exit_code == 0 and "passed" in result.output and "dense_1" in result.output

    other, _ = keras_style(np.random.default_rng(1))  # same graph, other weights: outputs differ
    onnx.save(other, tmp_path / "other.onnx")
    with pytest.raises(ProbeCheckError, match="original output 'dense_1' differs"):
        check_probe(model, source=tmp_path / "other.onnx")


def test_a_probe_whose_head_metadata_is_wrong_fails_its_check(tmp_path):
    source, _ = gemm_trans_b0(np.random.default_rng(0))
    model = probe(source)
    info = read_probe_info(model)
    wrong = ProbeInfo(**{**info.__dict__, "W": info.W * 1.01})
    write_probe_info(model, wrong)
    with pytest.raises(ProbeCheckError, match=r"logits differ from features @ W.T \+ b"):
        check_probe(model)
    save_probe(model, tmp_path / "bad.onnx")
    result = CliRunner().invoke(app, ["probe", "--check", str(tmp_path / "bad.onnx")])
    assert result.exit_code == 1 and result.output.startswith("error:") and "Traceback" not in result.output


def test_a_model_with_a_fixed_batch_inside_is_reported_not_written(tmp_path):
    source, _ = gemm_trans_b0(np.random.default_rng(0))  # GAP -> Reshape [0, -1] -> Gemm
    shape = next(t for t in source.graph.initializer if t.name == "shape")
    shape.CopyFrom(onnx.numpy_helper.from_array(np.array([1, -1], np.int64), "shape"))  # batch 1 baked in
    source.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(source, tmp_path / "fixed.onnx")
    result = CliRunner().invoke(app, ["probe", str(tmp_path / "fixed.onnx"), "-o", str(tmp_path / "p.onnx")])
    assert result.exit_code == 1 and "fixed batch size" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p.onnx").exists()
    model = probe(tmp_path / "fixed.onnx", check=False)  # without the check it is built; running 1 image works
    check_probe(model, n=1)


def test_probe_and_export_import_neither_torch_nor_the_cli():
    import subprocess
    import sys

    code = (
        "import sys, onnx_geom.probe, onnx_geom.export;"
        "bad=[m for m in sys.modules if m.startswith(('torch', 'onnx_geom.cli', 'onnx_geom.viewers'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_cli_prints_the_head_as_a_table_and_the_same_as_json(tmp_path):
    source, _ = gemm_trans_b0(np.random.default_rng(0), n_classes=5)
    onnx.save(source, tmp_path / "g.onnx")
    args = ["probe", str(tmp_path / "g.onnx"), "-o", str(tmp_path / "p.onnx"), "--preset", "imagenet"]
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    for piece in (
        "head [Gemm(transB=0, alpha=0.5, beta=2)]",
        "K = 5",
        "D = 3",
        "uint8 N x 4 x 4 x 3 -> NCHW 'x'",
        "(0.485, 0.456, 0.406)",
        "(0.229, 0.224, 0.225)",
        "self-check",
        "passed",
    ):
        assert piece in table.output, piece
    as_json = json.loads(CliRunner().invoke(app, [*args, "--json"]).output)
    # every value from the source model and the published ImageNet constants, not from the probe's metadata
    assert as_json == {
        "probe": str(tmp_path / "p.onnx"),
        "input_shape": [4, 4, 3],
        "layout": "NCHW",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "source_sha256": hashlib.sha256((tmp_path / "g.onnx").read_bytes()).hexdigest(),
        "producer": source.producer_name,
        "opset": 17,
        "head": {
            "node": "head",
            "spelling": "Gemm(transB=0, alpha=0.5, beta=2)",
            "features": "flat",
            "logits": "scores",
            "source_input": "x",
            "weight_dtype": "float32",
        },
        "tags": {},
        "num_classes": 5,
        "feature_dim": 3,
    }
    # and the probe file carries the same head: W = alpha * B.T, b = beta * C of the source's Gemm
    info = read_probe_info(tmp_path / "p.onnx")
    B, C = (onnx.numpy_helper.to_array(t) for t in source.graph.initializer[:2])
    np.testing.assert_allclose(info.W, 0.5 * B.T, rtol=1e-7)
    np.testing.assert_allclose(info.b, 2.0 * C[0], rtol=1e-7)
