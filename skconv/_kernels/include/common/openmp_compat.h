/* omp_get_max_threads() that also exists in a build without OpenMP, where it is 1.
 * Cython's "cimport openmp" would leave an undefined symbol in a serial build. */
#ifndef SKCONV_OPENMP_COMPAT_H
#define SKCONV_OPENMP_COMPAT_H
#ifdef _OPENMP
#include <omp.h>
static int skc_omp_max_threads(void) { return omp_get_max_threads(); }
#else
static int skc_omp_max_threads(void) { return 1; }
#endif
#endif
