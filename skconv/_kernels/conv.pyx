"""N-d convolution (cross-correlation) kernels: forward and backward.

Every spatial case (1, 2 or 3 axes) runs through one 3-D kernel: the ops layer views
a 1-D signal ``(N, C, W)`` as ``(N, C, 1, 1, W)`` and an image as ``(N, C, 1, H, W)``.
Singleton axes cost nothing here because the innermost loops run over the last axis.

Layering (as in scikit-learn's ``_loss.pyx.tp``): point helpers (im2col / col2im of
one sample) -> ``prange`` loops over the batch with an explicit ``n_threads`` -> the
``def`` wrappers below, called only by ``skconv.ops`` which has checked every shape.

Two paths, chosen per call:

- stride 1 on every axis ("shifted rows"): each sample is copied once into a
  zero-padded per-thread buffer. Row ``r = (c, k0, k1, k2)`` of the im2col matrix is
  then the padded buffer read from offset ``offset[r]`` on, if the output is computed
  over "wide" positions that run across the padded rows (the few wide positions that
  fall in the padding are computed and dropped). The contraction is a register-blocked
  micro-kernel (``include/conv/microkernels.h``) instead of BLAS: LeNet-sized GEMMs have one tiny
  side (6 or 16 filters) where BLAS spends its time packing. The input gradient is the
  same trick on the zero-padded output gradient with the flipped kernel ("full"
  correlation), so no col2im scatter is needed. The weight gradient is a second
  micro-kernel, vectorised over the output channels (grad_y transposed to
  (positions, channels)) when there are at least half a vector of them, else over
  positions (grad_y laid on the padded input grid, per-lane sums reduced at the end
  of a chunk); see ``_wgrad_layout``. The bias gradient rides along as one more tap
  whose input is all ones.
- any stride > 1 on images and volumes: the same kernels on a polyphase copy of each
  sample instead of the zero-padded one. With stride s on an axis, padded cell q goes
  to phase q % s at q // s, each phase (per channel) a plane of its own; tap k then
  reads phase (k*dil) % s shifted by (k*dil) // s, so the strided convolution is a
  stride-1 shifted GEMM over the phase planes (the same rows r = (c, k0, k1, k2) in
  the same order), its weight gradient the same wgrad micro-kernels. The input
  gradient is one shifted GEMM per phase, of the taps that reach it, over grad_y
  padded in front, laid back every s-th cell (``_sample_input_grad_phases``).
  Signals (1-D) take the polyphase path of the pooled signals below (windows of one
  cell). No im2col and no BLAS either way.
- inputs holding an inf or a NaN in the backward (see ``conv_backward``): im2col
  into a per-thread buffer, then one GEMM per sample through
  ``scipy.linalg.cython_blas``; the input gradient goes back through col2im.

The shifted path also serves a convolution fused with the max/min pooling (and
relu) after it (``conv_pool_forward`` / ``conv_pool_backward``): 2x2 on images (any
convolution stride), any window and stride on signals. Each sample's result is
pooled in cache, keeping the winning cell of each window as a code (its place in the
window), and the backward
rebuilds each sample's convolution gradient in cache from the pooled one, so the
convolution's output and its gradient are never stored for the batch. Images pool
the wide result; signals compute the convolution one window cell at a time from a
polyphase copy of the input (see ``_forward_pool_rows``), so that their pooling is
an elementwise max or min over whole vectors for any window.

Weight and bias gradients are summed per fixed chunk of samples (the chunking depends
only on the batch size) and the chunks are added in order afterwards, so results are
bitwise identical whatever the number of threads.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport uint8_t
from libc.string cimport memcpy, memset

from .blas cimport gemm as _gemm
from .poolkernels cimport (
    SKC_POOL_LANES,
    pool2x2_codes_row,
    skc_pool2x2_avg_row_d,
    skc_pool2x2_avg_row_f,
    skc_pool_taps_avg_row_d,
    skc_pool_taps_avg_row_f,
    skc_pool_taps_codes_row_d,
    skc_pool_taps_codes_row_f,
    skc_relu_backward_d,
    skc_relu_backward_f,
)
from .microkernels cimport (
    SKC_SLACK, rowgemm, rowgemm_pack, skc_deinterleave_d, skc_deinterleave_f,
    skc_wgrad_d, skc_wgrad_f, skc_wgrad_wide_d, skc_wgrad_wide_f,
)
from .ranges cimport end_valid, first_valid
from .sums cimport sum_rows_in_order

import numpy as np

# Samples per reduction chunk of the weight/bias gradients. A constant (not a
# function of n_threads) so that the summation order never changes.
_REDUCTION_CHUNKS = 16


cdef extern from "common/finite.h" nogil:
    int skc_all_finite_f(Py_ssize_t n, const float *values)
    int skc_all_finite_d(Py_ssize_t n, const double *values)


cdef inline bint _all_finite(const floating *values, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return skc_all_finite_f(n, values)
    else:
        return skc_all_finite_d(n, values)


cdef object _pack_rows_from(const floating *A, Py_ssize_t M, Py_ssize_t K):
    """A C-contiguous (M, K) matrix packed for ``rowgemm``: its register blocks of
    rows as (K, rows) panels, one after another (a fresh array of M*K values)."""
    cdef floating[::1] packed = np.empty(
        M * K, dtype=np.float32 if floating is float else np.float64)
    rowgemm_pack(M, K, A, K, 1, &packed[0])
    return packed.base


cdef object _pack_flipped(const floating[:, :, :, :, ::1] w):
    """The input gradient's kernel packed for ``_rowgemm``: w (D, C, K0, K1, K2) with
    every spatial axis reversed, as (C, D*K0*K1*K2) rows."""
    cdef:
        Py_ssize_t n_filters = w.shape[0], channels = w.shape[1]
        Py_ssize_t k0, k1, k2, d, c, at
        Py_ssize_t n0 = w.shape[2], n1 = w.shape[3], n2 = w.shape[4]
        floating[::1] flipped
    flipped = np.empty(channels * n_filters * n0 * n1 * n2,
                       dtype=np.float32 if floating is float else np.float64)
    at = 0
    for c in range(channels):
        for d in range(n_filters):
            for k0 in range(n0):
                for k1 in range(n1):
                    for k2 in range(n2):
                        flipped[at] = w[d, c, n0 - 1 - k0, n1 - 1 - k1, n2 - 1 - k2]
                        at += 1
    return _pack_rows_from(&flipped[0], channels, n_filters * n0 * n1 * n2)


cdef inline void _wgrad(Py_ssize_t R, Py_ssize_t DV, Py_ssize_t n_pos,
                        const Py_ssize_t *pos, const floating *B, const Py_ssize_t *b_off,
                        const floating *G, Py_ssize_t ldg,
                        floating *W, Py_ssize_t ldw) noexcept nogil:
    """W[r, l] += sum_p B[b_off[r] + pos[p]] * G[p, l]; see include/conv/microkernels_impl.h."""
    if floating is float:
        skc_wgrad_f(R, DV, n_pos, pos, B, b_off, G, ldg, W, ldw)
    else:
        skc_wgrad_d(R, DV, n_pos, pos, B, b_off, G, ldg, W, ldw)


cdef inline void _wgrad_wide(Py_ssize_t D, Py_ssize_t R, Py_ssize_t Q,
                             const floating *G, Py_ssize_t ldg,
                             const floating *B, const Py_ssize_t *b_off,
                             floating *ACC) noexcept nogil:
    """ACC[d, r, l] += sum_{q = l mod VL} G[d*ldg + q] * B[b_off[r] + q]; see
    include/conv/microkernels_impl.h."""
    if floating is float:
        skc_wgrad_wide_f(D, R, Q, G, ldg, B, b_off, ACC)
    else:
        skc_wgrad_wide_d(D, R, Q, G, ldg, B, b_off, ACC)


cdef struct Geometry:
    # Input spatial sizes, kernel sizes, output sizes, strides, low paddings,
    # dilations: all per axis, for the three (possibly singleton) spatial axes.
    Py_ssize_t size[3]
    Py_ssize_t ksize[3]
    Py_ssize_t out[3]
    Py_ssize_t stride[3]
    Py_ssize_t pad[3]
    Py_ssize_t dil[3]
    Py_ssize_t channels
    Py_ssize_t n_filters
    Py_ssize_t n_rows     # channels * K0 * K1 * K2
    Py_ssize_t n_cols     # O0 * O1 * O2


cdef void _im2col(const floating[:, :, :, ::1] x,   # IN  (C, X0, X1, X2), one sample
                  const Geometry *g,
                  floating *col) noexcept nogil:      # OUT (n_rows, n_cols)
    """Lower one sample to its column matrix; padded cells become zeros."""
    cdef:
        Py_ssize_t c, k0, k1, k2, o0, o1, o2, i0, i1, i2
        Py_ssize_t lo2, hi2, off2
        Py_ssize_t n_out1 = g.out[1], n_out2 = g.out[2]
        Py_ssize_t s2 = g.stride[2]
        floating *row
        floating *dst
    row = col
    for c in range(g.channels):
        for k0 in range(g.ksize[0]):
            for k1 in range(g.ksize[1]):
                for k2 in range(g.ksize[2]):
                    off2 = k2 * g.dil[2] - g.pad[2]
                    lo2 = first_valid(off2, s2, n_out2)
                    hi2 = end_valid(off2, s2, g.size[2], n_out2)
                    if hi2 < lo2:
                        hi2 = lo2
                    dst = row
                    for o0 in range(g.out[0]):
                        i0 = o0 * g.stride[0] + k0 * g.dil[0] - g.pad[0]
                        for o1 in range(n_out1):
                            i1 = o1 * g.stride[1] + k1 * g.dil[1] - g.pad[1]
                            if i0 < 0 or i0 >= g.size[0] or i1 < 0 or i1 >= g.size[1]:
                                memset(dst, 0, n_out2 * sizeof(floating))
                            else:
                                for o2 in range(lo2):
                                    dst[o2] = 0
                                if s2 == 1:
                                    for o2 in range(lo2, hi2):
                                        dst[o2] = x[c, i0, i1, o2 + off2]
                                else:
                                    for o2 in range(lo2, hi2):
                                        dst[o2] = x[c, i0, i1, o2 * s2 + off2]
                                for o2 in range(hi2, n_out2):
                                    dst[o2] = 0
                            dst += n_out2
                    row += g.n_cols


cdef void _col2im_add(const floating *col,           # IN  (n_rows, n_cols)
                      const Geometry *g,
                      floating[:, :, :, ::1] grad_x) noexcept nogil:  # INOUT (C, X0, X1, X2)
    """Scatter-add a column matrix back onto one sample (adjoint of ``_im2col``)."""
    cdef:
        Py_ssize_t c, k0, k1, k2, o0, o1, o2, i0, i1
        Py_ssize_t lo2, hi2, off2
        Py_ssize_t n_out1 = g.out[1], n_out2 = g.out[2]
        Py_ssize_t s2 = g.stride[2]
        const floating *row
        const floating *src
    row = col
    for c in range(g.channels):
        for k0 in range(g.ksize[0]):
            for k1 in range(g.ksize[1]):
                for k2 in range(g.ksize[2]):
                    off2 = k2 * g.dil[2] - g.pad[2]
                    lo2 = first_valid(off2, s2, n_out2)
                    hi2 = end_valid(off2, s2, g.size[2], n_out2)
                    src = row
                    for o0 in range(g.out[0]):
                        i0 = o0 * g.stride[0] + k0 * g.dil[0] - g.pad[0]
                        for o1 in range(n_out1):
                            i1 = o1 * g.stride[1] + k1 * g.dil[1] - g.pad[1]
                            if not (i0 < 0 or i0 >= g.size[0] or i1 < 0 or i1 >= g.size[1]):
                                if s2 == 1:
                                    for o2 in range(lo2, hi2):
                                        grad_x[c, i0, i1, o2 + off2] += src[o2]
                                else:
                                    for o2 in range(lo2, hi2):
                                        grad_x[c, i0, i1, o2 * s2 + off2] += src[o2]
                            src += n_out2
                    row += g.n_cols


cdef Geometry _geometry(tuple x_shape, tuple w_shape, tuple y_shape,
                        tuple stride, tuple pad_lo, tuple dilation):
    cdef Geometry g
    cdef int a
    for a in range(3):
        g.size[a] = x_shape[2 + a]
        g.ksize[a] = w_shape[2 + a]
        g.out[a] = y_shape[2 + a]
        g.stride[a] = stride[a]
        g.pad[a] = pad_lo[a]
        g.dil[a] = dilation[a]
    g.channels = x_shape[1]
    g.n_filters = w_shape[0]
    g.n_rows = g.channels * g.ksize[0] * g.ksize[1] * g.ksize[2]
    g.n_cols = g.out[0] * g.out[1] * g.out[2]
    return g


cdef bint _is_pointwise(const Geometry *g) noexcept nogil:
    """1x1x1 kernel, stride 1, no padding: the sample itself is its column matrix."""
    cdef int a
    for a in range(3):
        if g.ksize[a] != 1 or g.stride[a] != 1 or g.pad[a] != 0:
            return False
    return True


cdef bint _unit_stride(const Geometry *g) noexcept nogil:
    return g.stride[0] == 1 and g.stride[1] == 1 and g.stride[2] == 1


cdef bint _is_signal(const Geometry *g) noexcept nogil:
    """One spatial axis (the ops layer's view of 1-D data): size, kernel, output and
    stride 1 on the two leading axes, no padding there."""
    cdef int a
    for a in range(2):
        if (g.size[a] != 1 or g.ksize[a] != 1 or g.out[a] != 1 or g.stride[a] != 1
                or g.pad[a] != 0):
            return False
    return True


# Paths of a convolution with finite inputs (see the module's docstring).
cdef enum Path:
    SHIFTED   # stride 1, or strided images and volumes on the polyphase copy
    ROWS      # strided signals: the polyphase rows
    IM2COL    # strided, when the polyphase copy would dwarf the data (see _phases_fit)


# A channel's polyphase copy plus a filter's padded grad_y, in cells, at most this
# many times the cells of a channel, a filter's output and a channel's im2col rows.
cdef Py_ssize_t _PHASE_CELLS_RATIO = 4


cdef bint _phases_fit(const Geometry *g):
    """Whether a strided convolution's polyphase scratch is of the data's order.

    The copy spans the padded input and grad_y is padded by the kernel's reach over
    the stride: a huge padding or dilation around a small input would make them
    (and their C size arithmetic) far larger than the im2col matrix, which holds the
    taps that land on the input only. Per channel and per filter, so that the spatial
    geometry alone decides (the fused blocks ask before they know the filters), and
    on Python integers, which cannot overflow."""
    cdef int a
    copy = gyp = x_cells = y_cells = taps = 1
    for a in range(3):
        s, reach = g.stride[a], g.dil[a] * (g.ksize[a] - 1)
        padded = max((g.out[a] - 1) * s + reach + 1, g.pad[a] + g.size[a])
        copy *= min(s, padded) * ((padded + s - 1) // s)
        gyp *= reach // s + max(g.out[a], (g.pad[a] + g.size[a] - 1) // s + 1)
        x_cells *= g.size[a]
        y_cells *= g.out[a]
        taps *= g.ksize[a]
    return copy + gyp <= min(
        _PHASE_CELLS_RATIO * (x_cells + y_cells + taps * y_cells), 2**44)


cdef Path _path(const Geometry *g):
    if _unit_stride(g):
        return SHIFTED
    if _is_signal(g):
        return ROWS
    return SHIFTED if _phases_fit(g) else IM2COL


# --------------------------------------------------------------------------------
# Shifted path: zero-padded (stride 1) or polyphase (strided) copies and shifted-row
# micro-kernels
# --------------------------------------------------------------------------------

cdef inline Py_ssize_t _round_up(Py_ssize_t n) noexcept nogil:
    """Round up to the micro-kernels' slack unit (they run whole vectors past the end)."""
    return (n + SKC_SLACK - 1) // SKC_SLACK * SKC_SLACK


cdef void _pad_copy(const floating *src,         # IN  (n_planes, S0, S1, S2)
                    Py_ssize_t n_planes,
                    const Py_ssize_t *size,      # IN  S0, S1, S2
                    floating *dst,               # OUT n_planes * dst_plane + SKC_SLACK
                    const Py_ssize_t *dsize,     # IN  T0, T1, T2: grid inside a plane
                    Py_ssize_t dst_plane,        # IN  plane stride >= T0 * T1 * T2
                    const Py_ssize_t *lo) noexcept nogil:  # IN  where src starts in dst
    """Copy planes into a larger grid whose other cells are zero.

    Only the cells of ``src`` are written: the caller zeroes the whole grid, the slack
    after the last plane included (the micro-kernels read it, and 0 * garbage may be
    NaN), once per call with ``_zero_grid``. Every sample then lands on the same cells,
    so the zeros around them stay.
    """
    cdef:
        Py_ssize_t c, i0, i1
        Py_ssize_t src_plane = size[0] * size[1] * size[2]
        const floating *s
        floating *d
    for c in range(n_planes):
        for i0 in range(size[0]):
            for i1 in range(size[1]):
                s = src + c * src_plane + (i0 * size[1] + i1) * size[2]
                d = dst + c * dst_plane + ((i0 + lo[0]) * dsize[1] + i1 + lo[1]) * dsize[2] + lo[2]
                memcpy(d, s, size[2] * sizeof(floating))


cdef void _copy_x(const floating *x_n,     # IN  (C, X0, X1, X2) one sample
                  const Geometry *g, const Shifted *sh,
                  floating *dst) noexcept nogil:  # OUT sh.n_planes planes of xp_plane
    """One sample laid on the grid the shifted GEMMs read: zero-padded at stride 1,
    split into its phases when strided (padded cell ``q`` of channel c to the plane of
    phase ``q % s`` at ``q // s`` per axis, the phases of the last axis in consecutive
    planes). Only the sample's cells are written, as in ``_pad_copy``."""
    cdef:
        Py_ssize_t c, i0, i1, q0, q1
        Py_ssize_t s0 = g.stride[0], s1 = g.stride[1], s2 = g.stride[2]
        Py_ssize_t h0 = sh.phases[0], h1 = sh.phases[1], h2 = sh.phases[2]
    if sh.n_phases == 1:
        _pad_copy(x_n, g.channels, g.size, dst, sh.xp, sh.xp_plane, g.pad)
        return
    for c in range(g.channels):
        for i0 in range(g.size[0]):
            q0 = i0 + g.pad[0]
            for i1 in range(g.size[1]):
                q1 = i1 + g.pad[1]
                _phase_copy(x_n + ((c * g.size[0] + i0) * g.size[1] + i1) * g.size[2], 1,
                            g.size[2], g.pad[2], s2, sh.xp_plane,
                            dst + ((c * h0 + q0 % s0) * h1 + q1 % s1) * h2 * sh.xp_plane
                            + ((q0 // s0) * sh.xp[1] + q1 // s1) * sh.xp[2])


cdef inline void _zero_grid(floating *dst, Py_ssize_t n_planes,
                            Py_ssize_t dst_plane) noexcept nogil:
    """Zero a grid of ``_pad_copy`` and the slack after it."""
    memset(dst, 0, (n_planes * dst_plane + SKC_SLACK) * sizeof(floating))


cdef void _compact(const floating *wide,         # IN  (n_planes, wide_plane) wide positions
                   Py_ssize_t n_planes, Py_ssize_t wide_plane,
                   const Py_ssize_t *wsize,      # IN  sizes of the padded grid it spans
                   const Py_ssize_t *size,       # IN  O0, O1, O2 kept per plane
                   const floating *bias,         # IN  (n_planes,) or NULL
                   bint relu,
                   floating *dst) noexcept nogil:  # OUT (n_planes, O0, O1, O2)
    """Keep the real output positions of a wide result (and add the bias, then
    relu if asked, as ``numpy.maximum(y, 0)``: -0 becomes +0, NaN stays)."""
    cdef:
        Py_ssize_t c, o0, o1, o2
        floating bc, v
        const floating *s
    for c in range(n_planes):
        bc = bias[c] if bias != NULL else 0
        for o0 in range(size[0]):
            for o1 in range(size[1]):
                s = wide + c * wide_plane + (o0 * wsize[1] + o1) * wsize[2]
                if relu:
                    for o2 in range(size[2]):
                        # A select, not a branch, so that the loop vectorises.
                        v = s[o2] + bc
                        dst[o2] = 0 if v <= 0 else v
                else:
                    for o2 in range(size[2]):
                        dst[o2] = s[o2] + bc
                dst += size[2]


cdef struct Shifted:
    # Strided convolutions (not signals) take this path on a polyphase copy of the
    # input: with stride s per axis, padded cell q goes to phase q % s at q // s, each
    # phase its own plane (see the module's docstring).
    # Stride 1 is the case of one phase per channel, a plain zero-padded copy.
    # Phases held per axis: the stride, or fewer when the padded length is shorter
    # (phase q % s of a cell q < length is below the length).
    Py_ssize_t phases[3]
    Py_ssize_t n_phases     # phases[0] * phases[1] * phases[2]
    Py_ssize_t n_planes     # channels * n_phases: planes of the copy of x
    Py_ssize_t xp[3]        # sizes of a plane: O + dil * (K - 1) per axis at stride 1
    Py_ssize_t xp_plane     # xp[0] * xp[1] * xp[2]
    # Strided: phase cells of the input gradient per axis (up to the input's last
    # cell, padding included); the input's own sizes at stride 1.
    Py_ssize_t gx_cells[3]
    Py_ssize_t x_wide       # wide output positions spanned on the padded input grid
    Py_ssize_t gp[3]        # zero-padded grad_y sizes for the input-gradient pass
    Py_ssize_t gp_lo[3]     # where grad_y starts in it: dil * (K - 1)
    Py_ssize_t gp_plane
    Py_ssize_t g_wide       # wide input-gradient positions spanned on the grad_y grid
    Py_ssize_t dv           # n_filters rounded up to whole vectors (weight gradient)
    # x_wide rounded up to whole vectors: the span the weight-gradient kernels read.
    Py_ssize_t x_wide_ld
    # Row strides of the wide output buffers of the shifted GEMM: its last vector may
    # start at the last output row and run up to a vector past x_wide (or g_wide).
    Py_ssize_t y_wide_ld
    Py_ssize_t gx_wide_ld


cdef Shifted _shifted(const Geometry *g) noexcept nogil:
    cdef Shifted sh
    cdef int a
    cdef Py_ssize_t reach, hi, s, padded
    cdef bint unit = _unit_stride(g)
    for a in range(3):
        reach = g.dil[a] * (g.ksize[a] - 1)
        s = g.stride[a]
        sh.phases[a] = 1
        if unit:
            sh.xp[a] = g.out[a] + reach
            hi = sh.xp[a] - g.size[a] - g.pad[a]
            sh.gp_lo[a] = reach
            # grad_x[i] reads grad_y_padded[i + lo + k' * dil] for k' < K.
            sh.gp[a] = reach + g.out[a] + max(0, reach - hi)
            sh.gx_cells[a] = g.size[a]
        else:
            # The padded length the outputs reach, and every input cell (which a
            # strided convolution may not reach), in phases of s cells.
            padded = max((g.out[a] - 1) * s + reach + 1, g.pad[a] + g.size[a])
            sh.phases[a] = min(s, padded)
            sh.xp[a] = (padded + s - 1) // s
            # Phase cell m of the input gradient gathers grad_y at m - (k*dil) // s:
            # grad_y padded by the largest shift in front.
            sh.gp_lo[a] = reach // s
            sh.gx_cells[a] = (g.pad[a] + g.size[a] - 1) // s + 1
            sh.gp[a] = sh.gp_lo[a] + max(g.out[a], sh.gx_cells[a])
    sh.n_phases = sh.phases[0] * sh.phases[1] * sh.phases[2]
    sh.n_planes = g.channels * sh.n_phases
    sh.xp_plane = sh.xp[0] * sh.xp[1] * sh.xp[2]
    sh.x_wide = ((g.out[0] - 1) * sh.xp[1] + g.out[1] - 1) * sh.xp[2] + g.out[2]
    sh.gp_plane = sh.gp[0] * sh.gp[1] * sh.gp[2]
    sh.g_wide = (((sh.gx_cells[0] - 1) * sh.gp[1] + sh.gx_cells[1] - 1) * sh.gp[2]
                 + sh.gx_cells[2])
    sh.dv = _round_up(g.n_filters)
    sh.x_wide_ld = _round_up(sh.x_wide)
    sh.y_wide_ld = _round_up(sh.x_wide + SKC_SLACK)
    sh.gx_wide_ld = _round_up(sh.g_wide + SKC_SLACK)
    return sh


cdef struct WgradLayout:
    # How the stride-1 backward sums the weight (and bias) gradient.
    bint wide            # vectorised over positions (few filters) or over filters
    Py_ssize_t lanes     # floating values per 64-byte vector
    Py_ssize_t n_taps    # kernel taps + 1: the bias is a tap whose input is all ones
    Py_ssize_t g_plane   # plane stride of grad_y in the wide layout
    Py_ssize_t n_in      # scratch for grad_y laid out for the kernel
    Py_ssize_t n_acc     # scratch for the running sums over a chunk


cdef WgradLayout _wgrad_layout(const Geometry *g, Py_ssize_t lanes) noexcept nogil:
    """Pick the weight-gradient kernel for this shape and size its scratch.

    Vectorised over the filters, a vector holds one lane per filter, so with few
    filters most lanes are zeros: LeNet's first layer (6 filters) uses 6 of 16 float
    lanes. Below half a vector of filters the kernel vectorised over positions is used
    instead: on LeNet's first layer it takes half the time, while with 16 filters the
    per-filter kernel wins (benchmarks/bench_conv.py).
    """
    cdef WgradLayout lay
    cdef Shifted sh = _shifted(g)
    lay.lanes = lanes
    lay.n_taps = g.n_rows + 1
    lay.wide = 2 * g.n_filters <= lanes
    if lay.wide:
        # grad_y on the padded input grid (zeros off the real outputs), per-lane sums.
        # Its planes are whole vectors apart, so that the vectors past the last real
        # output read zeros, not the next plane.
        lay.g_plane = _round_up(sh.xp_plane)
        lay.n_in = g.n_filters * lay.g_plane + SKC_SLACK
        lay.n_acc = g.n_filters * lay.n_taps * lanes
    else:
        # grad_y transposed to (positions, filters), sums as (taps, filters).
        lay.g_plane = 0
        lay.n_in = g.n_cols * sh.dv
        lay.n_acc = lay.n_taps * sh.dv
    return lay


cdef object _vector_starts(const Py_ssize_t *out, const Py_ssize_t *grid,
                           Py_ssize_t wide, Py_ssize_t lanes):
    """Columns where the shifted GEMM's vectors start, covering every real output.

    Output ``(o0, o1, o2)`` sits at column ``(o0*grid[1] + o1)*grid[2] + o2`` of a wide
    result spanning ``[0, wide)``. Returns whichever needs fewer vectors: contiguous
    vectors over the whole span (they also compute the padding columns between rows)
    or vectors laid per output row. The results are the same either way. LeNet's
    second layer (14-wide rows on an 18-wide grid) takes 14 vectors per row instead of
    16; its input gradient (22-wide grid) 14 instead of 19. Every vector ends before
    ``wide + lanes - 1``.
    """
    cdef:
        Py_ssize_t per_row = (out[2] + lanes - 1) // lanes
        Py_ssize_t n_rows = out[0] * out[1]
        Py_ssize_t n_contiguous = (wide + lanes - 1) // lanes
        Py_ssize_t o0, o1, m, j = 0
        Py_ssize_t[::1] starts
    if n_rows * per_row >= n_contiguous:
        return np.arange(0, n_contiguous * lanes, lanes, dtype=np.intp)
    starts = np.empty(n_rows * per_row, dtype=np.intp)
    for o0 in range(out[0]):
        for o1 in range(out[1]):
            for m in range(per_row):
                starts[j] = (o0 * grid[1] + o1) * grid[2] + m * lanes
                j += 1
    return starts.base


cdef object _output_positions(const Geometry *g):
    """Offset on the zero-padded input grid of every output position, in order."""
    cdef Shifted sh = _shifted(g)
    cdef Py_ssize_t o0, o1, o2, p = 0
    cdef Py_ssize_t[::1] positions = np.empty(g.n_cols, dtype=np.intp)
    for o0 in range(g.out[0]):
        for o1 in range(g.out[1]):
            for o2 in range(g.out[2]):
                positions[p] = (o0 * sh.xp[1] + o1) * sh.xp[2] + o2
                p += 1
    return positions.base


cdef tuple _shifted_offsets(const Geometry *g, bint ones_tap):
    """Row offsets of the forward/weight-gradient and input-gradient micro-kernels.

    Returns
    -------
    forward : ndarray of intp, shape (C*K0*K1*K2 + ones_tap,)
        Row ``(c, k0, k1, k2)`` starts where the tap's cells lie in the copy of x: at
        stride 1 ``c*plane + sum_a k_a*dil_a*stride_a`` in the zero-padded input;
        strided, in the plane of phase ``k_a*dil_a % s_a`` of channel c, shifted by
        ``k_a*dil_a // s_a`` per axis. With ``ones_tap``, one more row: the ones that
        follow the copy (and its slack) in ``_backward_shifted``'s scratch, whose
        "weight gradient" is the bias gradient.
    backward : ndarray of intp, shape (D*K0*K1*K2,)
        At stride 1, row ``(d, k0', k1', k2')`` of the flipped kernel starts at
        ``d*plane + sum_a (lo_a + k_a'*dil_a)*stride_a`` in the padded grad_y.
        Strided, the input gradient's rows phase after phase (see
        ``_phase_taps``).
    phase_start, taps : ndarray of intp
        From ``_phase_taps`` (strided); ``[0, K0*K1*K2]`` and every tap at stride 1.
    """
    cdef:
        Shifted sh = _shifted(g)
        Py_ssize_t n_taps = g.ksize[0] * g.ksize[1] * g.ksize[2]
        Py_ssize_t n_filters = g.n_filters
        Py_ssize_t c, t, k0, k1, k2, tap_fwd, tap_bwd, a0, a1, a2, phase
        Py_ssize_t s0 = g.stride[0], s1 = g.stride[1], s2 = g.stride[2]
        Py_ssize_t h1 = sh.phases[1], h2 = sh.phases[2]
        bint unit = _unit_stride(g)
        Py_ssize_t[::1] forward = np.empty(g.channels * n_taps + ones_tap, dtype=np.intp)
        Py_ssize_t[::1] backward = np.empty(n_filters * n_taps, dtype=np.intp)
    # Plain loops: numpy on these tiny arrays cost more than the kernel on a sample.
    t = 0
    for k0 in range(g.ksize[0]):
        for k1 in range(g.ksize[1]):
            for k2 in range(g.ksize[2]):
                a0, a1, a2 = k0 * g.dil[0], k1 * g.dil[1], k2 * g.dil[2]
                # At stride 1: phase 0, the shifts the taps themselves.
                phase = ((a0 % s0) * h1 + a1 % s1) * h2 + a2 % s2
                tap_fwd = ((a0 // s0) * sh.xp[1] + a1 // s1) * sh.xp[2] + a2 // s2
                tap_bwd = (((g.pad[0] + a0) * sh.gp[1] + g.pad[1] + a1)
                           * sh.gp[2] + g.pad[2] + a2)
                for c in range(g.channels):
                    forward[c * n_taps + t] = ((c * sh.n_phases + phase) * sh.xp_plane
                                               + tap_fwd)
                if unit:
                    for c in range(n_filters):
                        backward[c * n_taps + t] = c * sh.gp_plane + tap_bwd
                t += 1
    if ones_tap:
        forward[g.channels * n_taps] = sh.n_planes * sh.xp_plane + SKC_SLACK
    if unit:
        return (forward.base, backward.base, np.array([0, n_taps], dtype=np.intp),
                np.arange(n_taps, dtype=np.intp))
    return (forward.base,) + _phase_taps(g, &sh)


cdef tuple _phase_taps(const Geometry *g, const Shifted *sh):
    """The strided input gradient's taps and rows, phase after phase.

    Phase ``(r0, r1, r2)`` (number ``(r0*h1 + r1)*h2 + r2``, h the phases held) of
    the padded input gathers the kernel taps whose ``k_a*dil_a % s_a`` is ``r_a`` on
    every axis:
    ``taps[phase_start[p]:phase_start[p + 1]]`` (flat tap numbers, in order). Row
    ``(d, tap)`` of its GEMM reads grad_y padded by ``gp_lo`` in front, from
    ``d*plane + sum_a (gp_lo_a - k_a*dil_a // s_a)*stride_a`` on.

    Returns
    -------
    offsets_bwd, phase_start, taps : ndarray of intp
        ``offsets_bwd[D*phase_start[p] + d*n_p + j]`` for tap j of phase p.
    """
    cdef:
        Py_ssize_t n_taps = g.ksize[0] * g.ksize[1] * g.ksize[2]
        Py_ssize_t n_filters = g.n_filters
        Py_ssize_t s0 = g.stride[0], s1 = g.stride[1], s2 = g.stride[2]
        Py_ssize_t h1 = sh.phases[1], h2 = sh.phases[2]
        Py_ssize_t p, t, k0, k1, k2, a0, a1, a2, d, j, at = 0, n_p
        Py_ssize_t[::1] phase_start = np.empty(sh.n_phases + 1, dtype=np.intp)
        Py_ssize_t[::1] taps = np.empty(n_taps, dtype=np.intp)
        Py_ssize_t[::1] shift = np.empty(n_taps, dtype=np.intp)
        Py_ssize_t[::1] backward = np.empty(n_filters * n_taps, dtype=np.intp)
    for p in range(sh.n_phases):
        phase_start[p] = at
        t = 0
        for k0 in range(g.ksize[0]):
            for k1 in range(g.ksize[1]):
                for k2 in range(g.ksize[2]):
                    a0, a1, a2 = k0 * g.dil[0], k1 * g.dil[1], k2 * g.dil[2]
                    if ((a0 % s0) * h1 + a1 % s1) * h2 + a2 % s2 == p:
                        taps[at] = t
                        shift[at] = (((sh.gp_lo[0] - a0 // s0) * sh.gp[1]
                                      + sh.gp_lo[1] - a1 // s1) * sh.gp[2]
                                     + sh.gp_lo[2] - a2 // s2)
                        at += 1
                    t += 1
    phase_start[sh.n_phases] = at
    for p in range(sh.n_phases):
        n_p = phase_start[p + 1] - phase_start[p]
        for d in range(n_filters):
            for j in range(n_p):
                backward[n_filters * phase_start[p] + d * n_p + j] = (
                    d * sh.gp_plane + shift[phase_start[p] + j])
    return backward.base, phase_start.base, taps.base


# Offsets, positions and vector starts of the stride-1 path depend on the geometry
# only, and a network asks for the same few geometries every minibatch: building
# them took a third of a small call's set-up. Read-only once built, so the threads
# of a process may share them.
cdef dict _TABLES = {}
_MAX_TABLES = 64


cdef tuple _cache_tables(tuple key, tuple tables):
    """Freeze a geometry's tables (threads share them) and keep them under ``key``."""
    for array in tables:
        array.setflags(write=False)
    if len(_TABLES) >= _MAX_TABLES:
        _TABLES.clear()
    _TABLES[key] = tables
    return tables


cdef tuple _shifted_tables(const Geometry *g, bint backward, Py_ssize_t lanes):
    """``(offsets, vec_at)`` of the forward, or ``(offsets_fwd, offsets_bwd,
    positions, vec_at, phase_start, taps)`` of the backward (see
    ``_shifted_offsets``), for this geometry (cached)."""
    cdef Shifted sh
    cdef tuple key = (backward, lanes, g.channels, g.n_filters,
                      g.size[0], g.size[1], g.size[2], g.ksize[0], g.ksize[1], g.ksize[2],
                      g.out[0], g.out[1], g.out[2], g.pad[0], g.pad[1], g.pad[2],
                      g.dil[0], g.dil[1], g.dil[2], g.stride[0], g.stride[1],
                      g.stride[2])
    tables = _TABLES.get(key)
    if tables is not None:
        return tables
    sh = _shifted(g)
    if backward:
        offsets_fwd, offsets_bwd, phase_start, taps = _shifted_offsets(g, True)
        tables = (offsets_fwd, offsets_bwd, _output_positions(g),
                  _vector_starts(sh.gx_cells, sh.gp, sh.g_wide, lanes), phase_start,
                  taps)
    else:
        tables = (_shifted_offsets(g, False)[0],
                  _vector_starts(g.out, sh.xp, sh.x_wide, lanes))
    return _cache_tables(key, tables)


cdef void _forward_shifted(const floating[:, :, :, :, ::1] x,
                           const floating[::1] w_packed,  # IN  _pack_rows_from of w (D, R)
                           const floating *bias,
                           floating[:, :, :, :, ::1] y,
                           const Py_ssize_t[::1] offsets,
                           const Py_ssize_t[::1] vec_at,  # IN  see _vector_starts
                           floating[:, ::1] scratch,  # OUT (n_threads, _scratch_size)
                           const Geometry *g, int n_threads,
                           uint8_t[:, :, :, :, ::1] codes,  # OUT or None (conv_pool_forward)
                           bint pooled, bint want_min, bint relu,
                           bint average) noexcept nogil:
    """y = conv(x) + bias (then relu if asked), or with ``pooled`` its 2x2 max/min
    pooling then relu if asked, or relu then the average (see ``conv_pool_forward``),
    computed per sample from the wide result in cache."""
    cdef:
        Shifted sh = _shifted(g)
        Py_ssize_t n_samples = x.shape[0], n_filters = g.n_filters, n
        Py_ssize_t pool_vectors = _pool_vectors(g)
        floating *xp = NULL
        floating *wide = NULL
        floating *row_y = NULL
        uint8_t *row_code = NULL
    with parallel(num_threads=n_threads):
        xp = &scratch[threadid(), 0]
        wide = xp + sh.n_planes * sh.xp_plane + SKC_SLACK
        row_y = wide + n_filters * sh.y_wide_ld
        row_code = <uint8_t *> (row_y + pool_vectors * SKC_POOL_LANES)
        _zero_grid(xp, sh.n_planes, sh.xp_plane)
        for n in prange(n_samples, schedule="static"):
            _copy_x(&x[n, 0, 0, 0, 0], g, &sh, xp)
            rowgemm(n_filters, vec_at.shape[0], &vec_at[0], g.n_rows, &w_packed[0], xp,
                     &offsets[0], wide, sh.y_wide_ld, False)
            if pooled:
                _pool_wide(wide, n_filters, sh.y_wide_ld, sh.xp[2], y.shape[3], y.shape[4],
                           bias, want_min, relu, average, row_y, row_code,
                           &y[n, 0, 0, 0, 0],
                           &codes[n, 0, 0, 0, 0] if codes is not None else NULL)
            else:
                _compact(wide, n_filters, sh.y_wide_ld, sh.xp, g.out, bias, relu,
                         &y[n, 0, 0, 0, 0])


cdef inline Py_ssize_t _pool_vectors(const Geometry *g) noexcept nogil:
    """Vectors of windows per pooled row (2x2 pooling of the last two axes)."""
    return (g.out[2] // 2 + SKC_POOL_LANES - 1) // SKC_POOL_LANES


cdef inline void _pool2x2_avg_row(const floating *row, Py_ssize_t pitch,
                                  Py_ssize_t n_vectors, floating bias, bint relu,
                                  floating *y, uint8_t *code) noexcept nogil:
    if floating is float:
        skc_pool2x2_avg_row_f(row, pitch, n_vectors, bias, relu, y, code)
    else:
        skc_pool2x2_avg_row_d(row, pitch, n_vectors, bias, relu, y, code)


cdef void _pool_wide(const floating *wide,   # IN  (n_planes, wide_plane) wide positions
                     Py_ssize_t n_planes, Py_ssize_t wide_plane,
                     Py_ssize_t pitch,       # IN  row stride of the wide positions
                     Py_ssize_t p_rows, Py_ssize_t p_cols,  # IN  pooled sizes
                     const floating *bias,   # IN  (n_planes,) or NULL
                     bint want_min, bint relu, bint average,
                     floating *row_y,        # OUT scratch, a row of whole vectors
                     uint8_t *row_code,      # OUT scratch, as long
                     floating *y,            # OUT (n_planes, p_rows, p_cols)
                     uint8_t *codes) noexcept nogil:  # OUT as y, or NULL
    """2x2/stride-2 max or min pooling of the wide result plus bias, then relu if asked;
    with ``average``, relu first (if asked) then the average (see
    ``conv_pool_forward``).

    Each cell is the same ``wide + bias`` that ``_compact`` would store, so the result
    equals pooling the stored convolution, bit for bit (and relu is numpy's
    ``maximum(y, 0)``). The rows are computed in whole
    vectors into ``row_y``/``row_code`` and copied: the tail lanes would otherwise land
    past the last row.
    """
    cdef:
        Py_ssize_t c, i, n_vectors = (p_cols + SKC_POOL_LANES - 1) // SKC_POOL_LANES
        floating bc
        const floating *row
    for c in range(n_planes):
        bc = bias[c] if bias != NULL else 0
        for i in range(p_rows):
            row = wide + c * wide_plane + 2 * i * pitch
            if average:
                _pool2x2_avg_row(row, pitch, n_vectors, bc, relu, row_y, row_code)
            else:
                pool2x2_codes_row(row, pitch, n_vectors, bc, want_min, relu, row_y,
                                   row_code)
            memcpy(y, row_y, p_cols * sizeof(floating))
            y += p_cols
            if codes != NULL:
                memcpy(codes, row_code, p_cols)
                codes += p_cols


cdef struct PoolCells:
    # Where the windows of a fused pooling lie on the convolution's output (its last
    # two axes, rows of ``cols`` cells): window (i, j) starts at cell
    # ``i * row_step + j * col_step``, and its cell with code k (the window's cells in
    # row-major order) ``cell_off[k]`` further. 2x2/stride 2 on images; on signals
    # (one row) windows of p cells every s cells.
    Py_ssize_t row_step
    Py_ssize_t col_step
    Py_ssize_t n_cells   # cells of a window: 1 to MAX_WINDOW_CELLS
    bint overlap         # whether windows share cells
    bint average         # an average pooling (else max or min, by the codes)
    bint relu_bits       # average only: the codes are relu's bit masks
    Py_ssize_t cell_off[256]


# Cells of a fused pooling's window at most: its codes are bytes.
MAX_WINDOW_CELLS = 256
# Cells of a fused average pooling's window at most: its codes are relu's bit masks.
cdef enum:
    _AVG_CELLS = 8
MAX_AVG_CELLS = _AVG_CELLS


cdef PoolCells _pool_cells(tuple window, tuple stride, Py_ssize_t cols,
                           bint average=False, bint relu_bits=False):
    """The :class:`PoolCells` of windows ``window`` (rows, cols) moved by ``stride``."""
    cdef PoolCells pc
    cdef Py_ssize_t k, width = window[1]
    pc.row_step = stride[0] * cols
    pc.col_step = stride[1]
    pc.n_cells = window[0] * width
    pc.overlap = stride[0] < window[0] or stride[1] < width
    pc.average = average
    pc.relu_bits = average and relu_bits
    if average and not 1 <= window[0] * width <= MAX_AVG_CELLS:
        raise ValueError(f"a fused average pooling window holds 1 to {MAX_AVG_CELLS} "
                         f"cells, got {window}")
    if not 1 <= pc.n_cells <= MAX_WINDOW_CELLS:
        raise ValueError(f"a fused pooling window holds 1 to {MAX_WINDOW_CELLS} cells, "
                         f"got {window}")
    for k in range(pc.n_cells):
        pc.cell_off[k] = (k // width) * cols + k % width
    return pc


cdef void _unpool(const floating *grad_pooled,  # IN  (n_planes, p_rows, p_cols)
                  const uint8_t *codes,          # IN  as grad_pooled, window cells
                  Py_ssize_t n_planes, Py_ssize_t p_rows, Py_ssize_t p_cols,
                  const PoolCells *pc,
                  floating *grad_y,              # OUT see below
                  Py_ssize_t plane_stride, Py_ssize_t cell_stride,
                  Py_ssize_t size) noexcept nogil:  # IN  values of grad_y zeroed first
    """Scatter a pooling's gradient to the winning cells, zeros elsewhere.

    Overlapping windows add their gradients to the zeroed cells in window order, as
    ``pool_backward_indices`` adds them (the same sums). Other windows store theirs:
    ``0 + g`` differs from ``g`` only for ``g = -0``, and every sum the gradient
    enters starts from +0, which absorbs that sign (the same results, bit for bit),
    while a load of each just-zeroed cell would cost more than the scatter.
    Cell ``q`` of plane ``c`` is ``grad_y[c * plane_stride + q * cell_stride]``: planes
    one after another (``cell_stride`` 1), or transposed to (cells, planes) for the
    weight-gradient kernel (``plane_stride`` 1). A code past the window's last cell is
    taken as its last cell, so no value of it can write past the ``size`` values
    zeroed.
    """
    cdef:
        Py_ssize_t c, i, j, at = 0, last = pc.n_cells - 1, k, cell
        Py_ssize_t row_step = pc.row_step, col_step = pc.col_step
        bint overlap = pc.overlap
        floating g
        floating *plane
    memset(grad_y, 0, size * sizeof(floating))
    for c in range(n_planes):
        plane = grad_y + c * plane_stride
        for i in range(p_rows):
            for j in range(p_cols):
                k = codes[at]
                k = k if k < last else last
                g = grad_pooled[at]
                cell = (i * row_step + j * col_step + pc.cell_off[k]) * cell_stride
                if overlap:
                    plane[cell] += g
                else:
                    plane[cell] = g
                at += 1


cdef void _unpool_avg(const floating *grad_pooled,  # IN  (n_planes, p_rows, p_cols)
                      const uint8_t *codes,          # IN  as grad_pooled, relu's bits
                      Py_ssize_t n_planes, Py_ssize_t p_rows, Py_ssize_t p_cols,
                      const PoolCells *pc,
                      floating *grad_y,              # OUT as in _unpool
                      Py_ssize_t plane_stride, Py_ssize_t cell_stride,
                      Py_ssize_t size) noexcept nogil:  # IN  values of grad_y zeroed first
    """An average pooling's gradient spread over its windows' cells, zeros elsewhere,
    then (``pc.relu_bits``) through relu's backward: what ``pool_backward`` of the
    average then ``relu_backward`` compute, bit for bit. Where windows overlap, each
    window's share ``grad / cells`` is added window cell by window cell (along a row
    of windows, all windows' first cells, then their second...), the plain kernel's
    order; then each covered cell is multiplied by its relu bit (a cell in several
    windows gets the same bit from each). Layout as in :func:`_unpool`."""
    cdef:
        Py_ssize_t c, i, j, k, cell, at
        Py_ssize_t row_step = pc.row_step, col_step = pc.col_step
        Py_ssize_t n = pc.n_cells
        Py_ssize_t offsets[_AVG_CELLS]
        floating *plane
        floating *window
        floating share
        floating n_cells = <floating> pc.n_cells
        floating bit_value[2]
        uint8_t code
    bit_value[0], bit_value[1] = 0, 1
    for k in range(n):
        offsets[k] = pc.cell_off[k] * cell_stride
    memset(grad_y, 0, size * sizeof(floating))
    for c in range(n_planes):
        plane = grad_y + c * plane_stride
        if not pc.overlap:
            # Each cell in one window at most: its value is stored, not added. ``0 +
            # share`` differs from ``share`` only for -0, a sign that every sum the
            # gradient enters absorbs (it starts from +0): the same results, bit for
            # bit, in one pass and one division per window. The relu bit multiplies
            # from a table: no branch, no conversion.
            at = c * p_rows * p_cols
            for i in range(p_rows):
                for j in range(p_cols):
                    share = grad_pooled[at] / n_cells
                    window = plane + (i * row_step + j * col_step) * cell_stride
                    if pc.relu_bits:
                        code = codes[at]
                        for k in range(n):
                            window[offsets[k]] = share * bit_value[(code >> k) & 1]
                    else:
                        for k in range(n):
                            window[offsets[k]] = share
                    at += 1
            continue
        for i in range(p_rows):
            at = (c * p_rows + i) * p_cols
            for k in range(pc.n_cells):
                for j in range(p_cols):
                    share = grad_pooled[at + j] / n_cells
                    plane[(i * row_step + j * col_step + pc.cell_off[k]) * cell_stride] += share
        if pc.relu_bits:
            for i in range(p_rows):
                at = (c * p_rows + i) * p_cols
                for k in range(pc.n_cells):
                    for j in range(p_cols):
                        cell = (i * row_step + j * col_step + pc.cell_off[k]) * cell_stride
                        plane[cell] = plane[cell] * <floating> ((codes[at + j] >> k) & 1)


cdef void _forward_im2col(const floating[:, :, :, :, ::1] x,
                          const floating[:, :, :, :, ::1] w,
                          const floating *bias,
                          floating[:, :, :, :, ::1] y,
                          floating[:, ::1] scratch,  # OUT (n_threads, _scratch_size)
                          const Geometry *g, int n_threads, bint relu) noexcept nogil:
    cdef:
        Py_ssize_t n_samples = x.shape[0], n_filters = w.shape[0]
        Py_ssize_t n, d, p
        bint pointwise = _is_pointwise(g)
        floating beta, v
        floating *col = NULL
        const floating *col_in
        floating *y_n
    with parallel(num_threads=n_threads):
        col = &scratch[threadid(), 0]
        for n in prange(n_samples, schedule="static"):
            y_n = &y[n, 0, 0, 0, 0]
            if pointwise:
                col_in = &x[n, 0, 0, 0, 0]
            else:
                _im2col(x[n], g, col)
                col_in = col
            beta = 0
            if bias != NULL:
                beta = 1
                for d in range(n_filters):
                    for p in range(g.n_cols):
                        y_n[d * g.n_cols + p] = bias[d]
            # Row-major y_n (D, P) = w (D, R) @ col (R, P), written column-major.
            _gemm(c'N', c'N', <int> g.n_cols, <int> n_filters, <int> g.n_rows,
                  1, col_in, <int> g.n_cols, &w[0, 0, 0, 0, 0], <int> g.n_rows,
                  beta, y_n, <int> g.n_cols)
            if relu:
                # The sample's output is still in cache (numpy.maximum(y, 0)'s values).
                for p in range(n_filters * g.n_cols):
                    v = y_n[p]
                    y_n[p] = 0 if v <= 0 else v


cdef object _scratch(const Geometry *g, bint shifted, bint backward, bint want_grad_x,
                     int n_threads, dtype, Py_ssize_t lanes, bint pooled=False):
    """Per-thread workspace, one row per thread (row ``threadid()``).

    Allocated here, with the GIL, so that a failed allocation is a MemoryError rather
    than a NULL pointer inside a parallel region.
    """
    cdef Shifted sh
    cdef WgradLayout lay
    cdef Py_ssize_t size
    if not shifted:
        # The im2col matrix of one sample (unused, but kept valid, for 1x1 kernels).
        size = g.n_rows * g.n_cols
    else:
        sh = _shifted(g)
        size = sh.n_planes * sh.xp_plane + SKC_SLACK         # padded (phased) input
        if not backward:
            size += g.n_filters * sh.y_wide_ld                # wide output
            if pooled:
                # A pooled row and its codes (bytes, so fewer than as many values).
                size += 2 * _pool_vectors(g) * SKC_POOL_LANES
        else:
            lay = _wgrad_layout(g, lanes)
            size += sh.xp_plane + SKC_SLACK                   # ones (bias "tap")
            size += lay.n_in + lay.n_acc                      # weight/bias gradient
            if want_grad_x:
                size += g.n_filters * sh.gp_plane + SKC_SLACK  # padded grad_y
                size += g.channels * sh.gx_wide_ld            # wide grad_x
            if pooled:
                # The unpooled grad_y, and the pooled one through the relu (a
                # window holds a cell at least: no more pooled cells than cells).
                size += 2 * g.n_filters * g.n_cols
    # Rows a few cache lines apart so that the threads never share a line.
    size = _round_up(size) + SKC_SLACK
    return np.empty((n_threads, size), dtype=dtype)


def conv_forward(const floating[:, :, :, :, ::1] x,      # IN  (N, C, X0, X1, X2)
                 const floating[:, :, :, :, ::1] w,      # IN  (D, C, K0, K1, K2)
                 const floating[::1] b,                  # IN  (D,) or None
                 floating[:, :, :, :, ::1] y,            # OUT (N, D, O0, O1, O2)
                 tuple stride, tuple pad_lo, tuple dilation,
                 int n_threads, bint relu=False):
    """y[n, d] = sum_c x[n, c] (*) w[d, c] + b[d] (cross-correlation, zero padding),
    then ``numpy.maximum(y, 0)`` if ``relu`` (applied to each sample's output while it
    is in cache: the same values as a separate pass).

    Shapes are trusted: ``skconv.ops.conv`` checks them. ``y`` is overwritten.
    """
    cdef:
        tuple x_shape = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        tuple w_shape = (w.shape[0], w.shape[1], w.shape[2], w.shape[3], w.shape[4])
        tuple y_shape = (y.shape[0], y.shape[1], y.shape[2], y.shape[3], y.shape[4])
        Geometry g = _geometry(x_shape, w_shape, y_shape, stride, pad_lo, dilation)
        const floating *bias = &b[0] if b is not None else NULL
        floating[:, ::1] scratch
        uint8_t[:, :, :, :, ::1] no_codes = None
        Path path
    if x.shape[0] == 0:
        return
    n_threads = max(1, min(n_threads, x.shape[0]))
    path = _path(&g)
    if path == SHIFTED:
        # Strided images and volumes too, on the polyphase copy.
        _run_forward_shifted(x, w, b, y, no_codes, &g, n_threads, False, False, relu)
    elif path == ROWS:
        # A strided convolution of signals is the pooled path's with windows of one
        # cell (no im2col, no BLAS); its relu is the pooled output's.
        _run_forward_pool_rows(x, w, b, y, no_codes, &g, 1, 1, n_threads, False, relu)
    else:
        scratch = _scratch(&g, False, False, False, n_threads,
                           np.float32 if floating is float else np.float64, 0)
        with nogil:
            _forward_im2col(x, w, bias, y, scratch, &g, n_threads, relu)


def conv_pool_forward(const floating[:, :, :, :, ::1] x,  # IN  (N, C, 1, X1, X2)
                      const floating[:, :, :, :, ::1] w,  # IN  (D, C, 1, K1, K2)
                      const floating[::1] b,              # IN  (D,) or None
                      floating[:, :, :, :, ::1] y,        # OUT (N, D, 1, P1, P2)
                      uint8_t[:, :, :, :, ::1] codes,     # OUT as y, or None
                      tuple conv_out,                     # IN  (1, O1, O2)
                      tuple stride, tuple pad_lo, tuple dilation,
                      tuple pool_window, tuple pool_stride,  # IN  (rows, cols) each
                      bint want_min, bint average, bint relu, int n_threads):
    """Max (or min, or average) pooling of a convolution plus bias, with relu, without
    storing the convolution.

    Two poolings: on images, max, min or average with ``pool_window = pool_stride =
    (2, 2)`` of a convolution of any stride (``O1 >= 2``); on signals (``X1 = K1 = O1 = 1``), any
    ``stride``, windows ``(1, p)`` every ``(1, q)`` cells of the convolution's output
    (any p of at most ``MAX_WINDOW_CELLS`` and q; windows may overlap or leave gaps),
    all inside it: ``P2 = (O2 - p) // q + 1``; and there also the average of windows
    of at most 8 cells.

    Max and min: ``y`` equals the pooling (``skconv._ops.pool.pool_with_indices``) of
    ``conv_forward``'s output bit for bit, with the same first-extreme and NaN rules,
    then numpy's ``maximum(y, 0)`` if ``relu``. ``codes[n, d, 0, i, j]`` (skipped when
    None) is the winning cell's place in its window, row-major: for 2x2, 0 for
    ``(2i, 2j)``, 1 for ``(2i, 2j + 1)``, 2 for ``(2i + 1, 2j)``, 3 for ``(2i + 1,
    2j + 1)``; on signals, t for cell ``j * q + t``.

    Average: relu (if asked) comes FIRST, on every cell, as a network runs conv,
    relu, average pooling; ``y`` equals that bit for bit (sums in double, as
    ``skconv._ops.pool.pool`` adds them) and ``codes`` has bit t set where relu's
    output for cell t of the window is positive (0 without relu), for
    ``conv_pool_avg_backward``. Shapes are trusted: ``skconv.ops`` checks them.
    """
    cdef:
        tuple x_shape = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        tuple w_shape = (w.shape[0], w.shape[1], w.shape[2], w.shape[3], w.shape[4])
        Geometry g = _geometry(x_shape, w_shape, (x.shape[0], w.shape[0]) + conv_out,
                               stride, pad_lo, dilation)
        bint images = (pool_window == (2, 2) and pool_stride == (2, 2)
                       and g.stride[0] == 1 and g.out[0] == 1 and g.out[1] >= 2
                       and _path(&g) == SHIFTED)
        bint signals = (_is_signal(&g) and pool_window[0] == 1 and pool_stride[0] == 1
                        and 1 <= pool_window[1] <= min(g.out[2], MAX_WINDOW_CELLS)
                        and pool_stride[1] >= 1
                        and (not average or pool_window[1] <= 8))
    if not (images or signals):
        raise ValueError(f"no fused kernel pools windows {pool_window} every "
                         f"{pool_stride} of a convolution output {conv_out} with "
                         f"stride {stride}{' (average)' if average else ''}")
    if x.shape[0] == 0:
        return
    n_threads = max(1, min(n_threads, x.shape[0]))
    if signals:
        _run_forward_pool_rows(x, w, b, y, codes, &g, <Py_ssize_t> pool_window[1],
                               <Py_ssize_t> pool_stride[1], n_threads, want_min, relu,
                               average)
    else:
        _run_forward_shifted(x, w, b, y, codes, &g, n_threads, True, want_min, relu,
                             average)


def conv_pool_avg_backward(const floating[:, ::1] grad_pooled,  # IN  (P, P1 * P2) planes
                           const uint8_t[:, ::1] codes,  # IN  as grad_pooled, or None
                           floating[:, ::1] grad_conv,    # OUT (P, O1 * O2)
                           tuple window, tuple stride,    # IN  (rows, cols) each
                           Py_ssize_t p_cols, Py_ssize_t conv_cols, int n_threads):
    """The convolution's gradient from an average pooling's (windows of ``window``
    cells every ``stride``, all inside the convolution's output, whose rows have
    ``conv_cols`` cells; ``p_cols`` windows per row), through relu's backward when
    ``codes`` (the forward's) are given: what ``pool_backward`` of the average then
    ``relu_backward`` compute, bit for bit (see :func:`_unpool_avg`). ``grad_conv``
    is overwritten; planes on up to ``n_threads`` threads. Signals are rows of one:
    ``window = (1, p)``."""
    cdef PoolCells pc = _pool_cells(window, stride, conv_cols, True, codes is not None)
    cdef Py_ssize_t n_planes = grad_pooled.shape[0], n_out = grad_pooled.shape[1]
    cdef Py_ssize_t p, p_rows = n_out // p_cols if p_cols else 0
    if n_planes == 0 or n_out == 0:
        grad_conv[...] = 0
        return
    n_threads = max(1, min(n_threads, n_planes))
    for p in prange(n_planes, nogil=True, schedule="static", num_threads=n_threads):
        _unpool_avg(&grad_pooled[p, 0], &codes[p, 0] if pc.relu_bits else NULL, 1,
                    p_rows, p_cols, &pc, &grad_conv[p, 0], 0, 1, grad_conv.shape[1])


# --------------------------------------------------------------------------------
# Signals pooled by any window: the convolution computed window cell by window cell
# --------------------------------------------------------------------------------
#
# Cell t of pooling window j is the convolution's output j*s + t, which reads the
# padded input at j*s + t + k*dil for tap k. Split the padded input into its s
# phases, phase r holding the cells m*s + r: that cell is then phase (t + k*dil) % s
# at j + (t + k*dil) // s, so for a fixed t the cells of all windows are one
# shifted-row GEMM over j (the stride-1 micro-kernel, offsets per t). The pooling is
# then an elementwise max over the window's t rows, in whole vectors, with no
# shuffles, for any window and stride. Each output sums the same products in the same
# order as the plain convolution, so the results are the same bit for bit. The
# windows go _ROW_BLOCK at a time, so that a block's GEMM outputs stay in cache
# while they are pooled, whatever the signal's length.

# Pooled outputs per block: whole vectors of either dtype.
cdef Py_ssize_t _ROW_BLOCK = 128

cdef struct RowPool:
    Py_ssize_t window        # p: cells per pooling window
    Py_ssize_t stride        # q: cells of the convolution's output between windows
    Py_ssize_t phases        # S = q * (the convolution's stride): phases of the copy
    Py_ssize_t n_out         # J: pooled outputs per row
    Py_ssize_t phase_ld      # row stride of the polyphase copy, row c*s + r
    Py_ssize_t phase_size    # C*s*phase_ld + SKC_SLACK (the GEMM reads past a row)
    Py_ssize_t taps_ld       # row stride of a block's GEMM outputs (D rows per t)
    Py_ssize_t tap_stride    # from one window cell's D rows to the next cell's
    Py_ssize_t scratch       # per-thread values


cdef RowPool _row_pool(const Geometry *g, Py_ssize_t window, Py_ssize_t stride,
                       Py_ssize_t lanes) noexcept nogil:
    cdef RowPool rp
    # The padded input's length (all of the signal's cells, which a strided
    # convolution may not reach); every window's cells read inside it, and a vector's
    # lanes past the last window read less than a vector further (the next row, or
    # the slack after the last one).
    cdef Py_ssize_t padded = max((g.out[2] - 1) * g.stride[2] + 1
                                 + g.dil[2] * (g.ksize[2] - 1), g.pad[2] + g.size[2])
    rp.window = window
    rp.stride = stride
    rp.phases = stride * g.stride[2]
    rp.n_out = (g.out[2] - window) // stride + 1
    # Strides a vector past a power of two: rows read (or written) together would
    # otherwise fall in the same few L1 sets (rows 2 kB apart evict each other).
    rp.phase_ld = _round_up((padded + rp.phases - 1) // rp.phases) + SKC_SLACK
    rp.phase_size = g.channels * rp.phases * rp.phase_ld + SKC_SLACK
    rp.taps_ld = _ROW_BLOCK + SKC_SLACK
    rp.tap_stride = g.n_filters * rp.taps_ld + SKC_SLACK
    # Phases, a block's GEMM outputs, a block of pooled outputs and its codes.
    rp.scratch = _round_up(rp.phase_size + window * rp.tap_stride
                           + 2 * _ROW_BLOCK) + SKC_SLACK
    return rp


cdef tuple _row_pool_tables(const Geometry *g, const RowPool *rp, Py_ssize_t lanes):
    """``(offsets, vec_at)`` of the polyphase GEMMs (cached as ``_shifted_tables``):
    ``offsets[t*R + c*K + k]`` is where tap (c, k) of window cell t starts in the
    polyphase copy; vec_at the vectors' first j in a block."""
    cdef tuple key = ("rows", lanes, g.channels, g.n_filters, g.size[2], g.ksize[2],
                      g.out[2], g.pad[2], g.dil[2], g.stride[2], rp.window, rp.stride)
    cdef Py_ssize_t t, c, k, at, n_taps = g.ksize[2], s = rp.phases
    cdef Py_ssize_t[::1] offsets
    tables = _TABLES.get(key)
    if tables is not None:
        return tables
    offsets = np.empty(rp.window * g.n_rows, dtype=np.intp)
    for t in range(rp.window):
        for c in range(g.channels):
            for k in range(n_taps):
                # Window cell t is the output t*stride[2] cells further.
                at = t * g.stride[2] + k * g.dil[2]
                offsets[(t * g.channels + c) * n_taps + k] = (
                    (c * s + at % s) * rp.phase_ld + at // s)
    tables = (offsets.base, np.arange(0, _ROW_BLOCK, lanes, dtype=np.intp))
    return _cache_tables(key, tables)


cdef void _phase_copy(const floating *src,       # IN  (C, W) one sample
                      Py_ssize_t channels, Py_ssize_t width,
                      Py_ssize_t pad,            # IN  zero cells before the signal
                      Py_ssize_t stride, Py_ssize_t ld,
                      floating *dst) noexcept nogil:  # OUT polyphase rows
    """Padded cell ``q = i + pad`` of channel c to row ``c*stride + q % stride``, at
    ``q // stride``. Only the signal's cells are written: the caller zeroed the rows
    once per call (every sample lands on the same cells)."""
    cdef Py_ssize_t c, q, q0, q1, end = pad + width
    cdef const floating *s
    cdef floating *d
    # Whole groups of `stride` cells [q0, q1) go through the vector kernel, the
    # partial groups at either end cell by cell.
    q0 = min((pad + stride - 1) // stride * stride, end)
    q1 = max(end // stride * stride, q0)
    for c in range(channels):
        s = src + c * width - pad  # s[q]: padded cell q
        d = dst + c * stride * ld
        if stride == 1:
            memcpy(d + pad, s + pad, width * sizeof(floating))
            continue
        for q in range(pad, q0):
            d[(q % stride) * ld + q // stride] = s[q]
        if floating is float:
            skc_deinterleave_f(s + q0, (q1 - q0) // stride, stride, d + q0 // stride, ld)
        else:
            skc_deinterleave_d(s + q0, (q1 - q0) // stride, stride, d + q0 // stride, ld)
        for q in range(q1, end):
            d[(q % stride) * ld + q // stride] = s[q]


cdef inline void _pool_taps(const floating *rows, Py_ssize_t tap_stride,
                            Py_ssize_t n_taps, Py_ssize_t n_vectors, floating bias,
                            bint want_min, bint relu, bint average, floating *y,
                            uint8_t *code) noexcept nogil:
    """n_vectors vectors of 1-D windows computed tap by tap; see
    include/pool/poolkernels.h."""
    if average:
        if floating is float:
            skc_pool_taps_avg_row_f(rows, tap_stride, <int> n_taps, n_vectors, bias,
                                    relu, y, code)
        else:
            skc_pool_taps_avg_row_d(rows, tap_stride, <int> n_taps, n_vectors, bias,
                                    relu, y, code)
    elif floating is float:
        skc_pool_taps_codes_row_f(rows, tap_stride, <int> n_taps, n_vectors, bias,
                                  want_min, relu, y, code)
    else:
        skc_pool_taps_codes_row_d(rows, tap_stride, <int> n_taps, n_vectors, bias,
                                  want_min, relu, y, code)


cdef _run_forward_pool_rows(const floating[:, :, :, :, ::1] x,
                            const floating[:, :, :, :, ::1] w,
                            const floating[::1] b,
                            floating[:, :, :, :, ::1] y,
                            uint8_t[:, :, :, :, ::1] codes,
                            const Geometry *g, Py_ssize_t window, Py_ssize_t stride,
                            int n_threads, bint want_min, bint relu, bint average=False):
    """The signals' pooled forward: per-call tables and scratch, then the kernel."""
    cdef:
        const floating *bias = &b[0] if b is not None else NULL
        Py_ssize_t lanes = 16 if floating is float else 8
        RowPool rp = _row_pool(g, window, stride, lanes)
        tuple tables = _row_pool_tables(g, &rp, lanes)
        const Py_ssize_t[::1] offsets = tables[0]
        const Py_ssize_t[::1] vec_at = tables[1]
        const floating[::1] w_packed = _pack_rows_from(&w[0, 0, 0, 0, 0], w.shape[0],
                                                       g.n_rows)
        floating[:, ::1] scratch = np.empty(
            (n_threads, rp.scratch), dtype=np.float32 if floating is float else np.float64)
    with nogil:
        _forward_pool_rows(x, w_packed, bias, y, codes, offsets, vec_at, scratch, g,
                           &rp, n_threads, want_min, relu, average)


cdef void _forward_pool_rows(const floating[:, :, :, :, ::1] x,
                             const floating[::1] w_packed,  # IN  _pack_rows_from of w
                             const floating *bias,          # IN  (D,) or NULL
                             floating[:, :, :, :, ::1] y,   # OUT (N, D, 1, 1, J)
                             uint8_t[:, :, :, :, ::1] codes,  # OUT as y, or None
                             const Py_ssize_t[::1] offsets,  # IN  _row_pool_tables
                             const Py_ssize_t[::1] vec_at,
                             floating[:, ::1] scratch,  # OUT (n_threads, rp.scratch)
                             const Geometry *g, const RowPool *rp, int n_threads,
                             bint want_min, bint relu, bint average) noexcept nogil:
    """Per sample: the polyphase copy, then per block of windows one GEMM per window
    cell and the pooling."""
    cdef:
        Py_ssize_t n_samples = x.shape[0], n_filters = g.n_filters, n, t, d, j0, nb
        Py_ssize_t n_rows = g.n_rows, n_out = rp.n_out, block, n_whole, at
        Py_ssize_t lanes = 16 if floating is float else 8
        Py_ssize_t tap_stride = rp.tap_stride, taps_ld = rp.taps_ld
        floating *phases = NULL
        floating *taps = NULL
        floating *row_y = NULL
        uint8_t *row_code = NULL
        floating *y_at
        uint8_t *code_at
        floating bd
    with parallel(num_threads=n_threads):
        phases = &scratch[threadid(), 0]
        taps = phases + rp.phase_size
        row_y = taps + rp.window * tap_stride
        row_code = <uint8_t *> (row_y + _ROW_BLOCK)
        memset(phases, 0, rp.phase_size * sizeof(floating))
        for n in prange(n_samples, schedule="static"):
            _phase_copy(&x[n, 0, 0, 0, 0], g.channels, g.size[2], g.pad[2], rp.phases,
                        rp.phase_ld, phases)
            for block in range((n_out + _ROW_BLOCK - 1) // _ROW_BLOCK):
                j0 = block * _ROW_BLOCK
                nb = min(_ROW_BLOCK, n_out - j0)
                # The block's windows j0.. as columns 0..: the GEMM reads from j0 on.
                for t in range(rp.window):
                    rowgemm(n_filters, (nb + lanes - 1) // lanes, &vec_at[0], n_rows,
                             &w_packed[0], phases + j0, &offsets[t * n_rows],
                             taps + t * tap_stride, taps_ld, False)
                # Whole vectors of windows go straight to y and the codes; a row's
                # last vector, if partial, through the row buffers (it would run
                # into the next row, or past the output).
                n_whole = nb // SKC_POOL_LANES
                for d in range(n_filters):
                    bd = bias[d] if bias != NULL else 0
                    y_at = &y[n, d, 0, 0, j0]
                    code_at = &codes[n, d, 0, 0, j0] if codes is not None else row_code
                    _pool_taps(taps + d * taps_ld, tap_stride, rp.window, n_whole, bd,
                               want_min, relu, average, y_at, code_at)
                    if n_whole * SKC_POOL_LANES < nb:
                        at = n_whole * SKC_POOL_LANES
                        _pool_taps(taps + d * taps_ld + at, tap_stride, rp.window, 1, bd,
                                   want_min, relu, average, row_y, row_code)
                        memcpy(y_at + at, row_y, (nb - at) * sizeof(floating))
                        if codes is not None:
                            memcpy(code_at + at, row_code, nb - at)


cdef _run_forward_shifted(const floating[:, :, :, :, ::1] x,
                          const floating[:, :, :, :, ::1] w,
                          const floating[::1] b,
                          floating[:, :, :, :, ::1] y,
                          uint8_t[:, :, :, :, ::1] codes,
                          const Geometry *g, int n_threads, bint pooled, bint want_min,
                          bint relu, bint average=False):
    """The stride-1 forward, plain or pooled: per-call tables, then the kernel."""
    cdef:
        const floating *bias = &b[0] if b is not None else NULL
        tuple tables = _shifted_tables(g, False, 16 if floating is float else 8)
        const Py_ssize_t[::1] offsets = tables[0]
        const Py_ssize_t[::1] vec_at = tables[1]
        const floating[::1] w_packed = _pack_rows_from(&w[0, 0, 0, 0, 0], w.shape[0],
                                                       g.n_rows)
        floating[:, ::1] scratch = _scratch(
            g, True, False, False, n_threads,
            np.float32 if floating is float else np.float64, 0, pooled)
    with nogil:
        _forward_shifted(x, w_packed, bias, y, offsets, vec_at, scratch, g, n_threads,
                         codes, pooled, want_min, relu, average)


# Values per task of ``all_finite`` and ``relu_backward`` on threads.
cdef Py_ssize_t _FINITE_CHUNK = 1 << 16


def all_finite(const floating[::1] values, int n_threads=1):
    """Whether every value is finite (no inf, no NaN); True when empty. On up to
    ``n_threads`` threads, in chunks (a scan of a large input is memory-bound, and two
    cores read faster than one)."""
    cdef Py_ssize_t n = values.shape[0], chunk, n_chunks, start
    cdef int bad = 0
    if n == 0:
        return True
    n_chunks = (n + _FINITE_CHUNK - 1) // _FINITE_CHUNK
    n_threads = max(1, min(n_threads, n_chunks))
    if n_threads == 1:
        return bool(_all_finite(&values[0], n))
    for chunk in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        start = chunk * _FINITE_CHUNK
        if not _all_finite(&values[start], min(_FINITE_CHUNK, n - start)):
            bad |= 1
    return not bad


def relu_backward(const floating[::1] grad,  # IN  (n,) the gradient of relu's output
                  const floating[::1] out,   # IN  (n,) relu's output
                  floating[::1] dst,         # OUT (n,) may be grad itself
                  int n_threads=1):
    """``dst = grad * (out > 0)``, numpy's values (a product: an infinite gradient on
    a zeroed cell gives NaN), in one pass on up to ``n_threads`` threads, in chunks.
    Lengths are trusted to match."""
    cdef Py_ssize_t n = grad.shape[0], chunk, n_chunks, start
    if n == 0:
        return
    n_chunks = (n + _FINITE_CHUNK - 1) // _FINITE_CHUNK
    n_threads = max(1, min(n_threads, n_chunks))
    for chunk in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        start = chunk * _FINITE_CHUNK
        if floating is float:
            skc_relu_backward_f(&grad[start], &out[start], min(_FINITE_CHUNK, n - start),
                                &dst[start])
        else:
            skc_relu_backward_d(&grad[start], &out[start], min(_FINITE_CHUNK, n - start),
                                &dst[start])


def uses_blas(tuple x_shape, tuple w_shape, tuple y_shape, tuple stride, tuple pad_lo,
              tuple dilation, bint inputs_finite=True):
    """Whether a call goes through BLAS (the im2col path): a backward whose inputs are
    not finite (only the backward checks them), or a strided convolution of images or
    volumes whose polyphase copy would dwarf the data (a huge padding or dilation
    around a small input). The shapes are the 5-D views' (``conv_forward``'s).

    The caller limits BLAS to one thread around such calls, since the kernels call it
    from inside their own parallel region.
    """
    cdef Geometry g = _geometry(x_shape, w_shape, y_shape, stride, pad_lo, dilation)
    return not inputs_finite or _path(&g) == IM2COL


def strided_images_fused(tuple x_shape, tuple w_shape, tuple y_shape, tuple stride,
                         tuple pad_lo, tuple dilation):
    """Whether ``conv_pool_forward`` pools this strided convolution of images (its
    polyphase copy fits, see ``uses_blas``); shapes as there."""
    cdef Geometry g = _geometry(x_shape, w_shape, y_shape, stride, pad_lo, dilation)
    return _path(&g) == SHIFTED


cdef inline Py_ssize_t _chunk_start(Py_ssize_t chunk, Py_ssize_t n_chunks,
                                    Py_ssize_t n_samples) noexcept nogil:
    """First sample of a reduction chunk: ceil(chunk * N / n_chunks)."""
    return (chunk * n_samples + n_chunks - 1) // n_chunks


cdef void _add_bias_grad(const floating *gy_n, Py_ssize_t n_filters, Py_ssize_t plane,
                         floating *gb, bint first) noexcept nogil:
    """gb[d] (+)= sum_p gy_n[d, p], summed in order."""
    cdef Py_ssize_t d, p
    cdef floating acc
    for d in range(n_filters):
        acc = 0
        for p in range(plane):
            acc = acc + gy_n[d * plane + p]
        if first:
            gb[d] = acc
        else:
            gb[d] = gb[d] + acc


cdef void _transpose_pad(const floating *src,   # IN  (rows, cols)
                         Py_ssize_t rows, Py_ssize_t cols,
                         floating *dst,         # OUT (cols, ld), lanes >= rows untouched
                         Py_ssize_t ld) noexcept nogil:
    cdef Py_ssize_t i, j
    # Row by row of dst: its lines are written whole, while src is read as `rows`
    # sequential streams (the other order strides dst by a cache line per store).
    for j in range(cols):
        for i in range(rows):
            dst[j * ld + i] = src[i * cols + j]


cdef void _unpool_sample(const floating *gp_n, const uint8_t *codes_n,
                         const floating *relu_n, Py_ssize_t p_rows, Py_ssize_t p_cols,
                         const PoolCells *pc,
                         const Geometry *g, const Shifted *sh, const WgradLayout *lay,
                         bint want_grad_x,
                         floating *gy_in,        # OUT transposed layout (narrow wgrad)
                         floating *unpooled,     # OUT (D, n_cols) planes
                         floating *masked        # scratch, as gp_n
                         ) noexcept nogil:
    """One sample's convolution gradient from its pooled gradient, made in cache: what
    the pooling's backward would have stored. Straight into the transposed layout of
    the narrow weight-gradient kernel (skipping a transpose), and as planes where the
    wide kernel or the input gradient need them. An average pooling's
    (``pc.average``) is :func:`_unpool_avg`'s, relu's backward included.

    With ``relu_n`` (the forward's relu'd output), through the relu's backward first:
    ``grad * (out > 0)`` as numpy computes it (so 0 * inf gives NaN there too), in a
    pass of its own (see include/pool/poolkernels_impl.h)."""
    cdef Py_ssize_t n = g.n_filters * p_rows * p_cols
    if pc.average:
        if not lay.wide:
            _unpool_avg(gp_n, codes_n, g.n_filters, p_rows, p_cols, pc, gy_in, 1, sh.dv,
                        lay.n_in)
        if lay.wide or want_grad_x:
            _unpool_avg(gp_n, codes_n, g.n_filters, p_rows, p_cols, pc, unpooled,
                        g.n_cols, 1, g.n_filters * g.n_cols)
        return
    if relu_n != NULL:
        if floating is float:
            skc_relu_backward_f(gp_n, relu_n, n, masked)
        else:
            skc_relu_backward_d(gp_n, relu_n, n, masked)
        gp_n = masked
    if not lay.wide:
        _unpool(gp_n, codes_n, g.n_filters, p_rows, p_cols, pc, gy_in, 1, sh.dv,
                lay.n_in)
    if lay.wide or want_grad_x:
        _unpool(gp_n, codes_n, g.n_filters, p_rows, p_cols, pc, unpooled, g.n_cols, 1,
                g.n_filters * g.n_cols)


cdef void _add_sample_wgrad(const floating *x_n, const floating *gy_n, bint transposed,
                            const Geometry *g, const Shifted *sh, const WgradLayout *lay,
                            const Py_ssize_t *offsets_fwd, const Py_ssize_t *positions,
                            floating *xp,        # scratch: x on the padded grid
                            floating *gy_in,     # scratch (already transposed if so)
                            floating *gw_acc     # INOUT the chunk's accumulator
                            ) noexcept nogil:
    """Add one sample's weight (and bias) gradient to the chunk's accumulator."""
    cdef Py_ssize_t zeros_lo[3]
    zeros_lo[0] = zeros_lo[1] = zeros_lo[2] = 0
    _copy_x(x_n, g, sh, xp)
    if lay.wide:
        # grad_y on the padded input grid, zeros between its rows, so that both
        # operands are contiguous runs of the same wide positions.
        _pad_copy(gy_n, g.n_filters, g.out, gy_in, sh.xp, lay.g_plane, zeros_lo)
        _wgrad_wide(g.n_filters, lay.n_taps, sh.x_wide_ld, gy_in, lay.g_plane, xp,
                    offsets_fwd, gw_acc)
    else:
        # Vectorised over the output channels: grad_y as (positions, channels),
        # summed into (taps, channels) over the chunk.
        if not transposed:
            _transpose_pad(gy_n, g.n_filters, g.n_cols, gy_in, sh.dv)
        _wgrad(lay.n_taps, sh.dv, g.n_cols, positions, xp, offsets_fwd, gy_in, sh.dv,
               gw_acc, sh.dv)


cdef void _sample_input_grad(const floating *gy_n, const Geometry *g, const Shifted *sh,
                             const floating *w_flipped, const Py_ssize_t *offsets_bwd,
                             const Py_ssize_t *vec_at, Py_ssize_t n_vec,
                             floating *gyp,      # scratch: grad_y on the padded grid
                             floating *gx_wide,  # scratch: wide grad_x
                             floating *grad_x_n  # OUT (C, X0, X1, X2)
                             ) noexcept nogil:
    """One sample's input gradient: the flipped kernels over the padded grad_y."""
    cdef Py_ssize_t n_taps = g.ksize[0] * g.ksize[1] * g.ksize[2]
    _pad_copy(gy_n, g.n_filters, g.out, gyp, sh.gp, sh.gp_plane, sh.gp_lo)
    rowgemm(g.channels, n_vec, vec_at, g.n_filters * n_taps, w_flipped, gyp,
             offsets_bwd, gx_wide, sh.gx_wide_ld, False)
    _compact(gx_wide, g.channels, sh.gx_wide_ld, sh.gp, g.size, NULL, False, grad_x_n)


cdef void _sample_input_grad_phases(const floating *gy_n, const Geometry *g,
                                    const Shifted *sh,
                                    const floating *w_phases,  # IN  _pack_phase_taps
                                    const Py_ssize_t *phase_start,
                                    const Py_ssize_t *offsets_bwd,  # IN  _phase_taps
                                    const Py_ssize_t *vec_at, Py_ssize_t n_vec,
                                    floating *gyp,      # scratch: padded grad_y
                                    floating *gx_wide,  # scratch: a phase's wide grad_x
                                    floating *grad_x_n  # OUT (C, X0, X1, X2)
                                    ) noexcept nogil:
    """One sample's input gradient when strided: per phase of the padded input, one
    shifted-row GEMM of its taps over the padded grad_y (see ``_phase_taps``), whose
    cells are then laid back every s-th on each axis (a phase no tap reaches gets
    zeros)."""
    cdef:
        Py_ssize_t n_filters = g.n_filters, channels = g.channels
        Py_ssize_t s0 = g.stride[0], s1 = g.stride[1], s2 = g.stride[2]
        Py_ssize_t h1 = sh.phases[1], h2 = sh.phases[2]
        Py_ssize_t p, a, n_p, c, t0, t1, t2, i0, i1, m0, m1
        Py_ssize_t first[3]
        Py_ssize_t count[3]
        Py_ssize_t phase[3]
        const floating *src
        floating *dst
    _pad_copy(gy_n, n_filters, g.out, gyp, sh.gp, sh.gp_plane, sh.gp_lo)
    for p in range(sh.n_phases):
        phase[0], phase[1], phase[2] = p // (h1 * h2), (p // h2) % h1, p % h2
        # The input cells i of phase r on an axis: i = first, first + s, ...
        for a in range(3):
            first[a] = (phase[a] - g.pad[a] % g.stride[a] + g.stride[a]) % g.stride[a]
            count[a] = (g.size[a] - first[a] + g.stride[a] - 1) // g.stride[a]
        if count[0] <= 0 or count[1] <= 0 or count[2] <= 0:
            continue
        n_p = phase_start[p + 1] - phase_start[p]
        if n_p > 0:
            rowgemm(channels, n_vec, vec_at, n_filters * n_p,
                    w_phases + channels * n_filters * phase_start[p], gyp,
                    offsets_bwd + n_filters * phase_start[p], gx_wide, sh.gx_wide_ld,
                    False)
        for c in range(channels):
            for t0 in range(count[0]):
                i0 = first[0] + t0 * s0
                m0 = (i0 + g.pad[0]) // s0
                for t1 in range(count[1]):
                    i1 = first[1] + t1 * s1
                    m1 = (i1 + g.pad[1]) // s1
                    dst = (grad_x_n + ((c * g.size[0] + i0) * g.size[1] + i1) * g.size[2]
                           + first[2])
                    src = (gx_wide + c * sh.gx_wide_ld + (m0 * sh.gp[1] + m1) * sh.gp[2]
                           + (first[2] + g.pad[2]) // s2)
                    if n_p == 0:
                        for t2 in range(count[2]):
                            dst[t2 * s2] = 0
                    else:
                        for t2 in range(count[2]):
                            dst[t2 * s2] = src[t2]


cdef void _backward_shifted(const floating[:, :, :, :, ::1] grad_y,  # or None if pooled
                            const floating[:, :, :, :, ::1] grad_pooled,  # or None
                            const uint8_t[:, :, :, :, ::1] codes,  # with grad_pooled
                            const floating[:, :, :, :, ::1] relu_out,  # or None
                            const floating[:, :, :, :, ::1] x,
                            # _pack_flipped of w (stride 1) or _pack_phase_taps, or None
                            const floating[::1] w_flipped,
                            floating[:, :, :, :, ::1] grad_x,           # or None
                            floating[:, ::1] grad_w_chunks,
                            floating[:, ::1] grad_b_chunks,
                            const Py_ssize_t[::1] offsets_fwd,
                            const Py_ssize_t[::1] offsets_bwd,
                            const Py_ssize_t[::1] positions,  # IN (O0*O1*O2,) on padded grid
                            const Py_ssize_t[::1] vec_at,  # IN  _vector_starts of grad_x
                            const Py_ssize_t[::1] phase_start,  # IN  see _phase_taps
                            floating[:, ::1] scratch,  # OUT (n_threads, _scratch_size)
                            const Geometry *g, const WgradLayout *lay,
                            const PoolCells *pc,  # IN  the pooling's windows, if pooled
                            int n_threads,
                            uint8_t *nonfinite,   # OUT (N,) or NULL
                            floating *grad_w_out,  # OUT (D*R,) or NULL
                            floating *grad_b_out) noexcept nogil:  # OUT (D,)
    """The stride-1 backward (see ``conv_backward`` / ``conv_pool_backward``): the
    samples shared out in fixed chunks, each sample's gradient of the convolution's
    output made (:func:`_unpool_sample` when pooled), then its weight gradient
    (:func:`_add_sample_wgrad`) and input gradient (:func:`_sample_input_grad`).

    With ``nonfinite``, each sample's x and output gradient are first checked where
    they are read anyway: a sample holding an inf or a NaN gets ``nonfinite[n] = 1``
    and is skipped, and the caller must then discard every output (the shifted path
    needs finite inputs). The check costs no pass of its own and runs on the threads.
    With ``grad_w_out``, the chunk sums are then added into it and ``grad_b_out``, in
    chunk order, on the threads.
    """
    cdef:
        Shifted sh = _shifted(g)
        Py_ssize_t n_samples = x.shape[0], n_filters = g.n_filters
        Py_ssize_t n_chunks = grad_w_chunks.shape[0]
        Py_ssize_t chunk, n, start, stop
        Py_ssize_t i = 0
        bint want_grad_x = grad_x is not None
        floating *xp = NULL
        floating *ones = NULL
        floating *gy_in = NULL
        floating *gw_acc = NULL
        floating *gyp = NULL
        floating *gx_wide = NULL
        floating *unpooled = NULL
        floating *masked = NULL
        const floating *gy_n
        bint pooled = grad_pooled is not None
        bint unit = _unit_stride(g)
        Py_ssize_t x_sample = g.channels * g.size[0] * g.size[1] * g.size[2]
        Py_ssize_t gy_sample = n_filters * g.n_cols
        Py_ssize_t block
        Py_ssize_t n_sum_blocks = ((n_filters * (g.n_rows + 1) + _SUM_COLUMNS - 1)
                                   // _SUM_COLUMNS)
    if pooled:
        gy_sample = n_filters * grad_pooled.shape[3] * grad_pooled.shape[4]
    with parallel(num_threads=n_threads):
        # This thread's scratch, carved from its row (sizes from _scratch).
        xp = &scratch[threadid(), 0]
        ones = xp + sh.n_planes * sh.xp_plane + SKC_SLACK
        gy_in = ones + sh.xp_plane + SKC_SLACK
        gw_acc = gy_in + lay.n_in
        gyp = gw_acc + lay.n_acc
        gx_wide = gyp
        if want_grad_x:
            gx_wide = gyp + n_filters * sh.gp_plane + SKC_SLACK
        unpooled = gx_wide
        if want_grad_x:
            unpooled = gx_wide + g.channels * sh.gx_wide_ld
        masked = unpooled + n_filters * g.n_cols
        # The bias gradient is one more "tap" whose input is all ones (its offset is
        # the last entry of offsets_fwd), so the same kernel sums it.
        for i in range(sh.xp_plane + SKC_SLACK):
            ones[i] = 1
        _zero_grid(xp, sh.n_planes, sh.xp_plane)
        if lay.wide:
            _zero_grid(gy_in, n_filters, lay.g_plane)
        else:
            # The lanes past n_filters stay zero: they pad the channel vectors.
            memset(gy_in, 0, lay.n_in * sizeof(floating))
        if want_grad_x:
            _zero_grid(gyp, n_filters, sh.gp_plane)
        for chunk in prange(n_chunks, schedule="static"):
            # Assigned (not written through a pointer) so that prange makes them private.
            start = _chunk_start(chunk, n_chunks, n_samples)
            stop = _chunk_start(chunk + 1, n_chunks, n_samples)
            memset(gw_acc, 0, lay.n_acc * sizeof(floating))
            for n in range(start, stop):
                if nonfinite != NULL and not (
                        _all_finite(&x[n, 0, 0, 0, 0], x_sample)
                        and _all_finite(&grad_pooled[n, 0, 0, 0, 0] if pooled
                                        else &grad_y[n, 0, 0, 0, 0], gy_sample)):
                    nonfinite[n] = 1
                    continue
                if pooled:
                    _unpool_sample(&grad_pooled[n, 0, 0, 0, 0], &codes[n, 0, 0, 0, 0],
                                   &relu_out[n, 0, 0, 0, 0] if relu_out is not None
                                   else NULL, grad_pooled.shape[3], grad_pooled.shape[4],
                                   pc, g, &sh, lay, want_grad_x, gy_in, unpooled,
                                   masked)
                    gy_n = unpooled
                else:
                    gy_n = &grad_y[n, 0, 0, 0, 0]
                _add_sample_wgrad(&x[n, 0, 0, 0, 0], gy_n, pooled, g, &sh, lay,
                                  &offsets_fwd[0], &positions[0], xp, gy_in, gw_acc)
                if want_grad_x and unit:
                    _sample_input_grad(gy_n, g, &sh, &w_flipped[0], &offsets_bwd[0],
                                       &vec_at[0], vec_at.shape[0], gyp, gx_wide,
                                       &grad_x[n, 0, 0, 0, 0])
                elif want_grad_x:
                    _sample_input_grad_phases(gy_n, g, &sh, &w_flipped[0],
                                              &phase_start[0], &offsets_bwd[0],
                                              &vec_at[0], vec_at.shape[0], gyp, gx_wide,
                                              &grad_x[n, 0, 0, 0, 0])
            _store_chunk_sums(gw_acc, lay, n_filters, g.n_rows,
                              &grad_w_chunks[chunk, 0], &grad_b_chunks[chunk, 0])
        if grad_w_out != NULL:
            # (prange ends with a barrier: every chunk is stored.) Each value's chunks
            # are added in order, whichever thread adds them.
            for block in prange(n_sum_blocks, schedule="static"):
                _sum_chunk_columns(&grad_w_chunks[0, 0], &grad_b_chunks[0, 0],
                                   n_chunks, n_filters * g.n_rows, n_filters,
                                   block * _SUM_COLUMNS, grad_w_out, grad_b_out)


# Values per task when the chunk sums are added on the threads.
cdef Py_ssize_t _SUM_COLUMNS = 256


cdef void _sum_chunk_columns(const floating *grad_w_chunks,  # IN  (n_chunks, n_w)
                             const floating *grad_b_chunks,  # IN  (n_chunks, n_b)
                             Py_ssize_t n_chunks, Py_ssize_t n_w, Py_ssize_t n_b,
                             Py_ssize_t start,  # IN  first of _SUM_COLUMNS values
                             floating *grad_w,  # OUT (n_w,)
                             floating *grad_b) noexcept nogil:  # OUT (n_b,)
    """Values [start, start + _SUM_COLUMNS) of grad_w followed by grad_b, each the sum
    of its chunks' rows added in order (``sum_rows_in_order`` on that block)."""
    cdef Py_ssize_t stop = min(start + _SUM_COLUMNS, n_w + n_b)
    cdef Py_ssize_t w_stop = min(stop, n_w), b_start = max(start, n_w) - n_w
    if start < w_stop:
        sum_rows_in_order(grad_w_chunks + start, n_chunks, w_stop - start, n_w,
                          grad_w + start)
    if b_start < stop - n_w:
        sum_rows_in_order(grad_b_chunks + b_start, n_chunks, stop - n_w - b_start, n_b,
                          grad_b + b_start)


cdef void _store_chunk_sums(const floating *acc, const WgradLayout *lay,
                            Py_ssize_t n_filters, Py_ssize_t n_rows,
                            floating *grad_w,          # OUT (D*R,) one chunk's sums
                            floating *grad_b) noexcept nogil:  # OUT (D,)
    """Write a chunk's running sums as (filters, taps) weights and (filters,) biases.

    The wide layout holds one partial sum per lane; they are added lane by lane in
    order, so the result depends on the shapes only.
    """
    cdef Py_ssize_t d, r, l
    cdef Py_ssize_t n_taps = lay.n_taps, lanes = lay.lanes, dv = lay.n_acc // n_taps
    cdef bint wide = lay.wide
    cdef floating total
    for d in range(n_filters):
        for r in range(n_taps):
            if wide:
                total = 0
                for l in range(lanes):
                    total = total + acc[(d * n_taps + r) * lanes + l]
            else:
                total = acc[r * dv + d]
            if r < n_rows:
                grad_w[d * n_rows + r] = total
            else:
                grad_b[d] = total


cdef void _backward_im2col(const floating[:, :, :, :, ::1] grad_y,
                           const floating[:, :, :, :, ::1] x,
                           const floating[:, :, :, :, ::1] w,
                           floating[:, :, :, :, ::1] grad_x,
                           floating[:, ::1] grad_w_chunks,
                           floating[:, ::1] grad_b_chunks,
                           floating[:, ::1] scratch,  # OUT (n_threads, _scratch_size)
                           const Geometry *g, int n_threads) noexcept nogil:
    cdef:
        Py_ssize_t n_samples = x.shape[0], n_filters = w.shape[0]
        Py_ssize_t n_chunks = grad_w_chunks.shape[0]
        Py_ssize_t chunk, n, start, stop
        bint want_grad_x = grad_x is not None
        bint pointwise = _is_pointwise(g)
        floating zero = 0, one = 1
        floating *col = NULL
        const floating *col_in
        const floating *gy_n
        floating *gw
    with parallel(num_threads=n_threads):
        col = &scratch[threadid(), 0]
        for chunk in prange(n_chunks, schedule="static"):
            # Assigned (not written through a pointer) so that prange makes them private.
            start = _chunk_start(chunk, n_chunks, n_samples)
            stop = _chunk_start(chunk + 1, n_chunks, n_samples)
            gw = &grad_w_chunks[chunk, 0]
            for n in range(start, stop):
                gy_n = &grad_y[n, 0, 0, 0, 0]
                if pointwise:
                    col_in = &x[n, 0, 0, 0, 0]
                else:
                    _im2col(x[n], g, col)
                    col_in = col
                # Row-major gw (D, R) += gy_n (D, P) @ col^T (P, R).
                _gemm(c'T', c'N', <int> g.n_rows, <int> n_filters, <int> g.n_cols,
                      one, col_in, <int> g.n_cols, gy_n, <int> g.n_cols,
                      zero if n == start else one, gw, <int> g.n_rows)
                _add_bias_grad(gy_n, n_filters, g.n_cols, &grad_b_chunks[chunk, 0],
                               n == start)
                if want_grad_x:
                    # Row-major col (R, P) = w^T (R, D) @ gy_n (D, P).
                    _gemm(c'N', c'T', <int> g.n_cols, <int> g.n_rows, <int> n_filters,
                          one, gy_n, <int> g.n_cols, &w[0, 0, 0, 0, 0], <int> g.n_rows,
                          zero, col, <int> g.n_cols)
                    # Zeroed here, sample by sample, because col2im adds into it.
                    memset(&grad_x[n, 0, 0, 0, 0], 0,
                           g.channels * g.size[0] * g.size[1] * g.size[2] * sizeof(floating))
                    _col2im_add(col, g, grad_x[n])


def conv_backward(const floating[:, :, :, :, ::1] grad_y,  # IN  (N, D, O0, O1, O2)
                  const floating[:, :, :, :, ::1] x,       # IN  (N, C, X0, X1, X2)
                  const floating[:, :, :, :, ::1] w,       # IN  (D, C, K0, K1, K2)
                  floating[:, :, :, :, ::1] grad_x,        # OUT (N, C, X0, X1, X2) or None
                  floating[:, :, :, :, ::1] grad_w,        # OUT as w
                  floating[::1] grad_b,                    # OUT (D,)
                  tuple stride, tuple pad_lo, tuple dilation,
                  int n_threads, bint inputs_finite=True):
    """Gradients of ``conv_forward`` with respect to x (if ``grad_x`` is given), w and b.

    ``inputs_finite=False`` forces the im2col path: the shifted path multiplies the
    zeros it lays between rows by real cells, and 0 * inf = NaN would leak into sums
    that do not mathematically contain the infinite cell. The same holds for the
    polyphase path of strided signals (``_backward_rows``).

    The weight and bias gradients are reduced as ``conv_pool_backward`` reduces them
    (one protocol for both): the samples are split into ``n_chunks`` contiguous chunks
    that depend on the batch size only (chunk ``k`` holds samples
    ``ceil(k*N/n_chunks)`` up to ``ceil((k+1)*N/n_chunks)``), each chunk summed
    sample by sample, then the chunk sums added in chunk order. The outputs are
    overwritten (zeros for an empty batch).
    """
    cdef:
        tuple x_shape = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        tuple w_shape = (w.shape[0], w.shape[1], w.shape[2], w.shape[3], w.shape[4])
        tuple y_shape = (grad_y.shape[0], grad_y.shape[1], grad_y.shape[2],
                         grad_y.shape[3], grad_y.shape[4])
        Geometry g = _geometry(x_shape, w_shape, y_shape, stride, pad_lo, dilation)
        floating[:, ::1] scratch
        floating[:, ::1] grad_w_chunks
        floating[:, ::1] grad_b_chunks
        const floating[:, :, :, :, ::1] no_grad_pooled = None
        const uint8_t[:, :, :, :, ::1] no_codes = None
        Py_ssize_t n_chunks
        Path path
    if x.shape[0] == 0:
        grad_w[...] = 0
        grad_b[...] = 0
        return
    grad_w_chunks, grad_b_chunks = _reduction_chunks(
        &g, x.shape[0], np.float32 if floating is float else np.float64)
    n_chunks = grad_w_chunks.shape[0]
    n_threads = max(1, min(n_threads, n_chunks))
    path = _path(&g) if inputs_finite else IM2COL
    if path == SHIFTED:
        # The chunk sums are added on the threads, in the kernel's parallel region.
        _run_backward_shifted(grad_y, no_grad_pooled, no_codes, no_grad_pooled, x, w,
                              grad_x, grad_w_chunks, grad_b_chunks, &g, n_threads, NULL,
                              &grad_w[0, 0, 0, 0, 0], &grad_b[0])
        return
    if path == ROWS:
        _run_backward_rows(grad_y, x, w, grad_x, grad_w_chunks, grad_b_chunks, &g,
                           n_threads)
    else:
        scratch = _scratch(&g, False, True, grad_x is not None, n_threads,
                           np.float32 if floating is float else np.float64, 0)
        with nogil:
            _backward_im2col(grad_y, x, w, grad_x, grad_w_chunks, grad_b_chunks,
                             scratch, &g, n_threads)
    with nogil:
        sum_rows_in_order(&grad_w_chunks[0, 0], n_chunks, grad_w_chunks.shape[1],
                          grad_w_chunks.shape[1], &grad_w[0, 0, 0, 0, 0])
        sum_rows_in_order(&grad_b_chunks[0, 0], n_chunks, grad_b_chunks.shape[1],
                          grad_b_chunks.shape[1], &grad_b[0])


cdef tuple _reduction_chunks(const Geometry *g, Py_ssize_t n_samples, object dtype):
    """Scratch for the per-chunk sums of the weight and bias gradients: one row per
    chunk of samples, ``min(n_samples, _REDUCTION_CHUNKS)`` rows (the batch size
    alone decides)."""
    cdef Py_ssize_t n_chunks = min(n_samples, _REDUCTION_CHUNKS)
    return (np.empty((n_chunks, g.n_filters * g.n_rows), dtype=dtype),
            np.empty((n_chunks, g.n_filters), dtype=dtype))


# --------------------------------------------------------------------------------
# Strided signals' backward: the polyphase copy of x again
# --------------------------------------------------------------------------------
#
# With s phases of the padded input, tap k of output o reads phase (k*dil) % s at
# o + (k*dil) // s (see _forward_pool_rows). The weight gradient is then the stride-1
# one over those offsets (the wgrad micro-kernels, positions o = 0..O-1). The input
# gradient of padded cell m*s + r gathers the taps k with (k*dil) % s == r, from
# output m - (k*dil) // s: per phase, a shifted-row GEMM over grad_y padded with
# E = max (k*dil) // s zeros in front, whose cells are then laid back every s-th.

cdef struct RowGrad:
    Py_ssize_t stride        # s: phases
    Py_ssize_t phase_ld      # row stride of the polyphase copy of x
    Py_ssize_t phase_size    # C*s*phase_ld + SKC_SLACK; the ones row follows
    Py_ssize_t n_pos_ld      # positions the wide weight-gradient kernel reads: O rounded up
    Py_ssize_t reach         # E: the largest (k*dil) // s
    Py_ssize_t n_cells       # cells per phase of the padded input's real part, at most
    Py_ssize_t gy_ld         # row stride of the padded grad_y (input gradient)
    Py_ssize_t gx_ld         # row stride of one phase's input gradient
    WgradLayout lay
    Py_ssize_t scratch       # per-thread values


cdef RowGrad _row_grad(const Geometry *g, Py_ssize_t lanes, bint want_grad_x) noexcept nogil:
    cdef RowGrad rg
    cdef Py_ssize_t s = g.stride[2], n_out = g.out[2]
    # The padded length the forward's copy spans (all of the signal's cells).
    cdef Py_ssize_t padded = max((n_out - 1) * s + 1 + g.dil[2] * (g.ksize[2] - 1),
                                 g.pad[2] + g.size[2])
    rg.stride = s
    # A vector past a power of two, as in _row_pool.
    rg.phase_ld = _round_up((padded + s - 1) // s) + SKC_SLACK
    rg.phase_size = g.channels * s * rg.phase_ld + SKC_SLACK
    rg.n_pos_ld = _round_up(n_out)
    rg.reach = (g.dil[2] * (g.ksize[2] - 1)) // s
    rg.n_cells = (g.pad[2] + g.size[2] - 1) // s + 1
    rg.gy_ld = _round_up(rg.reach + rg.n_cells) + SKC_SLACK
    rg.gx_ld = _round_up(rg.n_cells)
    rg.lay.lanes = lanes
    rg.lay.n_taps = g.n_rows + 1
    rg.lay.wide = 2 * g.n_filters <= lanes
    if rg.lay.wide:
        # grad_y rows of whole vectors, zeros past the outputs.
        rg.lay.g_plane = rg.n_pos_ld
        rg.lay.n_in = g.n_filters * rg.lay.g_plane + SKC_SLACK
        rg.lay.n_acc = g.n_filters * rg.lay.n_taps * lanes
    else:
        rg.lay.g_plane = 0
        rg.lay.n_in = n_out * _round_up(g.n_filters)
        rg.lay.n_acc = rg.lay.n_taps * _round_up(g.n_filters)
    # The copy, the ones (the bias's tap), grad_y for the weight gradient and the
    # running sums, then the padded grad_y and one phase of grad_x.
    rg.scratch = (rg.phase_size + rg.n_pos_ld + SKC_SLACK + rg.lay.n_in
                  + rg.lay.n_acc)
    if want_grad_x:
        rg.scratch += g.n_filters * rg.gy_ld + SKC_SLACK + g.channels * rg.gx_ld
    rg.scratch = _round_up(rg.scratch) + SKC_SLACK
    return rg


cdef tuple _row_grad_tables(const Geometry *g, const RowGrad *rg):
    """``(offsets_fwd, positions, phase_start, taps, offsets_bwd, vec_at)`` of
    ``_backward_rows`` (cached as ``_shifted_tables``): the taps of x for the weight
    gradient (the last one the ones row), every output position, and per phase r the
    kernel taps ``taps[phase_start[r]:phase_start[r + 1]]`` whose (k*dil) % s is r
    with their offsets ``(d, k)`` in the padded grad_y, phase after phase."""
    cdef tuple key = ("rowgrad", rg.lay.lanes, g.channels, g.n_filters, g.size[2],
                      g.ksize[2], g.out[2], g.pad[2], g.dil[2], rg.stride)
    cdef Py_ssize_t c, k, d, r, at, n_taps = g.ksize[2], s = rg.stride
    cdef Py_ssize_t[::1] offsets_fwd, phase_start, taps, offsets_bwd
    tables = _TABLES.get(key)
    if tables is not None:
        return tables
    offsets_fwd = np.empty(g.n_rows + 1, dtype=np.intp)
    for c in range(g.channels):
        for k in range(n_taps):
            at = k * g.dil[2]
            offsets_fwd[c * n_taps + k] = (c * s + at % s) * rg.phase_ld + at // s
    offsets_fwd[g.n_rows] = rg.phase_size
    phase_start = np.zeros(s + 1, dtype=np.intp)
    taps = np.empty(n_taps, dtype=np.intp)
    offsets_bwd = np.empty(g.n_filters * n_taps, dtype=np.intp)
    at = 0
    for r in range(s):
        phase_start[r] = at
        for k in range(n_taps):
            if (k * g.dil[2]) % s == r:
                taps[at] = k
                at += 1
    phase_start[s] = at
    for r in range(s):
        for d in range(g.n_filters):
            for k in range(phase_start[r], phase_start[r + 1]):
                offsets_bwd[g.n_filters * phase_start[r] + d * (phase_start[r + 1]
                                                                - phase_start[r])
                            + k - phase_start[r]] = (
                    d * rg.gy_ld + rg.reach - (taps[k] * g.dil[2]) // s)
    tables = (offsets_fwd.base, np.arange(g.out[2], dtype=np.intp), phase_start.base,
              taps.base, offsets_bwd.base,
              np.arange(0, rg.gx_ld, rg.lay.lanes, dtype=np.intp))
    return _cache_tables(key, tables)


cdef object _pack_phase_taps(const floating[:, :, :, :, ::1] w,
                             const Py_ssize_t[::1] phase_start,
                             const Py_ssize_t[::1] taps):
    """The input gradient's weights of each phase packed for ``_rowgemm``: phase r's
    (C, D * n_r) matrix ``w[d, c, taps[...]]`` (flat tap numbers over the kernel's
    axes), columns (d, tap) in the order of ``offsets_bwd``, the phases one after
    another."""
    cdef Py_ssize_t n_filters = w.shape[0], channels = w.shape[1]
    cdef Py_ssize_t n_taps = w.shape[2] * w.shape[3] * w.shape[4]
    cdef Py_ssize_t r, c, d, k, n_r, at
    cdef const floating *w_flat = &w[0, 0, 0, 0, 0]
    cdef floating[::1] packed = np.empty(
        n_filters * channels * n_taps,
        dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] matrix
    for r in range(phase_start.shape[0] - 1):
        n_r = phase_start[r + 1] - phase_start[r]
        if n_r == 0:
            continue
        matrix = np.empty(channels * n_filters * n_r,
                          dtype=np.float32 if floating is float else np.float64)
        at = 0
        for c in range(channels):
            for d in range(n_filters):
                for k in range(phase_start[r], phase_start[r + 1]):
                    matrix[at] = w_flat[(d * channels + c) * n_taps + taps[k]]
                    at += 1
        rowgemm_pack(channels, n_filters * n_r, &matrix[0], n_filters * n_r, 1,
                     &packed[channels * n_filters * phase_start[r]])
    return packed.base


cdef _run_backward_rows(const floating[:, :, :, :, ::1] grad_y,
                        const floating[:, :, :, :, ::1] x,
                        const floating[:, :, :, :, ::1] w,
                        floating[:, :, :, :, ::1] grad_x,
                        floating[:, ::1] grad_w_chunks,
                        floating[:, ::1] grad_b_chunks,
                        const Geometry *g, int n_threads):
    """The strided signals' backward: per-call tables and scratch, then the kernel;
    the chunk sums are left in ``grad_w_chunks`` / ``grad_b_chunks``."""
    cdef:
        RowGrad rg = _row_grad(g, 16 if floating is float else 8, grad_x is not None)
        tuple tables = _row_grad_tables(g, &rg)
        const Py_ssize_t[::1] offsets_fwd = tables[0]
        const Py_ssize_t[::1] positions = tables[1]
        const Py_ssize_t[::1] phase_start = tables[2]
        const Py_ssize_t[::1] taps = tables[3]
        const Py_ssize_t[::1] offsets_bwd = tables[4]
        const Py_ssize_t[::1] vec_at = tables[5]
        const floating[::1] w_phases
        floating[:, ::1] scratch = np.empty(
            (n_threads, rg.scratch), dtype=np.float32 if floating is float else np.float64)
    w_phases = None
    if grad_x is not None:
        w_phases = _pack_phase_taps(w, phase_start, taps)
    with nogil:
        _backward_rows(grad_y, x, w_phases, grad_x, grad_w_chunks, grad_b_chunks,
                       offsets_fwd, positions, phase_start, offsets_bwd, vec_at, scratch,
                       g, &rg, n_threads)


cdef void _backward_rows(const floating[:, :, :, :, ::1] grad_y,  # IN  (N, D, 1, 1, O)
                         const floating[:, :, :, :, ::1] x,       # IN  (N, C, 1, 1, W)
                         const floating[::1] w_phases,  # IN  _pack_phase_taps, or None
                         floating[:, :, :, :, ::1] grad_x,  # OUT as x, or None
                         floating[:, ::1] grad_w_chunks,    # OUT (n_chunks, D*R)
                         floating[:, ::1] grad_b_chunks,    # OUT (n_chunks, D)
                         const Py_ssize_t[::1] offsets_fwd,
                         const Py_ssize_t[::1] positions,
                         const Py_ssize_t[::1] phase_start,
                         const Py_ssize_t[::1] offsets_bwd,
                         const Py_ssize_t[::1] vec_at,
                         floating[:, ::1] scratch,  # OUT (n_threads, rg.scratch)
                         const Geometry *g, const RowGrad *rg,
                         int n_threads) noexcept nogil:
    """Per chunk of samples: each sample's polyphase copy, its weight (and bias)
    gradient added to the chunk's sums, and its input gradient phase by phase; the
    chunk's sums then stored (added in order by the caller, as ``conv_backward``
    does)."""
    cdef:
        Py_ssize_t n_samples = x.shape[0], n_filters = g.n_filters, channels = g.channels
        Py_ssize_t n_chunks = grad_w_chunks.shape[0], n_out = g.out[2]
        Py_ssize_t width = g.size[2], pad = g.pad[2], s = rg.stride
        Py_ssize_t lanes = rg.lay.lanes, dv = _round_up(n_filters)
        Py_ssize_t chunk, n, start, stop, d, c, r, i0, m0, count, t, n_r, i
        bint want_grad_x = grad_x is not None, wide = rg.lay.wide
        floating *xph = NULL
        floating *ones = NULL
        floating *gy_in = NULL
        floating *gw_acc = NULL
        floating *gyp = NULL
        floating *gx_buf = NULL
        const floating *gy_n
        floating *gx_n
    with parallel(num_threads=n_threads):
        xph = &scratch[threadid(), 0]
        ones = xph + rg.phase_size
        gy_in = ones + rg.n_pos_ld + SKC_SLACK
        gw_acc = gy_in + rg.lay.n_in
        gyp = gw_acc + rg.lay.n_acc
        gx_buf = gyp + n_filters * rg.gy_ld + SKC_SLACK
        memset(xph, 0, rg.phase_size * sizeof(floating))
        for i in range(rg.n_pos_ld + SKC_SLACK):
            ones[i] = 1
        # Zeros that every sample keeps: past the outputs in the wide layout, the
        # lanes past the filters in the narrow one, around grad_y in the padded copy.
        memset(gy_in, 0, rg.lay.n_in * sizeof(floating))
        if want_grad_x:
            memset(gyp, 0, (n_filters * rg.gy_ld + SKC_SLACK) * sizeof(floating))
        for chunk in prange(n_chunks, schedule="static"):
            start = _chunk_start(chunk, n_chunks, n_samples)
            stop = _chunk_start(chunk + 1, n_chunks, n_samples)
            memset(gw_acc, 0, rg.lay.n_acc * sizeof(floating))
            for n in range(start, stop):
                _phase_copy(&x[n, 0, 0, 0, 0], channels, width, pad, s, rg.phase_ld, xph)
                gy_n = &grad_y[n, 0, 0, 0, 0]
                if wide:
                    for d in range(n_filters):
                        memcpy(gy_in + d * rg.lay.g_plane, gy_n + d * n_out,
                               n_out * sizeof(floating))
                    _wgrad_wide(n_filters, rg.lay.n_taps, rg.n_pos_ld, gy_in,
                                rg.lay.g_plane, xph, &offsets_fwd[0], gw_acc)
                else:
                    _transpose_pad(gy_n, n_filters, n_out, gy_in, dv)
                    _wgrad(rg.lay.n_taps, dv, n_out, &positions[0], xph, &offsets_fwd[0],
                           gy_in, dv, gw_acc, dv)
                if not want_grad_x:
                    continue
                for d in range(n_filters):
                    memcpy(gyp + d * rg.gy_ld + rg.reach, gy_n + d * n_out,
                           n_out * sizeof(floating))
                gx_n = &grad_x[n, 0, 0, 0, 0]
                for r in range(s):
                    # The signal's cells i of phase r: i0, i0 + s, ..., at cells
                    # m0, m0 + 1, ... of the phase.
                    i0 = (r - pad % s + s) % s
                    if i0 >= width:
                        continue
                    m0 = (i0 + pad) // s
                    count = (width - i0 + s - 1) // s
                    n_r = phase_start[r + 1] - phase_start[r]
                    if n_r == 0:  # no tap reaches this phase
                        for c in range(channels):
                            for t in range(count):
                                gx_n[c * width + i0 + t * s] = 0
                        continue
                    rowgemm(channels, (m0 + count + lanes - 1) // lanes, &vec_at[0],
                             n_filters * n_r,
                             &w_phases[channels * n_filters * phase_start[r]], gyp,
                             &offsets_bwd[n_filters * phase_start[r]], gx_buf,
                             rg.gx_ld, False)
                    for c in range(channels):
                        for t in range(count):
                            gx_n[c * width + i0 + t * s] = gx_buf[c * rg.gx_ld + m0 + t]
            _store_chunk_sums(gw_acc, &rg.lay, n_filters, g.n_rows,
                              &grad_w_chunks[chunk, 0], &grad_b_chunks[chunk, 0])


def conv_pool_backward(const floating[:, :, :, :, ::1] grad_pooled,  # IN  (N, D, 1, P1, P2)
                       const uint8_t[:, :, :, :, ::1] codes,        # IN  as grad_pooled
                       const floating[:, :, :, :, ::1] relu_out,    # IN  as grad_pooled or None
                       const floating[:, :, :, :, ::1] x,           # IN  (N, C, 1, X1, X2)
                       const floating[:, :, :, :, ::1] w,           # IN  (D, C, 1, K1, K2)
                       floating[:, :, :, :, ::1] grad_x,            # OUT as x, or None
                       floating[:, :, :, :, ::1] grad_w,            # OUT as w
                       floating[::1] grad_b,                        # OUT (D,)
                       tuple conv_out,                              # IN  (1, O1, O2)
                       tuple stride, tuple pad_lo, tuple dilation,
                       tuple pool_window, tuple pool_stride,  # IN  (rows, cols) each
                       int n_threads, bint average=False, bint relu=False):
    """Gradients of ``conv_pool_forward`` with respect to x (if ``grad_x`` is given), w
    and b, from the pooled output's gradient and the forward's ``codes``.

    ``pool_window`` and ``pool_stride`` are the forward's: ``(2, 2)`` and ``(2, 2)``
    for images, ``(1, p)`` and ``(1, s)`` for signals (any window of at most
    ``MAX_WINDOW_CELLS`` cells; windows may overlap). The caller guarantees that
    every window lies inside the convolution's output.

    With ``relu_out`` (the forward's output when it applied relu), the relu's backward
    comes first. With ``average`` (then ``relu_out`` is None), the pooling was an
    average, after relu if ``relu``: the codes hold relu's bits. Equals
    ``conv_backward`` of the pooling's backward bit for bit: each
    sample's convolution gradient is rebuilt in cache (zeros except at the winning
    cells), never stored for the whole batch, and the weight and bias gradients are
    summed per chunk of samples, the chunks then added in order, as ``conv_backward``
    does.

    Returns
    -------
    bool
        False when x, w or ``grad_pooled`` holds an inf or a NaN: the outputs are then
        garbage and the caller takes a general path (the shifted path needs finite
        inputs; see ``conv_backward``). The check runs per sample inside the kernel,
        on the threads, so finite inputs cost no extra pass.
    """
    cdef:
        tuple x_shape = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        tuple w_shape = (w.shape[0], w.shape[1], w.shape[2], w.shape[3], w.shape[4])
        Geometry g = _geometry(x_shape, w_shape, (x.shape[0], w.shape[0]) + conv_out,
                               stride, pad_lo, dilation)
        const floating[:, :, :, :, ::1] no_grad_y = None
        Py_ssize_t n_samples = x.shape[0], n, n_chunks
        floating[:, ::1] grad_w_chunks
        floating[:, ::1] grad_b_chunks
        uint8_t[::1] nonfinite
        PoolCells pc = _pool_cells(pool_window, pool_stride, conv_out[2], average, relu)
    if n_samples == 0:
        grad_w[...] = 0
        grad_b[...] = 0
        return True
    if not _all_finite(&w[0, 0, 0, 0, 0], w.shape[0] * g.n_rows):
        return False
    grad_w_chunks, grad_b_chunks = _reduction_chunks(
        &g, n_samples, np.float32 if floating is float else np.float64)
    n_chunks = grad_w_chunks.shape[0]
    nonfinite = np.zeros(n_samples, dtype=np.uint8)
    n_threads = max(1, min(n_threads, n_chunks))
    _run_backward_shifted(no_grad_y, grad_pooled, codes, relu_out, x, w, grad_x,
                          grad_w_chunks, grad_b_chunks, &g, n_threads, &nonfinite[0],
                          &grad_w[0, 0, 0, 0, 0], &grad_b[0], &pc)
    for n in range(n_samples):
        if nonfinite[n]:
            return False
    return True


cdef _run_backward_shifted(const floating[:, :, :, :, ::1] grad_y,
                           const floating[:, :, :, :, ::1] grad_pooled,
                           const uint8_t[:, :, :, :, ::1] codes,
                           const floating[:, :, :, :, ::1] relu_out,
                           const floating[:, :, :, :, ::1] x,
                           const floating[:, :, :, :, ::1] w,
                           floating[:, :, :, :, ::1] grad_x,
                           floating[:, ::1] grad_w_chunks,
                           floating[:, ::1] grad_b_chunks,
                           const Geometry *g, int n_threads,
                           uint8_t *nonfinite=NULL, floating *grad_w_out=NULL,
                           floating *grad_b_out=NULL, const PoolCells *pc=NULL):
    """The stride-1 backward, from grad_y or from a pooled gradient: per-call tables,
    then the kernel (``nonfinite``, ``grad_w_out``, ``grad_b_out`` and ``pc``, the
    pooling's windows, as in ``_backward_shifted``)."""
    cdef:
        WgradLayout lay = _wgrad_layout(g, 16 if floating is float else 8)
        tuple tables = _shifted_tables(g, True, lay.lanes)
        const Py_ssize_t[::1] offsets_fwd = tables[0]
        const Py_ssize_t[::1] offsets_bwd = tables[1]
        const Py_ssize_t[::1] positions = tables[2]
        const Py_ssize_t[::1] vec_at = tables[3]
        const Py_ssize_t[::1] phase_start = tables[4]
        const Py_ssize_t[::1] taps = tables[5]
        const floating[::1] w_flipped
        floating[:, ::1] scratch = _scratch(
            g, True, True, grad_x is not None, n_threads,
            np.float32 if floating is float else np.float64, lay.lanes,
            grad_pooled is not None)
    # (C, D, K0, K1, K2) with every spatial axis reversed: the input gradient is a
    # "full" correlation of grad_y with the flipped kernel; strided, one per phase of
    # the taps that reach it. Only the input gradient reads it (a first layer has
    # none).
    w_flipped = None
    if grad_x is not None:
        w_flipped = (_pack_flipped(w) if _unit_stride(g)
                     else _pack_phase_taps(w, phase_start, taps))
    with nogil:
        _backward_shifted(grad_y, grad_pooled, codes, relu_out, x, w_flipped, grad_x,
                          grad_w_chunks, grad_b_chunks, offsets_fwd, offsets_bwd,
                          positions, vec_at, phase_start, scratch, g, &lay, pc,
                          n_threads, nonfinite, grad_w_out, grad_b_out)
