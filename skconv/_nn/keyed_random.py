"""Random draws tied to a sample's content: the same sample gets the same draw.

Training draws (dropout masks, augmentations) are usually made per row of a
minibatch. Then a sample of weight 2 is not the same as the sample twice: the two
copies get two draws, the weighted row one. Here each row's draw is a hash of the
row's bytes (:func:`content_keys`) mixed with a number the layer takes from the
estimator's RandomState once per minibatch, so duplicated rows draw alike and a
weight of 2 is exactly a duplicated sample (scikit-learn's sample-weight
equivalence), while the draws still change from one minibatch to the next, follow
``random_state`` and never depend on the thread count or on a row's position.
"""

import numpy as np

__all__ = ["content_keys", "draw_key", "keyed_uniform"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
# Odd 64-bit multipliers, one per 32-bit word of a row: the row's key is their
# weighted sum mod 2**64 (a multiply-shift hash), finished by splitmix64. Fixed, so
# that a model's draws do not change between sessions.
_MULTIPLIERS = (np.random.RandomState(0x5C0).randint(0, 2**62, size=1 << 12,
                                                      dtype=np.uint64) * np.uint64(4)
                + np.uint64(1))


def _splitmix64(z):
    """splitmix64's finaliser, element-wise on a uint64 array (wraps mod 2**64)."""
    z = z ^ (z >> np.uint64(30))
    z = z * _MIX_1
    z = z ^ (z >> np.uint64(27))
    z = z * _MIX_2
    return z ^ (z >> np.uint64(31))


def content_keys(x):
    """One uint64 key per row of ``x``, a hash of the row's bytes.

    The rows are hashed in float32, so that a float64 network and a float32 one
    fitted on the same data draw the same masks.

    Parameters
    ----------
    x : ndarray of shape (N, ...), float32 or float64

    Returns
    -------
    keys : ndarray of uint64 of shape (N,)
        Equal for rows equal in float32.
    """
    rows = np.ascontiguousarray(x, dtype=np.float32).reshape(x.shape[0], -1)
    words = rows.view(np.uint32)
    n_words = words.shape[1]
    multipliers = _MULTIPLIERS
    if n_words > multipliers.size:
        # Long rows reuse the table, each pass shifted by a different odd step, so
        # that a word's position still changes its contribution.
        passes = -(-n_words // multipliers.size)
        multipliers = np.concatenate(
            [multipliers * np.uint64(2 * p + 1) for p in range(passes)])
    with np.errstate(over="ignore"):
        total = np.zeros(x.shape[0], dtype=np.uint64)
        # Blocks of words bound the temporary's size for long rows.
        for start in range(0, n_words, 1024):
            block = words[:, start:start + 1024].astype(np.uint64)
            total += (block * multipliers[start:start + block.shape[1]]).sum(
                axis=1, dtype=np.uint64)
        return _splitmix64(total + np.uint64(n_words) * _GOLDEN)


def draw_key(random_state):
    """One uint64 from ``random_state`` (a layer's draw for one minibatch)."""
    return np.frombuffer(random_state.bytes(8), dtype=np.uint64)[0]


def keyed_uniform(keys, key, n):
    """Uniform numbers in [0, 1), ``n`` per row, from the rows' keys and ``key``.

    Parameters
    ----------
    keys : ndarray of uint64 of shape (N,)
        From :func:`content_keys`.
    key : numpy.uint64
        From :func:`draw_key`: changes the draws of every row.
    n : int
        Numbers per row.

    Returns
    -------
    u : ndarray of float64 of shape (N, n)
        Row ``i`` depends only on ``keys[i]``, ``key`` and ``n``.
    """
    with np.errstate(over="ignore"):
        seeds = _splitmix64(keys ^ np.uint64(key))
        counters = (np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN)
        z = _splitmix64(seeds[:, None] + counters[None, :])
    # The top 53 bits, as numpy's own doubles are made.
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
