import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnx_geom.errors import InvalidModelError
from onnx_geom.probe_info import ProbeInfo, read_probe_info, write_probe_info


def _info(rng):
    return ProbeInfo(
        W=rng.standard_normal((10, 7)).astype(np.float32),
        b=rng.standard_normal(10).astype(np.float32),
        input_shape=(32, 32, 3),
        layout="NCHW",
        mean=(0.49, 0.48, 0.45),
        std=(0.25, 0.24, 0.26),
        tags={"method": "magnitude", "sparsity": 0.9},
    )


def test_head_round_trips_bit_exactly_through_a_saved_model(tmp_path):
    info = _info(np.random.default_rng(0))
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph)
    write_probe_info(model, info)
    write_probe_info(model, info)  # replacing, not duplicating
    assert [p.key for p in model.metadata_props] == ["onnx_geom.probe"]
    onnx.save(model, tmp_path / "m.onnx")
    back = read_probe_info(tmp_path / "m.onnx")
    np.testing.assert_array_equal(back.W, info.W)
    np.testing.assert_array_equal(back.b, info.b)
    assert back.input_shape == (32, 32, 3) and back.tags == {"method": "magnitude", "sparsity": 0.9}
    assert (back.num_classes, back.feature_dim) == (10, 7)


def test_a_model_without_probe_metadata_is_refused_with_a_sentence():
    with pytest.raises(InvalidModelError, match="not an onnx-geom probe"):
        ProbeInfo.from_metadata({})
    with pytest.raises(InvalidModelError, match="damaged"):
        ProbeInfo.from_metadata({"onnx_geom.probe": "{not json"})
