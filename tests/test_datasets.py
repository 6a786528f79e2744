"""Readers: CIFAR python batches (restricted unpickler), CIFAR-10-C folders (mmap), .npz, image folders; load()."""

from __future__ import annotations

import gc
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnx_geom.datasets import CorruptedFolder, Dataset, load, read_cifar, save_npz
from onnx_geom.errors import DataError, DataNotFoundError, UnsafePickleError


def _cifar10(root: Path, n: int = 6) -> tuple[np.ndarray, list[int]]:
    """A CIFAR-10 folder in the real format: dicts with bytes keys, uint8 (N, 3072) data in CHW order."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": labels,
        b"data": images.transpose(0, 3, 1, 2).reshape(n, 3072),
    }
    (root / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    meta = {
        b"label_names": [
            b"airplane",
            b"automobile",
            b"bird",
            b"cat",
            b"deer",
            b"dog",
            b"frog",
            b"horse",
            b"ship",
            b"truck",
        ]
    }
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return images, labels


def test_cifar10_folder_is_read_with_names(tmp_path):
    images, labels = _cifar10(tmp_path / "cifar-10-batches-py")
    ds = load(tmp_path)  # the parent folder works too
    assert (ds.images == images).all() and ds.labels.tolist() == labels
    assert ds.class_names[0] == "airplane" and ds.name == "cifar10-test" and ds.labels.dtype == np.int64


def test_cifar100_folder_uses_fine_labels(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    data = np.zeros((2, 3072), np.uint8)
    (root / "test").write_bytes(
        pickle.dumps({b"data": data, b"fine_labels": [3, 99], b"coarse_labels": [0, 1]}, protocol=2)
    )
    (root / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, protocol=2))
    ds = load(root)
    assert ds.labels.tolist() == [3, 99] and len(ds.class_names) == 100


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_malicious_pickle_is_refused_and_never_run(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    _cifar10(root)
    marker = tmp_path / "pwned"
    (root / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": [0]}, protocol=2))
    pickle.loads((root / "test_batch").read_bytes())  # proof that plain unpickling runs the exploit
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UnsafePickleError, match=r"asks for .*refused and nothing in it was run"):
        load(root)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.",  # os.system("true")
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00cos\nsystem\nq\x01K\x00\x85q\x02c_codecs\nencode\n.",
        b"not a pickle at all",
    ],
)
def test_other_unsafe_or_broken_pickles_are_refused(tmp_path, payload):
    root = tmp_path / "cifar"
    _cifar10(root)
    (root / "test_batch").write_bytes(payload)
    with pytest.raises(UnsafePickleError):
        read_cifar(root)


def test_npz_round_trip_and_refusals(tmp_path):
    ds = Dataset(
        np.arange(2 * 16 * 16, dtype=np.uint8).reshape(2, 16, 16, 1), np.array([1, 0], np.uint8), "toy", ("a", "b")
    )
    path = save_npz(ds, tmp_path / "toy.npz")
    back = load(path)
    assert (back.images == ds.images).all() and back.labels.dtype == np.int64 and back.class_names == ("a", "b")
    np.savez(tmp_path / "objects.npz", images=np.array([object()], dtype=object), labels=np.zeros(1))
    with pytest.raises(DataError, match="plain arrays"):
        load(tmp_path / "objects.npz")
    np.savez(tmp_path / "nolabels.npz", images=ds.images)
    with pytest.raises(DataError, match="no labels"):
        load(tmp_path / "nolabels.npz")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError):
        load(tmp_path / "broken.npz")


def test_a_broken_npz_leaves_no_file_open(tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(DataError):
            load(tmp_path / "broken.npz")
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((2, 8, 8, 3), np.float32), [0, 1], "uint8"),
        (np.zeros((2, 8, 8, 2), np.uint8), [0, 1], "C = 1 or 3"),
        (np.zeros((2, 8, 8, 3), np.uint8), [0], "one label per image"),
        (np.zeros((2, 8, 8, 3), np.uint8), [0.5, 1.0], "integer"),
        (np.zeros((2, 8, 8, 3), np.uint8), [0, -1], ">= 0"),
    ],
)
def test_dataset_validates(images, labels, message):
    with pytest.raises(DataError, match=message):
        Dataset(images, np.asarray(labels))


def _corrupted_folder(root: Path, n: int = 4) -> np.ndarray:
    root.mkdir()
    arr = np.random.default_rng(0).integers(0, 256, (5 * n, 16, 16, 3), dtype=np.uint8)
    np.save(root / "fog.npy", arr)
    np.save(root / "labels.npy", np.tile(np.arange(n, dtype=np.uint8), 5))
    return arr


def test_corrupted_folder_reads_severity_blocks_memory_mapped(tmp_path):
    arr = _corrupted_folder(tmp_path / "c10c")
    folder = CorruptedFolder(tmp_path / "c10c")
    assert folder.corruptions == ("fog",) and folder.n == 4
    assert isinstance(folder.array("fog"), np.memmap)  # sliced from disk, never loaded whole
    assert (folder.read("fog", 3) == arr[8:12]).all()
    assert (folder.read("fog", 5, start=1, stop=3) == arr[17:19]).all()
    assert folder.read_labels(2).tolist() == [0, 1, 2, 3] and folder.labels.dtype == np.int64
    ds = load(tmp_path / "c10c", corruption="fog", severity=2)
    assert (ds.images == arr[4:8]).all()
    with pytest.raises(DataError, match="pass a corruption and a severity"):
        load(tmp_path / "c10c")
    with pytest.raises(DataNotFoundError, match=r"has no snow.npy; it has fog"):
        folder.read("snow", 1)
    with pytest.raises(DataError, match="severity 6"):
        folder.read("fog", 6)


def test_corrupted_folder_refuses_bad_files(tmp_path):
    _corrupted_folder(tmp_path / "c")
    np.save(tmp_path / "c" / "snow.npy", np.zeros((20, 16, 16), np.uint8))
    np.save(tmp_path / "c" / "frost.npy", np.array([object()] * 20, dtype=object), allow_pickle=True)
    (tmp_path / "c" / "zoom_blur.npy").write_bytes((tmp_path / "c" / "fog.npy").read_bytes()[:500])
    folder = CorruptedFolder(tmp_path / "c")
    with pytest.raises(DataError, match=r"must be uint8 \(20, H, W, C\)"):
        folder.read("snow", 1)
    for name in ("frost", "zoom_blur"):
        with pytest.raises(DataError, match=r"not a readable .npy"):
            folder.read(name, 1)


def test_image_folder(tmp_path):
    for cls, value in (("cat", 10), ("dog", 200)):
        (tmp_path / "set" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((20, 24, 3), value + i, np.uint8)).save(tmp_path / "set" / cls / f"{i}.png")
    ds = load(tmp_path / "set")
    assert ds.images.shape == (4, 20, 24, 3) and ds.labels.tolist() == [0, 0, 1, 1] and ds.class_names == ("cat", "dog")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "set" / "dog" / "small.png")
    with pytest.raises(DataError, match="resize all to one size"):
        load(tmp_path / "set")


def test_load_says_what_it_expected_and_where_to_put_cifar(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"does not exist.*cifar-10-python.tar.gz.*CIFAR-10-C"):
        load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match=r"holds no data set.*nothing is downloaded"):
        load(tmp_path / "empty")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="cannot read as a data set"):
        load(tmp_path / "x.txt")


def test_a_data_set_of_no_images_is_refused(tmp_path):
    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 8, 8, 3), np.uint8), labels=np.zeros(0, np.int64))
    with pytest.raises(DataError, match="the data set holds no images; give at least one"):
        load(tmp_path / "empty.npz")
