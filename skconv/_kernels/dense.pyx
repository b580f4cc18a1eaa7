"""Fully connected layer kernels: ``y = x @ W + b`` and its gradients, on threads.

Each of the three matrix products (forward, weight gradient, input gradient) is cut
into a FIXED set of chunks of its output, one single-threaded BLAS call per chunk,
and the chunks are shared out over the OpenMP threads with ``prange``. The chunking
depends only on the shapes (``_chunking``), never on the thread count, so every
output value comes out of the same BLAS call with the same arguments whatever
``n_threads`` is: results are bitwise identical for any number of threads. (BLAS may
pick a different kernel, hence a different summation order, for a different matrix
size; that is why the chunks must not follow the thread count.)

Which side of an output is cut: every BLAS call reads, and copies ("packs"), the
whole operand that the chunks share, so the chunks run along the longer side of the
output, where that operand is the smaller one (for LeNet-5's (64, 784) @ (784, 120)
the 120 units; at a batch of 512 the batch rows). The weight gradient is cut along the
input features (rows of grad_W, each value a sum over the whole batch inside one
call) and the input gradient along the features too, unless the batch is larger.
The bias gradient adds the rows of grad_y in order.

A forward product whose output is small next to its inner dimension (LeNet-5's
784 -> 120 at batch 64) is cut along the features instead: chunk ``c`` multiplies
``x[:, features_c] @ W[features_c]``, and the partial products are added to the
first in chunk order (again fixed by the shapes). Its chunks then fall on the same
rows of W as the weight and input gradients' chunks, and the backward's tasks
alternate between the threads (thread ``t`` takes tasks ``t``, ``t + n_threads``...),
so on two threads each thread reads and writes the same half of W's rows in the
forward, in the backward and (mostly) in its share of the Adam step: data a core
wrote itself is in its own cache, while a row the other core wrote costs a transfer
between cores (``benchmarks/profile_lenet5_layers.py`` measures the layer).

Nothing here validates shapes: ``skconv._ops.dense`` hands over C-contiguous arrays
of matching shapes and dtype, and limits BLAS to one thread around the calls (``skconv._ops.threads.single_threaded_blas``), since the BLAS calls run
inside our own parallel region.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange

from .blas cimport gemm as _gemm
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
# Forward products with at most this many outputs are cut along their features
# (see the module docstring), each chunk at least _MIN_FEATURE_CHUNK features long.
cdef Py_ssize_t _MAX_FEATURE_SPLIT_OUTPUT = 1 << 14
cdef Py_ssize_t _MIN_FEATURE_CHUNK = 256


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


cdef struct Box:
    # The part of an (n_rows, n_units) output that one chunk covers.
    Py_ssize_t row_lo, row_hi, u_lo, u_hi


cdef inline Box _chunk_box(Py_ssize_t n_rows, Py_ssize_t n_units, const Chunking *ch,
                           Py_ssize_t chunk) noexcept nogil:
    cdef Box box
    cdef Py_ssize_t start = _chunk_start(chunk, ch), stop = _chunk_start(chunk + 1, ch)
    box.row_lo, box.row_hi, box.u_lo, box.u_hi = 0, n_rows, 0, n_units
    if ch.split_rows:
        box.row_lo, box.row_hi = start, stop
    else:
        box.u_lo, box.u_hi = start, stop
    return box


cdef void _fill_bias(const floating *bias, floating *y, Py_ssize_t n_rows,
                     Py_ssize_t n_units, const Chunking *ch,
                     Py_ssize_t chunk) noexcept nogil:
    """Write the bias into one chunk of y, which the chunk's GEMM then adds to."""
    cdef Box box = _chunk_box(n_rows, n_units, ch, chunk)
    cdef Py_ssize_t i, u
    for i in range(box.row_lo, box.row_hi):
        for u in range(box.u_lo, box.u_hi):
            y[i * n_units + u] = bias[u]


cdef inline void _relu_run(floating *values, Py_ssize_t n) noexcept nogil:
    """relu in place on n contiguous values, as numpy's ``maximum(v, 0)`` computes
    it: negatives and -0 become +0, NaN is kept."""
    cdef Py_ssize_t u
    for u in range(n):
        # A select, not a conditional store, so that the loop vectorises.
        values[u] = 0 if values[u] <= 0 else values[u]


