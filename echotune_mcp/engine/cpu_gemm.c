/* Float32 GEMM for decode-sized batches on AVX-512 CPUs: y[M,N] = x[M,K] . w[N,K]^T.
 *
 * Why it exists: a batched MusicGen decode step multiplies 2..32 rows by every weight of the model,
 * so each weight byte is streamed from memory once and used a few dozen times. oneDNN's kernels
 * at these shapes pay the streaming time *plus* the compute time; this one software-prefetches
 * the weights two chunks ahead, spread over the FMA loop, so the two overlap (docs/BENCHMARKS.md,
 * "Engine": 24 layers at 32 rows, 118 ms with oneDNN, ~80 ms here on a 2-core Xeon).
 *
 * Weights come in two storage formats, both packed once into panels of 32 output columns
 * (zero-padded to a whole panel), [panel][k][32 columns]:
 *   - float32: 128 bytes per k;
 *   - bfloat16: 64 bytes per k, the 32-bit lane j holding column j (low half) and column j + 16
 *     (high half), so a shift and a mask turn one load into the two float32 vectors. Half the bytes
 *     to stream; the arithmetic (activations, products, sums) stays float32.
 * Each output element is accumulated over k in the same order whatever M is, so a row's result does
 * not depend on which other rows share the call (batch-invariant).
 * Threads: OpenMP, linked against the runtime torch already loaded, so it shares torch's thread pool.
 */
#include <immintrin.h>
#include <stdint.h>
#include <omp.h>

#define NR 32      /* output columns per panel: two zmm registers */
#define MR 8       /* rows per register block: 16 accumulators */
#define CHUNK 16384 /* bytes of a panel per k-chunk: kept in L1 while every row block uses it */
#define AHEAD 2    /* chunks prefetched ahead (into L2), spread evenly over the row blocks' loops */

static inline __attribute__((always_inline)) void load_b(const char *b, int bf16, __m512 *b0, __m512 *b1) {
    if (bf16) {
        __m512i v = _mm512_loadu_si512((const void *)b);
        *b0 = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        *b1 = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u)));
    } else {
        *b0 = _mm512_loadu_ps((const float *)b);
        *b1 = _mm512_loadu_ps((const float *)b + 16);
    }
}

/* One block of up to MR rows times one panel over kc steps of k; meanwhile prefetch npf lines from pf. */
static inline __attribute__((always_inline)) void block(const float *x, int64_t ldx, const char *b, int bf16,
        float *y, int64_t ldy, int kc, int first, int mr, __mmask16 m0, __mmask16 m1, const char *pf, int npf) {
    const int kb = bf16 ? 64 : 128;  /* bytes per k in a panel */
    __m512 c[MR][2];
    for (int i = 0; i < MR; i++) { c[i][0] = _mm512_setzero_ps(); c[i][1] = _mm512_setzero_ps(); }
    int due = 0, issued = 0;  /* prefetches spread evenly: npf of them over kc steps */
    for (int k = 0; k < kc; k++) {
        __m512 b0, b1;
        load_b(b + (int64_t)k * kb, bf16, &b0, &b1);
        for (due += npf; due >= kc; due -= kc) _mm_prefetch(pf + 64 * issued++, _MM_HINT_T1);
        for (int i = 0; i < MR; i++) {
            if (i < mr) {
                __m512 a = _mm512_set1_ps(x[i * ldx + k]);
                c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
                c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
            }
        }
    }
    while (issued < npf) _mm_prefetch(pf + 64 * issued++, _MM_HINT_T1);
    for (int i = 0; i < mr; i++) {
        float *r = y + i * ldy;
        if (!first) {
            c[i][0] = _mm512_add_ps(c[i][0], _mm512_maskz_loadu_ps(m0, r));
            c[i][1] = _mm512_add_ps(c[i][1], _mm512_maskz_loadu_ps(m1, r + 16));
        }
        _mm512_mask_storeu_ps(r, m0, c[i][0]);
        _mm512_mask_storeu_ps(r + 16, m1, c[i][1]);
    }
}

