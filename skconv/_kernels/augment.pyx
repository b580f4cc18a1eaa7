"""Kernels of the training-time augmentation (``skconv._ops.augment``): every sample of
a minibatch moved by whole cells along its spatial axes, zeros entering at the edge,
and optionally mirrored along its last axis.

Each sample is written by one thread from its own row of moves, so the result never
depends on the thread count; it is made of copies of the input's values and zeros
only. Shapes are trusted: ``skconv._ops.augment`` checks them.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy, memset


cdef inline void _move_row(const floating *src, floating *dst, Py_ssize_t width,
                           Py_ssize_t shift, bint flip) noexcept nogil:
    """``dst[k] = src[k - shift]`` (0 outside the row); with ``flip``, ``dst[k] =
    src[width - 1 - (k - shift)]``."""
    cdef Py_ssize_t k, s, lo, hi
    if flip:
        for k in range(width):
            s = width - 1 - (k - shift)
            dst[k] = src[s] if 0 <= s < width else 0
        return
    lo = shift if shift > 0 else 0               # first k with 0 <= k - shift
    hi = width + shift if shift < 0 else width   # past the last k with k - shift < width
    if hi <= lo:
        memset(dst, 0, width * sizeof(floating))
        return
    memset(dst, 0, lo * sizeof(floating))
    memcpy(dst + lo, src + lo - shift, (hi - lo) * sizeof(floating))
    memset(dst + hi, 0, (width - hi) * sizeof(floating))


def move_samples(const floating[:, :, :, :, ::1] x,   # IN  (N, C, D, H, W)
                 const Py_ssize_t[:, ::1] moves,      # IN  (N, 4): D, H, W shifts, flip
                 bint inverse,
                 floating[:, :, :, :, ::1] y,         # OUT (N, C, D, H, W)
                 int n_threads):
    """Cell ``(i, j, k)`` of sample ``n``'s every channel is cell ``(i - d0, j - d1,
    k - d2)`` of ``x`` (0 outside), ``(d0, d1, d2) = moves[n, :3]``; with
    ``moves[n, 3]`` set, the last axis is read mirrored: ``W - 1 - (k - d2)``. With
    ``inverse``, the adjoint of that map (the gradient): the shifts negated, the
    mirror kept (a reflection is its own adjoint)."""
    cdef:
        Py_ssize_t n_samples = x.shape[0], n_channels = x.shape[1]
        Py_ssize_t depth = x.shape[2], height = x.shape[3], width = x.shape[4]
        Py_ssize_t n, c, i, j, si, sj, d0, d1, d2
        Py_ssize_t sign = -1 if inverse else 1
        bint flip
    for n in prange(n_samples, nogil=True, schedule="static", num_threads=n_threads):
        d0 = sign * moves[n, 0]
        d1 = sign * moves[n, 1]
        flip = moves[n, 3] != 0
        # The mirror reads W - 1 - (k - d2) both ways; only a plain shift flips sign.
        d2 = moves[n, 2] if flip else sign * moves[n, 2]
        for c in range(n_channels):
            for i in range(depth):
                si = i - d0
                for j in range(height):
                    sj = j - d1
                    if 0 <= si < depth and 0 <= sj < height:
                        _move_row(&x[n, c, si, sj, 0], &y[n, c, i, j, 0], width, d2, flip)
                    else:
                        memset(&y[n, c, i, j, 0], 0, width * sizeof(floating))
