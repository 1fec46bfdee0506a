/* SPDX-License-Identifier: MIT */
/* strop — the 8 x 32 vdpbf16ps tile both BF16 products run (ops/lowp.c for a held BF16 or int8
 * weight, ops/bf16gemm.c for two FP32 operands rounded while packing), and the 16 x 16
 * transpose, the vectorised rounding to BF16 and the int8 weight's expansion their packing
 * shares. Included only where <immintrin.h> and the target attribute are available (x86-64,
 * GCC >= 10 or clang). */
#ifndef STROP_OPS_BF16TILE_H
#define STROP_OPS_BF16TILE_H

#include <immintrin.h>
#include <stdint.h>

#include "ops/lowp.h"

/* strop__bf16_tile_8x32_ex's opts: the residual's element first in its sum (a residual sum's
 * operand order); C's lines asked for writing before the sums (a large output written once:
 * a convolution's, whose stores would otherwise wait for each line); add holding one value per
 * column, added as add[j] + v (a linear layer's bias: the bits of C holding the bias and beta
 * 1, without C's bias rows written and read back) instead of one per row */
enum { STROP__TILE_RES_FIRST = 1, STROP__TILE_PREFETCH_C = 2, STROP__TILE_ADD_COLS = 4 };

/* The lines strop__bf16_tile_8x32_ex's residual will read (and, with STROP__TILE_PREFETCH_C,
 * C's for writing) asked for before its sums: a block's shortcut is far in memory (read once),
 * and its loads would stall the stores */
__attribute__((target("avx512f"))) static inline void strop__bf16_tile_prefetch(
    int64_t mr, int64_t nr, float *c, int64_t split, float *c2, int64_t ldc, const float *e,
    const float *e2, int opts) {
  const int64_t h0 = split < 16 ? split : 16, h1 = split < nr ? split : nr;
  for (int64_t r = 0; e && r < mr; r++) {
    const float *er = e + r * ldc, *fr = e2 + r * ldc - split;
    _mm_prefetch((const char *)er, _MM_HINT_T0);
    _mm_prefetch((const char *)(er + h0), _MM_HINT_T0);
    _mm_prefetch((const char *)(er + h1 - 1), _MM_HINT_T0);
    if (split < nr) {
      _mm_prefetch((const char *)(fr + split), _MM_HINT_T0);
      _mm_prefetch((const char *)(fr + nr - 1), _MM_HINT_T0);
    }
  }
  for (int64_t r = 0; (opts & STROP__TILE_PREFETCH_C) && r < mr; r++) {
    const float *cr = c + r * ldc, *dr = c2 + r * ldc - split;
    _mm_prefetch((const char *)cr, _MM_HINT_ET0);
    _mm_prefetch((const char *)(cr + h0), _MM_HINT_ET0);
    _mm_prefetch((const char *)(cr + h1 - 1), _MM_HINT_ET0);
    if (split < nr) {
      _mm_prefetch((const char *)(dr + split), _MM_HINT_ET0);
      _mm_prefetch((const char *)(dr + nr - 1), _MM_HINT_ET0);
    }
  }
}

/* What strop__bf16_tile_8x32_ex does with its sums acc (row r's 32 columns in acc[r][0],
 * acc[r][1]) once they are made: times alpha, add[r], the residual, C, relu, stored (its
 * comment says in which order). The AMX tile (ops/amxtile.h) ends the same way. */
