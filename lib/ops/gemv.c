/* SPDX-License-Identifier: MIT */
/* strop — products with few rows, C[m, n] = alpha A[m, k] op(B) + beta C for m <= 4 (a token
 * being decoded, a few sequences generated together): matrix-vector products, bound by reading
 * B, which is streamed once where it lies — no packing (the GEMM's packing reads and writes a
 * 154 MB LM head again at every token) and no zero-padded 8 x 32 tiles of which one row is used.
 *
 * Each element of C is computed exactly as gemm.c's own kernel computes it: its products summed
 * by FMA in k order from zero within blocks of STROP__GEMM_KC, each block's sum times alpha,
 * beta C added to the first (fma, C not read when beta is 0) and the later blocks added in
 * order. So strop__sgemm may send a product here or to the GEMM, split it across threads or
 * not, on AVX-512 or on AVX2: not a bit changes. Only the lanes differ: with B [k, n] (not
 * transposed) they hold consecutive columns of C, B's rows read as they lie; with B [n, k] 16
 * (AVX2: 8) rows of B are transposed in registers, so that each lane walks one row of B in k
 * order while the loads stay contiguous. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "ops/lowp.h"
#include "ops/tr8.h"
#include "ops/ops.h"

int strop__gemv_impl = 0;

/* STROP_GEMV=0 in the environment turns the kernels off (read once per process): A/B runs */
static int gemv_env_off(void) {
  static int env = -1;
  int e = __atomic_load_n(&env, __ATOMIC_RELAXED);
  if (e < 0) {
    const char *v = getenv("STROP_GEMV");
    e = v && !strcmp(v, "0");
    __atomic_store_n(&env, e, __ATOMIC_RELAXED);
  }
  return e;
}

#if defined(__x86_64__) && defined(__GNUC__)
#  include <immintrin.h>

#  include "ops/bf16tile.h"

enum { KC = STROP__GEMM_KC };

static int has_avx2(void) {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

int strop__gemv_pick(int ta, int64_t m, int own) {
  if (ta || m < 1 || m > STROP__GEMV_MAX_M || strop__gemv_impl == 1 || gemv_env_off()) return 0;
  if (strop__gemv_impl == 2) return has_avx2() ? STROP__GEMV_AVX2 : 0;
  if (strop__gemv_impl == 3) return strop__gemm_own_available() ? STROP__GEMV_AVX512 : 0;
  /* where the own GEMM runs: the same bits, faster; where the CPU has no AVX-512, AVX2 rather
   * than OpenBLAS (unless a caller forced OpenBLAS); where OpenBLAS runs AVX-512 kernels of its
   * own and the GEMM path chose it, it keeps the product */
  if (own) return STROP__GEMV_AVX512;
  if (strop__gemm_impl != 1 && !strop__gemm_own_available() && has_avx2())
    return STROP__GEMV_AVX2;
  return 0;
}

/* ---------------------------------------------------------------- AVX-512 */

#  define T512 __attribute__((target("avx512f")))
#  define INL512 static inline __attribute__((always_inline, target("avx512f")))

static __mmask16 lanes16(int64_t left) {
  return left >= 16  ? (__mmask16)0xffff
         : left <= 0 ? (__mmask16)0
                     : (__mmask16)((1u << left) - 1u);
}

/* One block's sum into C (gemm.c's store_tile, lane by lane): first block alpha s + beta C,
 * later ones C + alpha s; lanes that end non-finite are or-ed into *bad on the last block. */
INL512 void put16(float *c, __mmask16 mk, __m512 s, float alpha, float beta, int first,
                  unsigned *bad) {
  __m512 v = _mm512_mul_ps(_mm512_set1_ps(alpha), s);
  if (!first) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, c), v);
  else if (beta != 0.0f)
    v = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mk, c), v);
  if (bad)
    *bad |= (unsigned)_mm512_mask_cmp_ps_mask(mk, _mm512_sub_ps(v, v), _mm512_setzero_ps(),
                                              _CMP_NEQ_UQ);
  _mm512_mask_storeu_ps(c, mk, v);
}

/* B [k, n]: B's rows are streamed whole (a tile of NT / M columns of them), four rows at a time,
 * into sums of the tile's columns kept in L1; reading strips of a few cache lines down the
 * rows instead left the hardware prefetchers a stride to guess and ran at half the bandwidth. */
enum { NT = 4096 }; /* floats of sums: 4096 columns for one row of A, 1024 for four */

