/*
 * Vectorised 2x2, stride-2 max/min pooling with argmax/argmin indices (pool.pyx):
 * LeNet's pooling. The bodies are in poolkernels_impl.h, instantiated below for
 * float and double.
 *
 * Why its own kernel: LeNet's output rows are short (14 or 7 cells), too short for a
 * vector loop along a row with a scalar tail. Here one row of outputs is computed
 * in whole vectors of 8 lanes, the lanes past the row's end computing junk that
 * lands on the next row's outputs (or cells), which the caller writes afterwards.
 * The caller guarantees those reads and writes stay inside the plane.
 *
 * pool2_row is the signals' counterpart (1-D windows of 2, stride 2) on whole vectors
 * only, the caller taking the last windows one at a time.
 *
 * pool2x2_codes_row does the same on a convolution's output before it is stored (the
 * convolution fused with the pooling that follows it), recording which cell of its
 * window won rather than a flat index. pool_taps_codes_row is its 1-D counterpart for
 * any window and stride: the convolution computes each cell of the windows as a row
 * of its own (one row per tap, see conv.pyx's polyphase path), so the pooling is an
 * elementwise max or min over those rows, with no shuffles.
 *
 * Semantics, as in the general kernel: the first extreme cell of a window in
 * row-major order wins (strict comparison), and a NaN beats any number, the first
 * NaN winning.
 */
#ifndef SKCONV_POOLKERNELS_H
#define SKCONV_POOLKERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "common/simd.h"

/* 8 lanes: 32-byte float or 64-byte double vectors, with integer masks as wide. */
#define SKC_POOL_LANES 8
typedef float skc_pf __attribute__((vector_size(32), aligned(4)));
typedef int32_t skc_pf_mask __attribute__((vector_size(32)));
typedef double skc_pd __attribute__((vector_size(64), aligned(8)));
typedef int64_t skc_pd_mask __attribute__((vector_size(64)));
typedef int64_t skc_pool_index __attribute__((vector_size(64), aligned(8)));
typedef uint8_t skc_pool_code __attribute__((vector_size(8), aligned(1)));

#define SKC_T float
#define SKC_VT skc_pf
#define SKC_VI skc_pf_mask
#define SKC_NAME(name) name##_f
#include "pool/poolkernels_impl.h"
#undef SKC_T
#undef SKC_VT
#undef SKC_VI
#undef SKC_NAME

#define SKC_T double
#define SKC_VT skc_pd
#define SKC_VI skc_pd_mask
#define SKC_NAME(name) name##_d
#include "pool/poolkernels_impl.h"
#undef SKC_T
#undef SKC_VT
#undef SKC_VI
#undef SKC_NAME

#endif /* SKCONV_POOLKERNELS_H */
