"""Read and write IDX files, the format of MNIST, Fashion-MNIST, KMNIST and EMNIST.

An IDX file is a small header followed by the raw array::

    offset  size      content
    0       2         0x00 0x00 (magic number)
    2       1         dtype code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                      0x0D float32, 0x0E float64
    3       1         number of dimensions ``ndim`` (1 to 255)
    4       4 * ndim  size of each dimension, big-endian uint32
    4+4*ndim          the data, big-endian, C order (last axis fastest)

MNIST images are ``(n, 28, 28)`` uint8 (header ``00 00 08 03``), labels ``(n,)``
uint8 (header ``00 00 08 01``). Files are often distributed gzipped; gzip is
recognised by its magic bytes ``1f 8b`` (an IDX file starts with ``00 00``), not by the
file name.

:func:`load_idx` checks the whole file: the magic number, the dtype code, the number
of dimensions, and that the file holds exactly ``prod(dims) * itemsize`` bytes of data
after the header. Every problem raises ``ValueError`` naming the file; a missing file
raises the usual ``FileNotFoundError``.
"""

import gzip
import math
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["load_idx", "load_mnist", "save_idx"]

# dtype code -> numpy dtype (native byte order; the file's is big-endian).
_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(np.int16),
    0x0C: np.dtype(np.int32),
    0x0D: np.dtype(np.float32),
    0x0E: np.dtype(np.float64),
}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}
_SUPPORTED = ", ".join(f"0x{code:02X} {dtype}" for code, dtype in _DTYPES.items())

_GZIP_MAGIC = b"\x1f\x8b"
# Read in slices of this size: GzipFile.readinto is BufferedIOBase's, which reads the
# whole request into a temporary bytes object first, so one big call would briefly
# hold the data twice.
_CHUNK = 1 << 20
# What a damaged gzip stream raises while it is being read (BadGzipFile is an OSError).
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def load_idx(path):
    """Read an IDX file, gzipped or not, into a numpy array.

    Parameters
    ----------
    path : str or os.PathLike
        The file. It is gzip-decompressed when it starts with the gzip magic bytes
        ``1f 8b``, whatever its name.

    Returns
    -------
    ndarray of shape ``dims`` from the header
        dtype from the header's dtype code (uint8, int8, int16, int32, float32 or
        float64), in native byte order, C-contiguous and writable.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist (not wrapped).
    ValueError
        When the file is not a valid IDX file, naming the file and the problem: bad
        magic number, unknown dtype code, zero dimensions, truncated header, truncated
        data, trailing bytes after the data, or a corrupt gzip stream.

    Notes
    -----
    The file is read once, straight into the returned array (no second copy for
    uncompressed files); multi-byte values are byte-swapped in place. Dimensions of
    size 0 are accepted (an empty array round-trips through :func:`save_idx`).

    Examples
    --------
    >>> X = load_idx("train-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> X.shape, X.dtype  # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'))
    """
    path = os.fspath(path)  # TypeError for non-paths (open() would accept an int fd)
    name = os.fsdecode(path)
    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not is_gzip:
            return _read_idx(raw, name, _regular_file_size(raw))
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_idx(stream, name, None)
        except _GZIP_ERRORS as exc:
            raise ValueError(f"{name}: corrupt gzip stream: {exc}") from exc


