/* SPDX-License-Identifier: MIT */
/* strop — its own single-precision GEMM for CPUs with AVX-512: for every product where
 * OpenBLAS runs an older kernel set (OpenBLAS picks kernels by CPU model, and some machines pin
 * an AVX2 set on purpose with OPENBLAS_CORETYPE), for the wide products of a transformer where it
 * is as fast as OpenBLAS's own AVX-512 kernels, and for the small and skinny products of a
 * training step everywhere. Large products use the usual blocked scheme: panels of op(B)
 * (KC x 32) and op(A) (8 x KC) are packed, op(A) once per k block for up to 512 rows whatever
 * n, then an 8 x 32 micro-kernel keeps 16 accumulators in zmm registers while the tile of C it
 * ends with is prefetched. Small ones read the operands in place (sgemm_sup_n,
 * sgemm_sup_t). Each element of C sums its products in k order within a KC block and adds the
 * blocks in order, on every path and whatever part of C a call covers, so neither the path nor
 * the split of C across threads changes a bit. */
#include "ops/ops.h"

#include <pthread.h>

#include "core/core.h"

int strop__gemm_impl = 0;
int strop__gemm_sup = 0;

#if defined(__x86_64__) && defined(__GNUC__)
#  include <immintrin.h>

char *openblas_get_corename(void); /* OpenBLAS's, not in every cblas.h */

enum { MR = 8, NR = 32, KC = STROP__GEMM_KC, MA = 512, MC = 128, NC = 512 };

/* Packing buffers (MA x KC of op(A), KC x NC of op(B)), one per GEMM running at a time: a call
 * takes one from a shared list and gives it back. The list is filled with one per thread and
 * one more at the first call, so after that a training step allocates nothing; more are made
 * only when more host threads run GEMMs at once. op(A) is packed once per k block for up to MA
 * rows, whatever n (not again for every NC columns of C). Freed when the library unloads. */
enum { BUF_FLOATS = MA * KC + KC * NC };
typedef struct gemm_buf {
  struct gemm_buf *next;
  float *data;
} gemm_buf;
static pthread_mutex_t g_buf_mu = PTHREAD_MUTEX_INITIALIZER;
static gemm_buf *g_free_bufs;
static int g_bufs_made;
static size_t g_buf_count; /* made so far (atomic: buf_new also runs outside g_buf_mu) */

static gemm_buf *buf_new(void) {
  gemm_buf *g = strop__malloc(sizeof *g);
  if (!g) return NULL;
  g->data = strop__malloc_aligned(sizeof(float) * (size_t)BUF_FLOATS);
  if (!g->data) {
    strop__free(g);
    return NULL;
  }
  __atomic_add_fetch(&g_buf_count, 1, __ATOMIC_RELAXED);
  return g;
}

size_t strop__gemm_buffer_bytes(int made_only) {
  size_t n = __atomic_load_n(&g_buf_count, __ATOMIC_RELAXED);
  /* none yet: those the first call makes (a prediction's probe of fewer samples than the step
   * may have run only products of few rows, which need none: gemv.c) */
  if (n == 0 && !made_only && strop__gemm_own_available()) n = (size_t)strop__num_threads() + 1;
  return n * (sizeof(gemm_buf) + sizeof(float) * (size_t)BUF_FLOATS);
}

static gemm_buf *buf_take(void) {
  pthread_mutex_lock(&g_buf_mu);
  if (!g_free_bufs && !g_bufs_made) {
    for (int i = 0; i <= strop__num_threads(); i++) {
      gemm_buf *g = buf_new();
      if (!g) break;
      g->next = g_free_bufs;
      g_free_bufs = g;
    }
    g_bufs_made = 1;
  }
  gemm_buf *g = g_free_bufs;
  if (g) g_free_bufs = g->next;
  pthread_mutex_unlock(&g_buf_mu);
  return g ? g : buf_new();
}

static void buf_give(gemm_buf *g) {
  pthread_mutex_lock(&g_buf_mu);
  g->next = g_free_bufs;
  g_free_bufs = g;
  pthread_mutex_unlock(&g_buf_mu);
}

