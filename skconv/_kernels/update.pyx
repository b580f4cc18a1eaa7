"""Kernels of the training loop's passes over whole arrays: the fused optimizer steps
(see ``include/update/updatekernels.h``), the L2 sum and the minibatch gather.

Kernels only, driven by ``skconv._ops.update`` (which caps the thread counts by the
amount of work); the engine's optimizers keep the numpy version of the same maths,
which the tests hold these to bit for bit.
"""

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cnp.import_array()

cdef extern from "update/updatekernels.h" nogil:
    void skc_adam_f(Py_ssize_t n, float *param, float *m, float *v, const float *grad,
                    float l2, float beta_1, float one_minus_beta_1, float beta_2,
                    float one_minus_beta_2, float minus_learning_rate, float epsilon)
    void skc_adam_d(Py_ssize_t n, double *param, double *m, double *v,
                    const double *grad, double l2, double beta_1,
                    double one_minus_beta_1, double beta_2, double one_minus_beta_2,
                    double minus_learning_rate, double epsilon)
    double skc_sum_of_squares_f(Py_ssize_t n, const float *values)
    double skc_sum_of_squares_d(Py_ssize_t n, const double *values)

cdef inline double _sum_of_squares(const floating *values, Py_ssize_t n) noexcept nogil:
    # sum(values ** 2) in float64, in a fixed order (see include/update/updatekernels_impl.h).
    if floating is float:
        return skc_sum_of_squares_f(n, values)
    return skc_sum_of_squares_d(n, values)


cdef struct _AdamArrays:
    # One parameter array of a multi-array step: its data and those of its moments
    # and gradient (all of one dtype), its length and its L2 factor.
    char *param
    char *m
    char *v
    const char *grad
    Py_ssize_t size
    double l2


cdef bint _fits(object array, int type_num, Py_ssize_t size, bint writeable):
    """Whether ``array`` is a C-contiguous ndarray of this type and size (and
    writeable when asked): what the step reads as a flat buffer."""
    if not isinstance(array, cnp.ndarray):
        return False
    cdef cnp.ndarray a = <cnp.ndarray> array
    return (cnp.PyArray_TYPE(a) == type_num and cnp.PyArray_IS_C_CONTIGUOUS(a)
            and cnp.PyArray_SIZE(a) == size
            and (not writeable or cnp.PyArray_ISWRITEABLE(a)))


cdef void _adam_range(const _AdamArrays *arrays, Py_ssize_t n_arrays, bint is_float,
                      Py_ssize_t start, Py_ssize_t stop, double beta_1, double beta_2,
                      double learning_rate, double epsilon) noexcept nogil:
    """The step on values [start, stop) of the arrays laid end to end."""
    cdef Py_ssize_t i = 0, offset = 0, lo, hi
    while i < n_arrays and start < stop:
        if start < offset + arrays[i].size:
            lo = start - offset
            hi = min(stop - offset, arrays[i].size)
            if is_float:
                skc_adam_f(hi - lo, <float *> arrays[i].param + lo,
                           <float *> arrays[i].m + lo, <float *> arrays[i].v + lo,
                           <const float *> arrays[i].grad + lo, <float> arrays[i].l2,
                           <float> beta_1, <float> (1 - beta_1), <float> beta_2,
                           <float> (1 - beta_2), <float> -learning_rate,
                           <float> epsilon)
            else:
                skc_adam_d(hi - lo, <double *> arrays[i].param + lo,
                           <double *> arrays[i].m + lo, <double *> arrays[i].v + lo,
                           <const double *> arrays[i].grad + lo, arrays[i].l2, beta_1,
                           1 - beta_1, beta_2, 1 - beta_2, -learning_rate, epsilon)
            start = offset + hi
        offset += arrays[i].size
        i += 1


