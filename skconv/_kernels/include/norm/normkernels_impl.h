/*
 * Body of normkernels.h for one element type: SKC_T, its 8-cell vector SKC_VT, the
 * integer vector SKC_VI of the same width, and SKC_NAME(name) appending the type's
 * suffix. No include guard: included once per
 * type.
 */

/* 8 cells from x, as doubles. */
SKC_ALWAYS_INLINE skc_nd SKC_NAME(skc_norm_load)(const SKC_T *x)
{
    SKC_VT v;
    memcpy(&v, x, sizeof v);
    return __builtin_convertvector(v, skc_nd);
}

SKC_ALWAYS_INLINE SKC_VT SKC_NAME(skc_norm_load_t)(const SKC_T *x)
{
    SKC_VT v;
    memcpy(&v, x, sizeof v);
    return v;
}

/* sum(x[0:n]) in double, in lanes (sums.pxd's lane_sum). */
SKC_CLONES SKC_EXACT_FP
static double SKC_NAME(skc_norm_sum)(const SKC_T *x, ptrdiff_t n)
{
    skc_nd acc = {0};
    ptrdiff_t i, body = n - n % SKC_NORM_LANES;
    for (i = 0; i < body; i += SKC_NORM_LANES)
        acc = acc + SKC_NAME(skc_norm_load)(x + i);
    for (i = body; i < n; i++)
        acc[i - body] = acc[i - body] + (double)x[i];
    return skc_norm_add_lanes(acc);
}

/* sum((x[0:n] - center) ** 2) in double, in lanes. */
SKC_CLONES SKC_EXACT_FP
static double SKC_NAME(skc_norm_squared_deviations)(const SKC_T *x, ptrdiff_t n,
                                                    double center)
{
    skc_nd acc = {0};
    ptrdiff_t i, body = n - n % SKC_NORM_LANES;
    for (i = 0; i < body; i += SKC_NORM_LANES) {
        skc_nd deviation = SKC_NAME(skc_norm_load)(x + i) - center;
        acc = acc + deviation * deviation;
    }
    for (i = body; i < n; i++) {
        double deviation = (double)x[i] - center;
        acc[i - body] = acc[i - body] + deviation * deviation;
    }
    return skc_norm_add_lanes(acc);
}

/* x_hat = (x - center) * scale in double, rounded to SKC_T (x_hat may be NULL), and
 * y = g * x_hat + b in SKC_T (norm.pyx's _normalize_row). */
SKC_CLONES SKC_EXACT_FP
static void SKC_NAME(skc_norm_row)(const SKC_T *x, ptrdiff_t n, double center,
                                   double scale, SKC_T g, SKC_T b, SKC_T *x_hat,
                                   SKC_T *y)
{
    ptrdiff_t i, body = n - n % SKC_NORM_LANES;
    for (i = 0; i < body; i += SKC_NORM_LANES) {
        skc_nd centered = (SKC_NAME(skc_norm_load)(x + i) - center) * scale;
        SKC_VT h = __builtin_convertvector(centered, SKC_VT);
        SKC_VT out = g * h + b;
        if (x_hat)
            memcpy(x_hat + i, &h, sizeof h);
        memcpy(y + i, &out, sizeof out);
    }
    for (i = body; i < n; i++) {
        SKC_T h = (SKC_T)(((double)x[i] - center) * scale);
        if (x_hat)
            x_hat[i] = h;
        y[i] = g * h + b;
    }
}

/* x_hat = (x - center) * scale in double, rounded to SKC_T: skc_norm_row's x_hat. */
SKC_CLONES SKC_EXACT_FP
static void SKC_NAME(skc_norm_x_hat_row)(const SKC_T *x, ptrdiff_t n, double center,
                                         double scale, SKC_T *x_hat)
{
    ptrdiff_t i, body = n - n % SKC_NORM_LANES;
    for (i = 0; i < body; i += SKC_NORM_LANES) {
        skc_nd centered = (SKC_NAME(skc_norm_load)(x + i) - center) * scale;
        SKC_VT h = __builtin_convertvector(centered, SKC_VT);
        memcpy(x_hat + i, &h, sizeof h);
    }
    for (i = body; i < n; i++)
        x_hat[i] = (SKC_T)(((double)x[i] - center) * scale);
}