__attribute__((destructor)) static void bufs_release(void) {
  pthread_mutex_lock(&g_buf_mu);
  while (g_free_bufs) {
    gemm_buf *g = g_free_bufs;
    g_free_bufs = g->next;
    strop__free_aligned(g->data);
    strop__free(g);
  }
  g_bufs_made = 0;
  pthread_mutex_unlock(&g_buf_mu);
}

/* 8 rows of 8 floats (row stride ld) -> 8 rows of 8 (stride dst_ld), transposed. */
__attribute__((target("avx512f"))) static inline void tr8x8(const float *s, int64_t ld, float *d,
                                                            int64_t dst_ld) {
  const __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ld);
  const __m256 r2 = _mm256_loadu_ps(s + 2 * ld), r3 = _mm256_loadu_ps(s + 3 * ld);
  const __m256 r4 = _mm256_loadu_ps(s + 4 * ld), r5 = _mm256_loadu_ps(s + 5 * ld);
  const __m256 r6 = _mm256_loadu_ps(s + 6 * ld), r7 = _mm256_loadu_ps(s + 7 * ld);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(d + dst_ld, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(d + 2 * dst_ld, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(d + 3 * dst_ld, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(d + 4 * dst_ld, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(d + 5 * dst_ld, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(d + 6 * dst_ld, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(d + 7 * dst_ld, _mm256_permute2f128_ps(u3, u7, 0x31));
}

static __mmask16 lanes(int64_t left) {
  return left >= 16  ? (__mmask16)0xffff
         : left <= 0 ? (__mmask16)0
                     : (__mmask16)((1u << left) - 1u);
}

/* rows x kc of a row-major matrix (row stride ld, k contiguous) into dst[k * w + r], rows <= w
 * with the rest of each k row zeroed; w is a multiple of 8 and rows are taken 8 at a time. */
__attribute__((target("avx512f"))) static void pack_rows_t(const float *src, int64_t ld,
                                                           int64_t rows, int64_t kc, float *dst,
                                                           int64_t w) {
  int64_t r = 0;
  for (; r + 8 <= rows; r += 8) {
    const float *s = src + r * ld;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) tr8x8(s + k, ld, dst + k * w + r, w);
    for (; k < kc; k++)
      for (int64_t i = 0; i < 8; i++) dst[k * w + r + i] = s[i * ld + k];
  }
  if (r == w) return;
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    float *d = dst + k * w;
    for (int64_t c = r; c < w; c += 16) _mm512_mask_storeu_ps(d + c, lanes(w - c), zero);
    for (int64_t i = r; i < rows; i++) d[i] = src[i * ld + k];
  }
}

/* kc rows of cols contiguous floats (row stride ld) into dst[k * w + c], zero-padded to w
 * (8 or a multiple of 16). */
__attribute__((target("avx512f"))) static void pack_rows_n(const float *src, int64_t ld,
                                                           int64_t cols, int64_t kc, float *dst,
                                                           int64_t w) {
  for (int64_t k = 0; k < kc; k++) {
    const float *s = src + k * ld;
    float *d = dst + k * w;
    for (int64_t c = 0; c < w; c += 16)
      _mm512_mask_storeu_ps(d + c, lanes(w - c), _mm512_maskz_loadu_ps(lanes(cols - c), s + c));
  }
}

/* kc rows of B (row stride ldb, cols contiguous floats each) into panels of NR columns, each
 * [kc][NR] zero-padded: pack_rows_n's panels, filled row by row so that B is read in the order
 * it lies (a weight streamed from memory, whose rows are far apart), the rows ahead prefetched
 * (a row's segment is too short for the hardware's stream prefetcher to run ahead of it). */
__attribute__((target("avx512f"))) static void pack_b_n(const float *b, int64_t ldb, int64_t cols,
                                                        int64_t kc, float *d) {
  for (int64_t p = 0; p < kc; p++) {
    const float *s = b + p * ldb;
    for (int64_t j = 0; j < cols; j += NR) {
      float *dp = d + j * kc + p * NR;
      _mm_prefetch((const char *)(s + 4 * ldb + j), _MM_HINT_T0);
      _mm_prefetch((const char *)(s + 4 * ldb + j + 16), _MM_HINT_T0);
      _mm512_storeu_ps(dp, _mm512_maskz_loadu_ps(lanes(cols - j), s + j));
      _mm512_storeu_ps(dp + 16, _mm512_maskz_loadu_ps(lanes(cols - j - 16), s + j + 16));
    }
  }
}

/* rows x kc of op(A) into panels of MR rows, each [kc][MR] (zero rows below the last); a
 * points at op(A)(0, 0). Transposed (op(A)(r, p) = a[p * lda + r]), two panels are filled from
 * each 16-float row segment, and the rows ahead are prefetched: they lie lda apart. */
__attribute__((target("avx512f"))) static void pack_a(int ta, const float *a, int64_t lda,
                                                      int64_t rows, int64_t kc, float *d) {
  int64_t i = 0;
  if (ta)
    for (; i + 2 * MR <= rows; i += 2 * MR) {
      const float *s = a + i;
      float *d0 = d + i * kc, *d1 = d0 + MR * kc;
      for (int64_t p = 0; p < kc; p++) {
        _mm_prefetch((const char *)(s + (p + 8) * lda), _MM_HINT_T0);
        const __m512 v = _mm512_loadu_ps(s + p * lda);
        _mm256_storeu_ps(d0 + p * MR, _mm512_castps512_ps256(v));
        _mm256_storeu_ps(d1 + p * MR,
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
      }
    }
  for (; i < rows; i += MR) {
    const int64_t r = rows - i < MR ? rows - i : MR;
    if (ta) pack_rows_n(a + i, lda, r, kc, d + i * kc, MR);
    else pack_rows_t(a + i * lda, lda, r, kc, d + i * kc, MR);
  }
}

#  define GEMM_INLINE static inline __attribute__((always_inline, target("avx512f")))

/* The micro-kernels sum over kc the products A(r, k) B(k, 0..31) for the 8 rows r of a tile,
 * into 16 accumulators (8 for the 16-wide one) in k order. A(r, k) is a[r * rsa + k * csa]: a
 * packed panel (rsa 1, csa 8), a row-major matrix read in place (rsa lda, csa 1) or a
 * transposed one (rsa 1, csa lda). Row k of B starts at b + k * ldbk with its 32 (16) columns
 * contiguous; with `masked`, lanes outside m0 / m1 are not read (a matrix read in place whose
 * last panel is narrow), otherwise B is a zero-padded packed panel. Products and sums are the
 * same whichever way the operands are laid out, so every path below gives the same bits. */
GEMM_INLINE void mk_8x32(int64_t kc, const float *a, int64_t rsa, int64_t csa, const float *b,
                         int64_t ldbk, int masked, __mmask16 m0, __mmask16 m1, __m512 *out) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00;
  __m512 c61 = c00, c70 = c00, c71 = c00;
  for (int64_t k = 0; k < kc; k++) {
    const __m512 b0 = masked ? _mm512_maskz_loadu_ps(m0, b) : _mm512_loadu_ps(b);
    const __m512 b1 = masked ? _mm512_maskz_loadu_ps(m1, b + 16) : _mm512_loadu_ps(b + 16);
    /* row r of the tile: broadcast A(r, k), two FMAs into its accumulators */
#  define ROW(r, x0, x1)                            \
    do {                                            \
      const __m512 a_ = _mm512_set1_ps(a[(r)*rsa]); \
      x0 = _mm512_fmadd_ps(a_, b0, x0);             \
      x1 = _mm512_fmadd_ps(a_, b1, x1);             \
    } while (0)
    ROW(0, c00, c01);
    ROW(1, c10, c11);
    ROW(2, c20, c21);
    ROW(3, c30, c31);
    ROW(4, c40, c41);
    ROW(5, c50, c51);
    ROW(6, c60, c61);
    ROW(7, c70, c71);
#  undef ROW
    a += csa;
    b += ldbk;
  }
  out[0] = c00, out[1] = c01, out[2] = c10, out[3] = c11, out[4] = c20, out[5] = c21;
  out[6] = c30, out[7] = c31, out[8] = c40, out[9] = c41, out[10] = c50, out[11] = c51;
  out[12] = c60, out[13] = c61, out[14] = c70, out[15] = c71;
}

/* The same for a tile at most 16 wide (the last panel of an n that is not a multiple of 32);
 * out has the 8x32 layout, its right halves zero. */
GEMM_INLINE void mk_8x16(int64_t kc, const float *a, int64_t rsa, int64_t csa, const float *b,
                         int64_t ldbk, int masked, __mmask16 m0, __m512 *out) {
  __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0;
  __m512 c7 = c0;
  for (int64_t k = 0; k < kc; k++) {
    const __m512 b0 = masked ? _mm512_maskz_loadu_ps(m0, b) : _mm512_loadu_ps(b);
    c0 = _mm512_fmadd_ps(_mm512_set1_ps(a[0]), b0, c0);
    c1 = _mm512_fmadd_ps(_mm512_set1_ps(a[rsa]), b0, c1);
    c2 = _mm512_fmadd_ps(_mm512_set1_ps(a[2 * rsa]), b0, c2);
    c3 = _mm512_fmadd_ps(_mm512_set1_ps(a[3 * rsa]), b0, c3);
    c4 = _mm512_fmadd_ps(_mm512_set1_ps(a[4 * rsa]), b0, c4);
    c5 = _mm512_fmadd_ps(_mm512_set1_ps(a[5 * rsa]), b0, c5);
    c6 = _mm512_fmadd_ps(_mm512_set1_ps(a[6 * rsa]), b0, c6);
    c7 = _mm512_fmadd_ps(_mm512_set1_ps(a[7 * rsa]), b0, c7);
    a += csa;
    b += ldbk;
  }
  const __m512 z = _mm512_setzero_ps();
  out[0] = c0, out[2] = c1, out[4] = c2, out[6] = c3, out[8] = c4, out[10] = c5;
  out[12] = c6, out[14] = c7;
  for (int r = 0; r < MR; r++) out[2 * r + 1] = z;
}

/* Lanes of v (within m) that are NaN or infinite: v - v is 0 for the finite ones. */
GEMM_INLINE __mmask16 nonfinite_lanes(__mmask16 m, __m512 v) {
  return _mm512_mask_cmp_ps_mask(m, _mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_NEQ_UQ);
}

/* The 8 x 32 tile of C at c into L1 (three lines a row: c need not be aligned), so that the
 * read-modify-write after the k loop finds it there rather than in memory: the tiles of a
 * panel of C lie ldc apart, which no hardware prefetcher follows. Prefetches never fault. */
GEMM_INLINE void prefetch_tile(const float *c, int64_t ldc) {
  for (int r = 0; r < MR; r++) {
    _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + r * ldc + 16), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + r * ldc + NR - 1), _MM_HINT_T0);
  }
}

