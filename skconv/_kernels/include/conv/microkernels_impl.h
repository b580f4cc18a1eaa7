/*
 * Body of the micro-kernels, included twice by microkernels.h with
 * SKC_T (scalar), SKC_VT (64-byte vector), SKC_VL (lanes) and SKC_NAME (suffix) set.
 * No include guard on purpose.
 */

/* rowgemm block: nr rows of C times nv vectors, summing over all K. Vector v starts
 * at column vp[v] of both B's rows and C. nr, nv are compile-time constants after
 * inlining, so acc[][] lives in registers. The block's rows of A are packed as
 * (K, nr) (see skc_rowgemm_pack): a step's nr values sit side by side at constant
 * offsets from one pointer, which leaves enough general registers for the loop (one
 * pointer per row of A made the 6-row block spill), and the block reads its own
 * contiguous panel however large M is. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_rowblock)(
    const int nr, const int nv, ptrdiff_t K, const SKC_T *A,
    const SKC_T *B, const ptrdiff_t *b_off, const ptrdiff_t *vp,
    SKC_T *C, ptrdiff_t ldc, int accumulate)
{
    SKC_VT acc[6][4];
    const SKC_T *bv_at[4];
    ptrdiff_t k;
    int r, v;
    for (v = 0; v < nv; v++)
        bv_at[v] = B + vp[v];
    for (r = 0; r < nr; r++)
        for (v = 0; v < nv; v++)
            acc[r][v] = accumulate ? *(SKC_VT *)(C + r * ldc + vp[v]) : (SKC_VT){0};
    for (k = 0; k < K; k++) {
        const ptrdiff_t off = b_off[k];
        const SKC_T *a = A + k * nr;
        SKC_VT bv[4];
        for (v = 0; v < nv; v++)
            bv[v] = *(const SKC_VT *)(bv_at[v] + off);
        for (r = 0; r < nr; r++) {
            SKC_T a_r = a[r];
            for (v = 0; v < nv; v++)
                acc[r][v] += a_r * bv[v];
        }
    }
    for (r = 0; r < nr; r++)
        for (v = 0; v < nv; v++)
            *(SKC_VT *)(C + r * ldc + vp[v]) = acc[r][v];
}

/* Rows in the register block that starts at row i of M: 4 at a time, then 2, then 1;
 * on CPUs with 32 vector registers (six_rows) 6 rows when 6 are left and M % 4 == 2
 * (a LeNet input gradient has 6 channels): one 6-row block keeps 12 FMA chains going
 * where 4 + 2 rows would leave the 2-row block latency-bound. The packing and the
 * kernel both follow this one rule. */
SKC_ALWAYS_INLINE int SKC_NAME(skc_block_rows)(ptrdiff_t i, ptrdiff_t M, int six_rows)
{
    if (six_rows && M % 4 == 2 && M - i == 6)
        return 6;
    return M - i >= 4 ? 4 : (M - i >= 2 ? 2 : 1);
}

/* All rows of C for the nv vectors starting at columns vp[0..nv). */
SKC_ALWAYS_INLINE void SKC_NAME(skc_rowpanel)(
    const int nv, ptrdiff_t M, ptrdiff_t K, const SKC_T *A,
    const SKC_T *B, const ptrdiff_t *b_off, const ptrdiff_t *vp,
    SKC_T *C, ptrdiff_t ldc, int accumulate, int six_rows)
{
    ptrdiff_t i;
    int nr;
    for (i = 0; i < M; i += nr) {
        nr = SKC_NAME(skc_block_rows)(i, M, six_rows);
        /* Only six_rows CPUs run the 6-row block: with 16 registers it would spill. */
        if (nr == 6)
            SKC_NAME(skc_rowblock)(6, nv, K, A + i * K, B, b_off, vp, C + i * ldc, ldc,
                                   accumulate);
        else if (nr == 4)
            SKC_NAME(skc_rowblock)(4, nv, K, A + i * K, B, b_off, vp, C + i * ldc, ldc,
                                   accumulate);
        else if (nr == 2)
            SKC_NAME(skc_rowblock)(2, nv, K, A + i * K, B, b_off, vp, C + i * ldc, ldc,
                                   accumulate);
        else
            SKC_NAME(skc_rowblock)(1, nv, K, A + i * K, B, b_off, vp, C + i * ldc, ldc,
                                   accumulate);
    }
}

