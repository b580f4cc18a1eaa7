/*
 * Register-blocked small-GEMM micro-kernels for the convolution kernels (_conv.pyx).
 *
 * Why not BLAS: LeNet-sized convolutions are GEMMs with one tiny dimension (6 or 16
 * filters, 25 or 150 taps), where BLAS spends its time packing. These kernels read
 * their right-hand operand through per-row offsets into a zero-padded input, so a
 * stride-1 convolution needs no im2col copy at all ("shifted-row" GEMM).
 *
 * Portability: the build has no -march flag; each kernel is compiled for AVX-512,
 * AVX2+FMA and baseline x86-64 (GCC/Clang target_clones, picked once at load time
 * by the dynamic linker). Elsewhere the plain C versions are used. GCC vector
 * extensions keep the accumulators in registers whatever the target width.
 *
 * Determinism: every output element is a sum over k (or p) in increasing order with
 * a fixed lane split, so a result depends only on the inputs, never on threads.
 */
#ifndef SKCONV_MICROKERNELS_H
#define SKCONV_MICROKERNELS_H

#include <stddef.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(_M_X64)) && !defined(SKCONV_NO_CLONES) \
    && !defined(__clang__) && defined(__linux__)
#define SKC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SKC_CLONES
#endif

#if defined(__GNUC__)
#define SKC_HAVE_VECTOR_EXT 1
/* 64-byte vectors; aligned(sizeof(T)) makes loads and stores through them unaligned. */
typedef float skc_vf __attribute__((vector_size(64), aligned(4)));
typedef double skc_vd __attribute__((vector_size(64), aligned(8)));
typedef float skc_vf8 __attribute__((vector_size(32)));
typedef float skc_vf4 __attribute__((vector_size(16)));
typedef double skc_vd4 __attribute__((vector_size(32)));
typedef double skc_vd2 __attribute__((vector_size(16)));
#else
#define SKC_HAVE_VECTOR_EXT 0
#endif

/*
 * rowgemm: C[i*ldc + p] = (accumulate ? C[i*ldc + p] : 0)
 *                         + sum_{k<K} A[i*a_row + k*a_col] * B[b_off[k] + p]
 * for i < M, p < N. Rows of B are found through b_off, so B can be a padded image
 * whose "rows" are shifted windows. There is no scalar tail: the last block runs a
 * full vector, so the caller must let C[i*ldc + p] be written and B[b_off[k] + p] be
 * read for every p < round_up(N, SKC_SLACK); those extra outputs are garbage.
 *
 * dotgemm: C[i*ldc + j] = (accumulate ? C[i*ldc + j] : 0)
 *                         + sum_{p<P} A[i*lda + p] * B[b_off[j] + p]
 * for i < M, j < N: dot products of rows, used for weight gradients. The dot runs
 * to round_up(P, vector length): the caller makes A zero and B readable up to
 * round_up(P, SKC_SLACK) (B's extra cells then add 0 * finite = 0).
 *
 * A scalar tail would cost as much as the vector body for LeNet widths (a 4-cycle
 * dependency chain per element), hence the slack contract.
 */
#define SKC_SLACK 16
#if !SKC_HAVE_VECTOR_EXT
#error "skconv's micro-kernels need GCC vector extensions (GCC or Clang)"
#endif

#define SKC_ALWAYS_INLINE static inline __attribute__((always_inline))

/* Sum of the lanes as a fixed tree (upper half added to lower half, repeatedly): a few
 * vector adds instead of a chain of dependent scalar adds, same order on every target. */
SKC_ALWAYS_INLINE float skc_hsum_f(skc_vf v)
{
    skc_vf8 h8, l8;
    skc_vf4 h4, l4;
    __builtin_memcpy(&l8, (const char *)&v, 32);
    __builtin_memcpy(&h8, (const char *)&v + 32, 32);
    l8 += h8;
    __builtin_memcpy(&l4, (const char *)&l8, 16);
    __builtin_memcpy(&h4, (const char *)&l8 + 16, 16);
    l4 += h4;
    return (l4[0] + l4[2]) + (l4[1] + l4[3]);
}

SKC_ALWAYS_INLINE double skc_hsum_d(skc_vd v)
{
    skc_vd4 h4, l4;
    skc_vd2 h2, l2;
    __builtin_memcpy(&l4, (const char *)&v, 32);
    __builtin_memcpy(&h4, (const char *)&v + 32, 32);
    l4 += h4;
    __builtin_memcpy(&l2, (const char *)&l4, 16);
    __builtin_memcpy(&h2, (const char *)&l4 + 16, 16);
    l2 += h2;
    return l2[0] + l2[1];
}

/* One implementation, instantiated for float and double. */
#define SKC_T float
#define SKC_VT skc_vf
#define SKC_VL 16
#define SKC_NAME(name) name##_f
#include "_microkernels_impl.h"
#undef SKC_T
#undef SKC_VT
#undef SKC_VL
#undef SKC_NAME

#define SKC_T double
#define SKC_VT skc_vd
#define SKC_VL 8
#define SKC_NAME(name) name##_d
#include "_microkernels_impl.h"
#undef SKC_T
#undef SKC_VT
#undef SKC_VL
#undef SKC_NAME

#endif /* SKCONV_MICROKERNELS_H */