cdef void _relu_chunk(floating *y, Py_ssize_t n_rows, Py_ssize_t n_units,
                      const Chunking *ch, Py_ssize_t chunk) noexcept nogil:
    """relu in place on one chunk of y (``_relu_run`` on each of its rows)."""
    cdef Box box = _chunk_box(n_rows, n_units, ch, chunk)
    cdef Py_ssize_t i
    for i in range(box.row_lo, box.row_hi):
        _relu_run(y + i * n_units + box.u_lo, box.u_hi - box.u_lo)


cdef void _forward_chunk(const floating *x, const floating *w, const floating *bias,
                         floating *y, Py_ssize_t n_rows, Py_ssize_t n_features,
                         Py_ssize_t n_units, const Chunking *ch,
                         Py_ssize_t chunk, bint relu) noexcept nogil:
    # y = b + x @ W on the chunk: the bias is written first and the GEMM adds to it
    # (beta = 1), so no pass over y follows; relu then runs on the chunk while it is
    # in cache.
    _fill_bias(bias, y, n_rows, n_units, ch, chunk)
    _gemm_chunk(False, False, x, n_features, w, n_units, 1, y, n_units,
                n_rows, n_units, n_features, ch, chunk)
    if relu:
        _relu_chunk(y, n_rows, n_units, ch, chunk)