def adam_step_arrays(list params, list ms, list vs, list grads, list l2,
                     double beta_1, double beta_2, double learning_rate, double epsilon,
                     int n_threads):
    """One Adam step in place on several parameter arrays, from ``grad + l2*param``.

    The arrays are treated as laid end to end and cut into ``n_threads`` equal
    ranges of values (the caller caps ``n_threads`` by the amount of work), so small
    arrays cost no Python call of their own and the large ones still share out
    between threads. Each value is updated alone: the cut changes nothing in the
    result.

    Parameters
    ----------
    params, ms, vs, grads : list of ndarray
        Matching one to one, each group of four C-contiguous, of one size and one
        float dtype (float32 or float64 for all), params, ms and vs writeable.
    l2 : list of float
        One L2 factor per parameter.

    Returns
    -------
    bool
        False, with nothing changed, when the arrays do not fit that description
        (the caller then takes its numpy path); True after the step.
    """
    cdef:
        Py_ssize_t n_arrays = len(params), i, size, total = 0, n_chunks, chunk
        int type_num
        bint is_float
        _AdamArrays *arrays
    if not (len(ms) == len(vs) == len(grads) == len(l2) == n_arrays):
        return False
    if n_arrays == 0:
        return True
    if not isinstance(params[0], cnp.ndarray):
        return False
    type_num = cnp.PyArray_TYPE(<cnp.ndarray> params[0])
    if type_num != cnp.NPY_FLOAT32 and type_num != cnp.NPY_FLOAT64:
        return False
    for i in range(n_arrays):
        if not isinstance(params[i], cnp.ndarray):
            return False
        size = cnp.PyArray_SIZE(<cnp.ndarray> params[i])
        if not (_fits(params[i], type_num, size, True)
                and _fits(ms[i], type_num, size, True)
                and _fits(vs[i], type_num, size, True)
                and _fits(grads[i], type_num, size, False)):
            return False
    arrays = <_AdamArrays *> malloc(n_arrays * sizeof(_AdamArrays))
    if arrays == NULL:
        raise MemoryError()
    try:
        for i in range(n_arrays):
            arrays[i].param = cnp.PyArray_BYTES(<cnp.ndarray> params[i])
            arrays[i].m = cnp.PyArray_BYTES(<cnp.ndarray> ms[i])
            arrays[i].v = cnp.PyArray_BYTES(<cnp.ndarray> vs[i])
            arrays[i].grad = cnp.PyArray_BYTES(<cnp.ndarray> grads[i])
            arrays[i].size = cnp.PyArray_SIZE(<cnp.ndarray> params[i])
            arrays[i].l2 = float(l2[i])
            total += arrays[i].size
        is_float = type_num == cnp.NPY_FLOAT32
        n_chunks = max(1, n_threads)
        for chunk in prange(n_chunks, nogil=True, schedule="static",
                            num_threads=n_chunks):
            _adam_range(arrays, n_arrays, is_float, chunk * total // n_chunks,
                        (chunk + 1) * total // n_chunks, beta_1, beta_2,
                        learning_rate, epsilon)
    finally:
        free(arrays)
    return True


# Values per block of the L2 sum: its blocks are summed on the threads, and the block
# sums added in order, so the order of the additions depends on the sizes only.
_SUM_BLOCK = 8192


cdef struct _Block:
    const char *values
    Py_ssize_t size
    bint is_float


def sum_of_squares_arrays(list arrays, int n_threads=1):
    """Sum of the squares of every value of ``arrays``, accumulated in float64.

    Each array is cut into blocks of ``_SUM_BLOCK`` values (the last one shorter);
    each block is summed with 32 interleaved partial sums (value ``i`` goes to sum
    ``i % 32``), added pairwise at the end, and the block sums are added one after
    another, arrays in list order. The order depends on the sizes only, never on
    ``n_threads``, which share out the blocks: on two threads each sums the blocks of
    the parameters its share of the Adam step updated, in its own core's cache. For
    the L2 penalty of every minibatch, in one call. Each array must be a C-contiguous
    float32 or float64 ndarray.
    """
    cdef:
        double total = 0
        cnp.ndarray a
        int type_num
        Py_ssize_t n_blocks = 0, i, start, b
        _Block *blocks
        double *sums
    for array in arrays:
        if not isinstance(array, cnp.ndarray):
            raise TypeError(f"arrays must hold ndarrays, got {type(array).__name__}")
        a = <cnp.ndarray> array
        type_num = cnp.PyArray_TYPE(a)
        if not cnp.PyArray_IS_C_CONTIGUOUS(a) or type_num not in (cnp.NPY_FLOAT32,
                                                                   cnp.NPY_FLOAT64):
            raise ValueError("arrays must be C-contiguous float32 or float64, got "
                             f"dtype {a.dtype} with flags {a.flags}")
        n_blocks += (cnp.PyArray_SIZE(a) + _SUM_BLOCK - 1) // _SUM_BLOCK
    if n_blocks == 0:
        return 0.0
    blocks = <_Block *> malloc(n_blocks * sizeof(_Block))
    sums = <double *> malloc(n_blocks * sizeof(double))
    if blocks == NULL or sums == NULL:
        free(blocks)
        free(sums)
        raise MemoryError()
    try:
        b = 0
        for array in arrays:
            a = <cnp.ndarray> array
            for start in range(0, cnp.PyArray_SIZE(a), _SUM_BLOCK):
                blocks[b].is_float = cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32
                blocks[b].values = (cnp.PyArray_BYTES(a) + start
                                    * (4 if blocks[b].is_float else 8))
                blocks[b].size = min(_SUM_BLOCK, cnp.PyArray_SIZE(a) - start)
                b += 1
        if n_threads == 1:
            for i in range(n_blocks):
                sums[i] = _block_sum(&blocks[i])
        else:
            for i in prange(n_blocks, nogil=True, schedule="static",
                            num_threads=n_threads):
                sums[i] = _block_sum(&blocks[i])
        for i in range(n_blocks):
            total += sums[i]
    finally:
        free(blocks)
        free(sums)
    return total