/*
 * rowgemm_pack: A_packed for skc_rowgemm from A[i*a_row + k*a_col] (i < M, k < K):
 * the register block of rows [i, i + nr) as a (K, nr) panel at A_packed + i*K.
 * A_packed holds M*K values. Called once per convolution call, not per sample.
 */
static void SKC_NAME(skc_rowgemm_pack)(ptrdiff_t M, ptrdiff_t K, const SKC_T *A,
                                       ptrdiff_t a_row, ptrdiff_t a_col,
                                       SKC_T *A_packed)
{
    ptrdiff_t i, k;
    int r, nr;
    int six_rows = SKC_HAVE_32_VECTOR_REGISTERS();
    for (i = 0; i < M; i += nr) {
        nr = SKC_NAME(skc_block_rows)(i, M, six_rows);
        for (k = 0; k < K; k++)
            for (r = 0; r < nr; r++)
                A_packed[i * K + k * nr + r] = A[(i + r) * a_row + k * a_col];
    }
}

SKC_CLONES
static void SKC_NAME(skc_rowgemm)(ptrdiff_t M, ptrdiff_t n_vec, const ptrdiff_t *vec_at,
                                  ptrdiff_t K, const SKC_T *A_packed,
                                  const SKC_T *B, const ptrdiff_t *b_off,
                                  SKC_T *C, ptrdiff_t ldc, int accumulate)
{
    ptrdiff_t j = 0;
    /* Blocking never changes a result (each C element sums over k in order). */
    int six_rows = SKC_HAVE_32_VECTOR_REGISTERS();
    /* With 32 vector registers, panels of 4 vectors: 16 (or 24) accumulators hide
     * the FMA latency on both ports and share each row's broadcast over 4 vectors;
     * 8 accumulators left the units half idle. Blocking changes no sum. */
    if (six_rows)
        for (; j + 4 <= n_vec; j += 4)
            SKC_NAME(skc_rowpanel)(4, M, K, A_packed, B, b_off, vec_at + j, C, ldc,
                                   accumulate, six_rows);
    for (; j + 2 <= n_vec; j += 2)
        SKC_NAME(skc_rowpanel)(2, M, K, A_packed, B, b_off, vec_at + j, C, ldc,
                               accumulate, six_rows);
    if (j < n_vec)
        SKC_NAME(skc_rowpanel)(1, M, K, A_packed, B, b_off, vec_at + j, C, ldc,
                               accumulate, six_rows);
}