INL512 void n512(const int M, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                 const float *b, int64_t ldb, float beta, float *c, int64_t ldc, unsigned *bad) {
  /* 16 KB of sums whatever M (a host thread's stack may be small) */
  __attribute__((aligned(64))) float sums[NT];
  const int64_t tile = NT / M / 16 * 16; /* each row's sums 64-byte aligned */
  float *s[STROP__GEMV_MAX_M];
  for (int i = 0; i < M; i++) s[i] = sums + i * tile;
  for (int64_t j0 = 0; j0 < n; j0 += tile) {
    const int64_t w = n - j0 < tile ? n - j0 : tile, nv = (w + 15) / 16;
    const __mmask16 ml = lanes16(w - (nv - 1) * 16);
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = k - pc < KC ? k - pc : KC;
      for (int i = 0; i < M; i++)
        for (int64_t v = 0; v < nv; v++) _mm512_store_ps(s[i] + 16 * v, _mm512_setzero_ps());
      int64_t p = pc;
      for (; p + 4 <= pc + kc; p += 4) {
        const float *b0 = b + p * ldb + j0, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
        __m512 x[STROP__GEMV_MAX_M][4];
        for (int i = 0; i < M; i++)
          for (int q = 0; q < 4; q++) x[i][q] = _mm512_set1_ps(a[i * lda + p + q]);
        for (int64_t v = 0; v < nv; v++) {
          const __mmask16 mk = v == nv - 1 ? ml : (__mmask16)0xffff;
          for (int q = 0; q < 4; q++) /* the rows 8 below, into L2 */
            _mm_prefetch((const char *)(b0 + (8 + q) * ldb + 16 * v), _MM_HINT_T1);
          const __m512 w0 = _mm512_maskz_loadu_ps(mk, b0 + 16 * v);
          const __m512 w1 = _mm512_maskz_loadu_ps(mk, b1 + 16 * v);
          const __m512 w2 = _mm512_maskz_loadu_ps(mk, b2 + 16 * v);
          const __m512 w3 = _mm512_maskz_loadu_ps(mk, b3 + 16 * v);
          for (int i = 0; i < M; i++) {
            __m512 acc = _mm512_load_ps(s[i] + 16 * v);
            acc = _mm512_fmadd_ps(x[i][0], w0, acc);
            acc = _mm512_fmadd_ps(x[i][1], w1, acc);
            acc = _mm512_fmadd_ps(x[i][2], w2, acc);
            acc = _mm512_fmadd_ps(x[i][3], w3, acc);
            _mm512_store_ps(s[i] + 16 * v, acc);
          }
        }
      }
      for (; p < pc + kc; p++) {
        const float *b0 = b + p * ldb + j0;
        for (int64_t v = 0; v < nv; v++) {
          const __mmask16 mk = v == nv - 1 ? ml : (__mmask16)0xffff;
          const __m512 w0 = _mm512_maskz_loadu_ps(mk, b0 + 16 * v);
          for (int i = 0; i < M; i++)
            _mm512_store_ps(s[i] + 16 * v, _mm512_fmadd_ps(_mm512_set1_ps(a[i * lda + p]), w0,
                                                           _mm512_load_ps(s[i] + 16 * v)));
        }
      }
      for (int i = 0; i < M; i++)
        for (int64_t v = 0; v < nv; v++)
          put16(c + i * ldc + j0 + 16 * v, v == nv - 1 ? ml : (__mmask16)0xffff,
                _mm512_load_ps(s[i] + 16 * v), alpha, beta, pc == 0, pc + kc == k ? bad : NULL);
    }
  }
}

/* r[0..15] (16 rows of 16) -> t[q] holding element q of every row (lane r: row r). */
INL512 void tr16(const __m512 *r, __m512 *t) {
  __m512 x[16], u[16];
  for (int g = 0; g < 4; g++) {
    x[4 * g] = _mm512_unpacklo_ps(r[4 * g], r[4 * g + 1]);
    x[4 * g + 1] = _mm512_unpackhi_ps(r[4 * g], r[4 * g + 1]);
    x[4 * g + 2] = _mm512_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]);
    x[4 * g + 3] = _mm512_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
  }
  /* u[4g + q], in its 128-bit lane l: rows 4g .. 4g + 3 of column 4l + q */
  for (int g = 0; g < 4; g++) {
    u[4 * g] = _mm512_shuffle_ps(x[4 * g], x[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(x[4 * g], x[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm512_shuffle_ps(x[4 * g + 1], x[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(x[4 * g + 1], x[4 * g + 3], 0xEE);
  }
  for (int q = 0; q < 4; q++) {
    const __m512 x0 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x44);
    const __m512 x1 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xEE);
    const __m512 y0 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x44);
    const __m512 y1 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xEE);
    t[q] = _mm512_shuffle_f32x4(x0, y0, 0x88);
    t[4 + q] = _mm512_shuffle_f32x4(x0, y0, 0xDD);
    t[8 + q] = _mm512_shuffle_f32x4(x1, y1, 0x88);
    t[12 + q] = _mm512_shuffle_f32x4(x1, y1, 0xDD);
  }
}

/* B [n, k]: rows j .. j + 15 of B (the columns of C; rows past n repeat the last one and are
 * not stored) for M rows of A. */
INL512 void t512_rows(const int M, int64_t nr, int64_t k, float alpha, const float *a,
                      int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                      unsigned *bad) {
  const float *row[16];
  for (int r = 0; r < 16; r++) row[r] = b + (r < nr ? r : nr - 1) * ldb;
  const __mmask16 mc = lanes16(nr);
  for (int64_t pc = 0; pc < k; pc += KC) {
    const int64_t kc = k - pc < KC ? k - pc : KC;
    __m512 acc[STROP__GEMV_MAX_M];
    for (int i = 0; i < M; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t p = pc; p < pc + kc; p += 16) {
      const int64_t kw = pc + kc - p < 16 ? pc + kc - p : 16;
      const __mmask16 mk = lanes16(kw);
      __m512 r[16], t[16];
      for (int q = 0; q < 16; q++) r[q] = _mm512_maskz_loadu_ps(mk, row[q] + p);
      tr16(r, t);
      if (kw == 16) {
        for (int q = 0; q < 16; q++)
          for (int i = 0; i < M; i++)
            acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i * lda + p + q]), t[q], acc[i]);
      } else {
        for (int q = 0; q < kw; q++)
          for (int i = 0; i < M; i++)
            acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i * lda + p + q]), t[q], acc[i]);
      }
    }
    for (int i = 0; i < M; i++)
      put16(c + i * ldc, mc, acc[i], alpha, beta, pc == 0, pc + kc == k ? bad : NULL);
  }
}