/* The same for a tile of C^T (sgemm_sup_t): 8 columns of up to 32 rows of C, the two lines each
 * row's 8 floats may span. The transposed product writes into C with no order a hardware
 * prefetcher follows; C not in cache (the attention's saved weights, written once a step) would
 * otherwise cost each tile up to 32 line misses one after another as it stores. */
GEMM_INLINE void prefetch_tile_t(const float *c, int64_t ldc, int64_t rows) {
  for (int64_t r = 0; r < rows; r++) {
    _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + r * ldc + MR - 1), _MM_HINT_T0);
  }
}

/* C[mr x nr] = alpha * acc + beta * C (C not read when beta is 0). With bad (the last k block:
 * these are C's final values), lanes that are not finite are or-ed into *bad. */
GEMM_INLINE void store_tile(const __m512 *acc, float *c, int64_t ldc, float alpha, float beta,
                            int64_t mr, int64_t nr, unsigned *bad) {
  const __mmask16 m0 = lanes(nr), m1 = lanes(nr - 16);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int64_t r = 0; r < mr; r++) {
    float *cr = c + r * ldc;
    __m512 v0 = _mm512_mul_ps(va, acc[2 * r]), v1 = _mm512_mul_ps(va, acc[2 * r + 1]);
    if (beta != 0.0f) {
      v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);
      v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), v1);
    }
    if (bad) *bad |= (unsigned)(nonfinite_lanes(m0, v0) | nonfinite_lanes(m1, v1));
    _mm512_mask_storeu_ps(cr, m0, v0);
    if (m1) _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}