/* denseblock: nr rows of C times nv vectors, summing over all K, with A read in
 * place (row r at A + r*lda) and B's rows ldb apart: a dense layer's product, whose
 * rows of A are already contiguous (packing them, as rowgemm's A, cost a sixth of
 * the product). The sum over k runs in order, as in skc_rowblock. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_denseblock)(
    const int nr, const int nv, ptrdiff_t K, const SKC_T *A, ptrdiff_t lda,
    const SKC_T *B, ptrdiff_t ldb, SKC_T *C, ptrdiff_t ldc, int accumulate)
{
    SKC_VT acc[4][4];
    ptrdiff_t k;
    int r, v;
    for (r = 0; r < nr; r++)
        for (v = 0; v < nv; v++)
            acc[r][v] = accumulate ? *(SKC_VT *)(C + r * ldc + v * SKC_VL) : (SKC_VT){0};
    for (k = 0; k < K; k++) {
        SKC_VT bv[4];
        for (v = 0; v < nv; v++)
            bv[v] = *(const SKC_VT *)(B + k * ldb + v * SKC_VL);
        for (r = 0; r < nr; r++) {
            SKC_T a_r = A[r * lda + k];
            for (v = 0; v < nv; v++)
                acc[r][v] += a_r * bv[v];
        }
    }
    for (r = 0; r < nr; r++)
        for (v = 0; v < nv; v++)
            *(SKC_VT *)(C + r * ldc + v * SKC_VL) = acc[r][v];
}

/* All M rows of C for nv vectors: blocks of 4 rows, then 2, then 1. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_densepanel)(
    const int nv, ptrdiff_t M, ptrdiff_t K, const SKC_T *A, ptrdiff_t lda,
    const SKC_T *B, ptrdiff_t ldb, SKC_T *C, ptrdiff_t ldc, int accumulate)
{
    ptrdiff_t i = 0;
    for (; i + 4 <= M; i += 4)
        SKC_NAME(skc_denseblock)(4, nv, K, A + i * lda, lda, B, ldb, C + i * ldc, ldc,
                                 accumulate);
    if (i + 2 <= M) {
        SKC_NAME(skc_denseblock)(2, nv, K, A + i * lda, lda, B, ldb, C + i * ldc, ldc,
                                 accumulate);
        i += 2;
    }
    if (i < M)
        SKC_NAME(skc_denseblock)(1, nv, K, A + i * lda, lda, B, ldb, C + i * ldc, ldc,
                                 accumulate);
}

/*
 * densegemm: C[i*ldc + p] = (accumulate ? C[i*ldc + p] : 0)
 *                           + sum_{k<K} A[i*lda + k] * B[k*ldb + p]
 * for i < M and p < n_vec * VL: the plain row-major product, A and B read in place.
 * Each C element sums over k in increasing order, whatever the blocking. Panels of
 * 4 vectors with 32 vector registers, else of 2, as in skc_rowgemm.
 */
SKC_CLONES
static void SKC_NAME(skc_densegemm)(ptrdiff_t M, ptrdiff_t n_vec, ptrdiff_t K,
                                    const SKC_T *A, ptrdiff_t lda,
                                    const SKC_T *B, ptrdiff_t ldb,
                                    SKC_T *C, ptrdiff_t ldc, int accumulate)
{
    ptrdiff_t j = 0;
    if (SKC_HAVE_32_VECTOR_REGISTERS())
        for (; j + 4 <= n_vec; j += 4)
            SKC_NAME(skc_densepanel)(4, M, K, A, lda, B + j * SKC_VL, ldb,
                                     C + j * SKC_VL, ldc, accumulate);
    for (; j + 2 <= n_vec; j += 2)
        SKC_NAME(skc_densepanel)(2, M, K, A, lda, B + j * SKC_VL, ldb, C + j * SKC_VL,
                                 ldc, accumulate);
    if (j < n_vec)
        SKC_NAME(skc_densepanel)(1, M, K, A, lda, B + j * SKC_VL, ldb, C + j * SKC_VL,
                                 ldc, accumulate);
}

/* wgrad block: nr taps (rows of B) at once, one vector of output channels. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_wgrad_block)(
    const int nr, ptrdiff_t n_pos, const ptrdiff_t *pos,
    const SKC_T *B, const ptrdiff_t *b_off,
    const SKC_T *G, ptrdiff_t ldg,
    SKC_T *W, ptrdiff_t ldw)
{
    SKC_VT acc[8];
    const SKC_T *b[8];
    ptrdiff_t p;
    int i;
    for (i = 0; i < nr; i++) {
        acc[i] = *(SKC_VT *)(W + i * ldw);
        b[i] = B + b_off[i];
    }
    for (p = 0; p < n_pos; p++) {
        SKC_VT g = *(const SKC_VT *)(G + p * ldg);
        ptrdiff_t at = pos[p];
        for (i = 0; i < nr; i++)
            acc[i] += b[i][at] * g;
    }
    for (i = 0; i < nr; i++)
        *(SKC_VT *)(W + i * ldw) = acc[i];
}

/*
 * wgrad: W[r*ldw + l] += sum_{p < n_pos} B[b_off[r] + pos[p]] * G[p*ldg + l]
 * for r < R and l < DV (DV a multiple of the vector length, ldw and ldg >= DV).
 * The weight gradient of a stride-1 convolution, vectorised over the output
 * channels l: G is grad_y transposed to (positions, channels), B the zero-padded
 * input, pos the padded-grid offset of each real output position. Each W element is
 * a sum over p in increasing order, so the result does not depend on blocking.
 */
