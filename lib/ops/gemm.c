/* strop — its own single-precision GEMM for CPUs with AVX-512 whose OpenBLAS runs an older
 * kernel set (OpenBLAS picks kernels by CPU model, and some machines pin an AVX2 set on
 * purpose with OPENBLAS_CORETYPE). The usual blocked scheme: panels of op(B) (KC x 32) and
 * op(A) (8 x KC) are packed, then an 8 x 32 micro-kernel keeps 16 accumulators in zmm
 * registers. Each element of C sums its products in k order within a KC block and adds the
 * blocks in order, whatever part of C a call covers, so splitting C across threads changes
 * no bit. */
#include "ops/ops.h"

#include <pthread.h>

#include "core/core.h"

int strop__gemm_impl = 0;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(STROP_NO_CLONES)
#  include <immintrin.h>

char *openblas_get_corename(void); /* OpenBLAS's, not in every cblas.h */

enum { MR = 8, NR = 32, KC = 256, MC = 128, NC = 512 };

/* Packing buffers (MC x KC of A and KC x NC of B), one per GEMM running at a time: a call
 * takes one from a shared list and gives it back. The list is filled with one per thread and
 * one more at the first call, so after that a training step allocates nothing; more are made
 * only when more host threads run GEMMs at once. Freed when the library unloads. */
enum { BUF_FLOATS = MC * KC + KC * NC };
typedef struct gemm_buf { struct gemm_buf *next; float *data; } gemm_buf;
static pthread_mutex_t g_buf_mu = PTHREAD_MUTEX_INITIALIZER;
static gemm_buf *g_free_bufs;
static int g_bufs_made;

static gemm_buf *buf_new(void) {
  gemm_buf *g = strop__malloc(sizeof *g);
  if (!g) return NULL;
  g->data = strop__malloc_aligned(sizeof(float) * (size_t)BUF_FLOATS);
  if (!g->data) {
    strop__free(g);
    return NULL;
  }
  return g;
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
__attribute__((target("avx512f"))) static inline void tr8x8(const float *s, int64_t ld,
                                                            float *d, int64_t dst_ld) {
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
  for (int64_t k = 0; k < kc; k++) {
    for (int64_t i = r; i < rows; i++) dst[k * w + i] = src[i * ld + k];
    for (int64_t i = rows; i < w; i++) dst[k * w + i] = 0.0f;
  }
}

static __mmask16 lanes(int64_t left) {
  return left >= 16 ? (__mmask16)0xffff : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1u);
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

/* C[mr x nr] = alpha * Ap Bp + beta C (C not read when beta is 0). Ap [kc][8], Bp [kc][32]. */
__attribute__((target("avx512f"))) static void kernel_8x32(int64_t kc, const float *ap,
                                                           const float *bp, float *c,
                                                           int64_t ldc, float alpha, float beta,
                                                           int64_t mr, int64_t nr) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00;
  __m512 c61 = c00, c70 = c00, c71 = c00;
  for (int64_t k = 0; k < kc; k++) {
    const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
    /* row r of the tile: broadcast A[r][k], two FMAs into its accumulators */
#define ROW(r, x0, x1)                          \
  do {                                          \
    const __m512 a_ = _mm512_set1_ps(ap[r]);    \
    x0 = _mm512_fmadd_ps(a_, b0, x0);           \
    x1 = _mm512_fmadd_ps(a_, b1, x1);           \
  } while (0)
    ROW(0, c00, c01);
    ROW(1, c10, c11);
    ROW(2, c20, c21);
    ROW(3, c30, c31);
    ROW(4, c40, c41);
    ROW(5, c50, c51);
    ROW(6, c60, c61);
    ROW(7, c70, c71);
#undef ROW
    ap += MR;
    bp += NR;
  }
  const __m512 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                             {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
  const __mmask16 m0 = lanes(nr), m1 = lanes(nr - 16);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int64_t r = 0; r < mr; r++) {
    float *cr = c + r * ldc;
    __m512 v0 = _mm512_mul_ps(va, acc[r][0]), v1 = _mm512_mul_ps(va, acc[r][1]);
    if (beta != 0.0f) {
      v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);
      v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), v1);
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}

/* The same for a tile at most 16 wide (the last panel of an n that is not a multiple of 32):
 * Bp keeps its 32-wide rows, of which the first 16 are read. */