__attribute__((target("avx512f,avx512bw"))) static inline void strop__bf16_tile_finish(
    __m512 acc[8][2], int64_t mr, int64_t nr, float alpha, float beta, const float *add, int relu,
    float *c, int64_t split, float *c2, int64_t ldc, const float *e, const float *e2, int opts) {
  const __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1u);
  const __mmask16 m1 = nr >= 32   ? (__mmask16)0xffff
                       : nr <= 16 ? (__mmask16)0
                                  : (__mmask16)((1u << (nr - 16)) - 1u);
  /* the lanes of each half stored at c (s0, s1) and at c2 (t0, t1) */
  const int64_t sp = split < nr ? split : nr;
  const __mmask16 s0 = m0 & (sp >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << sp) - 1u));
  const __mmask16 s1 = m1 & (sp >= 32   ? (__mmask16)0xffff
                             : sp <= 16 ? (__mmask16)0
                                        : (__mmask16)((1u << (sp - 16)) - 1u));
  const __mmask16 t0 = m0 & (__mmask16)~s0, t1 = m1 & (__mmask16)~s1;
  const int cols = add && (opts & STROP__TILE_ADD_COLS);
  const __m512 a0 = cols ? _mm512_maskz_loadu_ps(m0, add) : _mm512_setzero_ps();
  const __m512 a1 = cols ? _mm512_maskz_loadu_ps(m1, add + 16) : _mm512_setzero_ps();
  for (int64_t r = 0; r < mr; r++) {
    float *cr = c + r * ldc, *dr = t0 | t1 ? c2 + r * ldc - split : cr;
    __m512 v0 = acc[r][0], v1 = acc[r][1];
    if (alpha != 1.0f) {
      v0 = _mm512_mul_ps(v0, _mm512_set1_ps(alpha));
      v1 = _mm512_mul_ps(v1, _mm512_set1_ps(alpha));
    }
    if (cols) { /* as C holding the column's value: c + v */
      v0 = _mm512_add_ps(a0, v0);
      v1 = _mm512_add_ps(a1, v1);
    } else if (add) {
      v0 = _mm512_add_ps(v0, _mm512_set1_ps(add[r]));
      v1 = _mm512_add_ps(v1, _mm512_set1_ps(add[r]));
    }
    if (e) { /* the residual, loaded as C is */
      const float *er = e + r * ldc, *fr = t0 | t1 ? e2 + r * ldc - split : er;
      __m512 r0 = _mm512_maskz_loadu_ps(s0, er), r1 = _mm512_maskz_loadu_ps(s1, er + 16);
      if (t0 | t1) {
        r0 = _mm512_mask_loadu_ps(r0, t0, fr);
        r1 = _mm512_mask_loadu_ps(r1, t1, fr + 16);
      }
      const int first = opts & STROP__TILE_RES_FIRST;
      v0 = first ? _mm512_add_ps(r0, v0) : _mm512_add_ps(v0, r0);
      v1 = first ? _mm512_add_ps(r1, v1) : _mm512_add_ps(v1, r1);
    }
    if (beta != 0.0f) {
      __m512 c0 = _mm512_maskz_loadu_ps(s0, cr), c1 = _mm512_maskz_loadu_ps(s1, cr + 16);
      if (t0 | t1) {
        c0 = _mm512_mask_loadu_ps(c0, t0, dr);
        c1 = _mm512_mask_loadu_ps(c1, t1, dr + 16);
      }
      v0 = _mm512_add_ps(c0, v0);
      v1 = _mm512_add_ps(c1, v1);
    }
    if (relu) { /* max(0, v): 0 > v ? 0 : v, strop__relu_forward's select (NaN and -0 kept) */
      v0 = _mm512_max_ps(_mm512_setzero_ps(), v0);
      v1 = _mm512_max_ps(_mm512_setzero_ps(), v1);
    }
    _mm512_mask_storeu_ps(cr, s0, v0);
    if (s1) _mm512_mask_storeu_ps(cr + 16, s1, v1);
    if (t0) _mm512_mask_storeu_ps(dr, t0, v0);
    if (t1) _mm512_mask_storeu_ps(dr + 16, t1, v1);
  }
}

/* C[mr, nr] = alpha A B (+ add[r] on row r when add is non-NULL; add[j] + on column j with
 * STROP__TILE_ADD_COLS) (+ R) (+ C when beta != 0)
 * over kp pairs of k: A's pair (r, q) at a[r * rs + q * qs] (rows r >= mr read row mr - 1, their
 * sums dropped), B packed as kp groups of 32 pairs (p[q * 32 + j]); C row-major with ldc, its
 * columns j < split at c + j, the others at c2 + j - split (a tile across two images' outputs;
 * split >= nr: all at c); R (a residual, or NULL) laid out as C from e and e2. FP32 sums in k
 * order for every element, then times alpha (skipped when 1: the same bits), then add[r], then
 * R added (R + v with STROP__TILE_RES_FIRST in opts, else v + R), then C added, then (relu 1)
 * max(0, ·). */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static inline void
strop__bf16_tile_8x32_ex(const uint32_t *a, int64_t rs, int64_t qs, int64_t kp, const uint32_t *p,
                         int64_t mr, int64_t nr, float alpha, float beta, const float *add,
                         int relu, float *c, int64_t split, float *c2, int64_t ldc,
                         const float *e, const float *e2, int opts) {
  const uint32_t *ar[8];
  for (int r = 0; r < 8; r++) ar[r] = a + (r < mr ? r : mr - 1) * rs;
  __m512 acc[8][2];
  for (int r = 0; r < 8; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  strop__bf16_tile_prefetch(mr, nr, c, split, c2, ldc, e, e2, opts);
  for (int64_t q = 0; q < kp; q++) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(p + q * 32);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(p + q * 32 + 16);
    for (int r = 0; r < 8; r++) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32((int)ar[r][q * qs]);
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
    }
  }
  strop__bf16_tile_finish(acc, mr, nr, alpha, beta, add, relu, c, split, c2, ldc, e, e2, opts);
}

