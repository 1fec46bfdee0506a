/* SPDX-License-Identifier: MIT */
/* strop — the 8 x 32 vdpbf16ps tile both BF16 products run (ops/lowp.c for a held BF16 weight,
 * ops/bf16gemm.c for two FP32 operands rounded while packing). Included only where
 * <immintrin.h> and the target attribute are available (x86-64, GCC >= 10 or clang). */
#ifndef STROP_OPS_BF16TILE_H
#define STROP_OPS_BF16TILE_H

#include <immintrin.h>
#include <stdint.h>

/* C[mr, nr] (+)= A B over kp pairs of k: A's pair (r, q) at a[r * rs + q * qs] (rows r >= mr
 * read row mr - 1, their sums dropped), B packed as kp groups of 32 pairs (p[q * 32 + j]); C
 * row-major with ldc, added to when beta != 0. FP32 sums in k order for every element. */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static inline void strop__bf16_tile_8x32(
    const uint32_t *a, int64_t rs, int64_t qs, int64_t kp, const uint32_t *p, int64_t mr,
    int64_t nr, float beta, float *c, int64_t ldc) {
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
  for (int64_t r = 0; r < mr; r++) {
    float *cr = c + r * ldc;
    __m512 v0 = acc[r][0], v1 = acc[r][1];
    if (beta != 0.0f) {
      v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), v0);
      v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), v1);
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    if (m1) _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}

#endif
