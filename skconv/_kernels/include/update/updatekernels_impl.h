/*
 * Body of the optimizer kernels, included twice by updatekernels.h with SKC_T,
 * SKC_SQRT and SKC_NAME set. No include guard on purpose.
 */

/* with_l2 is a constant after inlining: two loops, no test per element. */
SKC_ALWAYS_INLINE SKC_EXACT_FP void SKC_NAME(skc_adam_loop)(
    const int with_l2, ptrdiff_t n, SKC_T *restrict param, SKC_T *restrict m,
    SKC_T *restrict v, const SKC_T *restrict grad, SKC_T l2, SKC_T beta_1,
    SKC_T one_minus_beta_1, SKC_T beta_2, SKC_T one_minus_beta_2,
    SKC_T minus_learning_rate, SKC_T epsilon)
{
    ptrdiff_t i;
    for (i = 0; i < n; i++) {
        SKC_T g = grad[i];
        if (with_l2) {
            /* add_l2_gradient: grad += l2 * weight */
            SKC_T decay = l2 * param[i];
            g = g + decay;
        }
        /* m *= b1; m += (1 - b1) * grad */
        SKC_T mi = m[i] * beta_1;
        SKC_T m_new = one_minus_beta_1 * g;
        mi = mi + m_new;
        /* v *= b2; v += (1 - b2) * grad**2 */
        SKC_T vi = v[i] * beta_2;
        SKC_T g2 = g * g;
        SKC_T v_new = one_minus_beta_2 * g2;
        vi = vi + v_new;
        /* step = -lr * m; step /= sqrt(v) + eps; param += step */
        SKC_T step = minus_learning_rate * mi;
        SKC_T denom = SKC_SQRT(vi);
        denom = denom + epsilon;
        step = step / denom;
        m[i] = mi;
        v[i] = vi;
        param[i] = param[i] + step;
    }
}

/*
 * adam: one Adam step on n values in place, from grad + l2 * param (l2 = 0: grad
 * alone, exactly). Constants are the optimizer's Python floats rounded to SKC_T:
 * beta_1, 1 - beta_1, beta_2, 1 - beta_2, -learning_rate (bias-corrected), epsilon.
 */
SKC_CLONES SKC_EXACT_FP
static void SKC_NAME(skc_adam)(ptrdiff_t n, SKC_T *param, SKC_T *m, SKC_T *v,
                               const SKC_T *grad, SKC_T l2, SKC_T beta_1,
                               SKC_T one_minus_beta_1, SKC_T beta_2,
                               SKC_T one_minus_beta_2, SKC_T minus_learning_rate,
                               SKC_T epsilon)
{
    if (l2 != 0)
        SKC_NAME(skc_adam_loop)(1, n, param, m, v, grad, l2, beta_1, one_minus_beta_1,
                                beta_2, one_minus_beta_2, minus_learning_rate, epsilon);
    else
        SKC_NAME(skc_adam_loop)(0, n, param, m, v, grad, l2, beta_1, one_minus_beta_1,
                                beta_2, one_minus_beta_2, minus_learning_rate, epsilon);
}

/*
 * sum_of_squares: sum of values[i]**2 in double, value i going to partial sum i % 32,
 * the 32 added pairwise at the end: a fixed order that depends on n alone. 32 sums
 * are four independent chains of vector adds (a chain waits 4 cycles per add); no
 * FMA contraction (SKC_EXACT_FP), so every clone gives the same bits.
 */
SKC_CLONES SKC_EXACT_FP
static double SKC_NAME(skc_sum_of_squares)(ptrdiff_t n, const SKC_T *values)
{
    double acc[32];
    ptrdiff_t i, body = n - n % 32;
    int j, width;
    for (j = 0; j < 32; j++)
        acc[j] = 0;
    for (i = 0; i < body; i += 32)
        for (j = 0; j < 32; j++) {
            double value = values[i + j];
            double square = value * value;
            acc[j] = acc[j] + square;
        }
    for (i = body; i < n; i++) {
        double value = values[i];
        double square = value * value;
        acc[i - body] = acc[i - body] + square;
    }
    for (width = 16; width >= 1; width /= 2)
        for (j = 0; j < width; j++)
            acc[j] = acc[j] + acc[j + width];
    return acc[0];
}