/* y = x * a + b in SKC_T (norm.pyx's _affine_row). */
SKC_CLONES SKC_EXACT_FP
static void SKC_NAME(skc_norm_affine_row)(const SKC_T *x, ptrdiff_t n, SKC_T a, SKC_T b,
                                          SKC_T *y)
{
    ptrdiff_t i, body = n - n % SKC_NORM_LANES;
    for (i = 0; i < body; i += SKC_NORM_LANES) {
        SKC_VT out = SKC_NAME(skc_norm_load_t)(x + i) * a + b;
        memcpy(y + i, &out, sizeof out);
    }
    for (i = body; i < n; i++)
        y[i] = x[i] * a + b;
}

/* sum(a[0:n]) and sum((double)a[0:n] * b[0:n]) in double, in lanes, in one pass. */
SKC_CLONES SKC_EXACT_FP
static skc_sum_dot SKC_NAME(skc_norm_sum_and_dot)(const SKC_T *a, const SKC_T *b,
                                                  ptrdiff_t n)
{
    skc_nd acc = {0}, prod = {0};
    skc_sum_dot result;
    ptrdiff_t i, body = n - n % SKC_NORM_LANES;
    for (i = 0; i < body; i += SKC_NORM_LANES) {
        skc_nd va = SKC_NAME(skc_norm_load)(a + i);
        acc = acc + va;
        prod = prod + va * SKC_NAME(skc_norm_load)(b + i);
    }
    for (i = body; i < n; i++) {
        acc[i - body] = acc[i - body] + (double)a[i];
        prod[i - body] = prod[i - body] + (double)a[i] * (double)b[i];
    }
    result.sum = skc_norm_add_lanes(acc);
    result.dot = skc_norm_add_lanes(prod);
    return result;
}

/* grad_x = k * (a * grad - b - x_hat * c) in double, rounded once (_input_grad_row). */
SKC_CLONES SKC_EXACT_FP
static void SKC_NAME(skc_norm_input_grad_row)(const SKC_T *grad, const SKC_T *x_hat,
                                              ptrdiff_t n, double k, double a, double b,
                                              double c, SKC_T *grad_x)
{
    ptrdiff_t i, body = n - n % SKC_NORM_LANES;
    for (i = 0; i < body; i += SKC_NORM_LANES) {
        skc_nd value = k * (a * SKC_NAME(skc_norm_load)(grad + i) - b
                            - SKC_NAME(skc_norm_load)(x_hat + i) * c);
        SKC_VT out = __builtin_convertvector(value, SKC_VT);
        memcpy(grad_x + i, &out, sizeof out);
    }
    for (i = body; i < n; i++)
        grad_x[i] = (SKC_T)(k * (a * (double)grad[i] - b - (double)x_hat[i] * c));
}

/* skc_norm_input_grad_row for a zero gradient, x_hat computed from x as
 * skc_norm_x_hat_row does: grad_x = k * (a * 0 - b - x_hat * c), the input gradient
 * of the cells that no gradient reaches (all but a pooling's winners). */
