/*
 * Body of the pooling kernels, included twice by poolkernels.h with SKC_T (scalar),
 * SKC_VT (8-lane vector), SKC_VI (integer mask vector as wide) and SKC_NAME set.
 * No include guard on purpose.
 */

/* The cells of vector v of a row of 2x2 windows (depth 1; rows r0, r1) or 2x2x2
 * windows (depth 2: the same rows `plane` cells further too), in window order:
 * cell[k] holds cell k (row-major) of 8 windows. depth is a constant after
 * inlining. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_raw_cells)(const int depth, const SKC_T *r0,
                                               const SKC_T *r1, ptrdiff_t v,
                                               ptrdiff_t plane, SKC_VT *cell)
{
    const SKC_VI even = {0, 2, 4, 6, 8, 10, 12, 14};
    const SKC_VI odd = even + 1;
    int d;
    for (d = 0; d < depth; d++) {
        const SKC_T *a = r0 + 2 * SKC_POOL_LANES * v + d * plane;
        const SKC_T *b = r1 + 2 * SKC_POOL_LANES * v + d * plane;
        SKC_VT a0 = *(const SKC_VT *)a, a1 = *(const SKC_VT *)(a + SKC_POOL_LANES);
        SKC_VT b0 = *(const SKC_VT *)b, b1 = *(const SKC_VT *)(b + SKC_POOL_LANES);
        cell[4 * d] = __builtin_shuffle(a0, a1, even);
        cell[4 * d + 1] = __builtin_shuffle(a0, a1, odd);
        cell[4 * d + 2] = __builtin_shuffle(b0, b1, even);
        cell[4 * d + 3] = __builtin_shuffle(b0, b1, odd);
    }
}

/* One output row in vectors of 8 windows of 2x2 cells (depth 1) or 2x2x2 cells
 * (depth 2: rows r0, r1 of one plane and the same rows `plane` cells further);
 * want_min and depth are constants after inlining. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_pool2x2_row_mode)(
    const int want_min, const int depth, const SKC_T *r0, const SKC_T *r1,
    ptrdiff_t n_vectors, ptrdiff_t width, ptrdiff_t plane, int64_t at, SKC_T *y,
    int64_t *indices)
{
    /* Offset of window cell k (row-major) from its first cell. */
    const int64_t cell_offset[8] = {0, 1, width, width + 1, plane, plane + 1,
                                    plane + width, plane + width + 1};
    const skc_pool_index lane = {0, 2, 4, 6, 8, 10, 12, 14};
    ptrdiff_t v;
    int k;
    for (v = 0; v < n_vectors; v++) {
        SKC_VT cell[8];
        SKC_NAME(skc_raw_cells)(depth, r0, r1, v, plane, cell);
        SKC_VT best = cell[0];
        skc_pool_index offset = {0};
        for (k = 1; k < 4 * depth; k++) {
            SKC_VT c = cell[k];
            /* Strictly better, or the first NaN of the window. */
            SKC_VI take = (want_min ? (c < best) : (c > best)) | ((c != c) & (best == best));
            best = (SKC_VT)(((SKC_VI)c & take) | ((SKC_VI)best & ~take));
            skc_pool_index take64 = __builtin_convertvector(take, skc_pool_index);
            offset = (take64 & cell_offset[k]) | (offset & ~take64);
        }
        *(SKC_VT *)(y + SKC_POOL_LANES * v) = best;
        *(skc_pool_index *)(indices + SKC_POOL_LANES * v) =
            at + 2 * SKC_POOL_LANES * v + lane + offset;
    }
}

/*
 * pool2x2_row: for o < 8 * n_vectors, window o covers r0[2o], r0[2o+1], r1[2o],
 * r1[2o+1] (r1 = r0 + width); y[o] receives its max (want_min = 0) or min, and
 * indices[o] the flat index of the winning cell, r0[0] having index `at`.
 * Reads r0[0 .. 16 n_vectors + width) and writes 8 n_vectors outputs.
 */
SKC_CLONES
static void SKC_NAME(skc_pool2x2_row)(const SKC_T *r0, ptrdiff_t n_vectors,
                                      ptrdiff_t width, int64_t at, int want_min,
                                      SKC_T *y, int64_t *indices)
{
    if (want_min)
        SKC_NAME(skc_pool2x2_row_mode)(1, 1, r0, r0 + width, n_vectors, width, 0, at, y,
                                       indices);
    else
        SKC_NAME(skc_pool2x2_row_mode)(0, 1, r0, r0 + width, n_vectors, width, 0, at, y,
                                       indices);
}