SKC_CLONES
static void SKC_NAME(skc_wgrad)(ptrdiff_t R, ptrdiff_t DV, ptrdiff_t n_pos,
                                const ptrdiff_t *pos,
                                const SKC_T *B, const ptrdiff_t *b_off,
                                const SKC_T *G, ptrdiff_t ldg,
                                SKC_T *W, ptrdiff_t ldw)
{
    ptrdiff_t l, r;
    for (l = 0; l < DV; l += SKC_VL) {
        r = 0;
        /* 8 taps at once: each chain of FMAs waits on its own previous result
         * (4 cycles), so 8 chains keep both FMA units busy where 4 left them half
         * idle. Then blocks of 4, 2 and 1 for the taps left. */
        for (; r + 8 <= R; r += 8)
            SKC_NAME(skc_wgrad_block)(8, n_pos, pos, B, b_off + r, G + l, ldg,
                                      W + r * ldw + l, ldw);
        if (r + 4 <= R) {
            SKC_NAME(skc_wgrad_block)(4, n_pos, pos, B, b_off + r, G + l, ldg,
                                      W + r * ldw + l, ldw);
            r += 4;
        }
        if (r + 2 <= R) {
            SKC_NAME(skc_wgrad_block)(2, n_pos, pos, B, b_off + r, G + l, ldg,
                                      W + r * ldw + l, ldw);
            r += 2;
        }
        if (r < R)
            SKC_NAME(skc_wgrad_block)(1, n_pos, pos, B, b_off + r, G + l, ldg,
                                      W + r * ldw + l, ldw);
    }
}

/* wgrad_wide block: nd filters x nr taps, vectorised over positions. Each acc lane
 * sums every SKC_VL-th position; the caller reduces the lanes in a fixed order. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_wgrad_wide_block)(
    const int nd, const int nr, ptrdiff_t Q,
    const SKC_T *G, ptrdiff_t ldg,
    const SKC_T *B, const ptrdiff_t *b_off,
    SKC_T *ACC, ptrdiff_t R)
{
    SKC_VT acc[3][4];
    const SKC_T *b[4];
    ptrdiff_t q;
    int d, r;
    for (d = 0; d < nd; d++)
        for (r = 0; r < nr; r++)
            acc[d][r] = *(SKC_VT *)(ACC + (d * R + r) * SKC_VL);
    for (r = 0; r < nr; r++)
        b[r] = B + b_off[r];
    for (q = 0; q < Q; q += SKC_VL) {
        SKC_VT g[3];
        for (d = 0; d < nd; d++)
            g[d] = *(const SKC_VT *)(G + d * ldg + q);
        for (r = 0; r < nr; r++) {
            SKC_VT bv = *(const SKC_VT *)(b[r] + q);
            for (d = 0; d < nd; d++)
                acc[d][r] += g[d] * bv;
        }
    }
    for (d = 0; d < nd; d++)
        for (r = 0; r < nr; r++)
            *(SKC_VT *)(ACC + (d * R + r) * SKC_VL) = acc[d][r];
}

/* Taps of one block of nd filters: blocks of 4, then 2, then 1. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_wgrad_wide_rows)(
    const int nd, ptrdiff_t R, ptrdiff_t Q,
    const SKC_T *G, ptrdiff_t ldg,
    const SKC_T *B, const ptrdiff_t *b_off, SKC_T *ACC)
{
    ptrdiff_t r = 0;
    for (; r + 4 <= R; r += 4)
        SKC_NAME(skc_wgrad_wide_block)(nd, 4, Q, G, ldg, B, b_off + r,
                                       ACC + r * SKC_VL, R);
    if (r + 2 <= R) {
        SKC_NAME(skc_wgrad_wide_block)(nd, 2, Q, G, ldg, B, b_off + r,
                                       ACC + r * SKC_VL, R);
        r += 2;
    }
    if (r < R)
        SKC_NAME(skc_wgrad_wide_block)(nd, 1, Q, G, ldg, B, b_off + r,
                                       ACC + r * SKC_VL, R);
}

/*
 * wgrad_wide: ACC[(d*R + r)*VL + l] += sum_{q = l, l + VL, ... < Q}
 *                                          G[d*ldg + q] * B[b_off[r] + q]
 * for d < D, r < R, lanes l < VL (Q a multiple of VL). The weight gradient of a
 * stride-1 convolution for few filters, vectorised over positions: G is grad_y laid
 * on the padded input grid (zeros where a wide position is not a real output), so
 * both operands are read as contiguous vectors and every lane is useful. The
 * per-channel kernel above wastes most lanes when D is well below SKC_VL.
 */