/* The packed panels' kernels: Ap [kc][8], Bp [kc][32]. */
__attribute__((target("avx512f"))) static void kernel_8x32(int64_t kc, const float *ap,
                                                           const float *bp, float *c, int64_t ldc,
                                                           float alpha, float beta, int64_t mr,
                                                           int64_t nr, unsigned *bad) {
  __m512 acc[16];
  prefetch_tile(c, ldc);
  mk_8x32(kc, ap, 1, MR, bp, NR, 0, 0xffff, 0xffff, acc);
  store_tile(acc, c, ldc, alpha, beta, mr, nr, bad);
}

__attribute__((target("avx512f"))) static void kernel_8x16(int64_t kc, const float *ap,
                                                           const float *bp, float *c, int64_t ldc,
                                                           float alpha, float beta, int64_t mr,
                                                           int64_t nr, unsigned *bad) {
  __m512 acc[16];
  prefetch_tile(c, ldc);
  mk_8x16(kc, ap, 1, MR, bp, NR, 0, 0xffff, acc);
  store_tile(acc, c, ldc, alpha, beta, mr, nr, bad);
}

/* A read in place, B read in place (row stride ldb) or packed (ldb NR, zero-padded). Kept out
 * of line, so that the row offsets of A stay in registers. */
__attribute__((target("avx512f"), noinline)) static void kernel_direct_full(
    int64_t kc, const float *a, int64_t rsa, int64_t csa, const float *b, int64_t ldbk,
    __m512 *acc) {
  mk_8x32(kc, a, rsa, csa, b, ldbk, 0, 0xffff, 0xffff, acc);
}