def _regular_file_size(f):
    """Size in bytes of a regular file, None for pipes and devices (size unknown)."""
    info = os.fstat(f.fileno())
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _read_idx(stream, name, file_size):
    """Parse an IDX stream; a known ``file_size`` lets sizes be checked before allocating."""
    head = _read_exact(stream, 4)
    if len(head) < 4:
        raise ValueError(
            f"{name}: truncated header: expected at least 4 bytes (magic number, dtype "
            f"code, number of dimensions), found {len(head)}"
        )
    if head[:2] != b"\x00\x00":
        raise ValueError(
            f"{name}: bad magic number: an IDX file starts with bytes 00 00, found "
            f"{head[:2].hex(' ')} (not an IDX file?)"
        )
    code, ndim = head[2], head[3]
    if code not in _DTYPES:
        raise ValueError(
            f"{name}: unknown dtype code 0x{code:02X} (byte 2 of the header); expected "
            f"one of {_SUPPORTED}"
        )
    if ndim == 0:
        raise ValueError(
            f"{name}: number of dimensions is 0 (byte 3 of the header); must be 1 to 255"
        )
    dims_bytes = _read_exact(stream, 4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise ValueError(
            f"{name}: truncated header: {ndim} dimensions need {4 * ndim} bytes of sizes "
            f"after the first 4 bytes, found {len(dims_bytes)}"
        )
    shape = struct.unpack(f">{ndim}I", dims_bytes)
    dtype = _DTYPES[code]
    header_size = 4 + 4 * ndim
    expected = math.prod(shape) * dtype.itemsize  # Python ints: cannot overflow

    def size_error(found):
        problem = "truncated" if found < expected else "trailing bytes after the data"
        return ValueError(
            f"{name}: {problem}: expected {expected} bytes of data after the "
            f"{header_size}-byte header, found {found} (header declares shape {shape} "
            f"of {dtype})"
        )

    # A damaged header can declare a gigantic shape: check the size of a plain file
    # before allocating anything.
    if file_size is not None and file_size - header_size != expected:
        raise size_error(file_size - header_size)
    try:
        buffer = np.empty(expected, dtype=np.uint8)
    except (MemoryError, ValueError):
        # Gzip hides the data size. If the data are not really that big, the size
        # error is the useful one; count them without storing them.
        found = _count_rest(stream)
        if found != expected:
            raise size_error(found) from None
        raise MemoryError(
            f"{name}: cannot allocate {expected} bytes for an array of shape {shape} "
            f"of {dtype}"
        ) from None
    found = _readinto_exact(stream, buffer)
    if found < expected:
        raise size_error(found)
    # Reading to the end also makes gzip verify its CRC and length trailer.
    extra = _count_rest(stream)
    if extra:
        raise size_error(expected + extra)

    array = buffer.view(dtype.newbyteorder(">"))
    if not array.dtype.isnative:  # multi-byte values on a little-endian machine
        array.byteswap(inplace=True)  # swap the bytes in place: no second copy
    return array.view(dtype).reshape(shape)


def _read_exact(stream, n):
    """Up to ``n`` bytes; fewer only at end of file (read() may return short counts)."""
    parts = []
    while n > 0:
        part = stream.read(n)
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _readinto_exact(stream, buffer):
    """Fill the uint8 ``buffer`` from ``stream``; return the number of bytes read."""
    view = memoryview(buffer)
    filled = 0
    while filled < len(view):
        n = stream.readinto(view[filled : filled + _CHUNK])
        if not n:
            break
        filled += n
    return filled


def _count_rest(stream):
    """Read ``stream`` to its end, returning the number of bytes (bounded memory)."""
    count = 0
    while True:
        part = stream.read(_CHUNK)
        if not part:
            return count
        count += len(part)


def save_idx(path, array):
    """Write ``array`` as an IDX file, gzipped when ``path`` ends with ``".gz"``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create (overwritten if it exists).
    array : array_like
        1 to 255 dimensions, each smaller than 2**32; dtype uint8, int8, int16, int32,
        float32 or float64 (any byte order). Other dtypes raise ``TypeError``: cast
        explicitly (e.g. ``array.astype(np.int32)``) so no precision is lost silently.

    Examples
    --------
    >>> y = np.array([5, 0, 4], dtype=np.uint8)
    >>> save_idx("labels-idx1-ubyte.gz", y)  # doctest: +SKIP
    >>> load_idx("labels-idx1-ubyte.gz")  # doctest: +SKIP
    array([5, 0, 4], dtype=uint8)
    """
    path = os.fspath(path)
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise TypeError(
            f"array has dtype {array.dtype}, which IDX cannot store; supported: "
            f"{_SUPPORTED}"
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(
            f"array must have 1 to 255 dimensions to be stored as IDX, got shape "
            f"{array.shape}"
        )
    if any(size >= 2**32 for size in array.shape):
        raise ValueError(
            f"array has a dimension of 2**32 or more, which IDX cannot store: shape "
            f"{array.shape}"
        )
    header = struct.pack(
        f">BBBB{array.ndim}I", 0, 0, _CODES[native], array.ndim, *array.shape
    )
    data = np.ascontiguousarray(array, dtype=native.newbyteorder(">"))
    # gzip: fixed mtime so that equal arrays give byte-identical files.
    if os.fsdecode(path).endswith(".gz"):
        f = gzip.GzipFile(path, mode="wb", compresslevel=6, mtime=0)
    else:
        f = open(path, "wb")
    with f:
        f.write(header)
        f.write(data.reshape(-1).view(np.uint8))


def load_mnist(directory, kind="train"):
    """Load MNIST-style images and labels (MNIST, Fashion-MNIST, KMNIST) from a directory.

    Looks for the standard file names ``{kind}-images-idx3-ubyte`` and
    ``{kind}-labels-idx1-ubyte``, each optionally gzipped with a ``.gz`` suffix (the
    uncompressed file is preferred when both exist).

    Parameters
    ----------
    directory : str or os.PathLike
        Directory holding the files.
    kind : {"train", "t10k", "test"}, default="train"
        Which split; ``"test"`` is an alias of ``"t10k"``.

    Returns
    -------
    X : ndarray of shape (n_samples, n_rows, n_cols), dtype uint8
        Images, e.g. ``(60000, 28, 28)`` for the MNIST training set.
    y : ndarray of shape (n_samples,), dtype uint8
        Labels.

    Raises
    ------
    FileNotFoundError
        When a file is missing under both names.
    ValueError
        When a file is not a valid IDX file, is not 3-D uint8 (images) or 1-D uint8
        (labels), or the numbers of images and labels differ.

    Examples
    --------
    >>> X, y = load_mnist("data/fashion", kind="test")  # doctest: +SKIP
    >>> X.reshape(len(X), -1).shape  # flat features for scikit-learn  # doctest: +SKIP
    (10000, 784)
    """
    split = {"train": "train", "t10k": "t10k", "test": "t10k"}.get(kind)
    if split is None:
        raise ValueError(f"kind must be 'train', 't10k' or 'test', got {kind!r}")
    directory = Path(directory)
    images_path = _find_idx(directory, f"{split}-images-idx3-ubyte")
    labels_path = _find_idx(directory, f"{split}-labels-idx1-ubyte")
    X = load_idx(images_path)
    y = load_idx(labels_path)
    if X.ndim != 3 or X.dtype != np.uint8:
        raise ValueError(
            f"{images_path}: expected images of shape (n, rows, cols) and dtype uint8, "
            f"got shape {X.shape} and dtype {X.dtype}"
        )
    if y.ndim != 1 or y.dtype != np.uint8:
        raise ValueError(
            f"{labels_path}: expected labels of shape (n,) and dtype uint8, got shape "
            f"{y.shape} and dtype {y.dtype}"
        )
    if len(X) != len(y):
        raise ValueError(
            f"{images_path} holds {len(X)} images but {labels_path} holds {len(y)} "
            f"labels"
        )
    return X, y


def _find_idx(directory, stem):
    """``directory / stem``, else ``stem + ".gz"``; FileNotFoundError if neither exists."""
    candidates = [directory / stem, directory / f"{stem}.gz"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no {stem} file in {directory}: looked for {candidates[0].name} and "
        f"{candidates[1].name}"
    )