/* Two groups of 16 rows at once: two independent FMA chains per row of A (one chain's 16
 * dependent FMAs per tile would bound a single group by the FMA latency). */
INL512 void t512(const int M, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                 const float *b, int64_t ldb, float beta, float *c, int64_t ldc, unsigned *bad) {
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    const float *row[32];
    for (int r = 0; r < 32; r++) row[r] = b + (j + r) * ldb;
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = k - pc < KC ? k - pc : KC;
      __m512 acc0[STROP__GEMV_MAX_M], acc1[STROP__GEMV_MAX_M];
      for (int i = 0; i < M; i++) acc0[i] = acc1[i] = _mm512_setzero_ps();
      int64_t p = pc;
      for (; p + 16 <= pc + kc; p += 16) {
        __m512 r[16], t0[16], t1[16];
        /* the next 32 rows' line at this depth, into L2: 32 interleaved streams are more than
         * the hardware prefetchers follow */
        for (int q = 0; q < 32; q++)
          _mm_prefetch((const char *)(row[q] + 32 * ldb + p), _MM_HINT_T1);
        for (int q = 0; q < 16; q++) r[q] = _mm512_loadu_ps(row[q] + p);
        tr16(r, t0);
        for (int q = 0; q < 16; q++) r[q] = _mm512_loadu_ps(row[16 + q] + p);
        tr16(r, t1);
        for (int q = 0; q < 16; q++)
          for (int i = 0; i < M; i++) {
            const __m512 x = _mm512_set1_ps(a[i * lda + p + q]);
            acc0[i] = _mm512_fmadd_ps(x, t0[q], acc0[i]);
            acc1[i] = _mm512_fmadd_ps(x, t1[q], acc1[i]);
          }
      }
      if (p < pc + kc) {
        const int64_t kw = pc + kc - p;
        const __mmask16 mk = lanes16(kw);
        __m512 r[16], t0[16], t1[16];
        for (int q = 0; q < 16; q++) r[q] = _mm512_maskz_loadu_ps(mk, row[q] + p);
        tr16(r, t0);
        for (int q = 0; q < 16; q++) r[q] = _mm512_maskz_loadu_ps(mk, row[16 + q] + p);
        tr16(r, t1);
        for (int q = 0; q < kw; q++)
          for (int i = 0; i < M; i++) {
            const __m512 x = _mm512_set1_ps(a[i * lda + p + q]);
            acc0[i] = _mm512_fmadd_ps(x, t0[q], acc0[i]);
            acc1[i] = _mm512_fmadd_ps(x, t1[q], acc1[i]);
          }
      }
      for (int i = 0; i < M; i++) {
        unsigned *bd = pc + kc == k ? bad : NULL;
        put16(c + i * ldc + j, 0xffff, acc0[i], alpha, beta, pc == 0, bd);
        put16(c + i * ldc + j + 16, 0xffff, acc1[i], alpha, beta, pc == 0, bd);
      }
    }
  }
  for (; j < n; j += 16)
    t512_rows(M, n - j < 16 ? n - j : 16, k, alpha, a, lda, b + j * ldb, ldb, beta, c + j, ldc,
              bad);
}

/* one out-of-line body per number of rows of A, so that M is a constant in each */
#  define GEMV_BODIES(NAME, BODY)                                                              \
    __attribute__((noinline)) static void NAME(                                                \
        int m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda, const float *b, \
        int64_t ldb, float beta, float *c, int64_t ldc, unsigned *bad) {                       \
      switch (m) {                                                                             \
        case 1: BODY(1, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bad); break;                \
        case 2: BODY(2, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bad); break;                \
        case 3: BODY(3, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bad); break;                \
        default: BODY(4, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bad); break;               \
      }                                                                                        \
    }

T512 GEMV_BODIES(gemv_n512, n512)
T512 GEMV_BODIES(gemv_t512, t512)

/* ---------------------------------------------------------------- AVX2 */

#  define T256 __attribute__((target("avx2,fma")))
#  define INL256 static inline __attribute__((always_inline, target("avx2,fma")))

/* the first `left` of 8 lanes (maskload / maskstore) */
INL256 __m256i lanes8(int64_t left) {
  const int64_t l = left < 0 ? 0 : left > 8 ? 8 : left;
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)l), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

INL256 void put8(float *c, __m256i mk, __m256 s, float alpha, float beta, int first,
                 unsigned *bad) {
  __m256 v = _mm256_mul_ps(_mm256_set1_ps(alpha), s);
  if (!first) v = _mm256_add_ps(_mm256_maskload_ps(c, mk), v);
  else if (beta != 0.0f) v = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_maskload_ps(c, mk), v);
  if (bad) {
    const __m256 nf = _mm256_cmp_ps(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_NEQ_UQ);
    *bad |= (unsigned)_mm256_movemask_ps(_mm256_and_ps(nf, _mm256_castsi256_ps(mk)));
  }
  _mm256_maskstore_ps(c, mk, v);
}

