"""Tests for the IDX reader and writer and the MNIST loader (``skconv/datasets.py``)."""

import gzip
import os
import re
import struct

import numpy as np
import pytest

from skconv.datasets import load_idx, load_mnist, save_idx

# dtype code of the IDX header -> numpy dtype
CODES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.int16,
    0x0C: np.int32,
    0x0D: np.float32,
    0x0E: np.float64,
}
SHAPES = [(7,), (3, 5), (2, 3, 4)]


def _values(dtype, shape, seed=0):
    """Array covering the dtype's extremes, negatives and non-integers where possible."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=size, endpoint=True, dtype=dtype)
        values[:2] = info.min, info.max
    else:
        values = rng.standard_normal(size).astype(dtype) * 1e3
        values[:3] = np.finfo(dtype).max, -np.finfo(dtype).tiny, np.inf
    return values.reshape(shape)


def _header(code, *dims):
    return struct.pack(f">BBBB{len(dims)}I", 0, 0, code, len(dims), *dims)


def _error(path, problem):
    """``match`` pattern: the message starts with the file's path, then the problem."""
    return re.escape(str(path)) + ": " + problem


# --- round trips and decoding ---------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s)}d")
@pytest.mark.parametrize("code", CODES, ids=lambda c: np.dtype(CODES[c]).name)
def test_round_trip(tmp_path, code, shape, gz):
    dtype = CODES[code]
    original = _values(dtype, shape)
    path = tmp_path / ("data.idx.gz" if gz else "data.idx")
    save_idx(path, original)

    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == gz
    header = gzip.decompress(raw)[:4] if gz else raw[:4]
    assert header == bytes([0, 0, code, len(shape)])

    loaded = load_idx(path)
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.dtype.isnative
    assert loaded.shape == shape
    assert loaded.flags.c_contiguous and loaded.flags.writeable
    np.testing.assert_array_equal(loaded, original)


def test_hand_written_2x3_uint8(tmp_path):
    path = tmp_path / "m.idx"
    path.write_bytes(
        bytes([0, 0, 0x08, 2])  # magic, uint8, 2 dimensions
        + bytes([0, 0, 0, 2, 0, 0, 0, 3])  # 2 rows, 3 columns
        + bytes([1, 2, 3, 250, 0, 255])  # row-major data
    )
    m = load_idx(str(path))  # str paths work as well as Path
    assert m.dtype == np.uint8 and m.shape == (2, 3)
    assert m[0, 0] == 1 and m[0, 1] == 2 and m[0, 2] == 3
    assert m[1, 0] == 250 and m[1, 1] == 0 and m[1, 2] == 255


@pytest.mark.parametrize(
    "code, value, data",
    [
        (0x0C, 258, b"\x00\x00\x01\x02"),
        (0x0C, -2, b"\xff\xff\xff\xfe"),
        (0x0B, 258, b"\x01\x02"),
        (0x0D, 1.0, b"\x3f\x80\x00\x00"),
        (0x0E, -2.0, b"\xc0\x00\x00\x00\x00\x00\x00\x00"),
    ],
)
def test_big_endian(tmp_path, code, value, data):
    # Reading hand-written bytes...
    path = tmp_path / "v.idx"
    path.write_bytes(_header(code, 2) + data + data)
    loaded = load_idx(path)
    assert loaded.dtype == CODES[code]
    assert loaded.tolist() == [value, value]
    # ...and writing gives the same bytes.
    out = tmp_path / "w.idx"
    save_idx(out, np.array([value, value], dtype=CODES[code]))
    assert out.read_bytes() == _header(code, 2) + data + data


def test_big_endian_input_array_is_written_correctly(tmp_path):
    path = tmp_path / "be.idx"
    save_idx(path, np.array([258, -1], dtype=">i4"))
    assert path.read_bytes()[-8:] == b"\x00\x00\x01\x02\xff\xff\xff\xff"
    assert load_idx(path).tolist() == [258, -1]


def test_gzip_is_detected_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.int16).reshape(3, 4)
    save_idx(tmp_path / "a.gz", array)
    (tmp_path / "a.gz").rename(tmp_path / "gzipped-without-suffix")
    save_idx(tmp_path / "b", array)
    (tmp_path / "b").rename(tmp_path / "plain-with-suffix.gz")
    np.testing.assert_array_equal(load_idx(tmp_path / "gzipped-without-suffix"), array)
    np.testing.assert_array_equal(load_idx(tmp_path / "plain-with-suffix.gz"), array)


