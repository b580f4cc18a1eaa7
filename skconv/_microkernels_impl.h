/*
 * Body of the micro-kernels, included twice by _microkernels.h with
 * SKC_T (scalar), SKC_VT (64-byte vector), SKC_VL (lanes) and SKC_NAME (suffix) set.
 * No include guard on purpose.
 */

/* rowgemm block: nr rows of C times nv vectors, summing over all K. nr, nv are
 * compile-time constants after inlining, so acc[][] lives in registers. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_rowblock)(
    const int nr, const int nv, ptrdiff_t K,
    const SKC_T *A, ptrdiff_t a_row, ptrdiff_t a_col,
    const SKC_T *B, const ptrdiff_t *b_off,
    SKC_T *C, ptrdiff_t ldc, int accumulate)
{
    SKC_VT acc[4][2];
    ptrdiff_t k;
    int r, v;
    for (r = 0; r < nr; r++)
        for (v = 0; v < nv; v++)
            acc[r][v] = accumulate ? *(SKC_VT *)(C + r * ldc + v * SKC_VL) : (SKC_VT){0};
    for (k = 0; k < K; k++) {
        const SKC_T *b = B + b_off[k];
        SKC_VT bv[2];
        for (v = 0; v < nv; v++)
            bv[v] = *(const SKC_VT *)(b + v * SKC_VL);
        for (r = 0; r < nr; r++) {
            SKC_T a = A[r * a_row + k * a_col];
            for (v = 0; v < nv; v++)
                acc[r][v] += a * bv[v];
        }
    }
    for (r = 0; r < nr; r++)
        for (v = 0; v < nv; v++)
            *(SKC_VT *)(C + r * ldc + v * SKC_VL) = acc[r][v];
}

/* All rows of C for the column block starting at p0 (nv vectors wide). */
SKC_ALWAYS_INLINE void SKC_NAME(skc_rowpanel)(
    const int nv, ptrdiff_t M, ptrdiff_t K,
    const SKC_T *A, ptrdiff_t a_row, ptrdiff_t a_col,
    const SKC_T *B, const ptrdiff_t *b_off,
    SKC_T *C, ptrdiff_t ldc, int accumulate)
{
    ptrdiff_t i = 0;
    for (; i + 4 <= M; i += 4)
        SKC_NAME(skc_rowblock)(4, nv, K, A + i * a_row, a_row, a_col, B, b_off,
                               C + i * ldc, ldc, accumulate);
    if (i + 2 <= M) {
        SKC_NAME(skc_rowblock)(2, nv, K, A + i * a_row, a_row, a_col, B, b_off,
                               C + i * ldc, ldc, accumulate);
        i += 2;
    }
    if (i < M)
        SKC_NAME(skc_rowblock)(1, nv, K, A + i * a_row, a_row, a_col, B, b_off,
                               C + i * ldc, ldc, accumulate);
}

SKC_CLONES
static void SKC_NAME(skc_rowgemm)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                                  const SKC_T *A, ptrdiff_t a_row, ptrdiff_t a_col,
                                  const SKC_T *B, const ptrdiff_t *b_off,
                                  SKC_T *C, ptrdiff_t ldc, int accumulate)
{
    ptrdiff_t p0 = 0;
    for (; p0 + 2 * SKC_VL <= N; p0 += 2 * SKC_VL)
        SKC_NAME(skc_rowpanel)(2, M, K, A, a_row, a_col, B + p0, b_off, C + p0, ldc,
                               accumulate);
    /* The last block runs a whole vector over the caller's slack (see the contract). */
    for (; p0 < N; p0 += SKC_VL)
        SKC_NAME(skc_rowpanel)(1, M, K, A, a_row, a_col, B + p0, b_off, C + p0, ldc,
                               accumulate);
}

/* wgrad block: nr taps (rows of B) at once, one vector of output channels. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_wgrad_block)(
    const int nr, ptrdiff_t n_pos, const ptrdiff_t *pos,
    const SKC_T *B, const ptrdiff_t *b_off,
    const SKC_T *G, ptrdiff_t ldg,
    SKC_T *W, ptrdiff_t ldw)
{
    SKC_VT acc[4];
    const SKC_T *b[4];
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
        for (; r + 4 <= R; r += 4)
            SKC_NAME(skc_wgrad_block)(4, n_pos, pos, B, b_off + r, G + l, ldg,
                                      W + r * ldw + l, ldw);
        /* Fewer than 4 taps left: a 2-tap block, then a single one (each chain of
         * FMAs waits on its own previous result, so more taps at once run faster). */
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