__attribute__((target("avx512f"), noinline)) static void kernel_direct_masked(
    int64_t kc, const float *a, int64_t rsa, int64_t csa, const float *b, int64_t ldbk,
    __m512 *acc, int64_t nr) {
  if (nr <= 16) mk_8x16(kc, a, rsa, csa, b, ldbk, 1, lanes(nr), acc);
  else mk_8x32(kc, a, rsa, csa, b, ldbk, 1, 0xffff, lanes(nr - 16), acc);
}

static inline void kernel_direct(int64_t kc, const float *a, int64_t rsa, int64_t csa,
                                 const float *b, int64_t ldbk, int masked, __m512 *acc,
                                 int64_t nr) {
  if (nr == NR || (!masked && nr > 16)) kernel_direct_full(kc, a, rsa, csa, b, ldbk, acc);
  else kernel_direct_masked(kc, a, rsa, csa, b, ldbk, acc, nr);
}

/* A's rows [i, i + rows) with rows < 8 as an 8-row packed panel over k [0, kc) (zero rows
 * below), so that the kernels never read past the matrix. */
static void pack_a_tail(const float *a, int64_t rsa, int64_t csa, int64_t rows, int64_t kc,
                        float *d) {
  for (int64_t k = 0; k < kc; k++)
    for (int64_t r = 0; r < MR; r++) d[k * MR + r] = r < rows ? a[r * rsa + k * csa] : 0.0f;
}

/* Small-and-skinny path, no packing: C = alpha op(A) B + beta C with B not transposed. A and B
 * are read in place (a last panel of fewer than 8 rows of A is copied), so the weights of a
 * layer are not repacked at every step; the tile loop and the k blocks are the packed path's,
 * and so are the bits. A is read once per 32 columns of C: whole when it fits L2, else (a long
 * k: the input gradient of an LM head over a chunk of rows, k the vocabulary) one k block at a
 * time, the blocks outermost, so that it is not streamed from memory n / 32 times. Each tile of
 * C still adds the blocks in k order: the order of the loops changes no bit. */
__attribute__((target("avx512f"))) static void sgemm_sup_n(
    int ta, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
    const float *b, int64_t ldb, float beta, float *c, int64_t ldc, float *tail, unsigned *bad) {
  const int64_t rsa = ta ? 1 : lda, csa = ta ? lda : 1;
  const int blocks_outer = m * k > 256 * KC;
  __m512 acc[16];
  const int64_t n_j = (n + NR - 1) / NR, n_pc = (k + KC - 1) / KC;
  for (int64_t u = 0; u < n_j * n_pc; u++) {
    const int64_t j = (blocks_outer ? u % n_j : u / n_pc) * NR;
    const int64_t pc = (blocks_outer ? u / n_j : u % n_pc) * KC;
    const int64_t nr = n - j < NR ? n - j : NR, kc = k - pc < KC ? k - pc : KC;
    const float be = pc == 0 ? beta : 1.0f;
    for (int64_t i = 0; i < m; i += MR) {
      const int64_t mr = m - i < MR ? m - i : MR;
      const float *ai = a + i * rsa + pc * csa;
      prefetch_tile(c + i * ldc + j, ldc);
      if (mr == MR) {
        kernel_direct(kc, ai, rsa, csa, b + pc * ldb + j, ldb, nr < NR, acc, nr);
      } else {
        pack_a_tail(ai, rsa, csa, mr, kc, tail);
        kernel_direct(kc, tail, 1, MR, b + pc * ldb + j, ldb, nr < NR, acc, nr);
      }
      store_tile(acc, c + i * ldc + j, ldc, alpha, be, mr, nr, pc + kc == k ? bad : NULL);
    }
  }
}