INL256 void n256(const int M, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                 const float *b, int64_t ldb, float beta, float *c, int64_t ldc, unsigned *bad) {
  for (int64_t j = 0; j < n; j += 32) {
    const __m256i mk[4] = {lanes8(n - j), lanes8(n - j - 8), lanes8(n - j - 16),
                           lanes8(n - j - 24)};
    const int nv = n - j >= 32 ? 4 : (int)((n - j + 7) / 8);
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = k - pc < KC ? k - pc : KC;
      __m256 acc[4][4];
      for (int i = 0; i < M; i++)
        for (int v = 0; v < 4; v++) acc[i][v] = _mm256_setzero_ps();
      for (int64_t p = pc; p < pc + kc; p++) {
        const float *br = b + p * ldb + j;
        const __m256 b0 = _mm256_maskload_ps(br, mk[0]), b1 = _mm256_maskload_ps(br + 8, mk[1]);
        const __m256 b2 = _mm256_maskload_ps(br + 16, mk[2]);
        const __m256 b3 = _mm256_maskload_ps(br + 24, mk[3]);
        for (int i = 0; i < M; i++) {
          const __m256 x = _mm256_set1_ps(a[i * lda + p]);
          acc[i][0] = _mm256_fmadd_ps(x, b0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_ps(x, b1, acc[i][1]);
          acc[i][2] = _mm256_fmadd_ps(x, b2, acc[i][2]);
          acc[i][3] = _mm256_fmadd_ps(x, b3, acc[i][3]);
        }
      }
      for (int i = 0; i < M; i++)
        for (int v = 0; v < nv; v++)
          put8(c + i * ldc + j + 8 * v, mk[v], acc[i][v], alpha, beta, pc == 0,
               pc + kc == k ? bad : NULL);
    }
  }
}

/* B [n, k]: two groups of 8 rows at a time (two FMA chains), the last ones one by one */
INL256 void t256(const int M, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                 const float *b, int64_t ldb, float beta, float *c, int64_t ldc, unsigned *bad) {
  for (int64_t j = 0; j < n; j += 16) {
    const int64_t nr = n - j < 16 ? n - j : 16;
    const float *row[16];
    for (int r = 0; r < 16; r++) row[r] = b + (j + (r < nr ? r : nr - 1)) * ldb;
    const __m256i mc0 = lanes8(nr), mc1 = lanes8(nr - 8);
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = k - pc < KC ? k - pc : KC;
      __m256 acc0[STROP__GEMV_MAX_M], acc1[STROP__GEMV_MAX_M];
      for (int i = 0; i < M; i++) acc0[i] = acc1[i] = _mm256_setzero_ps();
      for (int64_t p = pc; p < pc + kc; p += 8) {
        const int64_t kw = pc + kc - p < 8 ? pc + kc - p : 8;
        const __m256i mk = lanes8(kw);
        __m256 r[8], t0[8], t1[8];
        for (int q = 0; q < 8; q++) r[q] = _mm256_maskload_ps(row[q] + p, mk);
        strop__tr8x8_ps(r, t0);
        for (int q = 0; q < 8; q++) r[q] = _mm256_maskload_ps(row[8 + q] + p, mk);
        strop__tr8x8_ps(r, t1);
        for (int q = 0; q < kw; q++)
          for (int i = 0; i < M; i++) {
            const __m256 x = _mm256_set1_ps(a[i * lda + p + q]);
            acc0[i] = _mm256_fmadd_ps(x, t0[q], acc0[i]);
            acc1[i] = _mm256_fmadd_ps(x, t1[q], acc1[i]);
          }
      }
      for (int i = 0; i < M; i++) {
        unsigned *bd = pc + kc == k ? bad : NULL;
        put8(c + i * ldc + j, mc0, acc0[i], alpha, beta, pc == 0, bd);
        if (nr > 8) put8(c + i * ldc + j + 8, mc1, acc1[i], alpha, beta, pc == 0, bd);
      }
    }
  }
}

T256 GEMV_BODIES(gemv_n256, n256)
T256 GEMV_BODIES(gemv_t256, t256)

/* ---------------------------------------------------------------- BF16 and int8 weights */

/* A frozen weight held in BF16 or int8 (ops/lowp.h) is read as stored and widened in
 * registers: BF16 shifted into the top half of an FP32, int8 converted and multiplied by its
 * scale — the values strop__lowp_expand writes, exactly — then summed as the FP32 kernels above
 * sum (the bits of the FP32 GEMM on the widened weight, which is what the general path runs).
 * A weight whose product runs on vdpbf16ps (BF16, and int8 expanded to BF16 as lowp.c packs it)
 * takes that instruction here too, in the same pairs and order as lowp.c's kernel. AVX-512 only
 * (the general path elsewhere). */
#  define TLP __attribute__((target("avx512f,avx512bw,avx512vl")))
#  define INLLP static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl")))
#  define INLDP \
    static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16")))

    enum {
      LP_BF16 = 1,
      LP_INT8 = 2,
      LP_DOT = 3, /* BF16 on vdpbf16ps */
      LP_DOT8 = 4 /* int8 expanded to BF16, on vdpbf16ps */
    };

/* 16 stored values from p (those of mask mk; the others 0), widened exactly */
INLLP __m512 widen16(const int kind, const void *p, __mmask16 mk) {
  if (kind == LP_BF16)
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, p)), 16));
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mk, p)));
}

typedef struct lp_job {
  int kind, m;
  const float *x;     /* [m, in] */
  const uint32_t *xp; /* LP_DOT: x rounded to BF16 pairs, [m, kp] */
  int64_t kp;
  const strop__lowp *w;
  int64_t in, out, ng, gl; /* int8: scales per output channel, inputs per scale */
  float beta;              /* 1: y holds the bias */
  float *y;
} lp_job;

