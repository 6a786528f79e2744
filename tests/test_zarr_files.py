"""The store's plain-file Zarr v3 writer/reader (onnx_geom.store._zarrio) against zarr-python itself, both ways."""

import numpy as np
import pytest
import zarr

from onnx_geom.errors import StudyError
from onnx_geom.store import _zarrarray
from onnx_geom.store import _zarrio as files

DTYPES = ["bool", "uint8", "int32", "int64", "float16", "float32", "float64"]


def sample(dtype, shape=(7, 3), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * 50).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zarr_reads_what_is_written_here(tmp_path, dtype):
    data = sample(dtype)
    files.write_array(
        tmp_path / "a", data, ["row", "col"], root=tmp_path, chunks=(3, 3)
    )  # 3 chunks, the last one padded
    back = zarr.open_array(str(tmp_path / "a"), mode="r")
    assert back.dtype == np.dtype(dtype) and back.chunks == (3, 3)
    assert back.metadata.dimension_names == ("row", "col")
    np.testing.assert_array_equal(back[:], data)
    np.testing.assert_array_equal(_zarrarray.read_array(tmp_path / "a", root=tmp_path), data)


def test_zarr_reads_a_zero_row_array_written_here(tmp_path):
    files.write_array(tmp_path / "a", np.zeros((0, 4)), ["merge", "column"], root=tmp_path, chunks=(1, 4))
    assert zarr.open_array(str(tmp_path / "a"), mode="r")[:].shape == (0, 4)
    assert _zarrarray.read_array(tmp_path / "a", root=tmp_path).shape == (0, 4)