/* t[r * 32 + q] = C[q * ldc + r] for r < rows, q < cols (a tile of C^T), zero elsewhere. */
__attribute__((target("avx512f"))) static void load_tile_t(const float *c, int64_t ldc,
                                                           int64_t rows, int64_t cols, float *t) {
  if (rows == MR && (cols & 7) == 0) {
    for (int64_t q = 0; q < cols; q += 8) tr8x8(c + q * ldc, ldc, t + q, NR);
    for (int64_t r = 0; r < MR; r++)
      for (int64_t q = cols; q < NR; q++) t[r * NR + q] = 0.0f;
    return;
  }
  for (int64_t r = 0; r < MR; r++)
    for (int64_t q = 0; q < NR; q++) t[r * NR + q] = r < rows && q < cols ? c[q * ldc + r] : 0.0f;
}

/* C[q * ldc + r] = t[r * 32 + q] for r < rows, q < cols. */
__attribute__((target("avx512f"))) static void store_tile_t(const float *t, int64_t rows,
                                                            int64_t cols, float *c, int64_t ldc) {
  int64_t q = 0;
  if (rows == MR)
    for (; q + 8 <= cols; q += 8) tr8x8(t + q, NR, c + q * ldc, ldc);
  for (; q < cols; q++)
    for (int64_t r = 0; r < rows; r++) c[q * ldc + r] = t[r * NR + q];
}

/* Small-and-skinny path for C = alpha A B^T + beta C (both operands k-contiguous, as in a
 * linear layer's forward): it computes C^T = B A^T, so that the larger B (the weights) is read
 * in place and only A, k x m, is packed once. Each 8 x 32 tile of C^T stays in a buffer across
 * the k blocks (alpha acc + beta C in the first, alpha acc + the buffer after: the packed
 * path's arithmetic) and is written into C transposed once. bp holds k x roundup(m, 32). */
__attribute__((target("avx512f"))) static void sgemm_sup_t(
    int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda, const float *b,
    int64_t ldb, float beta, float *c, int64_t ldc, float *bp, float *tail, unsigned *bad) {
  for (int64_t q = 0; q < m; q += NR)
    pack_rows_t(a + q * lda, lda, m - q < NR ? m - q : NR, k, bp + q * k, NR);
  __attribute__((aligned(64))) float t[MR * NR];
  __m512 acc[16];
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta), one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += MR) { /* rows of C^T: rows of B */
    const int64_t mr = n - i < MR ? n - i : MR;
    for (int64_t q = 0; q < m; q += NR) { /* columns of C^T: rows of A */
      const int64_t nr = m - q < NR ? m - q : NR;
      float *ct = c + q * ldc + i;
      prefetch_tile_t(ct, ldc, nr);
      for (int64_t pc = 0; pc < k; pc += KC) {
        const int64_t kc = k - pc < KC ? k - pc : KC;
        const float *bi = b + i * ldb + pc;
        if (mr == MR) {
          kernel_direct(kc, bi, ldb, 1, bp + q * k + pc * NR, NR, 0, acc, nr);
        } else {
          pack_a_tail(bi, ldb, 1, mr, kc, tail);
          kernel_direct(kc, tail, 1, MR, bp + q * k + pc * NR, NR, 0, acc, nr);
        }
        if (pc == 0 && beta != 0.0f) load_tile_t(ct, ldc, mr, nr, t);
        for (int r = 0; r < MR; r++)
          for (int h = 0; h < 2; h++) {
            const __m512 v = _mm512_mul_ps(va, acc[2 * r + h]);
            float *tr = t + r * NR + 16 * h;
            if (pc == 0)
              _mm512_store_ps(tr, beta != 0.0f ? _mm512_fmadd_ps(vb, _mm512_load_ps(tr), v) : v);
            else _mm512_store_ps(tr, _mm512_fmadd_ps(one, _mm512_load_ps(tr), v));
          }
      }
      if (bad) /* the buffer holds C's final values: the rows and columns that are C's */
        for (int r = 0; r < mr; r++)
          *bad |= (unsigned)(nonfinite_lanes(lanes(nr), _mm512_load_ps(t + r * NR)) |
                             nonfinite_lanes(lanes(nr - 16), _mm512_load_ps(t + r * NR + 16)));
      store_tile_t(t, mr, nr, ct, ldc);
    }
  }
}

