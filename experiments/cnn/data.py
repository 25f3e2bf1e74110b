"""Datasets for the experiments, as NumPy arrays in memory.

- 'digits': the 1,797 8x8 handwritten digits that scikit-learn ships, so that
  the default run needs no network; a fixed, stratified held-out split.
- 'fashion_mnist': the lesson's dataset, read from the four standard IDX .gz
  files in a directory, downloaded there first when they are absent and a
  network is there.

Images come back as float32 (N, H, W, 1) in [0, 1] (Flax's NHWC layout) and
labels as int32 (N,). Anything wrong with the files raises DataError, whose
message names the file and says what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

DATASETS = ("digits", "fashion_mnist")

# The digits' held-out split is fixed (its own seed, not the training seed), so
# that every run, whatever its --seed, is scored on the same images.
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0

FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
# file name -> MD5 of the published file (as torchvision checks them); checked after a download.
FASHION_FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DOWNLOAD_TIMEOUT_S = 10.0

# IDX header: two zero bytes, a type code, the number of dimensions; then one
# big-endian uint32 per dimension; then the data, row-major.
IDX_UBYTE = 0x08


class DataError(Exception):
    """A dataset that cannot be loaded: missing, corrupt or inconsistent files."""


class Dataset(NamedTuple):
    x_train: np.ndarray  # f32[N, H, W, 1] in [0, 1]
    y_train: np.ndarray  # i32[N]
    x_test: np.ndarray  # f32[M, H, W, 1]
    y_test: np.ndarray  # i32[M]
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.x_train.shape[1:]


def load_dataset(name: str, data_dir: str | os.PathLike = "data", download: bool = True) -> Dataset:
    """The dataset called `name` (one of DATASETS)."""
    if name == "digits":
        return load_digits()
    if name == "fashion_mnist":
        return load_fashion_mnist(data_dir, download=download)
    raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")


def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits (pixel values 0..16), split 80/20, stratified by class."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=y
    )
    return Dataset(x_train, y_train, x_test, y_test, num_classes=10)


def load_fashion_mnist(data_dir: str | os.PathLike, download: bool = True) -> Dataset:
    """Fashion-MNIST from the IDX .gz files in data_dir, downloading any that are missing."""
    data_dir = Path(data_dir)
    missing = [name for name in FASHION_FILES if not (data_dir / name).is_file()]
    if missing:
        if not download:
            raise DataError(_missing_message(data_dir, missing, "downloading is off"))
        try:
            for name in missing:
                download_file(name, data_dir)
        except DataError as e:
            raise DataError(_missing_message(data_dir, missing, str(e))) from e
    x_train = read_idx(data_dir / "train-images-idx3-ubyte.gz", ndim=3)
    y_train = read_idx(data_dir / "train-labels-idx1-ubyte.gz", ndim=1)
    x_test = read_idx(data_dir / "t10k-images-idx3-ubyte.gz", ndim=3)
    y_test = read_idx(data_dir / "t10k-labels-idx1-ubyte.gz", ndim=1)
    for split, x, y in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        if len(x) == 0:
            raise DataError(f"{data_dir}: {split}: the IDX files hold no images")
        if len(x) != len(y):
            raise DataError(
                f"{data_dir}: {split} images and labels disagree: {len(x)} images, {len(y)} labels"
            )
        if y.size and y.max() >= len(FASHION_CLASSES):
            raise DataError(f"{data_dir}: {split} labels must be 0..9, found {int(y.max())}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{data_dir}: train images are {x_train.shape[1:]}, test images {x_test.shape[1:]}"
        )
    return Dataset(
        (x_train / 255.0).astype(np.float32)[..., None],
        y_train.astype(np.int32),
        (x_test / 255.0).astype(np.float32)[..., None],
        y_test.astype(np.int32),
        num_classes=len(FASHION_CLASSES),
    )


def _missing_message(data_dir: Path, missing: list[str], reason: str) -> str:
    return (
        f"Fashion-MNIST files missing from {data_dir}: {', '.join(missing)} ({reason}). "
        f"Download the four files from {FASHION_MIRRORS[0]} (or "
        f"https://github.com/zalandoresearch/fashion-mnist) and put them, still gzipped, in "
        f"{data_dir.resolve()}/, or pass --data-dir DIR where they already are."
    )


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """The uint8 array in a gzipped IDX file, checking its header and length."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: not a readable gzip file ({e}); fetch it again") from e
    if len(raw) < 4 or raw[:2] != b"\0\0":
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    type_code, file_ndim = raw[2], raw[3]
    if type_code != IDX_UBYTE:
        raise DataError(f"{path}: IDX data type 0x{type_code:02x}, expected unsigned bytes (0x08)")
    if file_ndim != ndim:
        raise DataError(f"{path}: IDX file has {file_ndim} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    size = math.prod(shape)  # exact: NumPy's int64 product of (2^31, 2^31, 4) wraps to 0
    if len(raw) - header != size:
        raise DataError(
            f"{path}: IDX header says shape {shape} ({size} bytes), "
            f"file holds {len(raw) - header} bytes; delete it and fetch it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file (the inverse of read_idx)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, IDX_UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def download_file(name: str, data_dir: Path) -> Path:
    """Fetch one Fashion-MNIST file into data_dir, trying each mirror; check its MD5."""
    errors = []
    for mirror in FASHION_MIRRORS:
        url = mirror + name
        try:
            payload = _fetch(url)
        except (urllib.error.URLError, OSError) as e:  # no network, DNS, timeout, HTTP error
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
            continue
        digest = hashlib.md5(payload, usedforsecurity=False).hexdigest()
        if digest != FASHION_FILES[name]:
            errors.append(f"{url}: MD5 {digest}, expected {FASHION_FILES[name]}")
            continue
        # Write to a temporary file and rename, so that an interrupted download
        # never leaves a partial file that looks complete.
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, data_dir / name)
        return data_dir / name
    raise DataError("could not download: " + "; ".join(errors))


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        return response.read()


def random_shift(x: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Each image of x (N, H, W, C) moved by up to max_shift pixels each way, zeros filling in.

    A cheap augmentation that handwriting tolerates: on the digits it takes a
    LeNet's test accuracy from about 97.5% to about 99%.
    """
    if max_shift == 0:
        return x
    n, h, w, _ = x.shape
    m = max_shift
    padded = np.pad(x, ((0, 0), (m, m), (m, m), (0, 0)))
    rows = rng.integers(0, 2 * m + 1, n)[:, None] + np.arange(h)  # [N, H]
    cols = rng.integers(0, 2 * m + 1, n)[:, None] + np.arange(w)  # [N, W]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
