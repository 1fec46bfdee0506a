/* SPDX-License-Identifier: MIT */
/* strop — an 8 x 8 float transpose in AVX registers, for kernels that turn rows into columns
 * (the small-m GEMV's A, the batch norms' channel sums, the cross-entropy's row sums). Private
 * to lib/ops; x86-64 with GCC-style target attributes only. */
#ifndef STROP_OPS_TR8_H
#define STROP_OPS_TR8_H

#if defined(__x86_64__) && defined(__GNUC__)
#  include <immintrin.h>

/* r[0..7] (8 rows of 8 floats) -> t[q] holding element q of every row (t may be r: every
 * element of r is read before t is written) */
static inline __attribute__((always_inline, target("avx"))) void strop__tr8x8_ps(const __m256 *r,
                                                                                 __m256 *t) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  t[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  t[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  t[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  t[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  t[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  t[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  t[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  t[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

#endif
#endif
