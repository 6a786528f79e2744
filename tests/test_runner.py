"""The runner: probe sessions on the CPU, device choice and errors, data checks, fp16 copy."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from _probes import make_probe, reference

from onnx_geom.errors import DataError, DeviceError, InvalidModelError
from onnx_geom.runner import ProbeSession, check_data, run_batches, to_fp16

IMAGES = np.random.default_rng(1).integers(0, 256, size=(37, 6, 6, 3), dtype=np.uint8)


def test_cpu_session_matches_numpy(tmp_path):
    model, weights = make_probe()
    onnx.save(model, tmp_path / "p.onnx")
    session = ProbeSession.open(tmp_path / "p.onnx", device="cpu", batch_size=10)
    assert session.device == "cpu" and session.providers == ["CPUExecutionProvider"] and session.name == "p.onnx"
    starts, feats, logits = [], [], []
    for start, f, z in run_batches(session, lambda a, b: IMAGES[a:b], len(IMAGES)):
        starts.append(start), feats.append(f), logits.append(z)
    assert starts == [0, 10, 20, 30]
    ref_f, ref_z = reference(IMAGES, weights)
    np.testing.assert_allclose(np.concatenate(feats), ref_f, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.concatenate(logits), ref_z, rtol=1e-5, atol=1e-5)
    assert np.concatenate(logits).dtype == np.float32


def test_io_binding_path_gives_the_same_outputs():
    """The CUDA path's IO binding, exercised with CPU buffers (the same calls; only the device differs)."""
    model, weights = make_probe()
    session = ProbeSession.open(model, device="cpu")
    feats, logits = session._run_bound(IMAGES, "cpu")
    ref_f, ref_z = reference(IMAGES, weights)
    np.testing.assert_allclose(feats, ref_f, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, ref_z, rtol=1e-5, atol=1e-5)


def test_auto_resolves_to_a_working_device():
    model, _ = make_probe()
    session = ProbeSession.open(model, device="auto")
    assert (
        session.device in ("cpu", "cuda")
        and session.providers[0] == {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}[session.device]
    )
    assert session.batch_size == {"cpu": 256, "cuda": 2048}[session.device]  # small 6x6x3 images: the full default


@pytest.mark.gpu  # runs only where CUDA does not work
def test_explicit_gpu_that_cannot_work_is_an_error(capfd):
    model, _ = make_probe()
    probe = ProbeSession.open(model, device="auto")
    if probe.device == "cuda":
        pytest.skip("this machine has a working CUDA provider")
    for device in ("cuda", "tensorrt"):
        with pytest.raises(DeviceError, match=f"{device} was asked for"):
            ProbeSession.open(model, device=device)
    assert capfd.readouterr() == ("", "")  # onnxruntime's provider chatter is silenced unless verbose


def test_fp16_on_the_cpu_and_unknown_devices_are_errors(capfd):
    model, _ = make_probe()
    with pytest.raises(DeviceError, match="fp16 runs on a GPU only"):
        ProbeSession.open(model, device="cpu", fp16=True)
    with pytest.raises(DeviceError, match="unknown device"):
        ProbeSession.open(model, device="gpu")
    assert capfd.readouterr() == ("", "")  # onnxruntime's provider chatter is silenced unless verbose


def test_fp16_copy_keeps_io_types_and_values():
    import onnxruntime as ort

    model, weights = make_probe()
    half = to_fp16(model)
    graph = half.graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert {o.name: o.type.tensor_type.elem_type for o in graph.output}["features"] == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer)
    session = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"])
    feats, logits = session.run(["features", "logits"], {"images": IMAGES})
    _ref_f, ref_z = reference(IMAGES, weights)
    assert feats.dtype == np.float32
    np.testing.assert_allclose(logits, ref_z, rtol=2e-2, atol=2e-2 * np.abs(ref_z).max())


def test_not_a_probe_and_bad_files(tmp_path):
    model, _ = make_probe()
    del model.metadata_props[:]
    model.metadata_props.add(key="onnx_geom.probe", value="{damaged")
    with pytest.raises(InvalidModelError, match="metadata is damaged"):
        ProbeSession.open(model, device="cpu")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(InvalidModelError, match="is not an ONNX model or is truncated"):
        ProbeSession.open(tmp_path / "junk.onnx", device="cpu")
    with pytest.raises(InvalidModelError, match="is missing, not a model file"):
        ProbeSession.open(tmp_path / "missing.onnx", device="cpu")


def test_external_data_outside_the_folder_is_refused(tmp_path):
    model, _ = make_probe()
    tensor = next(t for t in model.graph.initializer if t.name == "A")
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    (tmp_path / "m").mkdir()
    onnx.save(model, tmp_path / "m" / "p.onnx")
    with pytest.raises(InvalidModelError, match="outside the model's folder"):
        ProbeSession.open(tmp_path / "m" / "p.onnx", device="cpu")


def test_data_checks():
    _, weights = make_probe()
    from onnx_geom.probe_info import ProbeInfo

    info = ProbeInfo(W=weights["W"], b=weights["b"], input_shape=(6, 6, 3), layout="NCHW", mean=(0.0,), std=(1.0,))
    check_data(info, (6, 6, 3), np.array([0, 3]), "p")
    with pytest.raises(DataError, match="different size"):
        check_data(info, (8, 8, 3), np.array([0]), "p")
    with pytest.raises(DataError, match="different channels"):
        check_data(info, (6, 6, 1), np.array([0]), "p")
    with pytest.raises(DataError, match="4 classes"):
        check_data(info, (6, 6, 3), np.array([0, 9]), "p")


def test_a_batch_size_below_one_is_refused_not_replaced():
    model, _ = make_probe()
    for size in (0, -3):
        with pytest.raises(DataError, match=rf"the batch size must be at least 1, not {size}; leave it out"):
            ProbeSession.open(model, device="cpu", batch_size=size)
    assert ProbeSession.open(model, device="cpu", batch_size=1).batch_size == 1
