/* SPDX-License-Identifier: MIT */
/* strop — exp and erfc for float loops, written branch-free (selects, no calls) so the
 * compiler vectorises the loops that use them; libm's expf/erfcf are calls per element.
 * Accuracy against double-precision libm (tests/check_layers_dense, vmath_accuracy):
 * strop__vexpf within 1.2e-7 relative (2 ulp) wherever e^x is a normal float; strop__verfcf
 * within 2e-6 relative for |x| <= 4 and 1e-5 for |x| <= 9 (the fit's own fractional error is
 * 1.2e-7; the float rounding of -x^2 adds the rest as |x| grows). Special values: exp(-inf) = 0, exp(+inf) = inf, NaN stays NaN;
 * erfc(-inf) = 2, erfc(+inf) = 0. */
#ifndef STROP_OPS_VMATH_H
#define STROP_OPS_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float strop__as_float(int32_t i) {
  float f;
  memcpy(&f, &i, sizeof f);
  return f;
}

/* e^x: x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite split of ln2), e^r by its Taylor series
 * to r^7 (remainder < 5e-9 relative), times 2^n built in the exponent bits. */
static inline float strop__vexpf(float x) {
  const float hi = 88.7228317f, lo = -87.3365479f;
  const int nan = x != x;
  float xc = nan ? 0.0f : x;
  xc = xc > hi ? hi : xc;
  xc = xc < lo ? lo : xc;
  const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
  const float n = (xc * 1.44269504f + shifter) - shifter;
  const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  /* 2^n as 2^a 2^b, a = floor(n / 2), b = n - a: both stay normal for n in [-126, 128] */
  const int32_t ni = (int32_t)n, a = ni >> 1, b = ni - a;
  float e = p * strop__as_float((a + 127) << 23) * strop__as_float((b + 127) << 23);
  e = x < lo ? 0.0f : e;
  e = x > hi ? (float)INFINITY : e;
  return nan ? x : e;
}

/* erfc(x) = t exp(-z^2 + P(t)), z = |x|, t = 1 / (1 + z / 2), P the classic degree-9
 * Chebyshev fit (fractional error < 1.2e-7 for z >= 0); erfc(-z) = 2 - erfc(z). */
static inline float strop__verfcf(float x) {
  const float z = x < 0.0f ? -x : x;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  const float r = t * strop__vexpf(p - z * z);
  return x >= 0.0f ? r : 2.0f - r;
}

#endif
