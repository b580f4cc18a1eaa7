/*
 * Batch normalisation's passes over one row of cells (norm.pyx): the statistics'
 * sums, the normalisation, the input gradient's sums and the input gradient, in
 * vectors of 8 cells on every CPU clone; the plain lane sum also serves sums.pxd's
 * lane_sum. The bodies are in normkernels_impl.h, instantiated below for float and
 * double.
 *
 * Each computes the scalar definition in its comment: a sum runs in 8 double lanes,
 * cell i into lane i % 8, the lanes added pairwise at the end (((0 + 1) + (2 + 3)) +
 * ((4 + 5) + (6 + 7))); every other value is computed cell by cell with the
 * operations of the comment in their order, in double where it says double and
 * rounded where it rounds. No FMA contraction
 * (SKC_EXACT_FP), so every clone gives the same bits, and the thread count never
 * changes the order.
 *
 * unpool2x2_row is the backward of a 2x2/stride-2 max or min pooling (norm.pyx's
 * fused batch norm + pooling): it spreads one row of window gradients onto the row
 * pair of cells below them, in whole vectors of 8 windows.
 */
#ifndef SKCONV_NORMKERNELS_H
#define SKCONV_NORMKERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/simd.h"

#define SKC_NORM_LANES 8
typedef double skc_nd __attribute__((vector_size(64)));
typedef float skc_nf __attribute__((vector_size(32)));
typedef int64_t skc_nd_mask __attribute__((vector_size(64)));
typedef int32_t skc_nf_mask __attribute__((vector_size(32)));
typedef uint8_t skc_n_codes __attribute__((vector_size(8)));

/* A row's sum and its dot product with another row (returned by value: in a
 * Cython prange body the assignment makes the result private to each thread). */
typedef struct {
    double sum;
    double dot;
} skc_sum_dot;

SKC_ALWAYS_INLINE double skc_norm_add_lanes(skc_nd acc)
{
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

#define SKC_T float
#define SKC_VT skc_nf
#define SKC_VI skc_nf_mask
#define SKC_NAME(name) name##_f
#include "norm/normkernels_impl.h"
#undef SKC_T
#undef SKC_VT
#undef SKC_VI
#undef SKC_NAME

#define SKC_T double
#define SKC_VT skc_nd
#define SKC_VI skc_nd_mask
#define SKC_NAME(name) name##_d
#include "norm/normkernels_impl.h"
#undef SKC_T
#undef SKC_VT
#undef SKC_VI
#undef SKC_NAME

#endif /* SKCONV_NORMKERNELS_H */
