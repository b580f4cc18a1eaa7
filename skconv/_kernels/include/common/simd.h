/*
 * What every C kernel header of skconv shares: per-CPU clones and vector extensions.
 *
 * Portability: the build has no -march flag; each kernel marked SKC_CLONES is
 * compiled for AVX-512, AVX2+FMA and baseline x86-64 (GCC target_clones, picked once
 * at load time by the dynamic linker). Elsewhere the plain versions are used. A build
 * with SKCONV_ISA (setup.py) defines SKCONV_NO_CLONES and compiles one of the three
 * for every CPU, so that the lower variants can be tested on any machine. GCC
 * vector extensions (also in Clang) keep vectors in registers whatever the target.
 */
#ifndef SKCONV_SIMD_H
#define SKCONV_SIMD_H

#if defined(__GNUC__) && (defined(__x86_64__) || defined(_M_X64)) && !defined(SKCONV_NO_CLONES) \
    && !defined(__clang__) && defined(__linux__)
#define SKC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SKC_CLONES
#endif

#if !defined(__GNUC__)
#error "skconv's kernels need GCC vector extensions (GCC or Clang)"
#endif

#define SKC_ALWAYS_INLINE static inline __attribute__((always_inline))

/* For kernels whose results must equal a scalar reference's bit for bit on every
 * clone: no contraction of a multiply and an add into one FMA (GCC contracts across
 * statements by default), and no errno from sqrt (so that it vectorises). */
#if defined(__GNUC__) && !defined(__clang__)
#define SKC_EXACT_FP __attribute__((optimize("fp-contract=off", "no-math-errno")))
#else
#define SKC_EXACT_FP
#endif

/* Whether the CPU has 32 vector registers (AVX-512): some kernels then use larger
 * register blocks, which would spill to memory with 16 (AVX2). Checked at run time
 * because one binary serves every x86-64 CPU. */
#if defined(SKCONV_32_VECTOR_REGISTERS)
/* A build forced to one instruction set (SKCONV_ISA in setup.py) answers for that
 * set, not for the CPU it runs on. */
#define SKC_HAVE_32_VECTOR_REGISTERS() (SKCONV_32_VECTOR_REGISTERS)
#elif defined(__GNUC__) && (defined(__x86_64__) || defined(_M_X64)) && !defined(__clang__)
#define SKC_HAVE_32_VECTOR_REGISTERS() __builtin_cpu_supports("avx512f")
#else
#define SKC_HAVE_32_VECTOR_REGISTERS() 0
#endif

#endif /* SKCONV_SIMD_H */