SKC_CLONES SKC_EXACT_FP
static void SKC_NAME(skc_norm_input_grad_zero_row)(const SKC_T *x, ptrdiff_t n,
                                                   double center, double scale,
                                                   double k, double a, double b,
                                                   double c, SKC_T *grad_x)
{
    const skc_nd zero = {0};
    ptrdiff_t i, body = n - n % SKC_NORM_LANES;
    for (i = 0; i < body; i += SKC_NORM_LANES) {
        skc_nd centered = (SKC_NAME(skc_norm_load)(x + i) - center) * scale;
        SKC_VT h = __builtin_convertvector(centered, SKC_VT);
        skc_nd value = k * (a * zero - b - __builtin_convertvector(h, skc_nd) * c);
        SKC_VT out = __builtin_convertvector(value, SKC_VT);
        memcpy(grad_x + i, &out, sizeof out);
    }
    for (i = body; i < n; i++) {
        SKC_T h = (SKC_T)(((double)x[i] - center) * scale);
        grad_x[i] = (SKC_T)(k * (a * 0.0 - b - (double)h * c));
    }
}

/* One row of cells (8 n_vectors windows' worth: 16 n_vectors cells) of the gradient
 * that a 2x2/stride-2 max or min pooling passes back: cell 2o + q gets 0 + g[o] if
 * window o's winning cell (code[o], row-major) is (row, q), else +0, as the
 * pooling's scatter into zeros computes it; windows o >= n_out give +0. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_norm_unpool_cells)(const SKC_T *g, const uint8_t *code,
                                                       ptrdiff_t n_out, ptrdiff_t n_vectors,
                                                       int row, SKC_T *cells)
{
    const SKC_VI lane = {0, 1, 2, 3, 4, 5, 6, 7};
    const SKC_VI low = {0, 8, 1, 9, 2, 10, 3, 11}, high = {4, 12, 5, 13, 6, 14, 7, 15};
    ptrdiff_t v;
    for (v = 0; v < n_vectors; v++) {
        SKC_VT grad;
        skc_n_codes raw;
        memcpy(&grad, g + SKC_NORM_LANES * v, sizeof grad);
        memcpy(&raw, code + SKC_NORM_LANES * v, sizeof raw);
        grad = (SKC_T)0 + grad;
        SKC_VI which = __builtin_convertvector(raw, SKC_VI);
        /* The windows left in the row, in the mask's element type (n_out is small). */
        __typeof__(lane[0]) n_left = (__typeof__(lane[0]))(n_out - SKC_NORM_LANES * v);
        SKC_VI real = lane < n_left;
        SKC_VT left = (SKC_VT)((SKC_VI)grad & ((which == 2 * row) & real));
        SKC_VT right = (SKC_VT)((SKC_VI)grad & ((which == 2 * row + 1) & real));
        SKC_VT first = __builtin_shuffle(left, right, low);
        SKC_VT second = __builtin_shuffle(left, right, high);
        memcpy(cells + 2 * SKC_NORM_LANES * v, &first, sizeof first);
        memcpy(cells + 2 * SKC_NORM_LANES * v + SKC_NORM_LANES, &second, sizeof second);
    }
}

/*
 * unpool2x2_row: the gradient that a 2x2/stride-2 pooling passes back to one row pair
 * of its input: r0[0 .. 16 n_vectors) then r1 = r0 + pitch likewise, from the n_out
 * window gradients g and winning cells code of the pooled row (skc_norm_unpool_cells).
 * Reads g and code 8 n_vectors values far; writes r0's cells before r1's, so the
 * zeros past r0's end that land on r1 are overwritten, and those past r1's end land
 * on the next row (or past the plane).
 */
SKC_CLONES SKC_EXACT_FP
static void SKC_NAME(skc_norm_unpool2x2_row)(const SKC_T *g, const uint8_t *code,
                                             ptrdiff_t n_out, ptrdiff_t n_vectors,
                                             SKC_T *r0, ptrdiff_t pitch)
{
    SKC_NAME(skc_norm_unpool_cells)(g, code, n_out, n_vectors, 0, r0);
    SKC_NAME(skc_norm_unpool_cells)(g, code, n_out, n_vectors, 1, r0 + pitch);
}