/* Output channels [j, j + nr) (nr <= 32) of W stored [out, in]: two groups of 16 rows, each
 * transposed per 16 inputs, lane r of group h walking channel j + 16 h + r (two independent
 * chains of sums, as t512 runs; channels past nr repeat the last one and are not stored). */
INLLP void lpt_group(const int M, const int kind, const lp_job *J, int64_t j, int64_t nr) {
  const size_t es = kind == LP_BF16 ? 2 : 1;
  const int64_t in = J->in;
  const char *row[32];
  int idx[32];
  for (int r = 0; r < 32; r++) {
    const int64_t o = j + (r < nr ? r : nr - 1);
    row[r] = (const char *)J->w->v + (size_t)(o * in) * es;
    idx[r] = (int)(o * J->ng);
  }
  const __m512i sidx[2] = {_mm512_loadu_si512(idx), _mm512_loadu_si512(idx + 16)};
  for (int64_t pc = 0; pc < in; pc += KC) {
    const int64_t kc = in - pc < KC ? in - pc : KC;
    __m512 acc[2][STROP__GEMV_MAX_M];
    for (int h = 0; h < 2; h++)
      for (int i = 0; i < M; i++) acc[h][i] = _mm512_setzero_ps();
    int64_t gcur = -1;
    __m512 sc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t p = pc; p < pc + kc; p += 16) {
      const int64_t kw = pc + kc - p < 16 ? pc + kc - p : 16;
      const __mmask16 mk = lanes16(kw);
      for (int q = 0; q < 32; q++) /* the next 32 channels' line at this depth, into L2 */
        _mm_prefetch(row[q] + (size_t)(32 * in + p) * es, _MM_HINT_T1);
      for (int h = 0; h < 2; h++) {
        __m512 r[16], t[16];
        for (int q = 0; q < 16; q++) r[q] = widen16(kind, row[16 * h + q] + (size_t)p * es, mk);
        tr16(r, t);
        for (int q = 0; q < kw; q++) {
          __m512 wv = t[q];
          if (kind == LP_INT8) {
            const int64_t g = J->ng > 1 ? (p + q) / J->gl : 0;
            if (g != gcur) {
              for (int hh = 0; hh < 2; hh++)
                sc[hh] = _mm512_i32gather_ps(
                    _mm512_add_epi32(sidx[hh], _mm512_set1_epi32((int)g)), J->w->scale, 4);
              gcur = g;
            }
            wv = _mm512_mul_ps(wv, sc[h]);
          }
          for (int i = 0; i < M; i++)
            acc[h][i] = _mm512_fmadd_ps(_mm512_set1_ps(J->x[i * in + p + q]), wv, acc[h][i]);
        }
      }
    }
    for (int h = 0; h < 2 && 16 * h < nr; h++)
      for (int i = 0; i < M; i++)
        put16(J->y + i * J->out + j + 16 * h, lanes16(nr - 16 * h), acc[h][i], 1.0f, J->beta,
              pc == 0, NULL);
  }
}

/* int8 W stored [in, out] (GPT-2's Conv1D): output channels [j, j + w) (w <= NT / M), each
 * input's row streamed whole (as n512 does), widened and scaled per channel, into sums kept in
 * L1; the channels' scales of the current group gathered into a row once per group. */
INLLP void lpn_rows(const int M, const lp_job *J, int64_t j, int64_t w) {
  const int64_t in = J->in, out = J->out, nv = (w + 15) / 16;
  const int8_t *v = J->w->v;
  const __mmask16 ml = lanes16(w - (nv - 1) * 16);
  __attribute__((aligned(64))) float sums[NT], sc[NT];
  float *s[STROP__GEMV_MAX_M];
  for (int i = 0; i < M; i++) s[i] = sums + i * (NT / M / 16 * 16);
  for (int64_t pc = 0; pc < in; pc += KC) {
    const int64_t kc = in - pc < KC ? in - pc : KC;
    for (int i = 0; i < M; i++)
      for (int64_t q = 0; q < nv; q++) _mm512_store_ps(s[i] + 16 * q, _mm512_setzero_ps());
    int64_t gcur = -1;
    for (int64_t p = pc; p < pc + kc; p++) {
      const int64_t g = J->ng > 1 ? p / J->gl : 0;
      if (g != gcur) {
        for (int64_t c = 0; c < w; c++) sc[c] = J->w->scale[(j + c) * J->ng + g];
        gcur = g;
      }
      const int8_t *br = v + p * out + j;
      __m512 xv[STROP__GEMV_MAX_M];
      for (int i = 0; i < M; i++) xv[i] = _mm512_set1_ps(J->x[i * in + p]);
      for (int64_t q = 0; q < nv; q++) {
        const __mmask16 mk = q == nv - 1 ? ml : (__mmask16)0xffff;
        if ((q & 3) == 0) /* the row 4 below, into L2 */
          _mm_prefetch((const char *)(br + 4 * out + 16 * q), _MM_HINT_T1);
        const __m512 wv = _mm512_mul_ps(widen16(LP_INT8, br + 16 * q, mk),
                                        _mm512_load_ps(sc + 16 * q));
        for (int i = 0; i < M; i++)
          _mm512_store_ps(s[i] + 16 * q,
                          _mm512_fmadd_ps(xv[i], wv, _mm512_load_ps(s[i] + 16 * q)));
      }
    }
    for (int i = 0; i < M; i++)
      for (int64_t q = 0; q < nv; q++)
        put16(J->y + i * out + j + 16 * q, q == nv - 1 ? ml : (__mmask16)0xffff,
              _mm512_load_ps(s[i] + 16 * q), 1.0f, J->beta, pc == 0, NULL);
  }
}