cdef double _block_sum(const _Block *block) noexcept nogil:
    if block.is_float:
        return _sum_of_squares(<const float *> block.values, block.size)
    return _sum_of_squares(<const double *> block.values, block.size)


def gather_rows(cnp.ndarray source, cnp.ndarray rows, cnp.ndarray out, int n_threads):
    """``out[i] = source[rows[i]]``, the rows copied on up to ``n_threads`` threads.

    The rows are shared out as the convolution kernels share out the samples of a
    batch (``prange``, static schedule), so with the same thread count each thread
    copies the samples it will compute on: they are then in its own core's cache
    rather than in the core of the thread that gathered them.

    Parameters
    ----------
    source : ndarray of shape (n_samples, ...)
        C-contiguous.
    rows : ndarray of intp, shape (n_rows,)
        Every entry in ``[0, n_samples)`` (checked: IndexError otherwise).
    out : ndarray of shape (n_rows, ...)
        C-contiguous, writeable, of ``source``'s dtype and row size.
    n_threads : int
    """
    cdef:
        Py_ssize_t n_rows, n_source, row_bytes, i, r
        const Py_ssize_t *index
        const char *src
        char *dst
    if not (cnp.PyArray_IS_C_CONTIGUOUS(source) and cnp.PyArray_IS_C_CONTIGUOUS(out)
            and cnp.PyArray_ISWRITEABLE(out) and cnp.PyArray_NDIM(source) >= 1
            and cnp.PyArray_NDIM(out) == cnp.PyArray_NDIM(source)
            and cnp.PyArray_TYPE(out) == cnp.PyArray_TYPE(source)
            and (<object> out).shape[1:] == (<object> source).shape[1:]):
        raise ValueError(
            f"gather_rows needs C-contiguous source and out of one dtype and row shape, "
            f"out writeable: source {source.dtype} {(<object> source).shape}, out "
            f"{out.dtype} {(<object> out).shape}")
    if (cnp.PyArray_TYPE(rows) != cnp.NPY_INTP or cnp.PyArray_NDIM(rows) != 1
            or not cnp.PyArray_IS_C_CONTIGUOUS(rows)
            or cnp.PyArray_DIM(rows, 0) != cnp.PyArray_DIM(out, 0)):
        raise ValueError(f"rows must be a contiguous 1-D intp array of "
                         f"{cnp.PyArray_DIM(out, 0)} entries, got {rows.dtype} "
                         f"{(<object> rows).shape}")
    n_rows = cnp.PyArray_DIM(rows, 0)
    n_source = cnp.PyArray_DIM(source, 0)
    index = <const Py_ssize_t *> cnp.PyArray_DATA(rows)
    for i in range(n_rows):
        if index[i] < 0 or index[i] >= n_source:
            raise IndexError(f"rows[{i}] = {index[i]} is out of range for source with "
                             f"{n_source} rows")
    if n_rows == 0:
        return
    row_bytes = cnp.PyArray_NBYTES(source) // n_source if n_source else 0
    src = <const char *> cnp.PyArray_DATA(source)
    dst = <char *> cnp.PyArray_DATA(out)
    n_threads = max(1, min(n_threads, n_rows))
    for i in prange(n_rows, nogil=True, schedule="static", num_threads=n_threads):
        r = index[i]
        memcpy(dst + i * row_bytes, src + r * row_bytes, row_bytes)