/* unpool2_row: unpool2x2_row for 1-D windows of 2 (stride 2): cells[0 .. 16 n_vectors). */
SKC_CLONES SKC_EXACT_FP
static void SKC_NAME(skc_norm_unpool2_row)(const SKC_T *g, const uint8_t *code,
                                           ptrdiff_t n_out, ptrdiff_t n_vectors,
                                           SKC_T *cells)
{
    SKC_NAME(skc_norm_unpool_cells)(g, code, n_out, n_vectors, 0, cells);
}

/*
 * pool2_codes_row: 1-D max (want_min = 0) or min pooling of windows of 2, stride 2,
 * on a normalised row: for o < 8 n_vectors, y[o] is the first extreme of z[2o],
 * z[2o + 1] (the first NaN, if any), then numpy's maximum(y, 0) if relu (+0 for -0),
 * and code[o] its cell (0 or 1). Reads z[0 .. 16 n_vectors).
 */
SKC_CLONES SKC_EXACT_FP
static void SKC_NAME(skc_norm_pool2_codes_row)(const SKC_T *z, ptrdiff_t n_vectors,
                                               int want_min, int relu, SKC_T *y,
                                               uint8_t *code)
{
    const SKC_VI even = {0, 2, 4, 6, 8, 10, 12, 14};
    const SKC_VI odd = even + 1;
    ptrdiff_t v;
    for (v = 0; v < n_vectors; v++) {
        SKC_VT a0, a1;
        memcpy(&a0, z + 2 * SKC_NORM_LANES * v, sizeof a0);
        memcpy(&a1, z + 2 * SKC_NORM_LANES * v + SKC_NORM_LANES, sizeof a1);
        SKC_VT first = __builtin_shuffle(a0, a1, even);
        SKC_VT second = __builtin_shuffle(a0, a1, odd);
        /* The second cell wins if strictly better, or if it is the first NaN. */
        SKC_VI take = (want_min ? (second < first) : (second > first))
                      | ((second != second) & (first == first));
        SKC_VT best = (SKC_VT)(((SKC_VI)second & take) | ((SKC_VI)first & ~take));
        if (relu)
            best = (SKC_VT)((SKC_VI)best & ((best > 0) | (best != best)));
        skc_n_codes which = __builtin_convertvector(take & 1, skc_n_codes);
        memcpy(y + SKC_NORM_LANES * v, &best, sizeof best);
        memcpy(code + SKC_NORM_LANES * v, &which, sizeof which);
    }
}

/*
 * input_grad_winners: skc_norm_input_grad_row at the winning cells of a plane's
 * windows, with their gradients: grad_x[s] = k * (a * (0 + g[o]) - b - x_hat[s] * c)
 * for window o of out_h x out_w, whose winning cell s is o's first cell (row
 * o / out_w * pool_h, column o % out_w * pool_w of rows `width` long) plus
 * offsets[winners[o]]; x_hat[s] computed from x as skc_norm_x_hat_row does. The
 * other cells keep what skc_norm_input_grad_zero_row wrote. In C (not in the Cython
 * caller) so that no clone or -march build contracts it into FMAs.
 */
SKC_CLONES SKC_EXACT_FP
static void SKC_NAME(skc_norm_input_grad_winners)(
    const SKC_T *x, const SKC_T *g, const uint8_t *winners, ptrdiff_t out_h,
    ptrdiff_t out_w, ptrdiff_t width, int pool_h, int pool_w, const ptrdiff_t *offsets,
    double center, double scale, double k, double a, double b, double c, SKC_T *grad_x)
{
    ptrdiff_t i, j;
    for (i = 0; i < out_h; i++)
        for (j = 0; j < out_w; j++) {
            ptrdiff_t o = i * out_w + j;
            ptrdiff_t s = i * pool_h * width + j * pool_w + offsets[winners[o]];
            SKC_T h = (SKC_T)(((double)x[s] - center) * scale);
            SKC_T grad = (SKC_T)0 + g[o];
            grad_x[s] = (SKC_T)(k * (a * (double)grad - b - (double)h * c));
        }
}
