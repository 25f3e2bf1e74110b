"""experiments/cnn/data.py: the digits split, the IDX loader, the download path, the shift.

The IDX files are written here byte by byte (header, big-endian sizes, gzip),
independently of the loader, so that the loader is checked against the format
and not against its own writer.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from experiments.cnn import data as _data
from experiments.cnn.data import DataError

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """The uncompressed IDX encoding of a uint8 array."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_gz(path: Path, payload: bytes) -> None:
    with gzip.open(path, "wb") as f:
        f.write(payload)


def write_fashion(directory: Path, n_train: int = 12, n_test: int = 5, size: int = 28):
    """Four small Fashion-MNIST-like IDX .gz files (size x size images); the arrays written."""
    rng = np.random.default_rng(0)
    arrays = {
        TRAIN_IMAGES: rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        TRAIN_LABELS: rng.integers(0, 10, n_train, dtype=np.uint8),
        TEST_IMAGES: rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        TEST_LABELS: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_gz(directory / name, idx_bytes(array))
    return arrays


@pytest.fixture
def no_network(monkeypatch):
    """Every download fails as it does offline; records the URLs tried."""
    tried = []

    def fail(url):
        tried.append(url)
        raise urllib.error.URLError("no network (test)")

    monkeypatch.setattr(_data, "_fetch", fail)
    return tried


# --------------------------------------------------------------------------- digits


def test_digits_split_is_fixed_stratified_and_normalized():
    a, b = _data.load_digits(), _data.load_digits()
    assert a.x_train.shape == (1437, 8, 8, 1) and a.x_test.shape == (360, 8, 8, 1)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int32
    assert a.x_train.min() >= 0.0 and a.x_train.max() <= 1.0
    np.testing.assert_array_equal(a.x_test, b.x_test)  # the same held-out images every time
    counts = np.bincount(a.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 of each digit
    assert a.num_classes == 10 and a.image_shape == (8, 8, 1)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="mnist"):
        _data.load_dataset("mnist")


# --------------------------------------------------------------------------- IDX files


def test_fashion_loader_reads_written_files(tmp_path, no_network):
    arrays = write_fashion(tmp_path)
    data = _data.load_fashion_mnist(tmp_path)
    assert no_network == []  # nothing was missing: no download tried
    assert data.x_train.shape == (12, 28, 28, 1) and data.x_test.shape == (5, 28, 28, 1)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    np.testing.assert_allclose(data.x_train[..., 0], arrays[TRAIN_IMAGES] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y_test, arrays[TEST_LABELS])
    assert data.num_classes == 10


def test_read_idx_round_trip_with_write_idx(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _data.write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(_data.read_idx(tmp_path / "a.gz", ndim=3), array)
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    assert raw == idx_bytes(array)  # write_idx writes the format byte for byte


NOT_GZIP, CUT_SHORT = b"not gzip at all", b""  # written as they are / a gzip file cut short


@pytest.mark.parametrize(
    "name, payload, message",
    [
        (TRAIN_IMAGES, NOT_GZIP, "not a readable gzip file"),
        (TRAIN_IMAGES, CUT_SHORT, "not a readable gzip file"),
        (TRAIN_IMAGES, b"\x01\x02\x08\x03" + b"\0" * 12, "not an IDX file"),
        (TRAIN_IMAGES, idx_bytes(np.zeros((12, 28, 28)), type_code=0x0D), "data type 0x0d"),
        (TRAIN_IMAGES, idx_bytes(np.zeros((12, 784))), "2 dimensions, expected 3"),
        (TRAIN_IMAGES, idx_bytes(np.zeros((12, 28, 28)))[:-100], "file holds"),
        (TRAIN_IMAGES, idx_bytes(np.zeros((12, 28, 28))) + b"extra", "file holds"),
        (TRAIN_LABELS, b"\0\0\x08\x01\0", "truncated IDX header"),
        (TRAIN_LABELS, idx_bytes(np.zeros(11)), "12 images, 11 labels"),
        (TEST_LABELS, idx_bytes(np.full(5, 10)), "labels must be 0..9"),
        (TEST_IMAGES, idx_bytes(np.zeros((5, 14, 14))), "train images are"),
    ],
)
def test_corrupt_files_raise_data_error_naming_them(tmp_path, no_network, name, payload, message):
    write_fashion(tmp_path)
    path = tmp_path / name
    if payload is NOT_GZIP:
        path.write_bytes(payload)
    elif payload is CUT_SHORT:
        path.write_bytes(path.read_bytes()[:-20])
    else:
        write_gz(path, payload)
    with pytest.raises(DataError, match=message) as info:
        _data.load_fashion_mnist(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert no_network == []  # a corrupt file is reported, not silently fetched again


def test_missing_files_without_network_say_where_to_put_them(tmp_path, no_network):
    write_fashion(tmp_path)
    (tmp_path / TEST_IMAGES).unlink()
    (tmp_path / TEST_LABELS).unlink()
    with pytest.raises(DataError) as info:
        _data.load_fashion_mnist(tmp_path)
    message = str(info.value)
    assert TEST_IMAGES in message and TEST_LABELS in message and TRAIN_IMAGES not in message
    assert str(tmp_path.resolve()) in message and "no network" in message
    assert len(no_network) == len(_data.FASHION_MIRRORS)  # each mirror tried, then gave up
    assert sorted(p.name for p in tmp_path.iterdir()) == [TRAIN_IMAGES, TRAIN_LABELS]


def test_no_download_never_touches_the_network(tmp_path, no_network):
    with pytest.raises(DataError, match="downloading is off"):
        _data.load_fashion_mnist(tmp_path / "absent", download=False)
    assert no_network == []


def test_download_checks_md5_and_writes_complete_files(tmp_path, monkeypatch):
    source = tmp_path / "source"
    write_fashion(source)
    payloads = {name: (source / name).read_bytes() for name in _data.FASHION_FILES}
    fetched = []

    def fetch(url):
        fetched.append(url)
        name = url.rsplit("/", 1)[1]
        if url.startswith(_data.FASHION_MIRRORS[0]):  # the first mirror serves garbage
            return b"<html>moved</html>"
        return payloads[name]

    monkeypatch.setattr(_data, "_fetch", fetch)
    md5s = {name: hashlib.md5(p, usedforsecurity=False).hexdigest() for name, p in payloads.items()}
    monkeypatch.setattr(_data, "FASHION_FILES", md5s)
    target = tmp_path / "target"
    data = _data.load_fashion_mnist(target)
    assert data.x_train.shape == (12, 28, 28, 1)
    assert len(fetched) == 8  # each file: the bad mirror (MD5 refused), then the good one
    assert sorted(p.name for p in target.iterdir()) == sorted(md5s)  # no temporary files left


# --------------------------------------------------------------------------- augmentation


def test_random_shift_moves_each_image_by_at_most_one_pixel():
    rng = np.random.default_rng(0)
    x = rng.random((16, 6, 7, 1), dtype=np.float32)
    y = _data.random_shift(x, np.random.default_rng(1), 1)
    assert y.shape == x.shape and y.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    for i in range(len(x)):
        candidates = [padded[i, dy : dy + 6, dx : dx + 7] for dy in range(3) for dx in range(3)]
        assert any(np.array_equal(y[i], c) for c in candidates)
    assert not np.array_equal(y, x)  # some image did move
    assert _data.random_shift(x, rng, 0) is x
    # the same generator state gives the same shifts: resumable
    np.testing.assert_array_equal(y, _data.random_shift(x, np.random.default_rng(1), 1))


# --------------------------------------------------------------------------- header sizes


def test_header_whose_sizes_overflow_int64_is_refused(tmp_path):
    """(2^31, 2^31, 4) is 2^64 bytes: a product in int64 wraps to 0, which an empty file matches."""
    path = tmp_path / "crafted.gz"
    write_gz(path, bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2**31, 2**31, 4))
    with pytest.raises(DataError, match=r"\(2147483648, 2147483648, 4\).*file holds 0 bytes"):
        _data.read_idx(path, ndim=3)


@pytest.mark.parametrize(
    "sizes, message",
    [
        (dict(n_test=0), "t10k: the IDX files hold no images"),
        (dict(n_train=0), "train: the IDX files hold no images"),
    ],
)
def test_empty_image_sets_are_refused(tmp_path, no_network, sizes, message):
    write_fashion(tmp_path, **sizes)
    with pytest.raises(DataError, match=message):
        _data.load_fashion_mnist(tmp_path)