cdef Chunking _feature_chunking(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Chunks of the inner (feature) dimension of a forward product, for an output of
    at most ``_MAX_FEATURE_SPLIT_OUTPUT`` values; one chunk (no split) otherwise.

    Counted as in ``_chunking``, with at least ``_MIN_FEATURE_CHUNK`` features a chunk.
    """
    cdef Chunking ch
    cdef Py_ssize_t limit, count = 1
    ch.split_rows = True   # the rows of W
    ch.length = k
    if m * n <= _MAX_FEATURE_SPLIT_OUTPUT:
        limit = min(_MAX_CHUNKS, min(m * n * k // _CHUNK_WORK, k // _MIN_FEATURE_CHUNK))
        while 2 * count <= limit:
            count *= 2
    ch.n_chunks = count
    return ch


def forward_chunking(Py_ssize_t n_rows, Py_ssize_t n_features, Py_ssize_t n_units):
    """``(side, n_chunks)`` of the forward product, side ``'rows'`` (batch rows of y),
    ``'units'`` (columns of y) or ``'features'`` (the inner dimension; partial
    products added in order). For tests and benchmarks."""
    cdef Chunking ch = _feature_chunking(n_rows, n_units, n_features)
    if ch.n_chunks > 1:
        return "features", ch.n_chunks
    ch = _chunking(n_rows, n_units, n_features)
    return ("rows" if ch.split_rows else "units"), ch.n_chunks


def backward_chunking(Py_ssize_t n_rows, Py_ssize_t n_features, Py_ssize_t n_units):
    """``((side, n_chunks) of grad_W, (side, n_chunks) of grad_x)``: grad_W (F, U) is
    cut into ``'features'`` (its rows) or ``'units'``, grad_x (N, F) into ``'rows'``
    or ``'features'``."""
    cdef Chunking ch_w = _chunking(n_features, n_units, n_rows)
    cdef Chunking ch_x = _chunking(n_rows, n_features, n_units)
    return ((("features" if ch_w.split_rows else "units"), ch_w.n_chunks),
            (("rows" if ch_x.split_rows else "features"), ch_x.n_chunks))


cdef void _feature_chunk(const floating *x, const floating *w, const floating *bias,
                         floating *y, floating *partials, Py_ssize_t n_rows,
                         Py_ssize_t n_features, Py_ssize_t n_units, const Chunking *ch,
                         Py_ssize_t chunk) noexcept nogil:
    # The product over features [start, stop): chunk 0 into y on top of the bias
    # (y = b + x0 @ W0, as _forward_chunk), chunk c > 0 into partials[c - 1].
    cdef:
        Py_ssize_t start = _chunk_start(chunk, ch), stop = _chunk_start(chunk + 1, ch)
        Py_ssize_t i, u
        floating one = 1, zero = 0
        floating *out = y
    if chunk == 0:
        for i in range(n_rows):
            for u in range(n_units):
                y[i * n_units + u] = bias[u]
    else:
        out = partials + (chunk - 1) * n_rows * n_units
    # Row-major out (N, U) = x[:, start:stop] (N, K') @ W[start:stop] (K', U),
    # written column-major (see _gemm_chunk).
    _gemm(c'N', c'N', <int> n_units, <int> n_rows, <int> (stop - start), one,
          w + start * n_units, <int> n_units, x + start, <int> n_features,
          one if chunk == 0 else zero, out, <int> n_units)


cdef void _add_partials_row(floating *y, const floating *partials, Py_ssize_t n_rows,
                            Py_ssize_t n_units, Py_ssize_t n_partials, Py_ssize_t row,
                            bint relu) noexcept nogil:
    # y[row] += partials[0][row] + ..., one partial after another; then relu.
    cdef Py_ssize_t c, u
    cdef floating *y_row = y + row * n_units
    cdef const floating *p_row
    for c in range(n_partials):
        p_row = partials + (c * n_rows + row) * n_units
        for u in range(n_units):
            y_row[u] = y_row[u] + p_row[u]
    if relu:
        _relu_run(y_row, n_units)


def dense_forward(const floating[:, ::1] x,     # IN  (N, F)
                  const floating[:, ::1] w,     # IN  (F, U)
                  const floating[::1] b,        # IN  (U,)
                  floating[:, ::1] y,           # OUT (N, U)
                  int n_threads, bint relu=False):
    """y = x @ w + b (then relu if asked, as ``numpy.maximum(y, 0)``), on up to
    ``n_threads`` threads; bitwise the same for any count.

    Shapes are trusted (``skconv._ops.dense.dense`` checks them); BLAS must be limited to
    one thread by the caller. ``y`` is overwritten.
    """
    cdef:
        Py_ssize_t n_rows = x.shape[0], n_features = x.shape[1], n_units = w.shape[1]
        Chunking ch = _feature_chunking(n_rows, n_units, n_features)
        Py_ssize_t chunk
    if n_rows == 0:
        return
    if ch.n_chunks > 1:
        _forward_by_features(x, w, b, y, n_threads, relu, &ch)
        return
    ch = _chunking(n_rows, n_units, n_features)
    n_threads = max(1, min(n_threads, ch.n_chunks))
    with nogil:
        if n_threads == 1:
            # No parallel region: a one-thread team still costs its set-up.
            for chunk in range(ch.n_chunks):
                _forward_chunk(&x[0, 0], &w[0, 0], &b[0], &y[0, 0], n_rows, n_features,
                               n_units, &ch, chunk, relu)
        else:
            for chunk in prange(ch.n_chunks, schedule="static", num_threads=n_threads):
                _forward_chunk(&x[0, 0], &w[0, 0], &b[0], &y[0, 0], n_rows, n_features,
                               n_units, &ch, chunk, relu)


cdef void _forward_by_features(const floating[:, ::1] x, const floating[:, ::1] w,
                               const floating[::1] b, floating[:, ::1] y, int n_threads,
                               bint relu, const Chunking *ch):
    """``dense_forward`` with the features cut into ``ch.n_chunks`` chunks."""
    cdef:
        Py_ssize_t n_rows = x.shape[0], n_features = x.shape[1], n_units = w.shape[1]
        Py_ssize_t chunk, row, n_partials = ch.n_chunks - 1
        floating[::1] partials = np.empty(n_partials * n_rows * n_units,
                                          dtype=np.float32 if floating is float
                                          else np.float64)
    n_threads = max(1, min(n_threads, ch.n_chunks))
    with nogil:
        if n_threads == 1:
            for chunk in range(ch.n_chunks):
                _feature_chunk(&x[0, 0], &w[0, 0], &b[0], &y[0, 0], &partials[0],
                               n_rows, n_features, n_units, ch, chunk)
            for row in range(n_rows):
                _add_partials_row(&y[0, 0], &partials[0], n_rows, n_units, n_partials,
                                  row, relu)
        else:
            with parallel(num_threads=n_threads):
                for chunk in prange(ch.n_chunks, schedule="static"):
                    _feature_chunk(&x[0, 0], &w[0, 0], &b[0], &y[0, 0], &partials[0],
                                   n_rows, n_features, n_units, ch, chunk)
                # (prange ends with a barrier: every partial is done.) The rows in
                # the same static split as the samples of the layers around.
                for row in prange(n_rows, schedule="static"):
                    _add_partials_row(&y[0, 0], &partials[0], n_rows, n_units,
                                      n_partials, row, relu)


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
    trusted and BLAS must be single-threaded, as in ``dense_forward``. The outputs are
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
