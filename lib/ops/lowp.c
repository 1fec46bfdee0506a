/* strop — BF16 and int8 weights: conversions, and the BF16 x BF16 -> FP32 product on
 * AVX512_BF16 (vdpbf16ps). The fallback is not here: a layer widens the weight to FP32 and runs
 * the FP32 GEMM, so it gives the bits of an FP32 model whose weights hold the same values. */
#include "ops/lowp.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

int strop__bf16_impl = 0;

uint16_t strop__bf16_from_f32(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u); /* to nearest, ties to even (overflow rounds to Inf) */
  return (uint16_t)(u >> 16);
}

float strop__bf16_to_f32(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

void strop__bf16_round_n(const float *x, uint16_t *out, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = strop__bf16_from_f32(x[i]);
}

/* absmax / 127 over the n values x[0], x[stride], ... (0 when they are all zero) */
static float absmax_scale(const float *x, int64_t n, int64_t stride) {
  float a = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    const float v = fabsf(x[i * stride]);
    if (v > a) a = v;
  }
  return isfinite(a) ? a / 127.0f : 0.0f;
}

static int8_t quantize(float w, float scale) {
  if (!(scale > 0.0f)) return 0;
  float r = nearbyintf(w / scale);
  if (!(r == r)) r = 0.0f;
  return (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
}

int strop__lowp_make(strop__lowp *q, int dtype, const float *w, int64_t rows, int64_t cols,
                     int scale_cols) {
  const size_t n = (size_t)rows * (size_t)cols;
  strop__lowp t = {dtype, scale_cols, rows, cols, NULL, NULL};
  if (dtype == STROP__LOWP_BF16) {
    uint16_t *v = strop__malloc_aligned(n * sizeof *v + 1);
    if (!v) return -1;
    if (!scale_cols)
      strop__bf16_round_n(w, v, n);
    else /* stored [out, in]: v[c * rows + r] = W(r, c) */
      for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
          v[c * rows + r] = strop__bf16_from_f32(w[r * cols + c]);
    t.v = v;
  } else if (dtype == STROP__LOWP_INT8) {
    const int64_t ns = scale_cols ? cols : rows;
    int8_t *v = strop__malloc_aligned(n + 1);
    float *s = strop__malloc((size_t)ns * sizeof *s + 1);
    if (!v || !s) {
      strop__free_aligned(v);
      strop__free(s);
      return -1;
    }
    for (int64_t c = 0; c < ns; c++)
      s[c] = scale_cols ? absmax_scale(w + c, rows, cols) : absmax_scale(w + c * cols, cols, 1);
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++)
        v[r * cols + c] = quantize(w[r * cols + c], s[scale_cols ? c : r]);
    t.v = v;
    t.scale = s;
  } else {
    return -1;
  }
  *q = t;
  return 0;
}

size_t strop__lowp_bytes(const strop__lowp *q) {
  const size_t n = (size_t)q->rows * (size_t)q->cols;
  if (q->dtype == STROP__LOWP_BF16) return n * sizeof(uint16_t);
  if (q->dtype == STROP__LOWP_INT8)
    return n + (size_t)(q->scale_cols ? q->cols : q->rows) * sizeof(float);
  return 0;
}

int strop__lowp_copy(strop__lowp *dst, const strop__lowp *src) {
  strop__lowp t = *src;
  const size_t n = (size_t)src->rows * (size_t)src->cols;
  const size_t vb = src->dtype == STROP__LOWP_BF16 ? n * sizeof(uint16_t) : n;
  const size_t sb = src->scale ? (size_t)(src->scale_cols ? src->cols : src->rows) * sizeof(float)
                               : 0;
  t.v = strop__malloc_aligned(vb + 1);
  t.scale = sb ? strop__malloc(sb) : NULL;
  if (!t.v || (sb && !t.scale)) {
    strop__free_aligned(t.v);
    strop__free(t.scale);
    return -1;
  }
  memcpy(t.v, src->v, vb);
  if (sb) memcpy(t.scale, src->scale, sb);
  *dst = t;
  return 0;
}

void strop__lowp_free(strop__lowp *q) {
  strop__free_aligned(q->v);
  strop__free(q->scale);
  memset(q, 0, sizeof *q);
}

void strop__lowp_expand(const strop__lowp *q, float *dst) {
  const size_t n = (size_t)q->rows * (size_t)q->cols;
  if (q->dtype == STROP__LOWP_BF16 && !q->scale_cols) {
    const uint16_t *v = q->v;
    for (size_t i = 0; i < n; i++) dst[i] = strop__bf16_to_f32(v[i]);
  } else if (q->dtype == STROP__LOWP_BF16) {
    const uint16_t *v = q->v;
    for (int64_t r = 0; r < q->rows; r++)
      for (int64_t c = 0; c < q->cols; c++)
        dst[r * q->cols + c] = strop__bf16_to_f32(v[c * q->rows + r]);
  } else if (q->dtype == STROP__LOWP_INT8) {
    const int8_t *v = q->v;
    for (int64_t r = 0; r < q->rows; r++)
      for (int64_t c = 0; c < q->cols; c++)
        dst[r * q->cols + c] = (float)v[r * q->cols + c] * q->scale[q->scale_cols ? c : r];
  }
}

typedef struct scratch {
  struct scratch *next;
  size_t cap;
  /* the buffer follows, 64-byte aligned */
} scratch;
enum { HDR = 64 };
static pthread_mutex_t g_scr_mu = PTHREAD_MUTEX_INITIALIZER;
static scratch *g_scr;