/* strop__bf16_tile_8x32_ex with every column at c, nothing added before C, no residual and no
 * relu */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static inline void strop__bf16_tile_8x32(
    const uint32_t *a, int64_t rs, int64_t qs, int64_t kp, const uint32_t *p, int64_t mr,
    int64_t nr, float alpha, float beta, float *c, int64_t ldc) {
  strop__bf16_tile_8x32_ex(a, rs, qs, kp, p, mr, nr, alpha, beta, NULL, 0, c, 32, c, ldc, NULL,
                           NULL, 0);
}

/* 32 BF16 values held by strop__bf16_compact_par, as the FP32 values they were held from round:
 * a held marker of a nonzero value that rounded to zero (STROP__BF16_TINY, ops/lowp.h) becomes
 * that zero with its sign; every other value is its own rounding */
__attribute__((target("avx512f,avx512bw"))) static inline __m512i strop__bf16_held_rounded32(
    __m512i v) {
  const __mmask32 tiny = _mm512_cmpeq_epi16_mask(_mm512_and_si512(v, _mm512_set1_epi16(0x7fff)),
                                                 _mm512_set1_epi16((short)STROP__BF16_TINY));
  return _mm512_mask_mov_epi16(v, tiny, _mm512_and_si512(v, _mm512_set1_epi16((short)0x8000)));
}

/* 16 FP32 values (their bits) rounded to BF16 in the low half of each lane: strop__bf16_rne_bits
 * (ops/lowp.h) vectorised, ties to even, NaN quiet */
__attribute__((target("avx512f"))) static inline __m512i strop__rne16(__m512i u) {
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(
      _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(
      _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}

/* the pairs (v0 lane c, v1 lane c) of 16 FP32 values each, rounded: a row of a packed panel of
 * B (strop__bf16_pack_b_fn) */
__attribute__((target("avx512f"))) static inline __m512i strop__pairs16_ps(__m512 v0, __m512 v1) {
  return _mm512_or_si512(strop__rne16(_mm512_castps_si512(v0)),
                         _mm512_slli_epi32(strop__rne16(_mm512_castps_si512(v1)), 16));
}

/* An int8 weight's values expanded to BF16: (float)q * scale in FP32 (the value
 * strop__lowp_expand gives), rounded to nearest even by vcvtne2ps2bf16 — strop__bf16_from_f32's
 * bits, except that a value below FP32's normal range becomes a zero of its sign, which
 * vdpbf16ps reads as zero anyway (it treats denormal inputs as zero): no product changes. */

/* 16 int8 values p[0 .. 15] (the lanes of mk; the others read as 0) times their scales s */
__attribute__((target("avx512f,avx512bw"))) static inline __m512 strop__int8_scaled16(
    const int8_t *p, __mmask16 mk, __m512 s) {
  /* a whole run with a plain load: a masked 64-byte load for 16 bytes costs Zen 4 an assist
   * where its unused bytes cross a page (and splits cache lines) */
  const __m128i b = mk == (__mmask16)0xffff
                        ? _mm_loadu_si128((const __m128i *)(const void *)p)
                        : _mm512_castsi512_si128(_mm512_maskz_loadu_epi8((__mmask64)mk, p));
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), s);
}

/* 32 int8 values p[0 .. 31] (the lanes of mk) as 32 consecutive BF16 values: the first 16
 * scaled by s0, the next 16 by s1 */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static inline __m512i strop__int8_bf16_32(
    const int8_t *p, __mmask32 mk, __m512 s0, __m512 s1) {
  const __m256i b = mk == (__mmask32)0xffffffffu
                        ? _mm256_loadu_si256((const __m256i *)(const void *)p)
                        : _mm512_castsi512_si256(_mm512_maskz_loadu_epi8((__mmask64)mk, p));
  const __m512 lo = _mm512_mul_ps(
      _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(b))), s0);
  const __m512 hi = _mm512_mul_ps(
      _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(b, 1))), s1);
  return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* 16 pairs of FP32 values as BF16 pairs: lane c = BF16(a[c]) | BF16(b[c]) << 16, the (k, k + 1)
 * pairs of a panel column */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static inline __m512i strop__bf16_pairs16(
    __m512 a, __m512 b) {
  const __m512i v = (__m512i)_mm512_cvtne2ps_pbh(b, a); /* a's 16, then b's 16 */
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24,
                                       8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(idx, v);
}