static inline __attribute__((always_inline)) void gemm(const float *x, const char *wp, int bf16, float *y,
        int64_t m, int64_t n, int64_t k, int threads) {
    const int kb = bf16 ? 64 : 128, kchunk = CHUNK / kb;
    int64_t panels = (n + NR - 1) / NR;
    int blocks = (int)((m + MR - 1) / MR);
    #pragma omp parallel num_threads(threads)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t p0 = panels * t / nt, p1 = panels * (t + 1) / nt;
        const char *end = wp + p1 * k * kb;
        for (int64_t p = p0; p < p1; p++) {
            const char *bp = wp + p * k * kb;
            int64_t cols = n - p * NR;
            __mmask16 m0 = cols >= 16 ? 0xFFFF : (__mmask16)((1u << cols) - 1);
            __mmask16 m1 = cols >= 32 ? 0xFFFF : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
            for (int64_t k0 = 0; k0 < k; k0 += kchunk) {
                int kc = (k - k0) < kchunk ? (int)(k - k0) : kchunk;
                const char *b = bp + k0 * kb;
                const char *pf = b + AHEAD * CHUNK;
                int lines = pf < end ? kc * kb / 64 : 0;  /* one chunk's cache lines */
                for (int j = 0; j < blocks; j++) {
                    int64_t r0 = (int64_t)MR * j;
                    int mr = (m - r0) < MR ? (int)(m - r0) : MR;
                    int l0 = lines * j / blocks, l1 = lines * (j + 1) / blocks;
                    float *yb = y + r0 * n + p * NR;
                    if (mr == MR)
                        block(x + r0 * k + k0, k, b, bf16, yb, n, kc, k0 == 0, MR, m0, m1, pf + 64 * l0, l1 - l0);
                    else
                        block(x + r0 * k + k0, k, b, bf16, yb, n, kc, k0 == 0, mr, m0, m1, pf + 64 * l0, l1 - l0);
                }
            }
        }
    }
}

/* Bytes of the packed form of an n x k weight (bf16: 2 bytes per weight, else 4). */
int64_t echotune_packed_bytes(int64_t n, int64_t k, int bf16) { return (n + NR - 1) / NR * NR * k * (bf16 ? 2 : 4); }

/* w: n x k row-major float32 (nn.Linear's weight) -> wp: [panel][k][32]. */
void echotune_pack_f32(const float *w, float *wp, int64_t n, int64_t k) {
    int64_t panels = (n + NR - 1) / NR;
    #pragma omp parallel for
    for (int64_t p = 0; p < panels; p++)
        for (int64_t kk = 0; kk < k; kk++)
            for (int j = 0; j < NR; j++) {
                int64_t row = p * NR + j;
                wp[(p * k + kk) * NR + j] = row < n ? w[row * k + kk] : 0.0f;
            }
}

/* w: n x k row-major bfloat16 bits -> wp: [panel][k][16 lanes of (column j | column j + 16 << 16)]. */
void echotune_pack_bf16(const uint16_t *w, uint32_t *wp, int64_t n, int64_t k) {
    int64_t panels = (n + NR - 1) / NR;
    #pragma omp parallel for
    for (int64_t p = 0; p < panels; p++)
        for (int64_t kk = 0; kk < k; kk++)
            for (int j = 0; j < 16; j++) {
                int64_t lo = p * NR + j, hi = lo + 16;
                uint32_t a = lo < n ? w[lo * k + kk] : 0, b = hi < n ? w[hi * k + kk] : 0;
                wp[(p * k + kk) * 16 + j] = a | (b << 16);
            }
}

/* y (m x n, row-major, contiguous) = x (m x k, contiguous) . w^T, with w packed by echotune_pack_*. */
void echotune_gemm_f32(const float *x, const float *wp, float *y, int64_t m, int64_t n, int64_t k, int threads) {
    gemm(x, (const char *)wp, 0, y, m, n, k, threads);
}

void echotune_gemm_bf16(const float *x, const uint32_t *wp, float *y, int64_t m, int64_t n, int64_t k, int threads) {
    gemm(x, (const char *)wp, 1, y, m, n, k, threads);
}