/* BF16 on vdpbf16ps: output channels [j, j + nr) (nr <= 32) in two groups of 16, 16 pairs of
 * inputs of 16 channels transposed per step, every pair up to lowp.c's padded depth (zeros
 * past in), one sum. An int8 W [out, in] (i8) the same, each run of 32 values scaled and
 * rounded to BF16 as lowp.c packs them (strop__int8_bf16_32). */
INLDP void lpdot_group(const int M, const int i8, const lp_job *J, int64_t j, int64_t nr) {
  const int64_t in = J->in, kp = J->kp, es = i8 ? 1 : 2;
  const char *row[32];
  const float *sc[32]; /* int8: the channel's scales */
  for (int r = 0; r < 32; r++) {
    const int64_t o = j + (r < nr ? r : nr - 1);
    row[r] = (const char *)J->w->v + o * in * es;
    sc[r] = i8 ? J->w->scale + o * J->ng : NULL;
  }
  __m512 acc[2][STROP__GEMV_MAX_M];
  for (int h = 0; h < 2; h++)
    for (int i = 0; i < M; i++) acc[h][i] = _mm512_setzero_ps();
  for (int64_t q0 = 0; q0 < kp; q0 += 16) {
    const int64_t left = in - 2 * q0;
    const __mmask32 mk = left >= 32  ? (__mmask32)0xffffffffu
                         : left <= 0 ? (__mmask32)0
                                     : (__mmask32)((1u << left) - 1u);
    for (int q = 0; q < 32; q++) /* the next 32 channels' line at this depth, into L2 */
      _mm_prefetch(row[q] + (32 * in + 2 * q0) * es, _MM_HINT_T1);
    strop__int8_runs ri[2];
    if (i8)
      for (int t = 0; t < 2; t++) ri[t] = strop__int8_runs_at(J->ng, J->gl, 2 * q0 + 16 * t);
    for (int h = 0; h < 2; h++) {
      __m512 r[16], t[16];
      for (int q = 0; q < 16; q++)
        r[q] = _mm512_castsi512_ps(
            i8 ? strop__int8_bf16_32((const int8_t *)(const void *)row[16 * h + q] + 2 * q0, mk,
                                     strop__int8_scales_in(sc[16 * h + q], &ri[0]),
                                     strop__int8_scales_in(sc[16 * h + q], &ri[1]))
               : _mm512_maskz_loadu_epi16(mk, row[16 * h + q] + 4 * q0));
      tr16(r, t);
      for (int q = 0; q < 16; q++)
        for (int i = 0; i < M; i++)
          acc[h][i] = _mm512_dpbf16_ps(acc[h][i],
                                       (__m512bh)_mm512_set1_epi32((int)J->xp[i * kp + q0 + q]),
                                       (__m512bh)_mm512_castps_si512(t[q]));
    }
  }
  for (int h = 0; h < 2 && 16 * h < nr; h++)
    for (int i = 0; i < M; i++) {
      float *c = J->y + i * J->out + j + 16 * h;
      const __mmask16 mc = lanes16(nr - 16 * h);
      __m512 v = acc[h][i];
      if (J->beta != 0.0f) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mc, c), v);
      _mm512_mask_storeu_ps(c, mc, v);
    }
}

/* int8 W [in, out] on vdpbf16ps: output channels [j, j + w) (w <= NT / M), inputs 2q and 2q + 1's
 * rows streamed, scaled and rounded per channel and interleaved into pairs as lowp.c packs them,
 * one sum per channel kept in L1 over every pair up to lowp.c's padded depth (zeros past in):
 * each channel's pairs in k order, the kernel's sums. */