/*
 * pool2x2_avg_plain_row: average pooling of a row of 2x2 windows (depth 1) or 2x2x2
 * windows (depth 2, the next plane `plane` cells further): for o < 8 * n_vectors,
 * y[o] is the sum in double of window o's cells, added from 0 in row-major order,
 * divided by 4 * depth and rounded to SKC_T, as the general kernel computes it.
 * Reads and writes as pool2x2_row / pool2x2x2_row (no indices).
 */
SKC_CLONES
static void SKC_NAME(skc_pool2x2_avg_plain_row)(const SKC_T *r0, ptrdiff_t n_vectors,
                                                ptrdiff_t width, ptrdiff_t plane,
                                                int depth, SKC_T *y)
{
    ptrdiff_t v;
    int k;
    const int n_cells = depth == 2 ? 8 : 4;
    for (v = 0; v < n_vectors; v++) {
        SKC_VT cell[8];
        skc_pd acc = {0};
        if (depth == 2)
            SKC_NAME(skc_raw_cells)(2, r0, r0 + width, v, plane, cell);
        else
            SKC_NAME(skc_raw_cells)(1, r0, r0 + width, v, plane, cell);
        for (k = 0; k < n_cells; k++)
            acc += __builtin_convertvector(cell[k], skc_pd);
        *(SKC_VT *)(y + SKC_POOL_LANES * v) =
            __builtin_convertvector(acc / (double)n_cells, SKC_VT);
    }
}

/*
 * pool2x2x2_row: the volumes' counterpart of pool2x2_row: window o covers the 2x2
 * cells of pool2x2_row in the plane of r0 and the same cells `plane` further (the
 * next plane), in that (row-major) order. Reads r0[0 .. plane + width + 16
 * n_vectors) and writes 8 n_vectors outputs and indices.
 */
SKC_CLONES
static void SKC_NAME(skc_pool2x2x2_row)(const SKC_T *r0, ptrdiff_t n_vectors,
                                        ptrdiff_t width, ptrdiff_t plane, int64_t at,
                                        int want_min, SKC_T *y, int64_t *indices)
{
    if (want_min)
        SKC_NAME(skc_pool2x2_row_mode)(1, 2, r0, r0 + width, n_vectors, width, plane, at,
                                       y, indices);
    else
        SKC_NAME(skc_pool2x2_row_mode)(0, 2, r0, r0 + width, n_vectors, width, plane, at,
                                       y, indices);
}

/*
 * pool2_row: 1-D max or min pooling, window 2, stride 2, with indices: for o < 8 *
 * n_vectors, window o covers r[2o], r[2o+1]; y[o] receives its max (want_min = 0) or
 * min and indices[o] the index of the winning cell, r[0] having index `at`. The
 * second cell wins only if strictly better, or if it is a NaN and the first is not.
 * Reads r[0 .. 16 n_vectors) and writes 8 n_vectors outputs.
 */
SKC_ALWAYS_INLINE void SKC_NAME(skc_pool2_row_mode)(const int want_min, const SKC_T *r,
                                                    ptrdiff_t n_vectors, int64_t at,
                                                    SKC_T *y, int64_t *indices)
{
    const SKC_VI even = {0, 2, 4, 6, 8, 10, 12, 14};
    const SKC_VI odd = even + 1;
    const skc_pool_index lane = {0, 2, 4, 6, 8, 10, 12, 14};
    ptrdiff_t v;
    for (v = 0; v < n_vectors; v++) {
        const SKC_T *a = r + 2 * SKC_POOL_LANES * v;
        SKC_VT a0 = *(const SKC_VT *)a, a1 = *(const SKC_VT *)(a + SKC_POOL_LANES);
        SKC_VT first = __builtin_shuffle(a0, a1, even);
        SKC_VT second = __builtin_shuffle(a0, a1, odd);
        SKC_VI take = (want_min ? (second < first) : (second > first))
                      | ((second != second) & (first == first));
        SKC_VT best = (SKC_VT)(((SKC_VI)second & take) | ((SKC_VI)first & ~take));
        skc_pool_index take64 = __builtin_convertvector(take, skc_pool_index);
        *(SKC_VT *)(y + SKC_POOL_LANES * v) = best;
        *(skc_pool_index *)(indices + SKC_POOL_LANES * v) =
            at + 2 * SKC_POOL_LANES * v + lane + (take64 & 1);
    }
}