@pytest.mark.parametrize("compressors", [None, "auto"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_what_zarr_writes_is_read_here(tmp_path, dtype, compressors):
    data = sample(dtype, (10, 4), seed=1)
    data[4:8] = 0  # a whole chunk of fill values: zarr does not write it
    out = zarr.create_array(str(tmp_path / "a"), shape=data.shape, dtype=dtype, chunks=(4, 2), compressors=compressors)
    out[:] = data
    assert not (tmp_path / "a" / "c" / "1" / "0").exists()
    np.testing.assert_array_equal(_zarrarray.read_array(tmp_path / "a", root=tmp_path), data)


@pytest.mark.parametrize(
    "options",
    [
        {"chunk_key_encoding": {"name": "v2", "separator": "."}},
        {"chunk_key_encoding": {"name": "default", "separator": "."}},
        {"serializer": zarr.codecs.BytesCodec(endian="big")},
        {"fill_value": np.nan},
    ],
    ids=["v2-keys", "dot-keys", "big-endian", "nan-fill"],
)
def test_other_zarr_forms_read_here(tmp_path, options):
    data = sample("float32", (9, 5), seed=2)
    out = zarr.create_array(str(tmp_path / "a"), shape=(12, 5), dtype="float32", chunks=(4, 3), **options)
    out[:9] = data  # rows 9..11 never written: the fill value
    expected = np.concatenate([data, np.full((3, 5), options.get("fill_value", 0.0), np.float32)])
    np.testing.assert_array_equal(_zarrarray.read_array(tmp_path / "a", root=tmp_path), expected)


def test_a_zero_dimensional_zarr_array_is_read_here(tmp_path):
    zarr.create_array(str(tmp_path / "a"), shape=(), dtype="int64")[...] = 7
    assert (
        _zarrarray.read_array(tmp_path / "a", root=tmp_path) == 7
        and _zarrarray.open_array(tmp_path / "a", root=tmp_path)[()] == 7
    )


def test_lazy_indexing_matches_numpy(tmp_path):
    data = sample("float32", (23, 4, 3), seed=3)
    zarr.create_array(str(tmp_path / "a"), shape=data.shape, dtype="float32", chunks=(5, 3, 2))[:] = data
    array = _zarrarray.open_array(tmp_path / "a", root=tmp_path)
    assert array.shape == data.shape and len(array) == 23 and array.ndim == 3
    mask = np.arange(23) % 3 == 0
    keys = [
        0, -1, 7, slice(None), slice(3, 17), slice(20, 2, -3), slice(None, None, -1), [4, 4, 0, 22], np.array([[1, 2], [21, 0]]),
        mask, (5, 2), (slice(2, 9), 1, slice(None, None, 2)), ([3, 1], [0, 3]), ([3, 1], slice(None), [0, 2]),
        (mask, Ellipsis, 0), (Ellipsis, 1), (-2, Ellipsis), np.int64(9),
    ]  # fmt: skip
    for key in keys:
        np.testing.assert_array_equal(array[key], data[key], err_msg=repr(key))
    np.testing.assert_array_equal(np.asarray(array), data)
    with pytest.raises(IndexError):
        array[23]


def test_a_lazy_read_opens_only_the_chunks_it_needs(tmp_path):
    data = sample("uint8", (20, 2, 2, 3), seed=4)
    files.write_array(
        tmp_path / "a", data, ["sample", "height", "width", "channel"], root=tmp_path, chunks=(4, 2, 2, 3)
    )
    for chunk in (tmp_path / "a").glob("c.*"):
        if chunk.name != "c.2.0.0.0":  # rows 8..11
            chunk.write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 8)  # damaged: reading it would fail
    np.testing.assert_array_equal(_zarrarray.open_array(tmp_path / "a", root=tmp_path)[[9, 8, 11]], data[[9, 8, 11]])
    with pytest.raises(StudyError, match=r"unreadable \(chunk c\.0\.0\.0\.0: .*\); it may be damaged"):
        _zarrarray.open_array(tmp_path / "a", root=tmp_path)[[9, 0]]


@pytest.mark.parametrize(
    "damage",
    [b"", bytes(64), "truncated", b"\x28\xb5\x2f\xfd" + b"garbage"],
    ids=["empty", "zeroed", "truncated", "garbage"],
)
def test_a_chunk_that_does_not_decode_is_one_sentence(tmp_path, damage):
    data = sample("float32", (6, 4), seed=5)
    files.write_array(tmp_path / "a", data, ["row", "col"], root=tmp_path, chunks=(6, 4))
    chunk = tmp_path / "a" / "c.0.0"
    chunk.write_bytes(chunk.read_bytes()[:12] if damage == "truncated" else damage)  # what a power cut may leave
    with pytest.raises(
        StudyError,
        match=r"^the array at .* is unreadable \(chunk c\.0\.0: .*\); it may be damaged: `onnx-geom check STUDY` lists what is, and how to repair it\.$",
    ):
        _zarrarray.read_array(tmp_path / "a", root=tmp_path)


@pytest.mark.parametrize(
    ("options", "what"),
    [
        ({"compressors": zarr.codecs.GzipCodec()}, "codecs"),
        ({"shards": (4,), "chunks": (2,)}, "codecs"),
        ({"filters": zarr.codecs.TransposeCodec(order=(0,))}, "codecs"),
    ],
    ids=["gzip", "sharding", "transpose"],
)
def test_other_codecs_are_one_sentence(tmp_path, options, what):
    zarr.create_array(str(tmp_path / "a"), shape=(8,), dtype="float32", **options)[:] = np.arange(8)
    with pytest.raises(StudyError, match=f"is stored with the {what} .* which onnx-geom does not read") as info:
        _zarrarray.read_array(tmp_path / "a", root=tmp_path)
    assert str(info.value).count(". ") == 0 and str(info.value).endswith("read it with zarr-python.")
    assert _zarrarray.read_array(tmp_path / "missing", root=tmp_path) is None


def test_groups_are_plain_zarr_groups(tmp_path):
    files.require_groups(tmp_path, "x/y")
    files.write_group(tmp_path / "x" / "y", {"complete": True, "n": [1, 2]}, root=tmp_path)
    assert not (tmp_path / "zarr.json").exists()  # only the groups below the root are made
    group = zarr.open_group(str(tmp_path / "x"), mode="r")
    assert list(group.group_keys()) == ["y"] and group["y"].attrs.asdict() == {"complete": True, "n": [1, 2]}
    assert files.group_attrs(tmp_path / "x" / "y", root=tmp_path) == {"complete": True, "n": [1, 2]}
    (tmp_path / "x" / "zarr.json").write_text("{broken")
    assert files.group_attrs(tmp_path / "x", root=tmp_path) is None
    (tmp_path / "x" / "y" / "zarr.json").write_bytes(b"")  # an empty claim, as a power cut may leave one
    files.require_groups(tmp_path, "x/y", {"complete": False})  # made again
    assert files.group_attrs(tmp_path / "x" / "y", root=tmp_path) == {"complete": False}
    assert not list(tmp_path.rglob("*.partial"))