INLDP void lpdot_rows(const int M, const lp_job *J, int64_t j, int64_t w) {
  const int64_t in = J->in, out = J->out, kp = J->kp, nv = (w + 15) / 16;
  const int8_t *v = J->w->v;
  const __mmask16 ml = lanes16(w - (nv - 1) * 16);
  __attribute__((aligned(64))) float sums[NT], sc[NT];
  float *s[STROP__GEMV_MAX_M];
  for (int i = 0; i < M; i++) {
    s[i] = sums + i * (NT / M / 16 * 16);
    for (int64_t c = 0; c < nv; c++) _mm512_store_ps(s[i] + 16 * c, _mm512_setzero_ps());
  }
  int64_t gcur = -1;
  for (int64_t q = 0; q < kp; q++) {
    __m512bh xv[STROP__GEMV_MAX_M];
    for (int i = 0; i < M; i++) xv[i] = (__m512bh)_mm512_set1_epi32((int)J->xp[i * kp + q]);
    const int8_t *br[2] = {v + 2 * q * out + j, v + (2 * q + 1) * out + j};
    const int64_t g0 = J->ng > 1 ? 2 * q / J->gl : 0, g1 = J->ng > 1 ? (2 * q + 1) / J->gl : 0;
    if (2 * q + 1 < in && g0 == g1) { /* both rows, one run of scales: the loop kept tight */
      if (g0 != gcur) {
        for (int64_t cc = 0; cc < w; cc++) sc[cc] = J->w->scale[(j + cc) * J->ng + g0];
        gcur = g0;
      }
      const int8_t *r0 = br[0], *r1 = br[1];
      for (int c = 0; c < nv; c++) {
        const __mmask16 mk = c == nv - 1 ? ml : (__mmask16)0xffff;
        if ((c & 3) == 0) { /* the rows 4 below, into L2 */
          _mm_prefetch((const char *)(r0 + 4 * out + 16 * c), _MM_HINT_T1);
          _mm_prefetch((const char *)(r1 + 4 * out + 16 * c), _MM_HINT_T1);
        }
        const __m512 sv = _mm512_maskz_load_ps(mk, sc + 16 * c);
        const __m512bh b = (__m512bh)strop__bf16_pairs16(
            strop__int8_scaled16(r0 + 16 * c, mk, sv), strop__int8_scaled16(r1 + 16 * c, mk, sv));
        for (int i = 0; i < M; i++)
          _mm512_store_ps(s[i] + 16 * c,
                          _mm512_dpbf16_ps(_mm512_load_ps(s[i] + 16 * c), xv[i], b));
      }
      continue;
    }
    for (int c = 0; c < nv; c++) {
      const __mmask16 mk = c == nv - 1 ? ml : (__mmask16)0xffff;
      __m512 pr[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
      for (int t = 0; t < 2; t++) {
        const int64_t p = 2 * q + t;
        if (p >= in) continue;
        const int64_t g = J->ng > 1 ? p / J->gl : 0;
        if (g != gcur) { /* the channels' scales of this run of inputs */
          for (int64_t cc = 0; cc < w; cc++) sc[cc] = J->w->scale[(j + cc) * J->ng + g];
          gcur = g;
        }
        if ((c & 3) == 0) /* the row 4 below, into L2 */
          _mm_prefetch((const char *)(br[t] + 4 * out + 16 * c), _MM_HINT_T1);
        pr[t] = strop__int8_scaled16(br[t] + 16 * c, mk, _mm512_maskz_load_ps(mk, sc + 16 * c));
      }
      const __m512bh b = (__m512bh)strop__bf16_pairs16(pr[0], pr[1]);
      for (int i = 0; i < M; i++)
        _mm512_store_ps(s[i] + 16 * c, _mm512_dpbf16_ps(_mm512_load_ps(s[i] + 16 * c), xv[i], b));
    }
  }
  for (int i = 0; i < M; i++)
    for (int64_t c = 0; c < nv; c++) {
      float *y = J->y + i * out + j + 16 * c;
      const __mmask16 mc = c == nv - 1 ? ml : (__mmask16)0xffff;
      __m512 r = _mm512_load_ps(s[i] + 16 * c);
      if (J->beta != 0.0f) r = _mm512_add_ps(_mm512_maskz_loadu_ps(mc, y), r);
      _mm512_mask_storeu_ps(y, mc, r);
    }
}

TLP static void lp_t_bf16(const lp_job *J, int64_t j, int64_t nr) {
  switch (J->m) {
    case 1: lpt_group(1, LP_BF16, J, j, nr); break;
    case 2: lpt_group(2, LP_BF16, J, j, nr); break;
    case 3: lpt_group(3, LP_BF16, J, j, nr); break;
    default: lpt_group(4, LP_BF16, J, j, nr); break;
  }
}

TLP static void lp_t_int8(const lp_job *J, int64_t j, int64_t nr) {
  switch (J->m) {
    case 1: lpt_group(1, LP_INT8, J, j, nr); break;
    case 2: lpt_group(2, LP_INT8, J, j, nr); break;
    case 3: lpt_group(3, LP_INT8, J, j, nr); break;
    default: lpt_group(4, LP_INT8, J, j, nr); break;
  }
}

TLP static void lp_n_int8(const lp_job *J, int64_t j, int64_t w) {
  switch (J->m) {
    case 1: lpn_rows(1, J, j, w); break;
    case 2: lpn_rows(2, J, j, w); break;
    case 3: lpn_rows(3, J, j, w); break;
    default: lpn_rows(4, J, j, w); break;
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void lp_dot(
    const lp_job *J, int64_t j, int64_t nr) {
  switch (J->m) {
    case 1: lpdot_group(1, 0, J, j, nr); break;
    case 2: lpdot_group(2, 0, J, j, nr); break;
    case 3: lpdot_group(3, 0, J, j, nr); break;
    default: lpdot_group(4, 0, J, j, nr); break;
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void lp_dot8(
    const lp_job *J, int64_t j, int64_t nr) {
  switch (J->m) {
    case 1: lpdot_group(1, 1, J, j, nr); break;
    case 2: lpdot_group(2, 1, J, j, nr); break;
    case 3: lpdot_group(3, 1, J, j, nr); break;
    default: lpdot_group(4, 1, J, j, nr); break;
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void lp_dot8_rows(
    const lp_job *J, int64_t j, int64_t w) {
  switch (J->m) {
    case 1: lpdot_rows(1, J, j, w); break;
    case 2: lpdot_rows(2, J, j, w); break;
    case 3: lpdot_rows(3, J, j, w); break;
    default: lpdot_rows(4, J, j, w); break;
  }
}

enum { LP_BLOCK = 64 }; /* output channels per unit of the split across threads */

static void lp_chunk(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const lp_job *J = ctx;
  const int64_t end = hi * LP_BLOCK < J->out ? hi * LP_BLOCK : J->out;
  if ((J->kind == LP_INT8 || J->kind == LP_DOT8) && J->w->scale_cols) {
    const int64_t tile = NT / J->m / 16 * 16;
    for (int64_t j = lo * LP_BLOCK; j < end; j += tile) {
      if (J->kind == LP_DOT8) lp_dot8_rows(J, j, end - j < tile ? end - j : tile);
      else lp_n_int8(J, j, end - j < tile ? end - j : tile);
    }
    return;
  }
  for (int64_t j = lo * LP_BLOCK; j < end; j += 32) {
    const int64_t nr = end - j < 32 ? end - j : 32;
    if (J->kind == LP_DOT) lp_dot(J, j, nr);
    else if (J->kind == LP_DOT8) lp_dot8(J, j, nr);
    else if (J->kind == LP_BF16) lp_t_bf16(J, j, nr);
    else lp_t_int8(J, j, nr);
  }
}

int strop__lowp_gemv(const float *x, const strop__lowp *w, const float *b, float *y, int64_t m,
                     int64_t in, int64_t out, int w_in_out) {
  /* a weight held in panels (a compute-dtype copy) goes to the general path: _nt reads them */
  if (m < 1 || m > STROP__GEMV_MAX_M || in < 1 || out < 1 || w->scale_cols != w_in_out ||
      (w->dtype != STROP__LOWP_BF16 && w->dtype != STROP__LOWP_INT8) || w->panels ||
      strop__gemv_impl == 1 || gemv_env_off() || !strop__gemm_own_available() ||
      !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vl"))
    return -1;
  /* an int8 weight too: the general path expands it to BF16 for vdpbf16ps */
  const int dot = strop__bf16_dot_enabled();
  /* on the AMX tiles the general path's sums are the tiles', which vdpbf16ps cannot give: a row's
   * bits then do not depend on how many rows come with it */
  if (dot && strop__bf16_amx_runs()) return -1;
  /* otherwise the general path runs the FP32 product of the widened weight, whose bits these
   * kernels give where strop__sgemm would run the own GEMM or a kernel above on it */
  if (!dot && !strop__gemv_pick(0, m, strop__gemm_use_own(0, !w_in_out, m, out, in))) return -1;
  const int bf16 = w->dtype == STROP__LOWP_BF16;
  lp_job J = {.kind = dot ? (bf16 ? LP_DOT : LP_DOT8) : (bf16 ? LP_BF16 : LP_INT8),
              .m = (int)m,
              .x = x,
              .w = w,
              .in = in,
              .out = out,
              .ng = 1,
              .gl = in,
              .beta = b ? 1.0f : 0.0f,
              .y = y};
  if (w->dtype == STROP__LOWP_INT8 && w->group > 0 && w->group < in) {
    J.ng = (in + w->group - 1) / w->group;
    J.gl = w->group;
  }
  uint32_t *xp = NULL;
  if (dot) { /* lowp.c's rounding of x and its depth, padded to 32 with zeros */
    J.kp = (in + 31) / 32 * 16;
    xp = strop__lowp_scratch_take((size_t)(m * J.kp) * sizeof *xp);
    if (!xp) return -1;
    for (int64_t i = 0; i < m; i++)
      for (int64_t q = 0; q < J.kp; q++) {
        const uint32_t lo = 2 * q < in ? strop__bf16_from_f32(x[i * in + 2 * q]) : 0u;
        const uint32_t hi = 2 * q + 1 < in ? strop__bf16_from_f32(x[i * in + 2 * q + 1]) : 0u;
        xp[i * J.kp + q] = lo | hi << 16;
      }
    J.xp = xp;
  }
  if (b)
    for (int64_t i = 0; i < m; i++) memcpy(y + i * out, b, (size_t)out * sizeof *y);
  const int64_t blocks = (out + LP_BLOCK - 1) / LP_BLOCK;
  const int threads = (double)m * (double)in * (double)out >= (double)(1 << 18)
                          ? strop__num_threads()
                          : 1;
  strop__par_run(strop__par_chunks(threads, blocks, 1), blocks, lp_chunk, &J);
  strop__lowp_scratch_give(xp);
  return 0;
}

int strop__sgemv(int isa, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                 int *nonfinite) {
  if (m < 1 || m > STROP__GEMV_MAX_M || n <= 0 || k <= 0) return -1;
  unsigned bad = 0, *bp = nonfinite ? &bad : NULL;
  if (isa == STROP__GEMV_AVX512 && strop__gemm_own_available()) {
    if (tb) gemv_t512((int)m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bp);
    else gemv_n512((int)m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bp);
  } else if (isa == STROP__GEMV_AVX2 && has_avx2()) {
    if (tb) gemv_t256((int)m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bp);
    else gemv_n256((int)m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bp);
  } else {
    return -1;
  }
  if (nonfinite) *nonfinite = bad != 0;
  return 0;
}

#else

int strop__gemv_pick(int ta, int64_t m, int own) {
  (void)ta, (void)m, (void)own;
  return 0;
}

int strop__sgemv(int isa, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                 int *nonfinite) {
  (void)isa, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b;
  (void)ldb, (void)beta, (void)c, (void)ldc, (void)nonfinite;
  (void)gemv_env_off;
  return -1;
}

int strop__lowp_gemv(const float *x, const strop__lowp *w, const float *b, float *y, int64_t m,
                     int64_t in, int64_t out, int w_in_out) {
  (void)x, (void)w, (void)b, (void)y, (void)m, (void)in, (void)out, (void)w_in_out;
  return -1;
}

#endif
