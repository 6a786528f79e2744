"""Hostile data files: bounded work before any allocation, one sentence each, nothing run."""

import io
import resource
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnx_geom.datasets import load
from onnx_geom.datasets._pickle import loads
from onnx_geom.errors import DataError, UnsafePickleError


def _shared_lists_pickle(depth: int) -> bytes:
    """A protocol-2 pickle of ``depth`` nested pairs, each holding the previous one twice (via the memo): a few
    hundred bytes that describe a tree of 2**depth leaves."""
    ops = bytearray(b"\x80\x02]q\x00")  # PROTO 2, EMPTY_LIST, BINPUT 0
    for i in range(1, depth):
        ops += b"h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"\x86q" + bytes([i])  # BINGET x2, TUPLE2, BINPUT
    return bytes(ops + b".")


def test_a_pickle_of_shared_objects_is_finished_in_linear_time():
    blob = _shared_lists_pickle(60)
    assert len(blob) < 500
    obj = loads(blob)  # 2**60 leaves if the sharing were copied out: this returns at once
    depth = 0
    while obj:
        obj, depth = obj[0], depth + 1
    assert depth == 59


def _npz_with_header(shape, tmp_path, *, body: bytes = b"") -> Path:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", header.getvalue() + body)
        labels = io.BytesIO()
        np.save(labels, np.zeros(2, np.int64))
        archive.writestr("labels.npy", labels.getvalue())
    return path


@pytest.mark.parametrize(
    ("shape", "message"),
    [((10**6, 1000, 1000, 3), "declares 3,000,000,000,000 bytes"), ((-5, 32, 32, 3), "negative size")],
)
def test_npz_headers_are_checked_before_numpy_allocates(tmp_path, shape, message):
    path = _npz_with_header(shape, tmp_path, body=b"\0" * 64)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match=message) as info:
        load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing big was allocated


def test_an_npz_larger_than_memory_is_refused_by_size(tmp_path, monkeypatch):
    from onnx_geom.datasets import _dataset

    path = tmp_path / "ok.npz"
    np.savez(path, images=np.zeros((4, 8, 8, 3), np.uint8), labels=np.arange(4))
    monkeypatch.setattr(_dataset, "available_memory", lambda: 100)  # a machine with 100 bytes free
    with pytest.raises(DataError, match=r"needs 0\.0 GiB, more than the 0\.0 GiB of memory available"):
        load(path)


def _folder(tmp_path, sizes):
    root = tmp_path / "imgs"
    for i, size in enumerate(sizes):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (i * 20, 0, 0)).save(root / f"c{i % 2}" / f"{i}.png")
    return root


def test_an_image_folder_with_a_decompression_bomb_is_one_sentence(tmp_path, monkeypatch):
    root = _folder(tmp_path, [(16, 16), (16, 16), (64, 64)])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x64 is over the limit, 16x16 under it
    with pytest.raises(DataError, match=r"image .*2\.png is too large to decode safely"):
        load(root)


def test_image_sizes_are_compared_from_headers_before_decoding(tmp_path, monkeypatch):
    root = _folder(tmp_path, [(16, 16), (16, 16), (20, 16)])
    decoded = []
    real = Image.Image.convert
    monkeypatch.setattr(Image.Image, "convert", lambda self, *a, **k: decoded.append(1) or real(self, *a, **k))
    with pytest.raises(DataError, match=r"2\.png is 20x16 but .*0\.png is 16x16"):
        load(root)
    assert decoded == []  # refused from the headers alone
    ok = load(_folder(tmp_path / "ok", [(16, 16)] * 4))
    assert ok.images.shape == (4, 16, 16, 3) and ok.labels.tolist() == [0, 0, 1, 1]
    assert ok.images[:, 0, 0, 0].tolist() == [0, 40, 20, 60]  # files sorted per class folder: c0: 0, 2; c1: 1, 3


def test_a_truncated_png_is_one_sentence(tmp_path):
    root = _folder(tmp_path, [(16, 16), (16, 16)])
    png = root / "c1" / "1.png"
    png.write_bytes(png.read_bytes()[:40])
    with pytest.raises(DataError, match=r"cannot read image .*1\.png"):
        load(root)


def test_unsafe_pickles_still_run_nothing():
    with pytest.raises(UnsafePickleError, match=r"asks for os\.system"):
        loads(b"cos\nsystem\n(S'echo hacked'\ntR.")
