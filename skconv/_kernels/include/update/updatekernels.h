/*
 * Fused optimizer step for the training loop (update.pyx): the L2 term and Adam's
 * update of one parameter array in one pass over memory, where the numpy version
 * makes eleven (one per operation and temporary); and the L2 penalty's sum of
 * squares.
 *
 * Bit for bit the numpy sequence of skconv._nn.optimizers.Adam (itself scikit-learn's
 * maths) after skconv._nn.optimizers.add_l2: every operation is its own C
 * statement rounded to SKC_T, in the same order, with the same constants (Python
 * floats rounded once to SKC_T, as numpy does with a Python scalar). That needs the
 * compiler not to contract a multiply and an add into one FMA (GCC does so across
 * statements by default, hence SKC_EXACT_FP from common/simd.h), while its
 * no-math-errno lets sqrt vectorise (IEEE sqrt is correctly rounded, as numpy's).
 */
#ifndef SKCONV_UPDATEKERNELS_H
#define SKCONV_UPDATEKERNELS_H

#include <math.h>
#include <stddef.h>

#include "common/simd.h"

#define SKC_T float
#define SKC_SQRT sqrtf
#define SKC_NAME(name) name##_f
#include "update/updatekernels_impl.h"
#undef SKC_T
#undef SKC_SQRT
#undef SKC_NAME

#define SKC_T double
#define SKC_SQRT sqrt
#define SKC_NAME(name) name##_d
#include "update/updatekernels_impl.h"
#undef SKC_T
#undef SKC_SQRT
#undef SKC_NAME

#endif /* SKCONV_UPDATEKERNELS_H */