SKC_CLONES
static void SKC_NAME(skc_pool2_row)(const SKC_T *r, ptrdiff_t n_vectors, int64_t at,
                                    int want_min, SKC_T *y, int64_t *indices)
{
    if (want_min)
        SKC_NAME(skc_pool2_row_mode)(1, r, n_vectors, at, y, indices);
    else
        SKC_NAME(skc_pool2_row_mode)(0, r, n_vectors, at, y, indices);
}

/* A window's running extreme and its code after cell c (code k): strictly better,
 * or the first NaN of the window, as the general kernel decides. want_min is a
 * constant after inlining. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_take_extreme)(const int want_min, SKC_VT c, int k,
                                                  SKC_VT *best, SKC_VI *which)
{
    SKC_VI take = (want_min ? (c < *best) : (c > *best)) | ((c != c) & (*best == *best));
    *best = (SKC_VT)(((SKC_VI)c & take) | ((SKC_VI)*best & ~take));
    *which = (take & k) | (*which & ~take);
}

/* numpy's maximum(v, 0): v itself when v > 0 or NaN, else +0 (-0 included: numpy
 * gives +0 for it). */
SKC_ALWAYS_INLINE SKC_VT SKC_NAME(skc_relu)(SKC_VT v)
{
    SKC_VI keep = (v > 0) | (v != v);
    return (SKC_VT)((SKC_VI)v & keep);
}

/* One vector of pooled outputs and their codes. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_store_pooled)(SKC_VT best, SKC_VI which, SKC_T *y,
                                                  uint8_t *code)
{
    *(SKC_VT *)y = best;
    *(skc_pool_code *)code = __builtin_convertvector(which, skc_pool_code);
}

/* The cells of the 8 windows of vector v of a row of 2x2 windows (r1 the row below
 * r0), each plus bias, in window order: cell[k] holds cell k (row-major) of every
 * window. (The bias added after the shuffles: the same sums, lane for lane.) */
SKC_ALWAYS_INLINE void SKC_NAME(skc_window_cells)(const SKC_T *r0, const SKC_T *r1,
                                                  ptrdiff_t v, SKC_T bias, SKC_VT cell[4])
{
    int k;
    SKC_NAME(skc_raw_cells)(1, r0, r1, v, 0, cell);
    for (k = 0; k < 4; k++)
        cell[k] = cell[k] + bias;
}

/* One row of windows of a convolution's wide output, the bias added to every cell
 * first (exactly the sum the unfused convolution stores). code[o] receives the
 * winning cell's place in its window (row-major, 0 to 3) instead of a flat index.
 * want_min and relu are constants after inlining. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_pool2x2_codes_mode)(
    const int want_min, const int relu, const SKC_T *r0, const SKC_T *r1,
    ptrdiff_t n_vectors, SKC_T bias, SKC_T *y, uint8_t *code)
{
    ptrdiff_t v;
    int k;
    for (v = 0; v < n_vectors; v++) {
        SKC_VT cell[4];
        SKC_NAME(skc_window_cells)(r0, r1, v, bias, cell);
        SKC_VT best = cell[0];
        SKC_VI which = {0};
        for (k = 1; k < 4; k++)
            SKC_NAME(skc_take_extreme)(want_min, cell[k], k, &best, &which);
        if (relu)
            best = SKC_NAME(skc_relu)(best);
        SKC_NAME(skc_store_pooled)(best, which, y + SKC_POOL_LANES * v,
                                   code + SKC_POOL_LANES * v);
    }
}

/*
 * pool2x2_codes_row: for o < 8 * n_vectors, window o covers r0[2o], r0[2o+1],
 * r1[2o], r1[2o+1] (r1 = r0 + pitch), each plus bias; y[o] receives the max
 * (want_min = 0) or min, then relu'd if asked, and code[o] the winning cell (0, 1,
 * 2, 3 in that order). Reads r0[0 .. 16 n_vectors + pitch) and writes 8 n_vectors
 * outputs and codes.
 */