static int corename_has_avx512(void) {
  const char *n = openblas_get_corename();
  static const char *const avx512[] = {"skylakex", "cooperlake", "sapphirerapids",
                                       "zen4",     "zen5",       NULL};
  if (!n) return 0;
  for (int i = 0; avx512[i]; i++) {
    const char *p = avx512[i], *q = n;
    while (*p && *q && (*q | 0x20) == *p) p++, q++;
    if (!*p && !*q) return 1;
  }
  return 0;
}

static int g_auto = -1; /* 1: the CPU has AVX-512 and OpenBLAS does not use it */
enum { WIDE = 256 };

int strop__gemm_own_available(void) { return __builtin_cpu_supports("avx512f") != 0; }

/* The transposed product's packed A (k x m, m rounded up to 32) fits the buffer as it was
 * before the 512-row region for op(A): the bound it was measured with. */
static int sup_t_fits(int64_t m, int64_t k) {
  return k * ((m + NR - 1) / NR * NR) <= (int64_t)(MC + NC) * KC;
}

/* 1 for a small or skinny product: op(A) short enough (m x KC) to stay in L2 while it is read
 * in place once per 32 columns of C, or, with B transposed, an A that sgemm_sup_t packs whole
 * (with fewer than 16 rows of B its 8-row panels run half empty: the packed path puts B's rows
 * in the vector lanes instead). */
static int small_shape(int ta, int tb, int64_t m, int64_t n, int64_t k) {
  if (!tb) return m * (k < KC ? k : KC) <= 256 * KC;
  return !ta && n >= 16 && sup_t_fits(m, k);
}

/* 1: read both operands in place (sgemm_sup_n), 2: the transposed product with A packed
 * (sgemm_sup_t), 0: the packed path. B read in place is read a row of 32 floats at a time, its
 * rows ldb apart: from 2048 columns (8 KB) the packed path, which reads B row by row, is faster
 * even on a small product; with a transposed A read in place, from 1024 columns
 * (docs/performance.md). */
static int sup_path(int ta, int tb, int64_t m, int64_t n, int64_t k) {
  if (strop__gemm_sup == 1) return 0;
  if (!tb)
    return strop__gemm_sup == 2 || (small_shape(ta, tb, m, n, k) && n < (ta ? 1024 : 2048)) ? 1
                                                                                            : 0;
  return small_shape(ta, tb, m, n, k) || (strop__gemm_sup == 2 && !ta && sup_t_fits(m, k)) ? 2
                                                                                           : 0;
}

int strop__gemm_use_own(int ta, int tb, int64_t m, int64_t n, int64_t k) {
  if (strop__gemm_impl == 1 || !strop__gemm_own_available()) return 0;
  if (strop__gemm_impl == 2) return 1;
  int v = __atomic_load_n(&g_auto, __ATOMIC_RELAXED);
  if (v < 0) {
    v = !corename_has_avx512();
    __atomic_store_n(&g_auto, v, __ATOMIC_RELAXED);
  }
  /* where OpenBLAS runs AVX-512 kernels of its own: the small and skinny shapes, on which its
   * packing of both operands at every call costs more than the kernel gains (not with a short
   * k, where the tile's stores dominate and OpenBLAS's small-matrix kernels win), and the wide
   * products of transformer layers (every side at least WIDE): forward and input gradient
   * 1.0-1.1x its kernels, weight gradients (A transposed) level on their own (0.98-1.03x on a
   * Zen 4) and faster in a step, where OpenBLAS's result is scanned again for non-finite
   * values and its packing copies meet cold operands (bench_gemm, bench_big GEMM_PROFILE=1,
   * docs/performance.md) */
  return v || (small_shape(ta, tb, m, n, k) && k >= 32) || (m >= WIDE && n >= WIDE && k >= WIDE);
}

