"""The keyed draws (``skconv.ops`` layer ``skconv._ops.keyed``) against obvious numpy
twins, bit for bit, for both dtypes and any thread count."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skconv._ops.keyed import draw_key, keyed_uniform, row_keys

_MASK = (1 << 64) - 1


def _mix(z):
    """splitmix64's finaliser on one Python int."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _row_key_twin(row):
    """FNV-1a over the row's float32 bit patterns in four lanes (word j in lane
    j % 4), the lanes folded into one, then mixed with the row's length."""
    words = np.asarray(row, dtype=np.float32).reshape(-1).view(np.uint32)
    lanes = [0xCBF29CE484222325] * 4
    for j, w in enumerate(words):
        lanes[j % 4] = ((lanes[j % 4] ^ int(w)) * 0x100000001B3) & _MASK
    z = lanes[0]
    for h in lanes[1:]:
        z = ((z ^ _mix(h)) * 0x100000001B3) & _MASK
    return _mix((z + len(words) * 0x9E3779B97F4A7C15) & _MASK)


def _uniform_twin(key_of_row, key, n):
    seed = _mix(int(key_of_row) ^ int(key))
    return [(_mix((seed + (j + 1) * 0x9E3779B97F4A7C15) & _MASK) >> 11) / 2.0 ** 53
            for j in range(n)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 1), (5, 3, 11), (4, 2, 6, 5), (0, 4)])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_row_keys_match_the_twin(dtype, shape, n_jobs):
    x = np.random.RandomState(sum(shape)).standard_normal(shape).astype(dtype)
    keys = row_keys(x, n_jobs)
    assert keys.dtype == np.uint64 and keys.shape == (shape[0],)
    assert [int(k) for k in keys] == [_row_key_twin(r) for r in x]


def test_row_keys_are_equal_for_equal_rows_only():
    x = np.random.RandomState(0).rand(200, 3, 4)
    x[10] = x[3]
    keys = row_keys(x)
    assert keys[10] == keys[3]
    assert len(set(keys.tolist())) == 199
    # One changed value, or the same values in another order, changes the key.
    y = x.copy()
    y[0, 0, 0] += 1e-6
    z = x.copy()
    z[0] = z[0, :, ::-1]
    assert row_keys(y)[0] != keys[0] and row_keys(z)[0] != keys[0]
    # float64 rows are keyed by their float32 values; views are read as copies.
    assert_array_equal(row_keys(x.astype(np.float32)), keys)
    assert_array_equal(row_keys(x[:, :, ::2]), row_keys(np.ascontiguousarray(x[:, :, ::2])))


@pytest.mark.parametrize("n", [0, 1, 9, 130])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_keyed_uniform_matches_the_twin(n, n_jobs):
    keys = row_keys(np.random.RandomState(n).rand(6, 5))
    key = np.uint64(0xFEDCBA9876543210)
    u = keyed_uniform(keys, key, n, n_jobs)
    assert u.shape == (6, n) and u.dtype == np.float64
    assert u.tolist() == [_uniform_twin(k, key, n) for k in keys]


def test_keyed_uniform_is_uniform_and_changes_with_the_key():
    keys = row_keys(np.random.RandomState(0).rand(5000, 3))
    u = keyed_uniform(keys, 1, 20)
    assert 0 <= u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.003
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.03
    assert not np.array_equal(keyed_uniform(keys, 2, 20), u)


def test_draw_key_follows_the_random_state():
    a, b = np.random.RandomState(3), np.random.RandomState(3)
    assert draw_key(a) == draw_key(b) and draw_key(a) != draw_key(np.random.RandomState(4))
    assert isinstance(draw_key(a), np.uint64)


def test_bad_input_is_refused_naming_it():
    with pytest.raises(TypeError, match="x must be a float32 or float64 array"):
        row_keys(np.arange(6).reshape(2, 3))
    with pytest.raises(TypeError, match="keys must be a 1-D uint64 array"):
        keyed_uniform(np.arange(3), 1, 2)
    with pytest.raises(ValueError, match="n must be >= 0"):
        keyed_uniform(np.zeros(3, np.uint64), 1, -1)