__attribute__((target("avx512f"))) static void kernel_8x16(int64_t kc, const float *ap,
                                                           const float *bp, float *c,
                                                           int64_t ldc, float alpha, float beta,
                                                           int64_t mr, int64_t nr) {
  __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0;
  __m512 c7 = c0;
  for (int64_t k = 0; k < kc; k++) {
    const __m512 b0 = _mm512_loadu_ps(bp);
    c0 = _mm512_fmadd_ps(_mm512_set1_ps(ap[0]), b0, c0);
    c1 = _mm512_fmadd_ps(_mm512_set1_ps(ap[1]), b0, c1);
    c2 = _mm512_fmadd_ps(_mm512_set1_ps(ap[2]), b0, c2);
    c3 = _mm512_fmadd_ps(_mm512_set1_ps(ap[3]), b0, c3);
    c4 = _mm512_fmadd_ps(_mm512_set1_ps(ap[4]), b0, c4);
    c5 = _mm512_fmadd_ps(_mm512_set1_ps(ap[5]), b0, c5);
    c6 = _mm512_fmadd_ps(_mm512_set1_ps(ap[6]), b0, c6);
    c7 = _mm512_fmadd_ps(_mm512_set1_ps(ap[7]), b0, c7);
    ap += MR;
    bp += NR;
  }
  const __m512 acc[MR] = {c0, c1, c2, c3, c4, c5, c6, c7};
  const __mmask16 m0 = lanes(nr);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int64_t r = 0; r < mr; r++) {
    float *cr = c + r * ldc;
    __m512 v0 = _mm512_mul_ps(va, acc[r]);
    if (beta != 0.0f) v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);
    _mm512_mask_storeu_ps(cr, m0, v0);
  }
}

static int corename_has_avx512(void) {
  const char *n = openblas_get_corename();
  static const char *const avx512[] = {"skylakex", "cooperlake", "sapphirerapids", "zen4",
                                       "zen5", NULL};
  if (!n) return 0;
  for (int i = 0; avx512[i]; i++) {
    const char *p = avx512[i], *q = n;
    while (*p && *q && (*q | 0x20) == *p) p++, q++;
    if (!*p && !*q) return 1;
  }
  return 0;
}

static int g_auto = -1; /* 1: the CPU has AVX-512 and OpenBLAS does not use it */

int strop__gemm_own_available(void) { return __builtin_cpu_supports("avx512f") != 0; }

int strop__gemm_use_own(void) {
  if (strop__gemm_impl == 1 || !strop__gemm_own_available()) return 0;
  if (strop__gemm_impl == 2) return 1;
  int v = __atomic_load_n(&g_auto, __ATOMIC_RELAXED);
  if (v < 0) {
    v = !corename_has_avx512();
    __atomic_store_n(&g_auto, v, __ATOMIC_RELAXED);
  }
  return v;
}

__attribute__((target("avx512f"))) int strop__sgemm_own(int ta, int tb, int64_t m, int64_t n,
                                                         int64_t k, float alpha, const float *a,
                                                         int64_t lda, const float *b,
                                                         int64_t ldb, float beta, float *c,
                                                         int64_t ldc) {
  gemm_buf *buf = buf_take();
  if (!buf) return -1;
  float *ap = buf->data, *bp = ap + MC * KC;
  for (int64_t jc = 0; jc < n; jc += NC) {
    const int64_t nc = n - jc < NC ? n - jc : NC;
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = k - pc < KC ? k - pc : KC;
      const float be = pc == 0 ? beta : 1.0f;
      /* op(B)[pc.., jc..] into panels of NR columns, each [kc][NR] */
      for (int64_t j = 0; j < nc; j += NR) {
        const int64_t cols = nc - j < NR ? nc - j : NR;
        float *d = bp + j * kc;
        if (tb)
          pack_rows_t(b + (jc + j) * ldb + pc, ldb, cols, kc, d, NR);
        else
          pack_rows_n(b + pc * ldb + jc + j, ldb, cols, kc, d, NR);
      }
      for (int64_t ic = 0; ic < m; ic += MC) {
        const int64_t mc = m - ic < MC ? m - ic : MC;
        /* op(A)[ic.., pc..] into panels of MR rows, each [kc][MR] */
        for (int64_t i = 0; i < mc; i += MR) {
          const int64_t rows = mc - i < MR ? mc - i : MR;
          float *d = ap + i * kc;
          if (ta)
            pack_rows_n(a + pc * lda + ic + i, lda, rows, kc, d, MR);
          else
            pack_rows_t(a + (ic + i) * lda + pc, lda, rows, kc, d, MR);
        }
        for (int64_t j = 0; j < nc; j += NR) {
          const int64_t nr = nc - j < NR ? nc - j : NR;
          for (int64_t i = 0; i < mc; i += MR) {
            const int64_t mr = mc - i < MR ? mc - i : MR;
            float *ct = c + (ic + i) * ldc + jc + j;
            if (nr <= 16)
              kernel_8x16(kc, ap + i * kc, bp + j * kc, ct, ldc, alpha, be, mr, nr);
            else
              kernel_8x32(kc, ap + i * kc, bp + j * kc, ct, ldc, alpha, be, mr, nr);
          }
        }
      }
    }
  }
  buf_give(buf);
  return 0;
}

#else

int strop__gemm_own_available(void) { return 0; }
int strop__gemm_use_own(void) { return 0; }
int strop__sgemm_own(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc) {
  (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b;
  (void)ldb, (void)beta, (void)c, (void)ldc;
  return -1;
}

#endif