/* Where 16 consecutive inputs i0 .. i0 + 15 of an int8 weight (ops/lowp.h: ng scales per output
 * channel, each for a run of gl inputs) take their scales from: all from run g (split 0), or
 * lane l from run idx[l] (a run ends among them). Found once for every output channel that
 * reads these inputs; runs past the last one read the last one. */
typedef struct strop__int8_runs {
  int64_t g;
  int split;
  __m512i idx;
} strop__int8_runs;

__attribute__((target("avx512f"))) static inline strop__int8_runs strop__int8_runs_at(
    int64_t ng, int64_t gl, int64_t i0) {
  strop__int8_runs r = {0, 0, _mm512_setzero_si512()};
  if (ng <= 1) return r;
  const int64_t g0 = i0 / gl < ng - 1 ? i0 / gl : ng - 1;
  const int64_t g1 = (i0 + 15) / gl < ng - 1 ? (i0 + 15) / gl : ng - 1;
  r.g = g0;
  if (g1 == g0) return r;
  int32_t t[16];
  for (int l = 0; l < 16; l++) t[l] = (int32_t)((i0 + l) / gl < ng - 1 ? (i0 + l) / gl : ng - 1);
  r.split = 1;
  r.idx = _mm512_loadu_si512(t);
  return r;
}

/* the scales of those 16 inputs of the output channel whose ng scales start at s */
__attribute__((target("avx512f"))) static inline __m512 strop__int8_scales_in(
    const float *s, const strop__int8_runs *r) {
  return r->split ? _mm512_i32gather_ps(r->idx, s, 4) : _mm512_set1_ps(s[r->g]);
}

/* the scales of output channels o0 .. o0 + 15 (the lanes of mk; the others 0) for inputs of
 * run g, from scale[o * ng + g] */
__attribute__((target("avx512f"))) static inline __m512 strop__int8_scales_out(
    const float *scale, int64_t ng, int64_t g, int64_t o0, __mmask16 mk) {
  if (ng <= 1) return _mm512_maskz_loadu_ps(mk, scale + o0);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i idx = _mm512_add_epi32(_mm512_mullo_epi32(lane, _mm512_set1_epi32((int)ng)),
                                       _mm512_set1_epi32((int)(o0 * ng + g)));
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, idx, scale, 4);
}

/* the first cnt of 32 lanes (cnt clipped to 0 .. 32) */
static inline __mmask32 strop__lanes32(int64_t cnt) {
  return cnt >= 32  ? (__mmask32)0xffffffffu
         : cnt <= 0 ? (__mmask32)0
                    : (__mmask32)((1u << cnt) - 1u);
}

/* r[0 .. 15] (16 32-bit lanes each) transposed in place: r[q] lane c = old r[c] lane q. Two
 * rounds of unpacks give, per 128-bit lane L, four columns of four rows; two of lane shuffles
 * gather the four rows' lanes. */
__attribute__((target("avx512f"))) static inline void strop__transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  /* u[4 g + s], lane L: column 4 L + s of rows 4 g .. 4 g + 3 */
  for (int g = 0; g < 4; g++) {
    u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int s = 0; s < 4; s++) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[s], u[4 + s], 0x44); /* L0 L1 of g 0, 1 */
    const __m512i v1 = _mm512_shuffle_i32x4(u[s], u[4 + s], 0xee); /* L2 L3 of g 0, 1 */
    const __m512i v2 = _mm512_shuffle_i32x4(u[8 + s], u[12 + s], 0x44);
    const __m512i v3 = _mm512_shuffle_i32x4(u[8 + s], u[12 + s], 0xee);
    r[s] = _mm512_shuffle_i32x4(v0, v2, 0x88);      /* column s: lane L0 of g 0 .. 3 */
    r[4 + s] = _mm512_shuffle_i32x4(v0, v2, 0xdd);  /* column 4 + s */
    r[8 + s] = _mm512_shuffle_i32x4(v1, v3, 0x88);  /* column 8 + s */
    r[12 + s] = _mm512_shuffle_i32x4(v1, v3, 0xdd); /* column 12 + s */
  }
}

#endif