def test_multi_member_gzip(tmp_path):
    # gzip -c a b > c concatenates members; the stream is their concatenation.
    raw = _header(0x08, 4) + bytes([9, 8, 7, 6])
    path = tmp_path / "multi.gz"
    path.write_bytes(gzip.compress(raw[:6]) + gzip.compress(raw[6:]))
    assert load_idx(path).tolist() == [9, 8, 7, 6]


def test_empty_dimension_round_trips(tmp_path):
    save_idx(tmp_path / "e.idx", np.zeros((0, 5), dtype=np.float32))
    loaded = load_idx(tmp_path / "e.idx")
    assert loaded.shape == (0, 5) and loaded.dtype == np.float32


# --- corrupt files --------------------------------------------------------------------

GOOD = _header(0x08, 2, 3) + bytes(range(6))


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", r"truncated header: expected at least 4 bytes .*found 0"),
        (b"\x00\x00\x08", r"truncated header: expected at least 4 bytes .*found 3"),
        (b"\x01\x00" + GOOD[2:], r"bad magic number: .*found 01 00"),
        (b"\x00\x00\x07\x02" + GOOD[4:], r"unknown dtype code 0x07"),
        (b"\x00\x00\x0a\x02" + GOOD[4:], r"unknown dtype code 0x0A"),
        (b"\x00\x00\x08\x00" + GOOD[4:], r"number of dimensions is 0"),
        (GOOD[:9], r"truncated header: 2 dimensions need 8 bytes .*found 5"),
        (GOOD[:-1], r"truncated: expected 6 bytes of data after the 12-byte header, found 5 "),
        (GOOD[:12], r"truncated: expected 6 bytes .*found 0 "),
        (GOOD + b"\x00", r"trailing bytes after the data: expected 6 bytes .*found 7"),
    ],
    ids=[
        "empty",
        "short-header",
        "bad-magic",
        "dtype-0x07",
        "dtype-0x0A",
        "zero-dims",
        "truncated-dims",
        "truncated-data",
        "no-data",
        "trailing-byte",
    ],
)
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_corrupt_idx(tmp_path, content, problem, gz):
    path = tmp_path / "train-images-idx3-ubyte"
    # Same IDX problems inside a valid gzip stream give the same messages.
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(ValueError, match=_error(path, problem)):
        load_idx(path)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_huge_declared_shape_is_reported_as_truncated(tmp_path, gz):
    # A damaged header must give the size error, not an attempt to allocate 2**96 bytes.
    content = _header(0x08, 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(10)
    path = tmp_path / "huge.idx"
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(ValueError, match=_error(path, r"truncated: .*found 10 ")):
        load_idx(path)


def test_plain_file_size_is_checked_before_allocating(tmp_path, monkeypatch):
    # For an uncompressed file the size is known up front: a wrong size must be
    # reported without allocating the (possibly huge) declared array.
    import skconv.datasets

    def no_alloc(*args, **kwargs):
        raise AssertionError("load_idx allocated the data buffer")

    path = tmp_path / "big.idx"
    path.write_bytes(_header(0x0E, 1000, 1000, 1000) + bytes(10))
    monkeypatch.setattr(skconv.datasets.np, "empty", no_alloc)
    with pytest.raises(ValueError, match=_error(path, r"truncated: expected 8000000000 ")):
        load_idx(path)


def _gzipped_good():
    return gzip.compress(GOOD + bytes(1000))  # long enough to cut inside the deflate data


@pytest.mark.parametrize(
    "mangle",
    [
        lambda gz: gz[: len(gz) // 2],  # cut inside the compressed data
        lambda gz: gz[:-4],  # cut inside the CRC / length trailer
        lambda gz: gz[:-8] + bytes([gz[-8] ^ 0xFF]) + gz[-7:],  # wrong CRC
        lambda gz: b"\x1f\x8b" + b"garbage!" * 8,  # gzip magic, then garbage
        lambda gz: gz[:10] + b"\xff" * 40,  # valid gzip header, garbage deflate data
        lambda gz: gz + b"trailing garbage",  # garbage after the gzip member
    ],
    ids=["cut-data", "cut-trailer", "bad-crc", "garbage", "garbage-deflate", "trailing"],
)
def test_corrupt_gzip_stream(tmp_path, mangle):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(mangle(_gzipped_good()))
    with pytest.raises(ValueError, match=_error(path, "corrupt gzip stream")):
        load_idx(path)


def test_gzip_of_non_idx_data(tmp_path):
    path = tmp_path / "notes.gz"
    path.write_bytes(gzip.compress(b"this is a text file, not IDX\n"))
    with pytest.raises(ValueError, match=_error(path, "bad magic number: .*found 74 68")):
        load_idx(path)


def test_missing_file_is_not_wrapped(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_idx(tmp_path / "nope.idx")


def test_load_idx_rejects_non_paths():
    with pytest.raises(TypeError):
        load_idx(0)  # open() would take 0 as stdin's file descriptor


# --- save_idx argument checks ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int64, np.uint16, np.bool_, np.complex64])
def test_save_idx_rejects_unsupported_dtype(tmp_path, dtype):
    with pytest.raises(TypeError, match=f"dtype {np.dtype(dtype)}, which IDX cannot"):
        save_idx(tmp_path / "x.idx", np.zeros(3, dtype=dtype))
    assert not (tmp_path / "x.idx").exists()


def test_save_idx_rejects_scalar(tmp_path):
    with pytest.raises(ValueError, match=r"1 to 255 dimensions.*got shape \(\)"):
        save_idx(tmp_path / "x.idx", np.uint8(3))


# --- load_mnist -----------------------------------------------------------------------


def _write_mnist(directory, kind, n_images=5, n_labels=5, gz=False):
    suffix = ".gz" if gz else ""
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, size=(n_images, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=n_labels, dtype=np.uint8)
    save_idx(directory / f"{kind}-images-idx3-ubyte{suffix}", X)
    save_idx(directory / f"{kind}-labels-idx1-ubyte{suffix}", y)
    return X, y


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize(
    "kind, file_kind", [("train", "train"), ("t10k", "t10k"), ("test", "t10k")]
)
def test_load_mnist(tmp_path, kind, file_kind, gz):
    X, y = _write_mnist(tmp_path, file_kind, gz=gz)
    X_loaded, y_loaded = load_mnist(tmp_path, kind=kind)
    assert X_loaded.shape == (5, 28, 28) and X_loaded.dtype == np.uint8
    assert y_loaded.shape == (5,) and y_loaded.dtype == np.uint8
    np.testing.assert_array_equal(X_loaded, X)
    np.testing.assert_array_equal(y_loaded, y)


def test_load_mnist_picks_the_requested_split(tmp_path):
    X_train, _ = _write_mnist(tmp_path, "train", n_images=3, n_labels=3)
    _write_mnist(tmp_path, "t10k", n_images=2, n_labels=2)
    assert load_mnist(str(tmp_path))[0].shape == (3, 28, 28)  # default kind="train"
    assert load_mnist(tmp_path, kind="test")[0].shape == (2, 28, 28)


def test_load_mnist_mixed_gzip(tmp_path):
    X = np.ones((2, 4, 3), dtype=np.uint8)
    save_idx(tmp_path / "train-images-idx3-ubyte.gz", X)
    save_idx(tmp_path / "train-labels-idx1-ubyte", np.array([3, 7], dtype=np.uint8))
    X_loaded, y_loaded = load_mnist(tmp_path)
    assert X_loaded.shape == (2, 4, 3)  # not tied to 28 x 28
    assert y_loaded.tolist() == [3, 7]


def test_load_mnist_count_mismatch(tmp_path):
    _write_mnist(tmp_path, "train", n_images=5, n_labels=4, gz=True)
    images = re.escape(str(tmp_path / "train-images-idx3-ubyte.gz"))
    labels = re.escape(str(tmp_path / "train-labels-idx1-ubyte.gz"))
    with pytest.raises(ValueError, match=f"{images} holds 5 images but {labels} holds 4"):
        load_mnist(tmp_path)


def test_load_mnist_missing_file(tmp_path):
    _write_mnist(tmp_path, "train")
    os.remove(tmp_path / "train-labels-idx1-ubyte")
    with pytest.raises(
        FileNotFoundError,
        match=r"train-labels-idx1-ubyte and train-labels-idx1-ubyte\.gz",
    ):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path, kind="test")  # no test split at all


def test_load_mnist_rejects_wrong_shapes(tmp_path):
    save_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 784), dtype=np.uint8))
    save_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: expected images of"):
        load_mnist(tmp_path)
    save_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 3, 3), dtype=np.uint8))
    save_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, dtype=np.int32))
    with pytest.raises(ValueError, match=r"idx1-ubyte: expected labels of .*int32"):
        load_mnist(tmp_path)


def test_load_mnist_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match=r"kind must be .* or 'test', got 'val'"):
        load_mnist(tmp_path, kind="val")
