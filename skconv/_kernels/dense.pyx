"""Fully connected layer kernels: ``y = x @ W + b`` and its gradients, on threads.

The forward is not a BLAS call: every ``y[i, u]`` is ``(sum over f in increasing
order of x[i, f] * W[f, u]) + b[u]``, accumulated in the dtype of W by a
register-blocked micro-kernel (``densegemm`` of ``include/conv/microkernels.h``,
which reads the rows of x in place), whose blocking never changes a sum. So a row of y is a function of the same row of x
alone: a sample gets the same bits in a batch of any size, at any position in it, and
on any number of threads (however the rows are cut into parts per thread and passes
of ``_ROWS_PER_TASK``). BLAS promises none of this (its kernels, blocking and threading
follow the matrix sizes: a float32 row differed by up to 3.8e-7 between batch sizes),
and for the shapes of a LeNet-5 head the micro-kernel is as fast or faster
(``benchmarks/profile_lenet5_layers.py``).

Each of the two backward products (weight gradient, input gradient) is cut into a
FIXED set of chunks of its output, one single-threaded BLAS call per chunk, and the
chunks are shared out over the OpenMP threads with ``prange``. The chunking depends
only on the shapes (``_chunking``), never on the thread count, so every output value
comes out of the same BLAS call with the same arguments whatever ``n_threads`` is:
results are bitwise identical for any number of threads. (A gradient is a sum over
the batch, so it may depend on the batch; only the forward serves inference.)

Which side of an output is cut: every BLAS call reads, and copies ("packs"), the
whole operand that the chunks share, so the chunks run along the longer side of the
output, where that operand is the smaller one. The weight gradient is cut along the
input features (rows of grad_W, each value a sum over the whole batch inside one
call) and the input gradient along the features too, unless the batch is larger.
The two products' tasks alternate between the threads (thread ``t`` takes tasks
``t``, ``t + n_threads``...), so on two threads each thread reads and writes the same
half of W's rows in both. The bias gradient adds the rows of grad_y in order.

Nothing here validates shapes: ``skconv._ops.dense`` hands over C-contiguous arrays
of matching shapes and dtype, and limits BLAS to one thread around the backward calls
(``skconv._ops.threads.single_threaded_blas``), since they run inside our own
parallel region.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy, memset

from .blas cimport gemm as _gemm
from .microkernels cimport densegemm
from .relu cimport relu_run
from .sums cimport sum_rows_in_order

import numpy as np

# Multiply-adds per chunk below which a product is not cut further: LeNet-5's
# 120 -> 84 and 84 -> 10 products stay whole, since waking a thread and re-reading
# the shared operand would cost more than they save.
cdef Py_ssize_t _CHUNK_WORK = 1 << 21
# At most this many chunks: every chunk re-reads the shared operand, so more chunks
# cost time on one thread (measured with benchmarks/profile_lenet5_layers.py at
# batch 512), against up to 4 threads they can feed.
cdef Py_ssize_t _MAX_CHUNKS = 4
# Rows (or columns) per chunk, at least: as many multiply-adds per re-read value.
# LeNet-5's 120 units still make two chunks.
cdef Py_ssize_t _MIN_CHUNK = 48
# Chunk boundaries fall on multiples of this many rows or columns: whole 64-byte
# lines of float32 and whole register tiles of the BLAS micro-kernels.
cdef Py_ssize_t _ALIGN = 16


cdef struct Chunking:
    bint split_rows        # chunks of rows of the output (else of its columns)
    Py_ssize_t length      # rows (or columns) that are split
    Py_ssize_t n_chunks


cdef Chunking _chunking(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Fixed chunking of an (m, n) output with k terms per value; shapes only.

    Cut along the longer side. The count is a power of two (equal shares for 2 or 4
    threads), at most ``_MAX_CHUNKS``, with at least ``_CHUNK_WORK`` multiply-adds and
    ``_MIN_CHUNK`` rows (or columns) per chunk; a product below twice
    ``_CHUNK_WORK`` is one chunk.
    """
    cdef Chunking ch
    cdef Py_ssize_t limit, count = 1
    ch.split_rows = m >= n
    ch.length = m if ch.split_rows else n
    limit = min(_MAX_CHUNKS, min(m * n * k // _CHUNK_WORK, ch.length // _MIN_CHUNK))
    while 2 * count <= limit:
        count *= 2
    ch.n_chunks = count
    return ch


cdef inline Py_ssize_t _chunk_start(Py_ssize_t chunk, const Chunking *ch) noexcept nogil:
    """First row (or column) of a chunk: ceil(chunk * length / n_chunks) rounded up to
    ``_ALIGN``; ``length`` for chunk ``n_chunks``.

    Chunks are at least ``_MIN_CHUNK >= _ALIGN`` long before rounding, so rounding
    never empties one.
    """
    cdef Py_ssize_t start
    if chunk >= ch.n_chunks:
        return ch.length
    start = (chunk * ch.length + ch.n_chunks - 1) // ch.n_chunks
    start = (start + _ALIGN - 1) // _ALIGN * _ALIGN
    return start if start < ch.length else ch.length


cdef void _gemm_chunk(bint trans_a, bint trans_b,
                      const floating *a, Py_ssize_t lda,   # IN  op(A): (m, k), row-major
                      const floating *b, Py_ssize_t ldb,   # IN  op(B): (k, n), row-major
                      floating beta,
                      floating *c, Py_ssize_t ldc,         # INOUT (m, n), row-major
                      Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                      const Chunking *ch, Py_ssize_t chunk) noexcept nogil:
    """One chunk of the row-major product C = op(A) @ op(B) + beta C.

    Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so B is passed
    first. ``op(A)`` stored transposed is (k, m) with row stride ``lda``; same for B.
    """
    cdef:
        Py_ssize_t start = _chunk_start(chunk, ch), stop = _chunk_start(chunk + 1, ch)
        char ta = c'T' if trans_a else c'N'
        char tb = c'T' if trans_b else c'N'
        floating one = 1
    if ch.split_rows:
        # Rows start..stop of C: rows of op(A), so columns of a transposed A.
        _gemm(tb, ta, <int> n, <int> (stop - start), <int> k,
              one, b, <int> ldb, a + (start if trans_a else start * lda), <int> lda,
              beta, c + start * ldc, <int> ldc)
    else:
        # Columns start..stop of C: columns of op(B), so rows of a transposed B.
        _gemm(tb, ta, <int> (stop - start), <int> m, <int> k,
              one, b + (start * ldb if trans_b else start), <int> ldb, a, <int> lda,
              beta, c + start, <int> ldc)


# Rows of x per register pass of ``dense_forward``: their sums for a block of
# features stay in L1 while the block's panels of W are multiplied in. Any value
# gives the same results.
cdef Py_ssize_t _ROWS_PER_TASK = 32
# Rows per part at most: a part's sums (its rows by the padded units) stay in L2
# from one block of features to the next, and each part reads W once. Smaller
# batches are cut into one part per thread. Any cut gives the same results.
cdef Py_ssize_t _PART_ROWS = 256
# Features per block (float32; half as many float64): a block's tile of W for one
# panel (32 kB) then stays in L1 while every register block of rows uses it. A sum
# goes on from one block to the next in the same order, so the blocking changes no
# bit.
cdef Py_ssize_t _FEATURE_BLOCK = 128
# Vectors of units per panel of a tile: densegemm's widest register block.
cdef Py_ssize_t _PANEL_VECTORS = 4


cdef struct DenseLayout:
    # How dense_forward cuts the product: the units padded with zeros to whole
    # vectors (``u_pad``) and cut into panels of ``_PANEL_VECTORS`` vectors (the last
    # one narrower); the features in blocks; the rows in parts.
    Py_ssize_t lanes
    Py_ssize_t block       # features per block
    Py_ssize_t n_blocks
    Py_ssize_t u_pad
    Py_ssize_t panel       # units of a whole panel
    Py_ssize_t n_panels
    Py_ssize_t part_rows
    Py_ssize_t n_parts


cdef DenseLayout _dense_layout(Py_ssize_t n_rows, Py_ssize_t n_features,
                               Py_ssize_t n_units, bint single,
                               int n_threads) noexcept nogil:
    cdef DenseLayout lay
    lay.lanes = 16 if single else 8
    lay.block = _FEATURE_BLOCK if single else _FEATURE_BLOCK // 2
    lay.n_blocks = (n_features + lay.block - 1) // lay.block
    lay.u_pad = (n_units + lay.lanes - 1) // lay.lanes * lay.lanes
    lay.panel = _PANEL_VECTORS * lay.lanes
    lay.n_panels = (lay.u_pad + lay.panel - 1) // lay.panel
    n_threads = max(1, n_threads)
    lay.part_rows = (n_rows + n_threads - 1) // n_threads
    lay.part_rows = (lay.part_rows + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK * _ROWS_PER_TASK
    lay.part_rows = max(_ROWS_PER_TASK, min(_PART_ROWS, lay.part_rows))
    lay.n_parts = (n_rows + lay.part_rows - 1) // lay.part_rows
    return lay


cdef void _pack_tile(const floating *w, Py_ssize_t n_features, Py_ssize_t n_units,
                     const DenseLayout *lay, Py_ssize_t k0, Py_ssize_t first_panel,
                     floating *tile) noexcept nogil:
    """The block of W (F, U) from feature ``k0``, panels ``first_panel`` on: per panel
    a row-major (features, panel width) tile, the units past U zero, one after the
    other from ``tile``. Contiguous tiles stream through the cache; W's own rows, a
    power of two apart for 128 units, fell into the same few L1 sets and missed, and
    units that are not whole vectors needed a slower path."""
    cdef:
        Py_ssize_t nk = min(lay.block, n_features - k0)
        Py_ssize_t p, k, p0, width, real
    for p in range(first_panel, lay.n_panels):
        p0 = p * lay.panel
        width = min(lay.panel, lay.u_pad - p0)
        real = max(0, min(width, n_units - p0))
        for k in range(nk):
            memcpy(tile + k * width, w + (k0 + k) * n_units + p0, real * sizeof(floating))
            memset(tile + k * width + real, 0, (width - real) * sizeof(floating))
        tile += nk * width


cdef void _rows_part(const floating *x, const floating *w, const floating *bias,
                     floating *y,
                     floating *tile,    # scratch (block * panel,): a last panel's tile
                     floating *c,       # scratch (part_rows * u_pad,)
                     const DenseLayout *lay,
                     Py_ssize_t n_rows, Py_ssize_t n_features, Py_ssize_t n_units,
                     Py_ssize_t part, bint relu) noexcept nogil:
    # Rows [lo, hi) of y, a block of features at a time: for each pass of rows, each
    # panel's sums added into c (rows of u_pad units). x and W are read in place
    # (measured faster than packed tiles of W shared by the parts, at batches of 64
    # to 512 rows and 1 or 2 threads), except the block's last panel of W, which is
    # packed: its units past U are zeros there. Then y = c + b and relu.
    cdef:
        Py_ssize_t lo = part * lay.part_rows, hi = min(lo + lay.part_rows, n_rows)
        Py_ssize_t i, u, kb, k0, nk, p, p0, width, r0, m, ldb
        Py_ssize_t last = lay.n_panels - 1
        const floating *panel
        floating *c_row
        floating *y_row
    for kb in range(lay.n_blocks):
        k0 = kb * lay.block
        nk = min(lay.block, n_features - k0)
        _pack_tile(w, n_features, n_units, lay, k0, last, tile)
        r0 = lo
        while r0 < hi:
            m = min(_ROWS_PER_TASK, hi - r0)
            for p in range(lay.n_panels):
                p0 = p * lay.panel
                width = min(lay.panel, lay.u_pad - p0)
                if p < last:
                    panel, ldb = w + k0 * n_units + p0, n_units
                else:
                    panel, ldb = tile, width
                densegemm(m, width // lay.lanes, nk, x + r0 * n_features + k0,
                          n_features, panel, ldb, c + (r0 - lo) * lay.u_pad + p0,
                          lay.u_pad, k0 > 0)
            r0 += m
    for i in range(lo, hi):
        c_row = c + (i - lo) * lay.u_pad
        y_row = y + i * n_units
        for u in range(n_units):
            y_row[u] = c_row[u] + bias[u]
        if relu:
            relu_run(y_row, n_units)


def dense_forward(const floating[:, ::1] x,     # IN  (N, F)
                  const floating[:, ::1] w,     # IN  (F, U)
                  const floating[::1] b,        # IN  (U,)
                  floating[:, ::1] y,           # OUT (N, U)
                  int n_threads, bint relu=False,
                  floating[::1] scratch=None):  # SCRATCH (>= forward_scratch_size)
    """y = x @ w + b (then relu if asked, as ``numpy.maximum(y, 0)``), on up to
    ``n_threads`` threads; each row of y a function of the same row of x alone.

    Every ``y[i, u]`` is ``(sum over f in increasing order of x[i, f] * w[f, u]) +
    b[u]`` (see the module docstring). Shapes are trusted, with at least one feature
    (``skconv._ops.dense.dense`` checks them). ``y`` is overwritten. ``scratch``
    (``forward_scratch_size`` values, allocated when None or smaller) holds each
    thread's tile of W and sums.
    """
    cdef:
        Py_ssize_t n_rows = x.shape[0], n_features = x.shape[1], n_units = w.shape[1]
        DenseLayout lay = _dense_layout(n_rows, n_features, n_units, floating is float,
                                        n_threads)
        Py_ssize_t part, per_thread
        object dtype = np.float32 if floating is float else np.float64
        floating *mine = NULL
    if n_rows == 0 or n_units == 0:
        return
    n_threads = max(1, min(n_threads, lay.n_parts))
    per_thread = _scratch_per_thread(&lay)
    if scratch is None or scratch.shape[0] < n_threads * per_thread:
        scratch = np.empty(n_threads * per_thread, dtype=dtype)
    with nogil:
        if n_threads == 1:
            for part in range(lay.n_parts):
                _run_part(&x[0, 0], &w[0, 0], &b[0], &y[0, 0], &scratch[0], &lay,
                          n_rows, n_features, n_units, part, relu)
        else:
            with parallel(num_threads=n_threads):
                mine = &scratch[threadid() * per_thread]
                for part in prange(lay.n_parts, schedule="static"):
                    _run_part(&x[0, 0], &w[0, 0], &b[0], &y[0, 0], mine, &lay, n_rows,
                              n_features, n_units, part, relu)


cdef inline Py_ssize_t _scratch_per_thread(const DenseLayout *lay) noexcept nogil:
    """Values of one thread's scratch: a last panel's tile and a part's sums, a few
    cache lines apart."""
    return lay.block * lay.panel + lay.part_rows * lay.u_pad + 2 * 32


cdef inline void _run_part(const floating *x, const floating *w, const floating *bias,
                           floating *y, floating *mine, const DenseLayout *lay,
                           Py_ssize_t n_rows,
                           Py_ssize_t n_features, Py_ssize_t n_units, Py_ssize_t part,
                           bint relu) noexcept nogil:
    """:func:`_rows_part` with its scratch carved from this thread's ``mine``."""
    cdef floating *tile = mine
    cdef floating *c = tile + lay.block * lay.panel + 32
    _rows_part(x, w, bias, y, tile, c, lay, n_rows, n_features, n_units, part, relu)


def forward_scratch_size(Py_ssize_t n_rows, Py_ssize_t n_features, Py_ssize_t n_units,
                         bint single, int n_threads):
    """Values of ``dense_forward``'s ``scratch`` for these shapes (float32 if
    ``single``) on up to ``n_threads`` threads."""
    cdef DenseLayout lay = _dense_layout(n_rows, n_features, n_units, single,
                                         n_threads)
    return max(1, min(n_threads, lay.n_parts)) * _scratch_per_thread(&lay)


def backward_chunking(Py_ssize_t n_rows, Py_ssize_t n_features, Py_ssize_t n_units):
    """``((side, n_chunks) of grad_W, (side, n_chunks) of grad_x)``: grad_W (F, U) is
    cut into ``'features'`` (its rows) or ``'units'``, grad_x (N, F) into ``'rows'``
    or ``'features'``."""
    cdef Chunking ch_w = _chunking(n_features, n_units, n_rows)
    cdef Chunking ch_x = _chunking(n_rows, n_features, n_units)
    return ((("features" if ch_w.split_rows else "units"), ch_w.n_chunks),
            (("rows" if ch_x.split_rows else "features"), ch_x.n_chunks))


cdef void _backward_task(const floating *grad_y, const floating *x,
                         const floating *w, floating *grad_x, floating *grad_w,
                         Py_ssize_t n_rows, Py_ssize_t n_features, Py_ssize_t n_units,
                         const Chunking *ch_w, const Chunking *ch_x,
                         Py_ssize_t task) noexcept nogil:
    # Tasks [0, ch_w.n_chunks): chunks of grad_W (F, U) = x^T (F, N) @ grad_y (N, U);
    # then chunks of grad_x (N, F) = grad_y @ W^T.
    if task < ch_w.n_chunks:
        _gemm_chunk(True, False, x, n_features, grad_y, n_units, 0, grad_w, n_units,
                    n_features, n_units, n_rows, ch_w, task)
    else:
        _gemm_chunk(False, True, grad_y, n_units, w, n_units, 0, grad_x, n_features,
                    n_rows, n_features, n_units, ch_x, task - ch_w.n_chunks)


def dense_relu_backward(floating[:, ::1] grad_y,        # INOUT (N, U)
                        const floating[:, ::1] relu_out,  # IN  (N, U)
                        const floating[:, ::1] x,         # IN  (N, F)
                        const floating[:, ::1] w,         # IN  (F, U)
                        floating[:, ::1] grad_x,          # OUT (N, F) or None
                        floating[:, ::1] grad_w,          # OUT (F, U)
                        floating[::1] grad_b,             # OUT (U,)
                        int n_threads):
    """Gradients of ``dense_forward(..., relu=True)`` from the gradient of its output.

    ``grad_y`` is first overwritten with the relu's backward, ``grad_y * (relu_out >
    0)`` as numpy computes it (a product, so an infinite gradient on a zeroed cell
    gives NaN), then everything is as in ``dense_backward``.
    """
    cdef Py_ssize_t i, n = grad_y.shape[0] * grad_y.shape[1]
    cdef floating *g = &grad_y[0, 0] if n else NULL
    cdef const floating *out = &relu_out[0, 0] if n else NULL
    cdef floating one = 1, zero = 0
    with nogil:
        # N * U products: too few to share out. A select of the factor (rather than
        # a converted comparison) lets the loop vectorise.
        for i in range(n):
            g[i] = g[i] * (one if out[i] > 0 else zero)
    _backward(grad_y, x, w, grad_x, grad_w, grad_b, n_threads)


def dense_backward(const floating[:, ::1] grad_y,   # IN  (N, U)
                   const floating[:, ::1] x,        # IN  (N, F)
                   const floating[:, ::1] w,        # IN  (F, U)
                   floating[:, ::1] grad_x,         # OUT (N, F) or None
                   floating[:, ::1] grad_w,         # OUT (F, U)
                   floating[::1] grad_b,            # OUT (U,)
                   int n_threads):
    """Gradients of ``dense_forward``: grad_W = x^T grad_y, grad_b = column sums of
    grad_y and, if ``grad_x`` is given, grad_x = grad_y W^T.

    Each value of grad_W sums over the whole batch inside one BLAS call; grad_b adds
    the rows of grad_y in order. Bitwise the same for any ``n_threads``; shapes are
    trusted and BLAS must be limited to one thread by the caller. The outputs are
    overwritten.
    """
    _backward(grad_y, x, w, grad_x, grad_w, grad_b, n_threads)


cdef void _backward(const floating[:, ::1] grad_y, const floating[:, ::1] x,
                    const floating[:, ::1] w, floating[:, ::1] grad_x,
                    floating[:, ::1] grad_w, floating[::1] grad_b, int n_threads):
    """The body of ``dense_backward``."""
    cdef:
        Py_ssize_t n_rows = x.shape[0], n_features = x.shape[1], n_units = w.shape[1]
        # grad_W (F, U) = x^T (F, N) @ grad_y (N, U); grad_x (N, F) = grad_y @ W^T.
        Chunking ch_w = _chunking(n_features, n_units, n_rows)
        Chunking ch_x = _chunking(n_rows, n_features, n_units)
        bint want_grad_x = grad_x is not None
        Py_ssize_t task, n_tasks
        floating *gx = NULL
    if n_rows == 0:
        # Empty sums (BLAS would be handed pointers into empty arrays).
        grad_w[:, :] = 0
        grad_b[:] = 0
        return
    if want_grad_x:
        gx = &grad_x[0, 0]
    else:
        ch_x.n_chunks = 0   # no input gradient: its loops run no chunk
    n_tasks = ch_w.n_chunks + ch_x.n_chunks
    n_threads = max(1, min(n_threads, n_tasks))
    with nogil:
        # N * U additions: too few to share out.
        sum_rows_in_order(&grad_y[0, 0], n_rows, n_units, n_units, &grad_b[0])
        # The chunks of both products as one list of tasks (one team wake-up): the
        # weight gradient's chunks, then the input gradient's. Two products of one
        # chunk each (LeNet-5's small layers) then run side by side on two threads.
        # Dealt out one at a time, so that with two chunks each a thread takes the
        # same rows of W in both products (see the module docstring).
        if n_threads == 1:
            for task in range(n_tasks):
                _backward_task(&grad_y[0, 0], &x[0, 0], &w[0, 0], gx, &grad_w[0, 0],
                               n_rows, n_features, n_units, &ch_w, &ch_x, task)
        else:
            for task in prange(n_tasks, schedule="static", chunksize=1,
                               num_threads=n_threads):
                _backward_task(&grad_y[0, 0], &x[0, 0], &w[0, 0], gx, &grad_w[0, 0],
                               n_rows, n_features, n_units, &ch_w, &ch_x, task)

