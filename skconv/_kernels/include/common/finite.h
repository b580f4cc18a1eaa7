/*
 * Finiteness test of an array, for the ops that must choose a path before running a
 * kernel (the shifted convolution paths need finite inputs: a zero times an inf in
 * the padding would make a NaN that the true result does not have).
 *
 * numpy's `isfinite(x.sum())` makes a serial pairwise sum (several times per
 * minibatch); this is a compare-and-or that vectorises.
 * v - v is 0 exactly for finite v and NaN for inf or NaN, and NaN != 0.
 */
#ifndef SKCONV_FINITEKERNELS_H
#define SKCONV_FINITEKERNELS_H

#include <stddef.h>

#include "common/simd.h"

/* One body for float and double. */
#define SKC_DEFINE_ALL_FINITE(name, T)                                             \
    SKC_CLONES static int name(ptrdiff_t n, const T *values)                       \
    {                                                                              \
        int bad = 0;                                                               \
        ptrdiff_t i;                                                               \
        for (i = 0; i < n; i++)                                                    \
            bad |= (values[i] - values[i]) != 0;                                   \
        return !bad;                                                               \
    }

SKC_DEFINE_ALL_FINITE(skc_all_finite_f, float)
SKC_DEFINE_ALL_FINITE(skc_all_finite_d, double)

#endif /* SKCONV_FINITEKERNELS_H */
