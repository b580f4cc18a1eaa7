/*
 * Register-blocked small-GEMM micro-kernels for the convolution kernels (conv.pyx).
 * The bodies are in microkernels_impl.h, instantiated below for float and double.
 *
 * Why not BLAS: LeNet-sized convolutions are GEMMs with one tiny dimension (6 or 16
 * filters, 25 or 150 taps), where BLAS spends its time packing. These kernels read
 * their right-hand operand through per-row offsets into a zero-padded input, so a
 * stride-1 convolution needs no im2col copy at all ("shifted-row" GEMM).
 *
 * Portability: see common/simd.h (per-CPU clones, GCC vector extensions).
 *
 * Determinism: every output element is a sum over k (or p) in increasing order, so a
 * result depends only on the inputs, never on threads or blocking.
 */
#ifndef SKCONV_MICROKERNELS_H
#define SKCONV_MICROKERNELS_H

#include <stddef.h>

#include "common/simd.h"

/* 64-byte vectors; aligned(sizeof(T)) makes loads and stores through them unaligned. */
typedef float skc_vf __attribute__((vector_size(64), aligned(4)));
typedef double skc_vd __attribute__((vector_size(64), aligned(8)));

/*
 * rowgemm: C[i*ldc + p] = (accumulate ? C[i*ldc + p] : 0)
 *                         + sum_{k<K} A[i, k] * B[b_off[k] + p]
 * for i < M and every p in the vectors [vec_at[j], vec_at[j] + VL), j < n_vec. Rows
 * of B are found through b_off, so B can be a padded image whose "rows" are shifted
 * windows. There is no scalar tail: every vector is computed whole, so the caller
 * must let those C elements be written and B elements be read; outputs it does not
 * need are garbage. Without accumulate, each C element is a function of its column
 * p alone, so vectors may overlap (vectors laid per output row skip the padding
 * between image rows and may run into the next row): an element written twice gets
 * the same value twice. With accumulate, vectors must not overlap. A is given
 * packed by rowgemm_pack (row blocks as contiguous (K, rows) panels).
 *
 * wgrad: W[r*ldw + l] += sum_{p<n_pos} B[b_off[r] + pos[p]] * G[p*ldg + l]
 * for r < R, l < DV: the weight gradient, vectorised over the output channels l
 * (DV is the channel count rounded up to whole vectors; G's extra lanes are zero).
 *
 * wgrad_wide: the same sums for few channels, vectorised over positions instead:
 * per-lane partial sums ACC[(d*R + r)*VL + l] that the caller reduces in order.
 *
 * A scalar tail would cost as much as the vector body for LeNet widths (a 4-cycle
 * dependency chain per element), hence the slack contract.
 */
#define SKC_SLACK 16


/* One implementation, instantiated for float and double. */
#define SKC_T float
#define SKC_VT skc_vf
#define SKC_VL 16
#define SKC_NAME(name) name##_f
#include "conv/microkernels_impl.h"
#undef SKC_T
#undef SKC_VT
#undef SKC_VL
#undef SKC_NAME

#define SKC_T double
#define SKC_VT skc_vd
#define SKC_VL 8
#define SKC_NAME(name) name##_d
#include "conv/microkernels_impl.h"
#undef SKC_T
#undef SKC_VT
#undef SKC_VL
#undef SKC_NAME

#endif /* SKCONV_MICROKERNELS_H */