SKC_CLONES
static void SKC_NAME(skc_wgrad_wide)(ptrdiff_t D, ptrdiff_t R, ptrdiff_t Q,
                                     const SKC_T *G, ptrdiff_t ldg,
                                     const SKC_T *B, const ptrdiff_t *b_off,
                                     SKC_T *ACC)
{
    ptrdiff_t d = 0;
    for (; d + 3 <= D; d += 3)
        SKC_NAME(skc_wgrad_wide_rows)(3, R, Q, G + d * ldg, ldg, B, b_off,
                                      ACC + d * R * SKC_VL);
    if (d + 2 <= D) {
        SKC_NAME(skc_wgrad_wide_rows)(2, R, Q, G + d * ldg, ldg, B, b_off,
                                      ACC + d * R * SKC_VL);
        d += 2;
    }
    if (d < D)
        SKC_NAME(skc_wgrad_wide_rows)(1, R, Q, G + d * ldg, ldg, B, b_off,
                                      ACC + d * R * SKC_VL);
}

/* deinterleave body for a stride known at compile time (after inlining). */
SKC_ALWAYS_INLINE void SKC_NAME(skc_deinterleave_by)(const ptrdiff_t S, const SKC_T *src,
                                                     ptrdiff_t n_groups, SKC_T *dst,
                                                     ptrdiff_t ld)
{
    ptrdiff_t m, r;
    for (m = 0; m < n_groups; m++)
        for (r = 0; r < S; r++)
            dst[r * ld + m] = src[m * S + r];
}

/*
 * deinterleave: dst[r*ld + m] = src[m*S + r] for r < S, m < n_groups: a run of a
 * signal split into its S phases (the polyphase copy of conv.pyx's 1-D paths: a
 * pooling stride times a convolution stride). Strides 2 to 9 get their own
 * vectorised loops; a stride known only at run time makes a scalar loop.
 */
SKC_CLONES
static void SKC_NAME(skc_deinterleave)(const SKC_T *src, ptrdiff_t n_groups, ptrdiff_t S,
                                       SKC_T *dst, ptrdiff_t ld)
{
    switch (S) {
    case 2: SKC_NAME(skc_deinterleave_by)(2, src, n_groups, dst, ld); break;
    case 3: SKC_NAME(skc_deinterleave_by)(3, src, n_groups, dst, ld); break;
    case 4: SKC_NAME(skc_deinterleave_by)(4, src, n_groups, dst, ld); break;
    case 5: SKC_NAME(skc_deinterleave_by)(5, src, n_groups, dst, ld); break;
    case 6: SKC_NAME(skc_deinterleave_by)(6, src, n_groups, dst, ld); break;
    case 7: SKC_NAME(skc_deinterleave_by)(7, src, n_groups, dst, ld); break;
    case 8: SKC_NAME(skc_deinterleave_by)(8, src, n_groups, dst, ld); break;
    case 9: SKC_NAME(skc_deinterleave_by)(9, src, n_groups, dst, ld); break;
    default: SKC_NAME(skc_deinterleave_by)(S, src, n_groups, dst, ld);
    }
}