__attribute__((target("avx512f"))) int strop__sgemm_own(int ta, int tb, int64_t m, int64_t n,
                                                        int64_t k, float alpha, const float *a,
                                                        int64_t lda, const float *b, int64_t ldb,
                                                        float beta, float *c, int64_t ldc,
                                                        int *nonfinite) {
  if (m <= 0 || n <= 0 || k <= 0) return -1; /* strop__sgemm handles these itself */
  __attribute__((aligned(64))) float tail[KC * MR];
  unsigned bad_lanes = 0, *bad = nonfinite ? &bad_lanes : NULL;
  const int path = sup_path(ta, tb, m, n, k);
  if (path == 1) {
    sgemm_sup_n(ta, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, tail, bad);
    if (nonfinite) *nonfinite = bad_lanes != 0;
    return 0;
  }
  gemm_buf *buf = buf_take();
  if (!buf) return -1;
  if (path == 2) {
    sgemm_sup_t(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, buf->data, tail, bad);
    buf_give(buf);
    if (nonfinite) *nonfinite = bad_lanes != 0;
    return 0;
  }
  float *ap = buf->data, *bp = ap + MA * KC;
  /* up to MA rows of C at a time: op(A) packed once per k block for all of n */
  for (int64_t ib = 0; ib < m; ib += MA) {
    const int64_t mb = m - ib < MA ? m - ib : MA;
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = k - pc < KC ? k - pc : KC;
      const float be = pc == 0 ? beta : 1.0f;
      unsigned *bt = pc + kc == k ? bad : NULL;
      pack_a(ta, ta ? a + pc * lda + ib : a + ib * lda + pc, lda, mb, kc, ap);
      for (int64_t jc = 0; jc < n; jc += NC) {
        const int64_t nc = n - jc < NC ? n - jc : NC;
        /* op(B)[pc.., jc..] into panels of NR columns, each [kc][NR] */
        if (tb)
          for (int64_t j = 0; j < nc; j += NR)
            pack_rows_t(b + (jc + j) * ldb + pc, ldb, nc - j < NR ? nc - j : NR, kc, bp + j * kc,
                        NR);
        else pack_b_n(b + pc * ldb + jc, ldb, nc, kc, bp);
        /* MC rows at a time (their panels of op(A) stay in L2), a panel of B in L1 against
         * each of them */
        for (int64_t ic = 0; ic < mb; ic += MC) {
          const int64_t mc = mb - ic < MC ? mb - ic : MC;
          for (int64_t j = 0; j < nc; j += NR) {
            const int64_t nr = nc - j < NR ? nc - j : NR;
            for (int64_t i = 0; i < mc; i += MR) {
              const int64_t mr = mc - i < MR ? mc - i : MR;
              const float *at = ap + (ic + i) * kc;
              float *ct = c + (ib + ic + i) * ldc + jc + j;
              if (nr <= 16) kernel_8x16(kc, at, bp + j * kc, ct, ldc, alpha, be, mr, nr, bt);
              else kernel_8x32(kc, at, bp + j * kc, ct, ldc, alpha, be, mr, nr, bt);
            }
          }
        }
      }
    }
  }
  buf_give(buf);
  if (nonfinite) *nonfinite = bad_lanes != 0;
  return 0;
}

#else

size_t strop__gemm_buffer_bytes(int made_only) {
  (void)made_only;
  return 0;
}
int strop__gemm_own_available(void) { return 0; }
int strop__gemm_use_own(int ta, int tb, int64_t m, int64_t n, int64_t k) {
  (void)ta, (void)tb, (void)m, (void)n, (void)k;
  return 0;
}
int strop__sgemm_own(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                     int *nonfinite) {
  (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b;
  (void)ldb, (void)beta, (void)c, (void)ldc, (void)nonfinite;
  return -1;
}

#endif
