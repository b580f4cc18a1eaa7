"""Fused optimizer steps for the training loop (see ``_updatekernels.h``).

Kernels only: ``skconv._optimizers`` decides when to call them and keeps the numpy
version of the same maths, which the tests hold these to bit for bit.
"""

from cython cimport floating
from cython.parallel cimport prange

cdef extern from "_updatekernels.h" nogil:
    void skc_adam_f(Py_ssize_t n, float *param, float *m, float *v, const float *grad,
                    float l2, float beta_1, float one_minus_beta_1, float beta_2,
                    float one_minus_beta_2, float minus_learning_rate, float epsilon)
    void skc_adam_d(Py_ssize_t n, double *param, double *m, double *v,
                    const double *grad, double l2, double beta_1,
                    double one_minus_beta_1, double beta_2, double one_minus_beta_2,
                    double minus_learning_rate, double epsilon)

# Values per thread below which a second thread costs more than it saves.
_GRAIN = 32768


def adam_step(floating[::1] param, floating[::1] m, floating[::1] v,
              const floating[::1] grad, double l2, double beta_1, double beta_2,
              double learning_rate, double epsilon, int n_threads):
    """One Adam step in place on flat arrays of equal length, from ``grad + l2*param``.

    Each value is updated alone, so splitting the arrays between threads changes
    nothing in the result. Shapes are trusted (the caller passes matching arrays).
    """
    cdef:
        Py_ssize_t n = param.shape[0], n_chunks, chunk, start, stop
    if n == 0:
        return
    n_chunks = max(1, min(n_threads, n // _GRAIN))
    for chunk in prange(n_chunks, nogil=True, schedule="static", num_threads=n_chunks):
        start = chunk * n // n_chunks
        stop = (chunk + 1) * n // n_chunks
        if floating is float:
            skc_adam_f(stop - start, &param[start], &m[start], &v[start], &grad[start],
                       <float> l2, <float> beta_1, <float> (1 - beta_1),
                       <float> beta_2, <float> (1 - beta_2), <float> -learning_rate,
                       <float> epsilon)
        else:
            skc_adam_d(stop - start, &param[start], &m[start], &v[start], &grad[start],
                       l2, beta_1, 1 - beta_1, beta_2, 1 - beta_2, -learning_rate,
                       epsilon)


def sum_of_squares(const floating[::1] values):
    """``sum(values ** 2)`` accumulated in float64, in a fixed order.

    Eight interleaved partial sums (value ``i`` goes to sum ``i % 8``), added pairwise
    at the end: the order depends on the length only. Faster than converting to
    float64 and calling ``np.einsum`` (the L2 penalty of every minibatch).
    """
    cdef:
        Py_ssize_t n = values.shape[0], i, j, body = n - n % 8
        double acc[8]
        double value
    for j in range(8):
        acc[j] = 0
    with nogil:
        for i in range(0, body, 8):
            for j in range(8):
                value = values[i + j]
                acc[j] += value * value
        for i in range(body, n):
            value = values[i]
            acc[i - body] += value * value
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
