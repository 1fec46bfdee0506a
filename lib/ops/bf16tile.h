/* SPDX-License-Identifier: MIT */
/* strop — the 8 x 32 vdpbf16ps tile both BF16 products run (ops/lowp.c for a held BF16 weight,
 * ops/bf16gemm.c for two FP32 operands rounded while packing), and the 16 x 16 transpose their
 * packing and the weight's BF16 copy share. Included only where <immintrin.h> and the target
 * attribute are available (x86-64, GCC >= 10 or clang). */
#ifndef STROP_OPS_BF16TILE_H
#define STROP_OPS_BF16TILE_H

#include <immintrin.h>
#include <stdint.h>

/* C[mr, nr] = alpha A B (+ add[r] on row r when add is non-NULL) (+ C when beta != 0) over kp
 * pairs of k: A's pair (r, q) at a[r * rs + q * qs] (rows r >= mr read row mr - 1, their sums
 * dropped), B packed as kp groups of 32 pairs (p[q * 32 + j]); C row-major with ldc, its
 * columns j < split at c + j, the others at c2 + j - split (a tile across two images' outputs;
 * split >= nr: all at c). FP32 sums in k order for every element, then times alpha (skipped
 * when 1: the same bits), then add[r], then C added. */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static inline void
strop__bf16_tile_8x32_ex(const uint32_t *a, int64_t rs, int64_t qs, int64_t kp, const uint32_t *p,
                         int64_t mr, int64_t nr, float alpha, float beta, const float *add,
                         float *c, int64_t split, float *c2, int64_t ldc) {
  const uint32_t *ar[8];
  for (int r = 0; r < 8; r++) ar[r] = a + (r < mr ? r : mr - 1) * rs;
  __m512 acc[8][2];
  for (int r = 0; r < 8; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t q = 0; q < kp; q++) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(p + q * 32);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(p + q * 32 + 16);
    for (int r = 0; r < 8; r++) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32((int)ar[r][q * qs]);
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
    }
  }
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
  for (int64_t r = 0; r < mr; r++) {
    float *cr = c + r * ldc, *dr = t0 | t1 ? c2 + r * ldc - split : cr;
    __m512 v0 = acc[r][0], v1 = acc[r][1];
    if (alpha != 1.0f) {
      v0 = _mm512_mul_ps(v0, _mm512_set1_ps(alpha));
      v1 = _mm512_mul_ps(v1, _mm512_set1_ps(alpha));
    }
    if (add) {
      v0 = _mm512_add_ps(v0, _mm512_set1_ps(add[r]));
      v1 = _mm512_add_ps(v1, _mm512_set1_ps(add[r]));
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
    _mm512_mask_storeu_ps(cr, s0, v0);
    if (s1) _mm512_mask_storeu_ps(cr + 16, s1, v1);
    if (t0) _mm512_mask_storeu_ps(dr, t0, v0);
    if (t1) _mm512_mask_storeu_ps(dr + 16, t1, v1);
  }
}

/* strop__bf16_tile_8x32_ex with every column at c and nothing added before C */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static inline void strop__bf16_tile_8x32(
    const uint32_t *a, int64_t rs, int64_t qs, int64_t kp, const uint32_t *p, int64_t mr,
    int64_t nr, float alpha, float beta, float *c, int64_t ldc) {
  strop__bf16_tile_8x32_ex(a, rs, qs, kp, p, mr, nr, alpha, beta, NULL, c, 32, c, ldc);
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