SKC_CLONES
static void SKC_NAME(skc_pool2x2_codes_row)(const SKC_T *r0, ptrdiff_t pitch,
                                            ptrdiff_t n_vectors, SKC_T bias,
                                            int want_min, int relu, SKC_T *y,
                                            uint8_t *code)
{
    const SKC_T *r1 = r0 + pitch;
    if (want_min && relu)
        SKC_NAME(skc_pool2x2_codes_mode)(1, 1, r0, r1, n_vectors, bias, y, code);
    else if (want_min)
        SKC_NAME(skc_pool2x2_codes_mode)(1, 0, r0, r1, n_vectors, bias, y, code);
    else if (relu)
        SKC_NAME(skc_pool2x2_codes_mode)(0, 1, r0, r1, n_vectors, bias, y, code);
    else
        SKC_NAME(skc_pool2x2_codes_mode)(0, 0, r0, r1, n_vectors, bias, y, code);
}

/* One row of 1-D windows whose cells were computed tap by tap: cell t of window o is
 * rows[t * tap_stride + o] + bias. want_min and relu are constants after inlining. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_pool_taps_mode)(
    const int want_min, const int relu, const SKC_T *rows, ptrdiff_t tap_stride,
    int n_taps, ptrdiff_t n_vectors, SKC_T bias, SKC_T *y, uint8_t *code)
{
    ptrdiff_t v;
    int t;
    for (v = 0; v < n_vectors; v++) {
        const SKC_T *at = rows + SKC_POOL_LANES * v;
        SKC_VT best = *(const SKC_VT *)at + bias;
        SKC_VI which = {0};
        for (t = 1; t < n_taps; t++)
            SKC_NAME(skc_take_extreme)(want_min, *(const SKC_VT *)(at + t * tap_stride) + bias,
                                       t, &best, &which);
        if (relu)
            best = SKC_NAME(skc_relu)(best);
        SKC_NAME(skc_store_pooled)(best, which, y + SKC_POOL_LANES * v,
                                   code + SKC_POOL_LANES * v);
    }
}

/*
 * pool_taps_codes_row: a 1-D max (want_min = 0) or min pooling of a convolution's
 * output computed one window cell (tap) at a time: for o < 8 * n_vectors, window o
 * holds rows[t * tap_stride + o] + bias for t < n_taps (1 to 256), in that order.
 * y[o] receives the first extreme (the first NaN, if any), relu'd if asked, and
 * code[o] its t. Reads n_taps rows of 8 * n_vectors values and writes 8 * n_vectors
 * outputs and codes.
 */
SKC_CLONES
static void SKC_NAME(skc_pool_taps_codes_row)(const SKC_T *rows, ptrdiff_t tap_stride,
                                              int n_taps, ptrdiff_t n_vectors,
                                              SKC_T bias, int want_min, int relu,
                                              SKC_T *y, uint8_t *code)
{
    if (want_min && relu)
        SKC_NAME(skc_pool_taps_mode)(1, 1, rows, tap_stride, n_taps, n_vectors, bias, y, code);
    else if (want_min)
        SKC_NAME(skc_pool_taps_mode)(1, 0, rows, tap_stride, n_taps, n_vectors, bias, y, code);
    else if (relu)
        SKC_NAME(skc_pool_taps_mode)(0, 1, rows, tap_stride, n_taps, n_vectors, bias, y, code);
    else
        SKC_NAME(skc_pool_taps_mode)(0, 0, rows, tap_stride, n_taps, n_vectors, bias, y, code);
}

/*
 * relu_backward: dst[i] = grad[i] * (out[i] > 0) for i < n, as numpy computes it
 * (0 * inf is NaN), out being relu's output: the relu's backward before a fused
 * pooling's. A loop of its own, with no branch: inside the pooling's scatter a
 * compiler turns it into a jump on the output's sign, mispredicted half of the time.
 */
SKC_CLONES
static void SKC_NAME(skc_relu_backward)(const SKC_T *__restrict grad,
                                        const SKC_T *__restrict out, ptrdiff_t n,
                                        SKC_T *__restrict dst)
{
    ptrdiff_t i;
    for (i = 0; i < n; i++)
        dst[i] = grad[i] * (SKC_T)(out[i] > 0);
}

