/* SPDX-License-Identifier: MIT */
/* strop — exp, erfc and tanh for float loops, written branch-free (selects, no calls) so the
 * compiler vectorises the loops that use them; libm's expf/erfcf are calls per element.
 * Accuracy against double-precision libm (tests/check_layers_dense, vmath_accuracy):
 * strop__vexpf within 1.2e-7 relative (2 ulp) wherever e^x is a normal float; strop__verfcf
 * within 2e-6 relative for |x| <= 4 and 1e-5 for |x| <= 9 (the fit's own fractional error is
 * 1.2e-7; the float rounding of -x^2 adds the rest as |x| grows); strop__vtanhf within 3e-7
 * relative. Special values: exp(-inf) = 0, exp(+inf) = inf, NaN stays NaN; erfc(-inf) = 2,
 * erfc(+inf) = 0; tanh(+-inf) = +-1, tanh(-0) = -0. */
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

static inline double strop__as_double(int64_t i) {
  double d;
  memcpy(&d, &i, sizeof d);
  return d;
}

/* e^x in double, for loops that keep libm's exp values (the cross-entropy's softmax): x = n ln2
 * + r, |r| <= ln2 / 2 (Cody-Waite), e^r by its Taylor series to r^13 (remainder < 5e-18
 * relative), times 2^n as two normal factors so that subnormal results round once. Within 3e-16
 * relative of libm's exp wherever e^x is a normal double; exp(-inf) = 0, exp(+inf) = inf, NaN
 * stays NaN. */
static inline double strop__vexp(double x) {
  const double hi = 709.782712893384, lo = -745.1332191019412;
  const int nan = x != x;
  double xc = nan ? 0.0 : x;
  xc = xc > hi ? hi : xc;
  xc = xc < lo ? lo : xc;
  const double shifter = 6755399441055744.0; /* 1.5 * 2^52 */
  const double n = (xc * 1.4426950408889634 + shifter) - shifter;
  const double r = (xc - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const int64_t ni = (int64_t)n, a = ni >> 1, b = ni - a;
  double e = p * strop__as_double((a + 1023) << 52) * strop__as_double((b + 1023) << 52);
  e = x < lo ? 0.0 : e;
  e = x > hi ? (double)INFINITY : e;
  return nan ? x : e;
}

/* tanh(x): below |x| = 0.55 its Taylor series to x^17 (the next term is under 6e-9 of the
 * value there), above it 1 - 2 / (e^2|x| + 1) with the sign of x, where no digit cancels. */
static inline float strop__vtanhf(float x) {
  const float z = x < 0.0f ? -x : x, u = x * x;
  float p = 6404582.0f / 10854718875.0f;
  p = p * u - 929569.0f / 638512875.0f;
  p = p * u + 21844.0f / 6081075.0f;
  p = p * u - 1382.0f / 155925.0f;
  p = p * u + 62.0f / 2835.0f;
  p = p * u - 17.0f / 315.0f;
  p = p * u + 2.0f / 15.0f;
  p = p * u - 1.0f / 3.0f;
  const float small = x * (1.0f + u * p);
  const float big = 1.0f - 2.0f / (strop__vexpf(2.0f * z) + 1.0f);
  return z < 0.55f ? small : x < 0.0f ? -big : big;
}

#endif
