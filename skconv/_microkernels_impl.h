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

/* dotgemm block: ni rows of A against nj shifted rows of B. */
SKC_ALWAYS_INLINE void SKC_NAME(skc_dotblock)(
    const int ni, const int nj, ptrdiff_t P,
    const SKC_T *A, ptrdiff_t lda,
    const SKC_T *B, const ptrdiff_t *b_off,
    SKC_T *C, ptrdiff_t ldc, int accumulate)
{
    SKC_VT acc[4][2];
    const SKC_T *b[2];
    ptrdiff_t p;
    int i, j;
    for (j = 0; j < nj; j++)
        b[j] = B + b_off[j];
    for (i = 0; i < ni; i++)
        for (j = 0; j < nj; j++)
            acc[i][j] = (SKC_VT){0};
    for (p = 0; p < P; p += SKC_VL) {
        SKC_VT bv[2];
        for (j = 0; j < nj; j++)
            bv[j] = *(const SKC_VT *)(b[j] + p);
        for (i = 0; i < ni; i++) {
            SKC_VT av = *(const SKC_VT *)(A + i * lda + p);
            for (j = 0; j < nj; j++)
                acc[i][j] += av * bv[j];
        }
    }
    for (i = 0; i < ni; i++)
        for (j = 0; j < nj; j++) {
            SKC_T t = SKC_NAME(skc_hsum)(acc[i][j]);
            if (accumulate)
                C[i * ldc + j] += t;
            else
                C[i * ldc + j] = t;
        }
}

SKC_ALWAYS_INLINE void SKC_NAME(skc_dotrows)(
    const int ni, ptrdiff_t N, ptrdiff_t P,
    const SKC_T *A, ptrdiff_t lda,
    const SKC_T *B, const ptrdiff_t *b_off,
    SKC_T *C, ptrdiff_t ldc, int accumulate)
{
    ptrdiff_t j = 0;
    for (; j + 2 <= N; j += 2)
        SKC_NAME(skc_dotblock)(ni, 2, P, A, lda, B, b_off + j, C + j, ldc, accumulate);
    if (j < N)
        SKC_NAME(skc_dotblock)(ni, 1, P, A, lda, B, b_off + j, C + j, ldc, accumulate);
}

SKC_CLONES
static void SKC_NAME(skc_dotgemm)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t P,
                                  const SKC_T *A, ptrdiff_t lda,
                                  const SKC_T *B, const ptrdiff_t *b_off,
                                  SKC_T *C, ptrdiff_t ldc, int accumulate)
{
    ptrdiff_t i = 0;
    /* Whole vectors to the end: the caller zeroed A past P (see the contract). */
    P = (P + SKC_VL - 1) / SKC_VL * SKC_VL;
    for (; i + 4 <= M; i += 4)
        SKC_NAME(skc_dotrows)(4, N, P, A + i * lda, lda, B, b_off, C + i * ldc, ldc,
                              accumulate);
    if (i + 2 <= M) {
        SKC_NAME(skc_dotrows)(2, N, P, A + i * lda, lda, B, b_off, C + i * ldc, ldc,
                              accumulate);
        i += 2;
    }
    if (i < M)
        SKC_NAME(skc_dotrows)(1, N, P, A + i * lda, lda, B, b_off, C + i * ldc, ldc,
                              accumulate);
}
