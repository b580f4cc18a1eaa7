"""N-d pooling kernels (max, average, min): forward and backward.

Every spatial case (1, 2 or 3 axes) runs through one 3-D kernel, as for convolution.
Pooling acts on each (sample, channel) plane alone, so the ops layer hands the kernels
a batch ``(N, C, *spatial)`` viewed as ``P = N*C`` planes ``(P, X0, X1, X2)`` (leading
singleton axes for 1-D and 2-D data; they cost nothing because the innermost loops run
over the last axis) and the kernels run one ``prange`` over the planes.

Layering (as in scikit-learn's ``_loss.pyx.tp``): row helpers (all the windows of one
output row) -> per-plane loops -> ``prange`` over planes with an explicit ``n_threads``
and per-thread row buffers -> the ``def`` wrappers below, called only by ``skconv.ops``
which has checked every shape.

Loop order: a max/min row helper loops over the window taps outside and over the
outputs of the row inside. Scanning one window at a time would chain every compare of
a window to the previous one; taps outside give one independent chain per output,
which the CPU overlaps, while each window still sees its cells in row-major order.

Averages are separable (``_avg_forward_plane`` / ``_avg_backward_plane``): window
sums along the last axis of every input row, then sums of those over the rows of each
axis-1 window, then over the slices of each axis-0 window, each partial sum computed
once for all the windows that share it; the backward runs the same stages in reverse.
The 2x2 (2x2x2) stride-2 windows keep their own vector loops.

Determinism: each plane of the output (and of the input gradient) is written by
exactly one thread, which visits the windows in a fixed order, so overlapping windows
accumulate in a fixed order and results are bitwise identical for any thread count.
Scratch memory is a row of outputs per thread, and for averages the partial sums of
a few slices of the plane.

Padding: each window is clipped to the input before it is scanned, so a padded cell
never wins a max or a min and is not counted in an average (the divisor is the
number of real cells, the product of the per-axis counts). The ops layer guarantees
every window keeps a real cell.

Ties and NaN: max and min keep the first extreme cell of a window in row-major order
(strict comparison), and that cell alone receives the gradient. A NaN in a window is
the window's max or min (like ``np.max``; the first NaN takes the gradient), so a
diverging network shows up instead of being hidden by the pooling.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from .ranges cimport end_valid, first_valid
from .sums cimport lane_sum

import numpy as np

cdef extern from "pool/poolkernels.h" nogil:
    enum: SKC_POOL_LANES
    void skc_pool2x2_row_f(const float *r0, Py_ssize_t n_vectors, Py_ssize_t width,
                           int64_t at, int want_min, float *y, int64_t *indices)
    void skc_pool2x2_row_d(const double *r0, Py_ssize_t n_vectors, Py_ssize_t width,
                           int64_t at, int want_min, double *y, int64_t *indices)
    void skc_pool2x2_avg_plain_row_f(const float *r0, Py_ssize_t n_vectors,
                                     Py_ssize_t width, Py_ssize_t plane, int depth,
                                     float *y)
    void skc_pool2x2_avg_plain_row_d(const double *r0, Py_ssize_t n_vectors,
                                     Py_ssize_t width, Py_ssize_t plane, int depth,
                                     double *y)
    void skc_pool2_row_f(const float *r, Py_ssize_t n_vectors, int64_t at,
                         int want_min, float *y, int64_t *indices)
    void skc_pool2_row_d(const double *r, Py_ssize_t n_vectors, int64_t at,
                         int want_min, double *y, int64_t *indices)
    void skc_pool2x2x2_row_f(const float *r0, Py_ssize_t n_vectors, Py_ssize_t width,
                             Py_ssize_t plane, int64_t at, int want_min, float *y,
                             int64_t *indices)
    void skc_pool2x2x2_row_d(const double *r0, Py_ssize_t n_vectors, Py_ssize_t width,
                             Py_ssize_t plane, int64_t at, int want_min, double *y,
                             int64_t *indices)


cdef inline void _pool2x2_row(const floating *r0, Py_ssize_t n_vectors,
                              Py_ssize_t width, int64_t at, bint want_min,
                              floating *y, int64_t *indices) noexcept nogil:
    """One row of 2x2/stride-2 max or min windows, 8 at a time; see include/pool/poolkernels.h."""
    if floating is float:
        skc_pool2x2_row_f(r0, n_vectors, width, at, want_min, y, indices)
    else:
        skc_pool2x2_row_d(r0, n_vectors, width, at, want_min, y, indices)

cdef enum:
    _MAX = 0
    _AVG = 1
    _MIN = 2

# Mode codes for the ``mode`` argument of the kernels (see ``skconv.ops``).
MODE_MAX = _MAX
MODE_AVG = _AVG
MODE_MIN = _MIN


cdef struct PoolGeometry:
    # Input spatial sizes, window sizes, output sizes, strides and low paddings, per
    # axis, for the three (possibly singleton) spatial axes.
    Py_ssize_t size[3]
    Py_ssize_t window[3]
    Py_ssize_t out[3]
    Py_ssize_t stride[3]
    Py_ssize_t pad[3]
    # For each tap k2 of the last axis, the outputs o2 in [tap_first[k2], tap_end[k2])
    # whose tap is a real cell (o2 * stride[2] + k2 - pad[2] inside the input).
    # Computed once per call: they need divisions and every output row reuses them.
    Py_ssize_t *tap_first
    Py_ssize_t *tap_end


cdef PoolGeometry _geometry(tuple x_shape, tuple y_shape, tuple window,
                           tuple stride, tuple pad_lo):
    """Geometry from (P, X0, X1, X2) and (P, O0, O1, O2) shapes and per-axis tuples."""
    cdef PoolGeometry g
    cdef int a
    for a in range(3):
        g.size[a] = x_shape[1 + a]
        g.out[a] = y_shape[1 + a]
        g.window[a] = window[a]
        g.stride[a] = stride[a]
        g.pad[a] = pad_lo[a]
    g.tap_first = NULL
    g.tap_end = NULL
    return g


cdef inline void _clip(const PoolGeometry *g, int axis, Py_ssize_t o,
                       Py_ssize_t *lo, Py_ssize_t *hi) noexcept nogil:
    """Real cells [lo, hi) of window ``o`` on ``axis`` (the padded cells are cut off)."""
    cdef Py_ssize_t start = o * g.stride[axis] - g.pad[axis]
    cdef Py_ssize_t stop = start + g.window[axis]
    lo[0] = start if start > 0 else 0
    hi[0] = stop if stop < g.size[axis] else g.size[axis]


cdef int _alloc_taps(PoolGeometry *g) noexcept nogil:
    """Allocate and fill ``g.tap_first`` / ``g.tap_end``; -1 if out of memory."""
    cdef Py_ssize_t k2, off, o
    cdef Py_ssize_t s2 = g.stride[2], n_out = g.out[2], size = g.size[2]
    g.tap_first = <Py_ssize_t *> malloc(g.window[2] * sizeof(Py_ssize_t))
    g.tap_end = <Py_ssize_t *> malloc(g.window[2] * sizeof(Py_ssize_t))
    if g.tap_first == NULL or g.tap_end == NULL:
        _free_taps(g)
        return -1
    for k2 in range(g.window[2]):
        off = k2 - g.pad[2]
        g.tap_first[k2] = first_valid(off, s2, n_out)
        o = end_valid(off, s2, size, n_out)
        g.tap_end[k2] = o if o > g.tap_first[k2] else g.tap_first[k2]
    return 0


cdef void _free_taps(PoolGeometry *g) noexcept nogil:
    free(g.tap_first)
    free(g.tap_end)
    g.tap_first = NULL
    g.tap_end = NULL


cdef inline Py_ssize_t _arg_extreme(const floating[:, :, :, ::1] x,  # IN (P, X0, X1, X2)
                                    Py_ssize_t p, const PoolGeometry *g,
                                    Py_ssize_t lo0, Py_ssize_t hi0,
                                    Py_ssize_t lo1, Py_ssize_t hi1,
                                    Py_ssize_t lo2, Py_ssize_t hi2,
                                    bint want_min,
                                    floating *best_out) noexcept nogil:
    """Flat index in plane ``p`` of the first max (or min) of one clipped window.

    The window-at-a-time reference path: ``_extreme_row`` falls back on it for rows
    that hold a NaN.
    """
    cdef:
        Py_ssize_t i0, i1, i2, row
        Py_ssize_t best_at = (lo0 * g.size[1] + lo1) * g.size[2] + lo2
        floating v
        floating best = x[p, lo0, lo1, lo2]
        int take, saw_nan = 0
    for i0 in range(lo0, hi0):
        for i1 in range(lo1, hi1):
            row = (i0 * g.size[1] + i1) * g.size[2]
            for i2 in range(lo2, hi2):
                v = x[p, i0, i1, i2]
                # The strict comparison keeps the first extreme; NaN compares false
                # and is dealt with below.
                take = (v < best) if want_min else (v > best)
                best_at = row + i2 if take else best_at
                best = v if take else best
                saw_nan = saw_nan | (v != v)
    if saw_nan:
        # Rare: the first NaN is the result and takes the gradient.
        for i0 in range(lo0, hi0):
            for i1 in range(lo1, hi1):
                for i2 in range(lo2, hi2):
                    v = x[p, i0, i1, i2]
                    if v != v:
                        best_out[0] = v
                        return (i0 * g.size[1] + i1) * g.size[2] + i2
    best_out[0] = best
    return best_at


cdef inline bint _extreme_row(const floating[:, :, :, ::1] x,  # IN  (P, X0, X1, X2)
                              Py_ssize_t p, const PoolGeometry *g,
                              Py_ssize_t lo0, Py_ssize_t hi0,
                              Py_ssize_t lo1, Py_ssize_t hi1,
                              bint want_min, bint want_index,
                              floating *best,                    # OUT (O2,)
                              Py_ssize_t *best_at) noexcept nogil:  # OUT (O2,)
    """First max (or min) and its flat index for every window of one output row.

    The row's windows span input rows [lo0, hi0) x [lo1, hi1). Forward and backward
    both call this, so the cell that receives the gradient is by construction the one
    whose value the forward pass returned. ``best_at`` is left alone unless
    ``want_index`` (a constant at each call site, so the compiler drops the index
    bookkeeping from the plain forward pass).
    """
    cdef:
        Py_ssize_t o2, i0, i1, k2, row, first, end, i2, start, cur_at
        Py_ssize_t n_out = g.out[2], s2 = g.stride[2]
        floating v, cur
        int take, saw_nan = 0
    # Start from each window's first real cell (scanning it again changes nothing).
    for o2 in range(n_out):
        start = o2 * s2 - g.pad[2]
        start = start if start > 0 else 0
        best[o2] = x[p, lo0, lo1, start]
        if want_index:
            best_at[o2] = (lo0 * g.size[1] + lo1) * g.size[2] + start
    # For a fixed o2 the cells come in the order (i0, i1, k2): row-major within the
    # window, so the strict comparison keeps the first extreme.
    for i0 in range(lo0, hi0):
        for i1 in range(lo1, hi1):
            row = (i0 * g.size[1] + i1) * g.size[2]
            for k2 in range(g.window[2]):
                for o2 in range(g.tap_first[k2], g.tap_end[k2]):
                    i2 = o2 * s2 + k2 - g.pad[2]
                    v = x[p, i0, i1, i2]
                    cur = best[o2]
                    # Which cell wins is unpredictable on real data: no branches. The
                    # value select compiles to maxss/minss; the index uses a bit mask
                    # because GCC turns a select between a new value and the old
                    # content of memory into a branch around the store.
                    take = (v < cur) if want_min else (v > cur)
                    if want_index:
                        cur_at = best_at[o2]
                        # -take is all ones or zero: a mask select, 1-cycle ops.
                        best_at[o2] = cur_at ^ ((cur_at ^ (row + i2)) & -(<Py_ssize_t> take))
                    best[o2] = v if take else cur
                    saw_nan = saw_nan | (v != v)
    if saw_nan:
        # NaN compares false above; redo the row window by window, where the first NaN
        # of a window wins. Rare, so the slow path is fine.
        for o2 in range(n_out):
            _clip(g, 2, o2, &first, &end)
            cur_at = _arg_extreme(x, p, g, lo0, hi0, lo1, hi1, first, end,
                                  want_min, &best[o2])
            if want_index:
                best_at[o2] = cur_at
    return saw_nan


# Average pooling, one axis at a time. A window's sum is the sum over its real cells
# on axis 0 of the sums over its real cells on axis 1 of the sums over its real cells
# on axis 2, so each stage sums the previous stage's results, each computed once
# however many windows share it (stride below the window): about window0 + window1 +
# window2 additions per output instead of their product. The divisor, the number of
# real cells, is the product of the per-axis counts.


cdef inline void _covering(const PoolGeometry *g, int axis, Py_ssize_t i,
                           Py_ssize_t *first, Py_ssize_t *end) noexcept nogil:
    """Windows [first, end) on ``axis`` that hold input cell ``i`` (none if first >= end):
    those with ``o * stride - pad <= i < o * stride - pad + window``."""
    cdef Py_ssize_t s = g.stride[axis], n = g.out[axis]
    first[0] = first_valid(g.window[axis] - 1 - g.pad[axis] - i, s, n)
    end[0] = end_valid(-(i + g.pad[axis]), s, 1, n)


cdef inline void _full_windows(const PoolGeometry *g, Py_ssize_t *first,
                               Py_ssize_t *end) noexcept nogil:
    """Windows [first, end) of the last axis that lie inside the input (end >= first)."""
    first[0] = first_valid(-g.pad[2], g.stride[2], g.out[2])
    end[0] = end_valid(g.window[2] - 1 - g.pad[2], g.stride[2], g.size[2], g.out[2])
    if end[0] < first[0]:
        end[0] = first[0]


cdef inline void _row_window_sums(const floating[:, :, :, ::1] x,  # IN  (P, X0, X1, X2)
                                  Py_ssize_t p, Py_ssize_t i0, Py_ssize_t i1,
                                  const PoolGeometry *g,
                                  const Py_ssize_t[::1] lo2,       # IN  (O2,)
                                  const Py_ssize_t[::1] hi2,       # IN  (O2,)
                                  Py_ssize_t full_first, Py_ssize_t full_end,
                                  Py_ssize_t window,  # g.window[2], a literal if possible
                                  int t,
                                  double[:, :, ::1] row_sums) noexcept nogil:  # OUT [t, i1]
    """Sums in double of the real cells ``[lo2[o2], hi2[o2])`` of every window of input
    row (i0, i1), each from 0 and from the left, as the window-at-a-time sum adds them.

    The windows inside the input, ``[full_first, full_end)``, take a loop of
    ``window`` steps: called with a literal window the compiler unrolls it.
    """
    cdef Py_ssize_t o2, i2, j, start, s2 = g.stride[2], pad2 = g.pad[2]
    cdef double total
    for o2 in range(full_first):
        total = 0
        for i2 in range(lo2[o2], hi2[o2]):
            total = total + x[p, i0, i1, i2]
        row_sums[t, i1, o2] = total
    for o2 in range(full_first, full_end):
        start = o2 * s2 - pad2
        total = 0
        for j in range(window):
            total = total + x[p, i0, i1, start + j]
        row_sums[t, i1, o2] = total
    for o2 in range(full_end, g.out[2]):
        total = 0
        for i2 in range(lo2[o2], hi2[o2]):
            total = total + x[p, i0, i1, i2]
        row_sums[t, i1, o2] = total


cdef inline void _sum_ring_slots(const double[:, :, :, ::1] ring,  # IN  (T, S, R, W)
                                 Py_ssize_t t, Py_ssize_t first, Py_ssize_t end,
                                 Py_ssize_t r, Py_ssize_t width,
                                 double[:, ::1] acc) noexcept nogil:  # OUT (T, >= W)
    """``acc[t, :width]`` = the rows ``r`` of slots ``first % S, ..., (end - 1) % S``
    of thread ``t``'s ring, added in that order (``end > first``): a window's sum
    over the slices it spans (forward), or a slice's over the windows that hold it
    (backward)."""
    cdef Py_ssize_t k, j, n_slots = ring.shape[1], slot = first % n_slots
    for j in range(width):
        acc[t, j] = ring[t, slot, r, j]
    for k in range(first + 1, end):
        slot = k % n_slots
        for j in range(width):
            acc[t, j] = acc[t, j] + ring[t, slot, r, j]


cdef void _avg_forward_plane(const floating[:, :, :, ::1] x,     # IN  (P, X0, X1, X2)
                             floating[:, :, :, ::1] y,           # OUT (P, O0, O1, O2)
                             Py_ssize_t p, const PoolGeometry *g,
                             const Py_ssize_t[::1] lo2,          # IN  (O2,)
                             const Py_ssize_t[::1] hi2,          # IN  (O2,)
                             const double[::1] n_real2,          # IN  (O2,)
                             int t,                              # this thread's scratch
                             double[:, :, ::1] row_sums,         # scratch (T, X1, O2)
                             double[:, :, :, ::1] slice_sums,    # scratch (T, S, O1, O2)
                             double[:, ::1] acc) noexcept nogil:  # scratch (T, >= O2)
    """Average pooling of plane ``p``, separably, in double.

    Window o2 of the last axis holds the real cells ``[lo2[o2], hi2[o2])``, ``n_real2``
    of them. For each input slice i0 that a window of axis 0 reads: the axis-2 window
    sums of each of its rows (``row_sums[t, i1, :]``, see :func:`_row_window_sums`:
    1-D pooling, where they are the whole sums, keeps the window-at-a-time kernel's
    bits, which the fused 1-D convolution-pooling kernel reproduces); then their
    sums over the rows of each axis-1 window, added in row order. With ``window0 ==
    1`` (images and signals) a slice is one output slice, divided right away;
    otherwise the slices go to a ring of ``S = min(window0, X0)`` slots (slot ``i0 %
    S``): the windows of axis 0 move forward, so a slice summed for one window is
    still there for the overlapping next ones and is overwritten only once no window
    needs it; each axis-0 window then adds its slices in order. The divisor is the
    product of the per-axis real counts, exact in double, and the one division per
    output is ``sum / n_real``, rounded once to ``floating``.
    """
    cdef:
        Py_ssize_t n_out0 = g.out[0], n_out1 = g.out[1], n_out2 = g.out[2]
        Py_ssize_t n_slots = slice_sums.shape[1], window2 = g.window[2]
        Py_ssize_t o0, o1, o2, i0, i1, lo0, hi0, lo1, hi1, first1, end1, unused
        Py_ssize_t full_first, full_end, next0 = 0, slot
        bint direct = g.window[0] == 1
        double n01
    _full_windows(g, &full_first, &full_end)
    # Only the rows that some window of axis 1 reads.
    _clip(g, 1, 0, &first1, &unused)
    _clip(g, 1, n_out1 - 1, &unused, &end1)
    for o0 in range(n_out0):
        _clip(g, 0, o0, &lo0, &hi0)
        # Slices below next0 are in the ring already (read by the previous window).
        for i0 in range(lo0 if lo0 > next0 else next0, hi0):
            for i1 in range(first1, end1):
                # Literal windows for the usual sizes (see _row_window_sums).
                if window2 == 2:
                    _row_window_sums(x, p, i0, i1, g, lo2, hi2, full_first, full_end, 2,
                                     t, row_sums)
                elif window2 == 3:
                    _row_window_sums(x, p, i0, i1, g, lo2, hi2, full_first, full_end, 3,
                                     t, row_sums)
                elif window2 == 4:
                    _row_window_sums(x, p, i0, i1, g, lo2, hi2, full_first, full_end, 4,
                                     t, row_sums)
                elif window2 == 5:
                    _row_window_sums(x, p, i0, i1, g, lo2, hi2, full_first, full_end, 5,
                                     t, row_sums)
                else:
                    _row_window_sums(x, p, i0, i1, g, lo2, hi2, full_first, full_end,
                                     window2, t, row_sums)
            slot = i0 % n_slots
            for o1 in range(n_out1):
                _clip(g, 1, o1, &lo1, &hi1)
                if direct and hi1 == lo1 + 1:
                    n01 = 1
                    for o2 in range(n_out2):
                        y[p, o0, o1, o2] = <floating> (
                            row_sums[t, lo1, o2] / (n01 * n_real2[o2]))
                    continue
                for o2 in range(n_out2):
                    acc[t, o2] = row_sums[t, lo1, o2]
                for i1 in range(lo1 + 1, hi1):
                    for o2 in range(n_out2):
                        acc[t, o2] = acc[t, o2] + row_sums[t, i1, o2]
                if direct:
                    n01 = <double> (hi1 - lo1)
                    for o2 in range(n_out2):
                        y[p, o0, o1, o2] = <floating> (acc[t, o2] / (n01 * n_real2[o2]))
                else:
                    for o2 in range(n_out2):
                        slice_sums[t, slot, o1, o2] = acc[t, o2]
        next0 = hi0 if hi0 > next0 else next0
        if direct:
            continue
        for o1 in range(n_out1):
            _clip(g, 1, o1, &lo1, &hi1)
            n01 = <double> ((hi0 - lo0) * (hi1 - lo1))
            _sum_ring_slots(slice_sums, t, lo0, hi0, o1, n_out2, acc)
            for o2 in range(n_out2):
                y[p, o0, o1, o2] = <floating> (acc[t, o2] / (n01 * n_real2[o2]))


cdef inline void _spread_row(const floating[:, :, :, ::1] grad_y,  # IN  (P, O0, O1, O2)
                             Py_ssize_t p, Py_ssize_t o0, Py_ssize_t o1, double n01,
                             const PoolGeometry *g,
                             const double[::1] n_real2,              # IN  (O2,)
                             int t,
                             floating[:, ::1] shares,               # scratch (T, >= O2)
                             floating[:, ::1] dst,                  # OUT dst[d, at:at + X2]
                             Py_ssize_t d, Py_ssize_t at) noexcept nogil:
    """Output row (o0, o1)'s shares ``grad_y / n_real`` (``n01`` real cells on axes 0
    and 1; divided in ``floating``) added to the cells of its windows along the last
    axis, an input row, tap by tap in ``floating`` from 0: the window-at-a-time
    kernel's order and precision, kept because the fused 1-D convolution-pooling
    kernel reproduces it bit for bit."""
    cdef Py_ssize_t o2, i2, k2, off, s2 = g.stride[2]
    for o2 in range(g.out[2]):
        shares[t, o2] = grad_y[p, o0, o1, o2] / <floating> (n01 * n_real2[o2])
    for i2 in range(g.size[2]):
        dst[d, at + i2] = 0
    for k2 in range(g.window[2]):
        off = at + k2 - g.pad[2]
        for o2 in range(g.tap_first[k2], g.tap_end[k2]):
            dst[d, off + o2 * s2] = dst[d, off + o2 * s2] + shares[t, o2]


cdef void _avg_backward_plane(const floating[:, :, :, ::1] grad_y,  # IN  (P, O0, O1, O2)
                              floating[:, ::1] grad_x,              # OUT (P, X0*X1*X2)
                              Py_ssize_t p, const PoolGeometry *g,
                              const double[::1] n_real2,            # IN  (O2,)
                              const Py_ssize_t[::1] first1,         # IN  (X1,)
                              const Py_ssize_t[::1] end1,           # IN  (X1,)
                              int t,                                # this thread's scratch
                              floating[:, ::1] shares,              # scratch (T, >= O2)
                              floating[:, ::1] spread,              # scratch (T, O1*X2)
                              double[:, :, :, ::1] slice_grads,     # scratch (T, S, X1, X2)
                              double[:, ::1] acc) noexcept nogil:   # scratch (T, >= X2)
    """Gradient of :func:`_avg_forward_plane` for plane ``p``, separably.

    ``grad_x[i] = sum over the windows w holding i of grad_y[w] / n_real(w)``; input
    row i1 is held by the axis-1 windows ``[first1[i1], end1[i1])``. For each axis-0
    window o0 in order: its output rows spread along the last axis
    (:func:`_spread_row`, into ``spread[t, o1 * X2:]``); then, for each input row i1,
    the sum in double of the spread rows of the axis-1 windows holding it, in window
    order. With ``window0 == 1`` (images and signals) that is input slice ``o0 *
    stride0``'s gradient, rounded once into ``grad_x`` (a row held by one window is
    its spread row; with ``window1 == 1`` too, the rows are spread into ``grad_x``
    itself); otherwise the sums go to a ring of ``S = min(ceil(window0 / stride0),
    O0)`` slots (slot ``o0 % S``; S windows at most hold one slice), and each input
    slice adds, in double and in window order, the slices of the axis-0 windows
    holding it, rounded once into ``grad_x``. Cells no window holds get 0. Sums of
    one or two rows take one pass (the usual overlaps, window below twice the
    stride), longer ones accumulate in ``acc``.
    """
    cdef:
        Py_ssize_t x1 = g.size[1], x2 = g.size[2]
        Py_ssize_t n_slots = slice_grads.shape[1]
        Py_ssize_t o0, o1, i0, i1, i2, lo0, hi0, lo1, hi1, f1, n1, n0
        Py_ssize_t first0, end0, next0 = 0, slot, slot1, at, row
        bint direct = g.window[0] == 1
    for i0 in range(g.size[0]):
        _covering(g, 0, i0, &first0, &end0)
        at = i0 * x1 * x2
        if first0 >= end0:  # a slice between windows (stride above the window)
            for i2 in range(x1 * x2):
                grad_x[p, at + i2] = 0
            continue
        if direct and g.window[1] == 1:
            # Each input row in one window row at most (o0 = first0): spread there.
            for i1 in range(x1):
                if first1[i1] >= end1[i1]:
                    for i2 in range(x2):
                        grad_x[p, at + i1 * x2 + i2] = 0
                else:
                    _spread_row(grad_y, p, first0, first1[i1], 1, g, n_real2, t, shares,
                                grad_x, p, at + i1 * x2)
            continue
        # Windows below next0 are in the ring already (they hold the previous slice).
        for o0 in range(first0 if first0 > next0 else next0, end0):
            _clip(g, 0, o0, &lo0, &hi0)
            for o1 in range(g.out[1]):
                _clip(g, 1, o1, &lo1, &hi1)
                _spread_row(grad_y, p, o0, o1, <double> ((hi0 - lo0) * (hi1 - lo1)), g,
                            n_real2, t, shares, spread, t, o1 * x2)
            slot = o0 % n_slots
            for i1 in range(x1):
                f1, n1 = first1[i1] * x2, end1[i1] - first1[i1]
                row = at + i1 * x2
                if direct:  # o0 is the one window holding slice i0
                    if n1 <= 0:
                        for i2 in range(x2):
                            grad_x[p, row + i2] = 0
                    elif n1 == 1:  # its one window's row, unchanged
                        for i2 in range(x2):
                            grad_x[p, row + i2] = spread[t, f1 + i2]
                    elif n1 == 2:
                        for i2 in range(x2):
                            grad_x[p, row + i2] = <floating> (
                                <double> spread[t, f1 + i2] + spread[t, f1 + x2 + i2])
                    else:
                        for i2 in range(x2):
                            acc[t, i2] = spread[t, f1 + i2]
                        for o1 in range(1, n1):
                            for i2 in range(x2):
                                acc[t, i2] = acc[t, i2] + spread[t, f1 + o1 * x2 + i2]
                        for i2 in range(x2):
                            grad_x[p, row + i2] = <floating> acc[t, i2]
                elif n1 <= 0:
                    for i2 in range(x2):
                        slice_grads[t, slot, i1, i2] = 0
                elif n1 == 1:
                    for i2 in range(x2):
                        slice_grads[t, slot, i1, i2] = spread[t, f1 + i2]
                else:
                    for i2 in range(x2):
                        slice_grads[t, slot, i1, i2] = (<double> spread[t, f1 + i2]
                                                        + spread[t, f1 + x2 + i2])
                    for o1 in range(2, n1):
                        for i2 in range(x2):
                            slice_grads[t, slot, i1, i2] = (slice_grads[t, slot, i1, i2]
                                                            + spread[t, f1 + o1 * x2 + i2])
        next0 = end0 if end0 > next0 else next0
        if direct:
            continue
        n0 = end0 - first0
        slot = first0 % n_slots
        slot1 = (first0 + 1) % n_slots
        for i1 in range(x1):
            row = at + i1 * x2
            if n0 == 1:
                for i2 in range(x2):
                    grad_x[p, row + i2] = <floating> slice_grads[t, slot, i1, i2]
            elif n0 == 2:
                for i2 in range(x2):
                    grad_x[p, row + i2] = <floating> (slice_grads[t, slot, i1, i2]
                                                      + slice_grads[t, slot1, i1, i2])
            else:
                _sum_ring_slots(slice_grads, t, first0, end0, i1, x2, acc)
                for i2 in range(x2):
                    grad_x[p, row + i2] = <floating> acc[t, i2]


cdef tuple _covering_all(const PoolGeometry *g, int axis):
    """``(first, end)``, intp arrays of shape (X_axis,): the windows ``[first[i],
    end[i])`` on ``axis`` that hold input cell i (see :func:`_covering`)."""
    cdef Py_ssize_t i, n = g.size[axis]
    first = np.empty(n, dtype=np.intp)
    end = np.empty(n, dtype=np.intp)
    cdef Py_ssize_t[::1] f = first, e = end
    for i in range(n):
        _covering(g, axis, i, &f[i], &e[i])
    return first, end


cdef tuple _real_cells_last(const PoolGeometry *g):
    """``(lo2, hi2, n_real2)`` of shape (O2,): the real cells ``[lo2[o2], hi2[o2])`` of
    each window of the last axis (intp) and their number (float64, exact). Computed
    once per call: every row reuses them."""
    cdef Py_ssize_t o2, start, n_out2 = g.out[2]
    lo2 = np.empty(n_out2, dtype=np.intp)
    hi2 = np.empty(n_out2, dtype=np.intp)
    n_real2 = np.empty(n_out2, dtype=np.float64)
    cdef Py_ssize_t[::1] lo = lo2, hi = hi2
    cdef double[::1] n = n_real2
    for o2 in range(n_out2):
        _clip(g, 2, o2, &lo[o2], &hi[o2])
        n[o2] = <double> (hi[o2] - lo[o2])
    return lo2, hi2, n_real2


cdef object _thread_scratch(Py_ssize_t n_threads, tuple shape, dtype):
    """Uninitialised per-thread scratch ``(n_threads, *shape)``, thread ``t``'s block
    ``[t]``; allocated with the GIL, so that running out of memory is a MemoryError.

    C-contiguous as a whole (the kernels' typed memoryviews ask for it), so
    neighbouring blocks may share one cache line; blocks hold whole rows of a plane,
    so that line is touched a few times per plane, unlike a row buffer's
    (:func:`_padded_row`), which is touched on every output row.
    """
    return np.empty((n_threads,) + shape, dtype=dtype)

cdef void _forward_plane(const floating[:, :, :, ::1] x,  # IN  (P, X0, X1, X2)
                         floating[:, :, :, ::1] y,        # OUT (P, O0, O1, O2)
                         int64_t[:, :, :, ::1] indices,   # OUT (P, O0, O1, O2), if asked
                         Py_ssize_t p, const PoolGeometry *g, int mode,
                         bint store_indices,
                         floating *best,
                         Py_ssize_t *best_at) noexcept nogil:  # scratch, (O2,) each
    """Max or min pooling of plane ``p``, one output row at a time."""
    cdef Py_ssize_t o0, o1, o2, lo0, hi0, lo1, hi1
    for o0 in range(g.out[0]):
        _clip(g, 0, o0, &lo0, &hi0)
        for o1 in range(g.out[1]):
            _clip(g, 1, o1, &lo1, &hi1)
            # Literal flags, one call per case, so that each inlined copy is
            # specialised.
            if store_indices:
                if mode == _MIN:
                    _extreme_row(x, p, g, lo0, hi0, lo1, hi1, True, True, best, best_at)
                else:
                    _extreme_row(x, p, g, lo0, hi0, lo1, hi1, False, True, best, best_at)
                for o2 in range(g.out[2]):
                    indices[p, o0, o1, o2] = best_at[o2]
            elif mode == _MIN:
                _extreme_row(x, p, g, lo0, hi0, lo1, hi1, True, False, best, best_at)
            else:
                _extreme_row(x, p, g, lo0, hi0, lo1, hi1, False, False, best, best_at)
            for o2 in range(g.out[2]):
                y[p, o0, o1, o2] = best[o2]


cdef void _backward_plane(const floating[:, :, :, ::1] grad_y,  # IN  (P, O0, O1, O2)
                          const floating[:, :, :, ::1] x,       # IN  (P, X0, X1, X2)
                          floating[:, ::1] grad_x,              # OUT (P, X0*X1*X2)
                          Py_ssize_t p, const PoolGeometry *g, int mode,
                          floating *best, Py_ssize_t *best_at) noexcept nogil:  # scratch
    """Max or min gradient for plane ``p``; overlapping windows add up in a fixed
    order."""
    cdef Py_ssize_t o0, o1, o2, lo0, hi0, lo1, hi1
    # Zeroed here rather than by np.zeros so that the owning thread touches the pages
    # first.
    memset(&grad_x[p, 0], 0, grad_x.shape[1] * sizeof(floating))
    for o0 in range(g.out[0]):
        _clip(g, 0, o0, &lo0, &hi0)
        for o1 in range(g.out[1]):
            _clip(g, 1, o1, &lo1, &hi1)
            # In window order, as pool_backward_indices does: same sums, same bits.
            if mode == _MIN:
                _extreme_row(x, p, g, lo0, hi0, lo1, hi1, True, True, best, best_at)
            else:
                _extreme_row(x, p, g, lo0, hi0, lo1, hi1, False, True, best, best_at)
            for o2 in range(g.out[2]):
                grad_x[p, best_at[o2]] += grad_y[p, o0, o1, o2]


cdef Py_ssize_t _padded_row(Py_ssize_t n):
    """Row length for per-thread buffers: rounded up and one cache line (16 elements
    of up to 8 bytes = 128 bytes) apart, so two threads never write the same line."""
    return (n + 15) // 16 * 16 + 16


cdef inline void _take_if(floating v, Py_ssize_t at, bint want_min,
                          floating *best, Py_ssize_t *best_at) noexcept nogil:
    """Keep (v, at) when v beats the current best strictly (first extreme wins).

    Branch-free: which cell wins is unpredictable on real data. The value select
    compiles to maxss/minss, the index select to a mask (see ``_extreme_row``).
    """
    cdef bint take = (v < best[0]) if want_min else (v > best[0])
    best_at[0] = best_at[0] ^ ((best_at[0] ^ at) & -(<Py_ssize_t> take))
    best[0] = v if take else best[0]


cdef inline void _window_offsets(Py_ssize_t width, Py_ssize_t plane,
                                 Py_ssize_t *offset) noexcept nogil:
    """Offsets of the 8 cells of a 2x2x2 window (row-major) from its first; the first
    4 are a 2x2 window's."""
    cdef Py_ssize_t k
    offset[0], offset[1], offset[2], offset[3] = 0, 1, width, width + 1
    for k in range(4):
        offset[4 + k] = plane + offset[k]


cdef inline bint _vector_row_fits(Py_ssize_t at, int depth, Py_ssize_t width,
                                  Py_ssize_t plane, Py_ssize_t volume,
                                  Py_ssize_t out_at, Py_ssize_t n_out,
                                  Py_ssize_t n_vectors) noexcept nogil:
    """Whether the vector kernels may run a row of windows starting at cell ``at``
    (output ``out_at``): they read up to ``(depth - 1) * plane + width + 16 *
    n_vectors`` cells from there and write ``8 * n_vectors`` outputs, and both must
    stay in the plane (the junk then lands on later rows, which overwrite it)."""
    return (at + (depth - 1) * plane + width + 2 * SKC_POOL_LANES * n_vectors <= volume
            and out_at + SKC_POOL_LANES * n_vectors <= n_out)


cdef void _extreme_2x2_plane(const floating[:, :, :, ::1] x,  # IN  (P, X0, X1, X2)
                             floating[:, :, :, ::1] y,        # OUT (P, O0, O1, O2)
                             int64_t *plane_indices,          # OUT (O0, O1, O2), p's
                             Py_ssize_t p, bint want_min, int depth) noexcept nogil:
    """Max/min pooling of one plane with indices, window 2x2 (``depth`` 1, 2-D planes,
    ``X0 = 1``) or 2x2x2 (``depth`` 2, volumes), stride 2, no padding.

    LeNet-5's pooling, worth its own loop: rows of windows go through the vector
    kernels of ``include/pool/poolkernels.h`` (8 windows at a time, the last vector
    running past the row's end), except the last rows, whose reads would leave the
    plane: they take the scalar loop. Same cells, same row-major order, same strict
    comparison and NaN rule as the general kernel, so the same result.
    """
    cdef:
        Py_ssize_t o0, o1, o2, k, at, cell, first_nan, out_at
        Py_ssize_t width = x.shape[3], plane = x.shape[2] * x.shape[3]
        Py_ssize_t n_out0 = y.shape[1], n_out1 = y.shape[2], n_out2 = y.shape[3]
        Py_ssize_t n_vectors = (n_out2 + SKC_POOL_LANES - 1) // SKC_POOL_LANES
        Py_ssize_t volume = x.shape[1] * plane, n_out = n_out0 * n_out1 * n_out2
        Py_ssize_t offset[8]
        const floating *x_p = &x[p, 0, 0, 0]
        floating v, best
        Py_ssize_t best_at
    _window_offsets(width, plane, offset)
    for o0 in range(n_out0):
        for o1 in range(n_out1):
            at = depth * o0 * plane + 2 * o1 * width
            out_at = (o0 * n_out1 + o1) * n_out2
            if _vector_row_fits(at, depth, width, plane, volume, out_at, n_out,
                                n_vectors):
                if depth == 1:
                    _pool2x2_row(x_p + at, n_vectors, width, at, want_min,
                                 &y[p, o0, o1, 0], plane_indices + out_at)
                elif floating is float:
                    skc_pool2x2x2_row_f(x_p + at, n_vectors, width, plane, at, want_min,
                                        &y[p, o0, o1, 0], plane_indices + out_at)
                else:
                    skc_pool2x2x2_row_d(x_p + at, n_vectors, width, plane, at, want_min,
                                        &y[p, o0, o1, 0], plane_indices + out_at)
                continue
            for o2 in range(n_out2):
                best_at = at + 2 * o2
                best = x_p[best_at]
                first_nan = best_at if best != best else -1
                for k in range(1, 4 * depth):
                    cell = at + 2 * o2 + offset[k]
                    v = x_p[cell]
                    _take_if(v, cell, want_min, &best, &best_at)
                    if v != v and first_nan < 0:
                        first_nan = cell
                if first_nan >= 0:
                    # The first NaN of the window in row-major order wins.
                    best, best_at = x_p[first_nan], first_nan
                y[p, o0, o1, o2] = best
                plane_indices[out_at + o2] = best_at


cdef void _extreme_pair_plane(const floating[:, :, :, ::1] x,  # IN  (P, 1, 1, X2)
                              floating[:, :, :, ::1] y,        # OUT (P, 1, 1, O2)
                              int64_t *plane_indices,          # OUT (O2,), p's
                              Py_ssize_t p, bint want_min) noexcept nogil:
    """Max/min pooling of one 1-D plane with indices, window 2, stride 2, no padding
    (``2 * O2 <= X2``): the signals' pooling. Whole vectors of 8 windows through
    ``pool2_row`` (include/pool/poolkernels.h), which read ``16 * n_vectors <= 2 * O2``
    cells and write ``8 * n_vectors <= O2`` outputs, all in the plane; the last
    windows one at a time. The same cells, comparison and NaN rule as the general
    kernel, so the same result."""
    cdef:
        Py_ssize_t n_out = y.shape[3], n_vectors = n_out // SKC_POOL_LANES, o2
        const floating *x_p = &x[p, 0, 0, 0]
        floating first, second
    if n_vectors > 0:
        if floating is float:
            skc_pool2_row_f(x_p, n_vectors, 0, want_min, &y[p, 0, 0, 0], plane_indices)
        else:
            skc_pool2_row_d(x_p, n_vectors, 0, want_min, &y[p, 0, 0, 0], plane_indices)
    for o2 in range(n_vectors * SKC_POOL_LANES, n_out):
        first = x[p, 0, 0, 2 * o2]
        second = x[p, 0, 0, 2 * o2 + 1]
        if ((second < first) if want_min else (second > first)) or (
                second != second and first == first):
            y[p, 0, 0, o2] = second
            plane_indices[o2] = 2 * o2 + 1
        else:
            y[p, 0, 0, o2] = first
            plane_indices[o2] = 2 * o2


cdef void _avg_2x2_plane(const floating[:, :, :, ::1] x,  # IN  (P, X0, X1, X2)
                         floating[:, :, :, ::1] y,        # OUT (P, O0, O1, O2)
                         Py_ssize_t p, int depth) noexcept nogil:
    """Average pooling of one plane, window 2x2 (``depth`` 1, ``X0 = 1``) or 2x2x2
    (``depth`` 2), stride 2, no padding: rows of windows through the vector kernel
    but the last ones, whose reads would leave the plane (the scalar loop). Sums in
    double of the same cells in the same order as the general kernel, so the same
    result."""
    cdef:
        Py_ssize_t o0, o1, o2, k, at
        Py_ssize_t width = x.shape[3], plane = x.shape[2] * x.shape[3]
        Py_ssize_t n_out0 = y.shape[1], n_out1 = y.shape[2], n_out2 = y.shape[3]
        Py_ssize_t n_vectors = (n_out2 + SKC_POOL_LANES - 1) // SKC_POOL_LANES
        Py_ssize_t volume = x.shape[1] * plane, n_out = n_out0 * n_out1 * n_out2
        Py_ssize_t offset[8]
        Py_ssize_t n_cells = 4 * depth
        const floating *x_p = &x[p, 0, 0, 0]
        double acc
    _window_offsets(width, plane, offset)
    for o0 in range(n_out0):
        for o1 in range(n_out1):
            at = depth * o0 * plane + 2 * o1 * width
            if _vector_row_fits(at, depth, width, plane, volume,
                                (o0 * n_out1 + o1) * n_out2, n_out, n_vectors):
                if floating is float:
                    skc_pool2x2_avg_plain_row_f(x_p + at, n_vectors, width, plane, depth,
                                                &y[p, o0, o1, 0])
                else:
                    skc_pool2x2_avg_plain_row_d(x_p + at, n_vectors, width, plane, depth,
                                                &y[p, o0, o1, 0])
                continue
            for o2 in range(n_out2):
                acc = 0
                for k in range(n_cells):
                    acc = acc + x_p[at + 2 * o2 + offset[k]]
                y[p, o0, o1, o2] = <floating> (acc / <double> n_cells)


cdef void _avg_2x2_backward_plane(const floating[:, :, :, ::1] grad_y,  # IN  (P, O...)
                                  floating[:, ::1] grad_x,   # OUT (P, X0*X1*X2)
                                  Py_ssize_t p, Py_ssize_t x_depth, Py_ssize_t x_rows,
                                  Py_ssize_t width, int depth) noexcept nogil:
    """The gradient of :func:`_avg_2x2_plane`: each window's share ``grad / cells``
    added to its zeroed cells (``0 + share``, as the general kernel adds it), zeros
    on the cells no window covers."""
    cdef:
        Py_ssize_t o0, o1, o2, k, at
        Py_ssize_t plane = x_rows * width
        Py_ssize_t n_out0 = grad_y.shape[1], n_out1 = grad_y.shape[2]
        Py_ssize_t n_out2 = grad_y.shape[3]
        Py_ssize_t offset[8]
        floating share, zero = 0
        floating n_cells = <floating> (4 * depth)
        floating *g = &grad_x[p, 0]
    _window_offsets(width, plane, offset)
    memset(g, 0, x_depth * plane * sizeof(floating))
    for o0 in range(n_out0):
        for o1 in range(n_out1):
            at = depth * o0 * plane + 2 * o1 * width
            for o2 in range(n_out2):
                share = zero + grad_y[p, o0, o1, o2] / n_cells
                for k in range(4 * depth):
                    g[at + 2 * o2 + offset[k]] = share


cdef int _fast_2x2_depth(tuple window, tuple stride, tuple pad_lo,
                         Py_ssize_t x0, Py_ssize_t x1, Py_ssize_t x2,
                         Py_ssize_t o0, Py_ssize_t o1, Py_ssize_t o2):
    """The depth of the 2x2 fast loops for this pooling: 1 for windows 2x2 on 2-D
    planes (``X0 = O0 = 1``), 2 for 2x2x2 on volumes, each with stride 2 and every
    window inside the input (no padding on any side); 0 for any other pooling.

    The singleton leading axis of a 2-D plane is checked as ``O0 = X0 = 1``, not as
    ``2 * O0 <= X0``, which it never meets.
    """
    if pad_lo != (0, 0, 0) or 2 * o1 > x1 or 2 * o2 > x2:
        return 0
    if window == (1, 2, 2) and stride == (1, 2, 2) and x0 == 1 and o0 == 1:
        return 1
    if window == (2, 2, 2) and stride == (2, 2, 2) and 2 * o0 <= x0:
        return 2
    return 0


cdef bint _fast_pairs(tuple window, tuple stride, tuple pad_lo, Py_ssize_t x0,
                      Py_ssize_t x1, Py_ssize_t x2, Py_ssize_t o2):
    """Whether this is 1-D pooling with window 2, stride 2 and every window inside
    the input, which :func:`_extreme_pair_plane` runs."""
    return (window == (1, 1, 2) and stride == (1, 1, 2) and pad_lo == (0, 0, 0)
            and x0 == 1 and x1 == 1 and 2 * o2 <= x2)


cdef enum:
    # The loops pool_forward can run; the 2x2 codes are the depth _fast_2x2_depth
    # returns, so that the 2x2 kernels take the code itself as their depth.
    _PATH_2X2_IMAGES = 1
    _PATH_2X2X2_VOLUMES = 2
    _PATH_SIGNAL_PAIRS = 3
    _PATH_SEPARABLE_AVERAGE = 4
    _PATH_GENERAL = 5

_PATH_NAMES = {_PATH_2X2_IMAGES: "2x2 images", _PATH_2X2X2_VOLUMES: "2x2x2 volumes",
               _PATH_SIGNAL_PAIRS: "signal pairs",
               _PATH_SEPARABLE_AVERAGE: "separable average", _PATH_GENERAL: "general"}


cdef int _forward_path(tuple window, tuple stride, tuple pad_lo, int mode,
                       Py_ssize_t x0, Py_ssize_t x1, Py_ssize_t x2,
                       Py_ssize_t o0, Py_ssize_t o1, Py_ssize_t o2):
    """The loop (a ``_PATH_*`` code) pool_forward runs for planes ``(X0, X1, X2)``
    pooled to ``(O0, O1, O2)``."""
    cdef int depth = _fast_2x2_depth(window, stride, pad_lo, x0, x1, x2, o0, o1, o2)
    if depth > 0:
        return depth
    if mode != _AVG and _fast_pairs(window, stride, pad_lo, x0, x1, x2, o2):
        return _PATH_SIGNAL_PAIRS
    return _PATH_SEPARABLE_AVERAGE if mode == _AVG else _PATH_GENERAL


def forward_path(tuple x_shape, tuple y_shape, tuple window, tuple stride,
                 tuple pad_lo, int mode):
    """The loop :func:`pool_forward` runs for planes of ``x_shape`` ``(P, X0, X1, X2)``
    pooled to ``y_shape``: '2x2 images', '2x2x2 volumes', 'signal pairs', 'separable
    average' or 'general'.

    For the tests: the fast loops give the same bits as the general ones, so no
    result can tell whether they ran (from 5d77ca8 to 325f7ab the 2x2 loops never ran
    on images). pool_forward branches on the same ``_forward_path``.
    """
    return _PATH_NAMES[_forward_path(window, stride, pad_lo, mode, x_shape[1],
                                     x_shape[2], x_shape[3], y_shape[1], y_shape[2],
                                     y_shape[3])]


def pool_forward(const floating[:, :, :, ::1] x,    # IN  (P, X0, X1, X2), P = N*C
                 floating[:, :, :, ::1] y,          # OUT (P, O0, O1, O2)
                 int64_t[:, :, :, ::1] indices,     # OUT (P, O0, O1, O2) or None
                 tuple window, tuple stride, tuple pad_lo,
                 int mode, int n_threads):
    """y[p, o] = max, mean or min of the real cells of window o of plane p.

    ``indices`` (max and min only) receives the flat index within the plane of the
    cell each output came from. Shapes are trusted: ``skconv.ops.pool`` checks them
    and that every window holds at least one real cell. ``y`` is overwritten.
    """
    cdef:
        PoolGeometry g = _geometry((x.shape[0], x.shape[1], x.shape[2], x.shape[3]),
                                   (y.shape[0], y.shape[1], y.shape[2], y.shape[3]),
                                   window, stride, pad_lo)
        Py_ssize_t n_planes = x.shape[0], n_out2 = y.shape[3]
        Py_ssize_t p
        bint store_indices = indices is not None
        floating[:, ::1] best_rows
        Py_ssize_t[:, ::1] best_at_rows
        double[:, ::1] acc_rows
        double[:, :, ::1] row_sums
        double[:, :, :, ::1] slice_sums
        Py_ssize_t[::1] lo2, hi2
        double[::1] n_real2
        int64_t[:, ::1] scratch
        int64_t *plane_indices = NULL
        int t
        int path = _forward_path(window, stride, pad_lo, mode, x.shape[1], x.shape[2],
                                 x.shape[3], y.shape[1], y.shape[2], y.shape[3])
        int depth = path if path <= _PATH_2X2X2_VOLUMES else 0
    if n_planes == 0:
        return
    n_threads = max(1, min(n_threads, n_planes))
    if mode == _AVG and depth > 0:
        with nogil:
            for p in prange(n_planes, schedule="static", num_threads=n_threads):
                _avg_2x2_plane(x, y, p, depth)
        return
    if depth > 0 or path == _PATH_SIGNAL_PAIRS:
        # Without indices to keep (inference), each thread's go to a plane of scratch.
        if not store_indices:
            scratch = np.empty((n_threads, _padded_row(y.shape[1] * y.shape[2] * n_out2)),
                               dtype=np.int64)
        with nogil, parallel(num_threads=n_threads):
            t = threadid()
            for p in prange(n_planes, schedule="static"):
                plane_indices = (&indices[p, 0, 0, 0] if store_indices
                                 else &scratch[t, 0])
                if depth > 0:
                    _extreme_2x2_plane(x, y, plane_indices, p, mode == _MIN, depth)
                else:
                    _extreme_pair_plane(x, y, plane_indices, p, mode == _MIN)
        return
    # Per-thread buffers (block threadid()), allocated with the GIL so that running
    # out of memory is a MemoryError, never a NULL pointer in the parallel region.
    if path == _PATH_SEPARABLE_AVERAGE:
        lo2, hi2, n_real2 = _real_cells_last(&g)
        row_sums = _thread_scratch(n_threads, (x.shape[2], n_out2), np.float64)
        # The ring of slices (unused, so a token, when window0 == 1).
        ring = (1, 1, 1)
        if g.window[0] > 1:
            ring = (min(g.window[0], g.size[0]), y.shape[2], n_out2)
        slice_sums = _thread_scratch(n_threads, ring, np.float64)
        acc_rows = np.empty((n_threads, _padded_row(n_out2)), dtype=np.float64)
        with nogil, parallel(num_threads=n_threads):
            t = threadid()
            # Planes cost the same, so a static schedule balances the load.
            for p in prange(n_planes, schedule="static"):
                _avg_forward_plane(x, y, p, &g, lo2, hi2, n_real2, t, row_sums,
                                   slice_sums, acc_rows)
        return
    best_rows = np.empty((n_threads, _padded_row(n_out2)),
                         dtype=np.float32 if floating is float else np.float64)
    best_at_rows = np.empty((n_threads, _padded_row(n_out2)), dtype=np.intp)
    if _alloc_taps(&g) != 0:
        raise MemoryError()
    with nogil, parallel(num_threads=n_threads):
        t = threadid()
        for p in prange(n_planes, schedule="static"):
            _forward_plane(x, y, indices, p, &g, mode, store_indices,
                           &best_rows[t, 0], &best_at_rows[t, 0])
    _free_taps(&g)


def pool_backward(const floating[:, :, :, ::1] grad_y,  # IN  (P, O0, O1, O2)
                  const floating[:, :, :, ::1] x,       # IN  (P, X0, X1, X2)
                  floating[:, ::1] grad_x,              # OUT (P, X0*X1*X2)
                  tuple window, tuple stride, tuple pad_lo,
                  int mode, int n_threads):
    """Gradient of ``pool_forward`` with respect to x; ``grad_x`` is overwritten.

    Max and min find the first extreme cell of each window again from ``x`` (the
    same scan as the forward pass) and add to it in row-major window order, exactly
    as ``pool_backward_indices`` does.
    """
    cdef:
        PoolGeometry g = _geometry((x.shape[0], x.shape[1], x.shape[2], x.shape[3]),
                                   (grad_y.shape[0], grad_y.shape[1], grad_y.shape[2],
                                    grad_y.shape[3]),
                                   window, stride, pad_lo)
        Py_ssize_t n_planes = x.shape[0], n_out2 = grad_y.shape[3]
        Py_ssize_t p
        floating[:, ::1] best_rows
        Py_ssize_t[:, ::1] best_at_rows
        floating[:, ::1] spread
        double[:, :, :, ::1] slice_grads
        double[:, ::1] acc_rows
        double[::1] n_real2
        Py_ssize_t[::1] first1, end1
        int t
        int depth = _fast_2x2_depth(window, stride, pad_lo, x.shape[1], x.shape[2],
                                    x.shape[3], grad_y.shape[1], grad_y.shape[2],
                                    grad_y.shape[3])
    if n_planes == 0:
        return
    n_threads = max(1, min(n_threads, n_planes))
    if mode == _AVG and depth > 0:
        # The forward's fast windows (see _avg_2x2_plane).
        with nogil:
            for p in prange(n_planes, schedule="static", num_threads=n_threads):
                _avg_2x2_backward_plane(grad_y, grad_x, p, x.shape[1], x.shape[2],
                                        x.shape[3], depth)
        return
    # Per-thread buffers: see pool_forward. ``best_rows`` holds the average's shares.
    best_rows = np.empty((n_threads, _padded_row(n_out2)),
                         dtype=np.float32 if floating is float else np.float64)
    if mode == _AVG:
        n_real2 = _real_cells_last(&g)[2]
        first1, end1 = _covering_all(&g, 1)
        spread = np.empty((n_threads, _padded_row(grad_y.shape[2] * x.shape[3])),
                          dtype=np.float32 if floating is float else np.float64)
        # The ring: one slot per axis-0 window holding a given input slice, at most
        # (unused, so a token, when window0 == 1).
        ring = (1, 1, 1)
        if g.window[0] > 1:
            ring = (min((g.window[0] + g.stride[0] - 1) // g.stride[0], g.out[0]),
                    x.shape[2], x.shape[3])
        slice_grads = _thread_scratch(n_threads, ring, np.float64)
        acc_rows = np.empty((n_threads, _padded_row(x.shape[3])), dtype=np.float64)
        if _alloc_taps(&g) != 0:
            raise MemoryError()
        with nogil, parallel(num_threads=n_threads):
            t = threadid()
            for p in prange(n_planes, schedule="static"):
                _avg_backward_plane(grad_y, grad_x, p, &g, n_real2, first1, end1, t,
                                    best_rows, spread, slice_grads, acc_rows)
        _free_taps(&g)
        return
    best_at_rows = np.empty((n_threads, _padded_row(n_out2)), dtype=np.intp)
    if _alloc_taps(&g) != 0:
        raise MemoryError()
    with nogil, parallel(num_threads=n_threads):
        t = threadid()
        for p in prange(n_planes, schedule="static"):
            _backward_plane(grad_y, x, grad_x, p, &g, mode,
                            &best_rows[t, 0], &best_at_rows[t, 0])
    _free_taps(&g)


def pool_backward_indices(const floating[:, ::1] grad_y,  # IN  (P, O0*O1*O2)
                          const int64_t[:, ::1] indices,  # IN  (P, O0*O1*O2)
                          floating[:, ::1] grad_x,        # OUT (P, X0*X1*X2)
                          int n_threads):
    """Gradient of max or min pooling from the indices saved by ``pool_forward``.

    Adds ``grad_y[p, q]`` to ``grad_x[p, indices[p, q]]`` in order of ``q``: the same
    additions in the same order as ``pool_backward``, so the result is bitwise the
    same. ``skconv.ops`` has checked that every index lies in ``[0, X0*X1*X2)``.
    """
    cdef:
        Py_ssize_t n_planes = grad_y.shape[0], n_out = grad_y.shape[1]
        Py_ssize_t plane_size = grad_x.shape[1]
        Py_ssize_t p, q
    if n_planes == 0:
        return
    n_threads = max(1, min(n_threads, n_planes))
    for p in prange(n_planes, nogil=True, schedule="static", num_threads=n_threads):
        memset(&grad_x[p, 0], 0, plane_size * sizeof(floating))
        for q in range(n_out):
            grad_x[p, indices[p, q]] += grad_y[p, q]


# Global pooling: one window per plane. The windowed kernels above would loop over
# every cell as a separate tap of a one-output row; here the plane is one contiguous
# run, scanned with _LANES independent accumulators (combined in a fixed order, so the
# result still does not depend on the thread count) that the compiler can vectorise:
# sums.pxd's lane_sum for the average, _plane_extreme for max and min.
cdef enum:
    _LANES = 8


cdef inline floating _plane_extreme(const floating[:, ::1] x,  # IN (P, S)
                                    Py_ssize_t p, bint want_min,
                                    int *saw_nan) noexcept nogil:
    """Max (or min) value of plane ``p``; ``saw_nan`` tells whether it holds a NaN.

    Values only, in selects that compile to packed max/min: carrying an index through
    every lane would cost more than the one scan ``_plane_first`` does afterwards.
    """
    cdef:
        floating lane[_LANES]
        floating v, best
        Py_ssize_t i, j, n = x.shape[1], n_main = n - n % _LANES
        int nan = 0
    for j in range(_LANES):
        lane[j] = x[p, 0]
    for i in range(n_main // _LANES):
        for j in range(_LANES):
            v = x[p, i * _LANES + j]
            if want_min:
                lane[j] = v if v < lane[j] else lane[j]
            else:
                lane[j] = v if v > lane[j] else lane[j]
            nan = nan | (v != v)
    for i in range(n_main, n):
        v = x[p, i]
        j = i - n_main
        if want_min:
            lane[j] = v if v < lane[j] else lane[j]
        else:
            lane[j] = v if v > lane[j] else lane[j]
        nan = nan | (v != v)
    best = lane[0]
    for j in range(1, _LANES):
        if want_min:
            best = lane[j] if lane[j] < best else best
        else:
            best = lane[j] if lane[j] > best else best
    saw_nan[0] = nan
    return best


cdef inline Py_ssize_t _plane_first(const floating[:, ::1] x,  # IN (P, S)
                                    Py_ssize_t p, floating best,
                                    int saw_nan) noexcept nogil:
    """Flat index of the first cell of plane ``p`` equal to ``best`` (first NaN if
    ``saw_nan``). Equality also finds the first zero whatever its sign."""
    cdef Py_ssize_t i
    cdef floating v
    for i in range(x.shape[1]):
        v = x[p, i]
        if (v != v) if saw_nan else (v == best):
            return i
    return 0  # not reached: best is one of the cells


cdef inline floating _global_value(const floating[:, ::1] x, Py_ssize_t p,
                                   bint want_min) noexcept nogil:
    """Value of the first extreme cell of plane ``p`` (with its sign, if zero)."""
    cdef int saw_nan
    cdef floating best = _plane_extreme(x, p, want_min, &saw_nan)
    if saw_nan or best == 0:
        return x[p, _plane_first(x, p, best, saw_nan)]
    return best


cdef inline Py_ssize_t _global_arg(const floating[:, ::1] x, Py_ssize_t p,
                                   bint want_min) noexcept nogil:
    """Flat index of the first extreme cell of plane ``p``."""
    cdef int saw_nan
    cdef floating best = _plane_extreme(x, p, want_min, &saw_nan)
    return _plane_first(x, p, best, saw_nan)


def global_forward(const floating[:, ::1] x,  # IN  (P, S), P = N*C, S = prod(spatial)
                   floating[::1] y,           # OUT (P,)
                   int mode, int n_threads):
    """y[p] = max, mean or min of plane p (the value of its first extreme cell)."""
    cdef Py_ssize_t n_planes = x.shape[0], p
    if n_planes == 0:
        return
    n_threads = max(1, min(n_threads, n_planes))
    for p in prange(n_planes, nogil=True, schedule="static", num_threads=n_threads):
        if mode == _AVG:
            y[p] = <floating> (lane_sum(&x[p, 0], x.shape[1]) / <double> x.shape[1])
        elif mode == _MAX:
            y[p] = _global_value(x, p, False)
        else:
            y[p] = _global_value(x, p, True)


def global_backward(const floating[::1] grad_y,  # IN  (P,)
                    const floating[:, ::1] x,    # IN  (P, S)
                    floating[:, ::1] grad_x,     # OUT (P, S)
                    int mode, int n_threads):
    """Gradient of ``global_forward``; ``grad_x`` is overwritten."""
    cdef Py_ssize_t n_planes = x.shape[0], p
    if n_planes == 0:
        return
    n_threads = max(1, min(n_threads, n_planes))
    for p in prange(n_planes, nogil=True, schedule="static", num_threads=n_threads):
        if mode == _AVG:
            _fill(grad_x, p, grad_y[p] / <floating> x.shape[1])
        else:
            memset(&grad_x[p, 0], 0, grad_x.shape[1] * sizeof(floating))
            if mode == _MAX:
                grad_x[p, _global_arg(x, p, False)] = grad_y[p]
            else:
                grad_x[p, _global_arg(x, p, True)] = grad_y[p]


cdef inline void _fill(floating[:, ::1] a, Py_ssize_t p, floating value) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(a.shape[1]):
        a[p, i] = value