/* One row of 1-D average windows computed tap by tap (see pool_taps_avg_row); relu
 * is a constant after inlining. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_pool_taps_avg_mode)(
    const int relu, const SKC_T *rows, ptrdiff_t tap_stride, int n_taps,
    ptrdiff_t n_vectors, SKC_T bias, SKC_T *y, uint8_t *code)
{
    ptrdiff_t v;
    int t;
    for (v = 0; v < n_vectors; v++) {
        const SKC_T *at = rows + SKC_POOL_LANES * v;
        skc_pd acc = {0};
        SKC_VI positive = {0};
        for (t = 0; t < n_taps; t++) {
            SKC_VT c = *(const SKC_VT *)(at + t * tap_stride) + bias;
            if (relu) {
                c = SKC_NAME(skc_relu)(c);
                positive |= (c > 0) & (1 << t);  /* bit t: relu's output is > 0 */
            }
            acc += __builtin_convertvector(c, skc_pd);
        }
        SKC_NAME(skc_store_pooled)(__builtin_convertvector(acc / (double)n_taps, SKC_VT),
                                   positive, y + SKC_POOL_LANES * v,
                                   code + SKC_POOL_LANES * v);
    }
}

/*
 * pool_taps_avg_row: the average counterpart of pool_taps_codes_row, relu FIRST:
 * for o < 8 * n_vectors, window o's cells are rows[t * tap_stride + o] + bias (then
 * relu if asked) for t < n_taps (1 to 8), and y[o] is their sum in double, added
 * from 0 in t order, divided by n_taps and rounded to SKC_T: what relu then the
 * plain average pooling compute. code[o] has bit t set when relu's output for cell
 * t is positive (the relu's backward), 0 without relu.
 */
SKC_CLONES
static void SKC_NAME(skc_pool_taps_avg_row)(const SKC_T *rows, ptrdiff_t tap_stride,
                                            int n_taps, ptrdiff_t n_vectors, SKC_T bias,
                                            int relu, SKC_T *y, uint8_t *code)
{
    if (relu)
        SKC_NAME(skc_pool_taps_avg_mode)(1, rows, tap_stride, n_taps, n_vectors, bias, y,
                                         code);
    else
        SKC_NAME(skc_pool_taps_avg_mode)(0, rows, tap_stride, n_taps, n_vectors, bias, y,
                                         code);
}

/* One row of 2x2 average windows of a convolution's wide output (see
 * pool2x2_avg_row); relu is a constant after inlining. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_pool2x2_avg_mode)(
    const int relu, const SKC_T *r0, const SKC_T *r1, ptrdiff_t n_vectors, SKC_T bias,
    SKC_T *y, uint8_t *code)
{
    ptrdiff_t v;
    int k;
    for (v = 0; v < n_vectors; v++) {
        SKC_VT cell[4];
        SKC_NAME(skc_window_cells)(r0, r1, v, bias, cell);
        skc_pd acc = {0};
        SKC_VI positive = {0};
        for (k = 0; k < 4; k++) {
            SKC_VT c = cell[k];
            if (relu) {
                c = SKC_NAME(skc_relu)(c);
                positive |= (c > 0) & (1 << k);  /* bit k: relu's output is > 0 */
            }
            acc += __builtin_convertvector(c, skc_pd);
        }
        SKC_NAME(skc_store_pooled)(__builtin_convertvector(acc / 4.0, SKC_VT), positive,
                                   y + SKC_POOL_LANES * v, code + SKC_POOL_LANES * v);
    }
}

/*
 * pool2x2_avg_row: the average counterpart of pool2x2_codes_row, relu FIRST: for
 * o < 8 * n_vectors, window o's cells are r0[2o], r0[2o+1], r1[2o], r1[2o+1] (r1 =
 * r0 + pitch), each plus bias (then relu if asked), and y[o] is their sum in double,
 * added from 0 in that order, divided by 4 and rounded to SKC_T: what relu then the
 * plain average pooling compute. code[o] has bit k set when relu's output for cell
 * k is positive (the relu's backward), 0 without relu. Reads and writes as
 * pool2x2_codes_row.
 */
SKC_CLONES
static void SKC_NAME(skc_pool2x2_avg_row)(const SKC_T *r0, ptrdiff_t pitch,
                                          ptrdiff_t n_vectors, SKC_T bias, int relu,
                                          SKC_T *y, uint8_t *code)
{
    if (relu)
        SKC_NAME(skc_pool2x2_avg_mode)(1, r0, r0 + pitch, n_vectors, bias, y, code);
    else
        SKC_NAME(skc_pool2x2_avg_mode)(0, r0, r0 + pitch, n_vectors, bias, y, code);
}
