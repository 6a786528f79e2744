"""The plain-file Zarr v3 writer/reader against zarr-python itself, both ways."""

import numpy as np
import pytest
import zarr

from onnx_geom import _zarr_files as files

DTYPES = ["bool", "uint8", "int32", "int64", "float16", "float32", "float64"]


def sample(dtype, shape=(7, 3), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * 50).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zarr_reads_what_is_written_here(tmp_path, dtype):
    data = sample(dtype)
    files.write_array(tmp_path / "a", data, chunks=(3, 3))  # 3 chunks, the last one padded
    back = zarr.open_array(str(tmp_path / "a"), mode="r")
    assert back.dtype == np.dtype(dtype) and back.chunks == (3, 3)
    np.testing.assert_array_equal(back[:], data)
    np.testing.assert_array_equal(files.read_array(tmp_path / "a"), data)


@pytest.mark.parametrize("compressors", [None, "auto"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_what_zarr_writes_is_read_here(tmp_path, dtype, compressors):
    data = sample(dtype, (10, 4), seed=1)
    data[4:8] = 0  # a whole chunk of fill values: zarr does not write it
    out = zarr.create_array(str(tmp_path / "a"), shape=data.shape, dtype=dtype, chunks=(4, 2), compressors=compressors)
    out[:] = data
    assert not (tmp_path / "a" / "c" / "1" / "0").exists()
    np.testing.assert_array_equal(files.read_array(tmp_path / "a"), data)


def test_other_codecs_are_left_to_zarr(tmp_path):
    zarr.create_array(str(tmp_path / "a"), shape=(4,), dtype="float32", compressors=zarr.codecs.GzipCodec())[:] = (
        np.arange(4)
    )
    assert files.read_array(tmp_path / "a") is None
    assert files.read_array(tmp_path / "missing") is None


def test_groups_are_plain_zarr_groups(tmp_path):
    files.require_groups(tmp_path, "x/y")
    files.write_group(tmp_path / "x" / "y", {"complete": True, "n": [1, 2]})
    assert not (tmp_path / "zarr.json").exists()  # only the groups below the root are made
    group = zarr.open_group(str(tmp_path / "x"), mode="r")
    assert list(group.group_keys()) == ["y"] and group["y"].attrs.asdict() == {"complete": True, "n": [1, 2]}
    assert files.group_attrs(tmp_path / "x" / "y") == {"complete": True, "n": [1, 2]}
    (tmp_path / "x" / "zarr.json").write_text("{broken")
    assert files.group_attrs(tmp_path / "x") is None
    assert not list(tmp_path.rglob("*.partial"))