void *strop__lowp_scratch_take(size_t bytes) {
  pthread_mutex_lock(&g_scr_mu);
  scratch **pp = &g_scr, *s = NULL;
  for (; *pp; pp = &(*pp)->next)
    if ((*pp)->cap >= bytes) break;
  if (!*pp) pp = &g_scr; /* none is large enough: replace the first one */
  if (*pp) {
    s = *pp;
    *pp = s->next;
  }
  pthread_mutex_unlock(&g_scr_mu);
  if (s && s->cap >= bytes) return (char *)s + HDR;
  strop__free_aligned(s);
  s = strop__malloc_aligned(HDR + bytes);
  if (!s) return NULL;
  s->cap = bytes;
  return (char *)s + HDR;
}

void strop__lowp_scratch_give(void *p) {
  if (!p) return;
  scratch *s = (scratch *)(void *)((char *)p - HDR);
  pthread_mutex_lock(&g_scr_mu);
  s->next = g_scr;
  g_scr = s;
  pthread_mutex_unlock(&g_scr_mu);
}

__attribute__((destructor)) static void scratch_release(void) {
  pthread_mutex_lock(&g_scr_mu);
  while (g_scr) {
    scratch *s = g_scr;
    g_scr = s->next;
    strop__free_aligned(s);
  }
  pthread_mutex_unlock(&g_scr_mu);
}

#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#  include <immintrin.h>
#  define HAVE_DPBF16 1

static int g_env = -1; /* 1: STROP_BF16_FALLBACK is set (non-empty, not "0") */

int strop__bf16_dot_enabled(void) {
  if (strop__bf16_impl == 1) return 0;
  int e = __atomic_load_n(&g_env, __ATOMIC_RELAXED);
  if (e < 0) {
    const char *v = getenv("STROP_BF16_FALLBACK");
    e = v && *v && strcmp(v, "0") != 0;
    __atomic_store_n(&g_env, e, __ATOMIC_RELAXED);
  }
  return !e && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
}

#  define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))

typedef struct bf16_job {
  int64_t m, n, k, ka, ldc;
  const uint16_t *a, *b;
  float beta;
  float *c;
} bf16_job;

/* A 4 x 4 tile of C: rows i..i+3 of A (bf16, row stride ka, zero-padded to ka) against rows
 * j..j+3 of B (bf16, row stride k); rows past the edges are read from the last row and not
 * stored. 16 accumulators of 16 lanes, each lane the sum of pairs k = 32 t + 2 l, 2 l + 1. */
BF16_TARGET static void tile4x4(const bf16_job *J, int64_t i, int64_t j) {
  const int64_t mr = J->m - i < 4 ? J->m - i : 4, nr = J->n - j < 4 ? J->n - j : 4;
  const uint16_t *a[4], *b[4];
  for (int r = 0; r < 4; r++) {
    a[r] = J->a + (i + (r < mr ? r : mr - 1)) * J->ka;
    b[r] = J->b + (j + (r < nr ? r : nr - 1)) * J->k;
  }
  __m512 acc[4][4];
  for (int r = 0; r < 4; r++)
    for (int s = 0; s < 4; s++) acc[r][s] = _mm512_setzero_ps();
  for (int64_t kk = 0; kk < J->k; kk += 32) {
    const __mmask32 mk = J->k - kk >= 32 ? (__mmask32)0xffffffffu
                                         : (__mmask32)((1u << (J->k - kk)) - 1u);
    __m512bh va[4], vb[4];
    for (int r = 0; r < 4; r++) {
      va[r] = (__m512bh)_mm512_loadu_si512(a[r] + kk);
      vb[r] = (__m512bh)_mm512_maskz_loadu_epi16(mk, b[r] + kk);
    }
    for (int r = 0; r < 4; r++)
      for (int s = 0; s < 4; s++) acc[r][s] = _mm512_dpbf16_ps(acc[r][s], va[r], vb[s]);
  }
  for (int r = 0; r < mr; r++)
    for (int s = 0; s < nr; s++) {
      float *cp = J->c + (i + r) * J->ldc + j + s;
      const float v = _mm512_reduce_add_ps(acc[r][s]);
      *cp = J->beta != 0.0f ? *cp + v : v;
    }
}

/* columns of C (rows of B) [16 lo, 16 hi) */
static void bf16_chunk(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const bf16_job *J = ctx;
  int64_t j1 = hi * 16 < J->n ? hi * 16 : J->n;
  for (int64_t j = lo * 16; j < j1; j += 4)
    for (int64_t i = 0; i < J->m; i += 4) tile4x4(J, i, j);
}

void strop__bf16_gemm_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         const strop__lowp *q, float beta, float *c, int64_t ldc, uint16_t *abf) {
  const int64_t ka = (k + 31) / 32 * 32;
  for (int64_t i = 0; i < m; i++) {
    strop__bf16_round_n(a + i * lda, abf + i * ka, (size_t)k);
    for (int64_t t = k; t < ka; t++) abf[i * ka + t] = 0;
  }
  bf16_job J = {m, n, k, ka, ldc, abf, q->v, beta, c};
  const int64_t blocks = (n + 15) / 16;
  const int threads = (double)m * (double)n * (double)k >= (double)(1 << 20)
                          ? strop__num_threads() : 1;
  strop__par_run(strop__par_chunks(threads, blocks, 1), blocks, bf16_chunk, &J);
}

#else

int strop__bf16_dot_enabled(void) { return 0; }
void strop__bf16_gemm_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         const strop__lowp *q, float beta, float *c, int64_t ldc, uint16_t *abf) {
  (void)m, (void)n, (void)k, (void)a, (void)lda, (void)q, (void)beta, (void)c, (void)ldc;
  (void)abf;
}

#endif
