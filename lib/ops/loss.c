/* SPDX-License-Identifier: MIT */
/* strop — losses (cross-entropy, MSE, L1, Huber, BCE-with-logits) and their gradients with
 * respect to the predictions, with PyTorch's reduction semantics. Sums in double. */
#include "ops/loss.h"

#include <math.h>

#include "core/core.h"
#include "ops/ops.h"
#include "ops/tr8.h"
#include "ops/vmath.h"

void strop__loss_cfg_init(strop__loss_cfg *c, int kind) {
  c->kind = kind;
  c->label_smoothing = 0.0f;
  c->ignore_index = -100;
  c->delta = 1.0f;
  c->class_weights = NULL;
  c->n_classes = 0;
  c->reduction = STROP__LOSS_REDUCTION_MEAN;
  c->pos_weight = NULL;
  c->n_pos_weight = 0;
  c->fp32_exp = 0;
}

const char *strop__loss_name(int kind) {
  switch (kind) {
    case STROP__LOSS_CROSS_ENTROPY: return "cross_entropy";
    case STROP__LOSS_MSE: return "mse";
    case STROP__LOSS_L1: return "l1";
    case STROP__LOSS_HUBER: return "huber";
    case STROP__LOSS_BCE_WITH_LOGITS: return "bce_with_logits";
    default: return "unknown";
  }
}

#define FN "strop__loss_eval"

/* Cross-entropy over rows of C logits. The gradient is written unscaled in the first pass
 * and divided by the weight total at the end, so each row's softmax is computed once. The
 * exponentials are strop__vexp's, a block at a time into `e`, summed in column order as
 * before: libm's values and order, without a call per logit (a 50257-word vocabulary).
 * strop__loss_eval runs it over all rows at once, strop__ce_rows a run of rows at a time: both
 * through ce_check and ce_rows, so that their numbers are the same. */

/* The classes per row (*C) and the configuration and every target checked, before anything
 * is written. */
static strop_status ce_check(const strop__loss_cfg *c, int64_t per_sample, const float *target,
                             int64_t n, int64_t tps, int64_t *C_out) {
  int64_t C = c->n_classes > 0 ? c->n_classes : per_sample / tps;
  if (C <= 0 || C * tps != per_sample)
    return strop__err(STROP_E_INVALID_ARG,
                      FN ": cross_entropy: %lld logits per sample do not split into %lld "
                         "targets of %lld classes",
                      (long long)per_sample, (long long)tps, (long long)C);
  float eps = c->label_smoothing;
  if (!(eps >= 0.0f && eps <= 1.0f))
    return strop__err(STROP_E_INVALID_ARG,
                      FN ": cross_entropy: label_smoothing must be in [0, 1], got %g",
                      (double)eps);
  int64_t rows = n * tps;
  for (int64_t r = 0; r < rows; r++) {
    float y = target[r];
    /* compare as doubles: a huge float must not be cast to an integer */
    if (isfinite(y) && y == floorf(y) &&
        ((double)y == (double)c->ignore_index || (y >= 0.0f && y < (float)C)))
      continue;
    if (tps > 1)
      return strop__err(STROP_E_INVALID_ARG,
                        FN ": cross_entropy: sample %lld, position %lld: class index %g is not "
                           "an integer in [0, %lld) nor ignore_index %lld",
                        (long long)(r / tps), (long long)(r % tps), (double)y, (long long)C,
                        (long long)c->ignore_index);
    return strop__err(STROP_E_INVALID_ARG,
                      FN ": cross_entropy: sample %lld: class index %g is not an integer in "
                         "[0, %lld) nor ignore_index %lld",
                      (long long)r, (double)y, (long long)C, (long long)c->ignore_index);
  }
  *C_out = C;
  return STROP_OK;
}

static double ce_wsum(const strop__loss_cfg *c, int64_t C) {
  double wsum = 0.0;
  for (int64_t j = 0; j < C; j++) wsum += c->class_weights ? (double)c->class_weights[j] : 1.0;
  return wsum;
}

/* A row's largest logit: its first, or the largest greater one (a NaN is never greater; a NaN
 * first stays), as one compare after another in column order gives it — with `lanes`, in 16
 * lanes, which one chain of compares could not be. A maximum is exact in any order; only the
 * sign of a zero maximum could depend on it, and that reaches no result: z - m and m + log(s),
 * s >= 1, are the same for either zero. */
static inline __attribute__((always_inline)) double ce_max(const float *z, int64_t C, int lanes) {
  if (!lanes) {
    double m = z[0];
    for (int64_t j = 1; j < C; j++)
      if (z[j] > m) m = z[j];
    return m;
  }
  const float z0 = z[0];
  if (z0 != z0) return z0;
  float acc[16];
  for (int l = 0; l < 16; l++) acc[l] = z0;
  int64_t j = 1;
  for (; j + 16 <= C; j += 16)
    for (int l = 0; l < 16; l++) acc[l] = z[j + l] > acc[l] ? z[j + l] : acc[l];
  for (; j < C; j++) acc[0] = z[j] > acc[0] ? z[j] : acc[0];
  float m = acc[0];
  for (int l = 1; l < 16; l++) m = acc[l] > m ? acc[l] : m;
  return m;
}

enum { CE_GROUP = 8 };

/* s[r] = sum over j of exp(z[r][j] - m[r]) for nr rows of z (stride C; nr <= CE_GROUP, a
 * constant after inlining), each in j order as one row alone. A row's sum is a chain of
 * dependent adds, bound by their latency: the rows' chains run side by side, so they overlap. */
static inline __attribute__((always_inline)) void ce_sums(const float *z, int64_t C,
                                                          const double *m, const int nr,
                                                          double *s) {
  double e[CE_GROUP][64];
  for (int r = 0; r < nr; r++) s[r] = 0.0;
  for (int64_t j0 = 0; j0 < C; j0 += 64) {
    const int64_t nb = C - j0 < 64 ? C - j0 : 64;
    for (int r = 0; r < nr; r++)
      for (int64_t j = 0; j < nb; j++) e[r][j] = strop__vexp((double)z[r * C + j0 + j] - m[r]);
    for (int64_t j = 0; j < nb; j++)
      for (int r = 0; r < nr; r++) s[r] += e[r][j];
  }
}

int strop__ce_isa = 0;
int strop__ce_fp32 = 1;
int strop__ce_ftz = 1;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(STROP_NO_CLONES)
#  define CE_AVX512 1
#  include <immintrin.h>
#  define INL512 static inline __attribute__((always_inline, target("avx512f,avx512vl")))
#  define T512 __attribute__((target("avx512f,avx512vl")))

static int ce_avx512(void) {
  return strop__ce_isa == 0 && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512vl");
}

/* strop__vexp on 8 lanes, the same operations in the same order (no fused multiply-add: the
 * library is built without contraction) but for the last step: p 2^a 2^b, a = floor(n / 2),
 * b = n - a, is p times 2^n rounded once (p 2^a is exact, p in [0.7, 1.5], a in [-538, 512]),
 * which vscalefpd gives in one instruction, subnormal results too. tests: loss
 * `vexp_avx512_same_bits` (every float, and a sweep of doubles through the subnormal range). */
INL512 __m512d vexp8_in(__m512d x, const int checked) {
  const __m512d hi = _mm512_set1_pd(709.782712893384), lo = _mm512_set1_pd(-745.1332191019412);
  __mmask8 nan = 0;
  __m512d xc = x;
  if (checked) {
    nan = _mm512_cmp_pd_mask(x, x, _CMP_UNORD_Q);
    xc = _mm512_mask_blend_pd(nan, x, _mm512_setzero_pd());
    xc = _mm512_min_pd(xc, hi); /* xc > hi ? hi : xc, xc not NaN */
    xc = _mm512_max_pd(xc, lo); /* xc < lo ? lo : xc */
  }
  const __m512d sh = _mm512_set1_pd(6755399441055744.0);
  const __m512d n = _mm512_sub_pd(
      _mm512_add_pd(_mm512_mul_pd(xc, _mm512_set1_pd(1.4426950408889634)), sh), sh);
  const __m512d r = _mm512_sub_pd(
      _mm512_sub_pd(xc, _mm512_mul_pd(n, _mm512_set1_pd(6.93147180369123816490e-01))),
      _mm512_mul_pd(n, _mm512_set1_pd(1.90821492927058770002e-10)));
  static const double c[13] = {1.0 / 479001600.0,
                               1.0 / 39916800.0,
                               1.0 / 3628800.0,
                               1.0 / 362880.0,
                               1.0 / 40320.0,
                               1.0 / 5040.0,
                               1.0 / 720.0,
                               1.0 / 120.0,
                               1.0 / 24.0,
                               1.0 / 6.0,
                               0.5,
                               1.0,
                               1.0};
  __m512d p = _mm512_set1_pd(1.0 / 6227020800.0);
  for (int i = 0; i < 13; i++) p = _mm512_add_pd(_mm512_mul_pd(p, r), _mm512_set1_pd(c[i]));
  __m512d e = _mm512_scalef_pd(p, n);
  if (!checked) return e;
  e = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, lo, _CMP_LT_OQ), e, _mm512_setzero_pd());
  e = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, hi, _CMP_GT_OQ), e,
                           _mm512_set1_pd((double)INFINITY));
  return _mm512_mask_blend_pd(nan, e, x);
}
/* every x, and x known to be a number in [lo, hi], where the clamps and selects change nothing:
 * the same value without them */
INL512 __m512d vexp8(__m512d x) { return vexp8_in(x, 1); }
INL512 __m512d vexp8_fast(__m512d x) { return vexp8_in(x, 0); }
/* the lower bound of vexp's range: an x at or above it, below 0, takes vexp8_fast */
#  define VEXP_LO (-745.1332191019412)

/* strop__vexp through vexp8 (checked 1) or vexp8_fast, for the tests */
T512 void strop__vexp8(const double *x, double *out, int64_t n, int checked) {
  int64_t i = 0;
  for (; i < n; i += 8) {
    const __mmask8 k = n - i >= 8 ? 0xFF : (__mmask8)((1u << (n - i)) - 1);
    const __m512d v = _mm512_maskz_loadu_pd(k, x + i);
    _mm512_mask_storeu_pd(out + i, k, checked ? vexp8(v) : vexp8_fast(v));
  }
}

/* A row's largest logit as ce_max gives it (a NaN first stays; otherwise NaN is never greater),
 * with its smallest (*mn, NaNs left out) and whether it is clean (*clean) in the same read: no
 * NaN and mn - m >= VEXP_LO, so every exponent of its sums and gradient is in vexp's range */
T512 static double ce_range512(const float *z, int64_t C, float *mn, int *clean) {
  const float z0 = z[0];
  __m512 mx = _mm512_set1_ps(z0), mi = mx;
  __mmask16 bad = 0;
  int64_t j = 0;
  for (; j < C; j += 16) {
    const __mmask16 k = C - j >= 16 ? 0xFFFF : (__mmask16)((1u << (C - j)) - 1);
    const __m512 v = _mm512_mask_loadu_ps(mx, k, z + j); /* lanes past C: the maximum so far */
    bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    mx = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, mx, _CMP_GT_OQ), mx, v);
    mi = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, mi, _CMP_LT_OQ), mi, v);
  }
  float a[16], b[16];
  _mm512_storeu_ps(a, mx);
  _mm512_storeu_ps(b, mi);
  float m = a[0], lo = b[0];
  for (int l = 1; l < 16; l++) {
    m = a[l] > m ? a[l] : m;
    lo = b[l] < lo ? b[l] : lo;
  }
  *mn = lo;
  const double top = z0 != z0 ? z0 : m;
  *clean = !bad && (double)lo - top >= VEXP_LO;
  return top;
}

/* ce_sums for up to 8 rows, a row a lane: each 8 x 8 block of logits transposed so that one
 * vector holds a column of the rows, its exponentials added to the lanes' sums one column after
 * the other — each row's sum in j order as ce_sums adds it, without the scalar adds (rows past
 * nr repeat row 0; their lanes are dropped) */
INL512 void ce_sums512_in(const float *z, int64_t C, const double *m, int nr, double *s,
                          const int fast) {
  const float *row[8];
  double mm[8];
  for (int r = 0; r < 8; r++) {
    row[r] = z + (r < nr ? r : 0) * C;
    mm[r] = m[r < nr ? r : 0];
  }
  const __m512d mv = _mm512_loadu_pd(mm);
  __m512d acc = _mm512_setzero_pd();
  int64_t j = 0;
  for (; j + 8 <= C; j += 8) {
    __m256 col[8]; /* the 8 rows' logits j .. j + 7, turned into columns */
    for (int r = 0; r < 8; r++) col[r] = _mm256_loadu_ps(row[r] + j);
    strop__tr8x8_ps(col, col);
    __m512d e[8];
    for (int c = 0; c < 8; c++) {
      const __m512d x = _mm512_sub_pd(_mm512_cvtps_pd(col[c]), mv);
      e[c] = fast ? vexp8_fast(x) : vexp8(x);
    }
    for (int c = 0; c < 8; c++) acc = _mm512_add_pd(acc, e[c]);
  }
  for (; j < C; j++) {
    double x[8];
    for (int r = 0; r < 8; r++) x[r] = (double)row[r][j];
    acc = _mm512_add_pd(acc, vexp8(_mm512_sub_pd(_mm512_loadu_pd(x), mv)));
  }
  double out[8];
  _mm512_storeu_pd(out, acc);
  for (int r = 0; r < nr; r++) s[r] = out[r];
}
/* fast: every row's exponents known to be in vexp's range (ce_range512) */
T512 static void ce_sums512(const float *z, int64_t C, const double *m, int nr, double *s,
                            int fast) {
  if (fast) ce_sums512_in(z, C, m, nr, s, 1);
  else ce_sums512_in(z, C, m, nr, s, 0);
}

/* e^x on 16 lanes in single precision, for x a number at most 0 (mixed-precision training's
 * cross-entropy, strop__loss_cfg.fp32_exp): x is clamped at -104, where e^x is already below half
 * the smallest subnormal; n = x / ln 2 to the nearest integer, r = x - n ln 2 in two parts by
 * fused multiply-adds (|r| <= ln 2 / 2), e^r by its Taylor polynomial to degree 7 (what it leaves
 * out is below 6e-9, a tenth of a float's unit in the last place), times 2^n by vscalefps (the
 * subnormal results rounded once). Within 2 units in the last place of e^x (loss
 * `fp32_exp_tolerance`; over every float of [-104, 0] at most 0.937). */
INL512 __m512 vexp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723212e-6f), r);
  static const float c[7] = {1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f,
                             0.5f,          1.0f,          1.0f};
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  for (int i = 0; i < 7; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c[i]));
  return _mm512_scalef_ps(p, n);
}

int strop__ce_fp32_available(void) { return ce_avx512(); }

/* vexp16 over n values at most 0, for the tests (AVX-512 CPUs only) */
T512 void strop__vexp16(const float *x, float *out, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(out + i, k, vexp16(_mm512_maskz_loadu_ps(k, x + i)));
  }
}

/* MXCSR's flush-to-zero (bit 15) set for one row's single-precision exponentials, where
 * strop__ce_ftz: a result below FLT_MIN becomes zero. A subnormal result or operand costs an
 * Intel core a microcode assist of about a hundred cycles (vscalefps making it, the next
 * instruction reading it): a random-weight GPT-2's rows, whose logits span more than 87, spent
 * most of their exponentials' time there. Returns the caller's MXCSR for ftz_end. */
static inline unsigned ftz_begin(void) {
  const unsigned csr = _mm_getcsr();
  if (strop__ce_ftz && !(csr & 0x8000u)) _mm_setcsr(csr | 0x8000u);
  return csr;
}
static inline void ftz_end(unsigned csr) {
  if (strop__ce_ftz && !(csr & 0x8000u)) _mm_setcsr(csr);
}

/* One clean row's sum of e^(z - m) with vexp16, 16 logits at a time, added in double (lanes past
 * C read m: their e^0 is dropped); terms below FLT_MIN zero (ftz_begin) */
T512 static double ce_sum_fp32(const float *z, int64_t C, double m) {
  const unsigned csr = ftz_begin();
  const __m512 mv = _mm512_set1_ps((float)m); /* m is one of the row's floats */
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  for (int64_t j = 0; j < C; j += 16) {
    const __mmask16 k = C - j >= 16 ? 0xFFFF : (__mmask16)((1u << (C - j)) - 1);
    const __m512 e = _mm512_maskz_mov_ps(
        k, vexp16(_mm512_sub_ps(_mm512_mask_loadu_ps(mv, k, z + j), mv)));
    a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    a1 = _mm512_add_pd(
        a1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
  }
  ftz_end(csr);
  return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}

/* ce_grad512's gradient with vexp16: z - lse in double, rounded to float, its exponential in
 * single precision, a and ew applied in single precision (the target's value, read first, made
 * again at the end); a value below FLT_MIN, at any of these steps, zero (ftz_begin) */
T512 static void ce_grad_fp32(const float *z, float *g, int64_t C, double lse, double a,
                              double ew, int64_t yi, float gy, float fs) {
  const unsigned csr = ftz_begin();
  const float zy = z[yi];
  const __m512d lv = _mm512_set1_pd(lse);
  const __m512 av = _mm512_set1_ps((float)a), ev = _mm512_set1_ps((float)ew),
               fv = _mm512_set1_ps(fs);
  const int plain = a == 1.0 && ew == 0.0, scaled = fs != 1.0f;
  for (int64_t j = 0; j < C; j += 16) {
    const __mmask16 k = C - j >= 16 ? 0xFFFF : (__mmask16)((1u << (C - j)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(k, z + j);
    const __m256 x0 = _mm512_cvtpd_ps(
        _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), lv));
    const __m256 x1 = _mm512_cvtpd_ps(_mm512_sub_pd(
        _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))), lv));
    __m512 t = vexp16(_mm512_castpd_ps(_mm512_insertf64x4(
        _mm512_castps_pd(_mm512_castps256_ps512(x0)), _mm256_castps_pd(x1), 1)));
    if (!plain) t = _mm512_sub_ps(_mm512_mul_ps(t, av), ev);
    if (scaled) t = _mm512_mul_ps(t, fv);
    _mm512_mask_storeu_ps(g + j, k, t);
  }
  __m512 t = vexp16(_mm512_set1_ps((float)((double)zy - lse)));
  if (!plain) t = _mm512_sub_ps(_mm512_mul_ps(t, av), ev);
  float f = _mm512_cvtss_f32(t) - gy;
  if (scaled) f *= fs;
  g[yi] = f;
  ftz_end(csr);
}

/* ce_finish's gradient without class weights: g[j] = (float)(e^(z[j] - lse) a - ew), then
 * g[yi] -= gy, then times fs where fs != 1 — in one pass (the target's value, read first, made
 * again at the end), the same roundings in the same order; a 1 and ew 0 (no label smoothing)
 * skip the multiply and subtract, which then change no value */
INL512 void ce_grad512_in(const float *z, float *g, int64_t C, double lse, double a, double ew,
                          int64_t yi, float gy, float fs, const int fast) {
  const float zy = z[yi];
  const __m512d lv = _mm512_set1_pd(lse), av = _mm512_set1_pd(a), ev = _mm512_set1_pd(ew);
  const int plain = a == 1.0 && ew == 0.0, scaled = fs != 1.0f;
  const __m256 fv = _mm256_set1_ps(fs);
  int64_t j = 0;
  for (; j < C; j += 8) {
    const __mmask8 k = C - j >= 8 ? 0xFF : (__mmask8)((1u << (C - j)) - 1);
    const __m512d x = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(k, z + j)), lv);
    __m512d t = fast ? vexp8_fast(x) : vexp8(x);
    if (!plain) t = _mm512_sub_pd(_mm512_mul_pd(t, av), ev);
    __m256 f = _mm512_cvtpd_ps(t);
    if (scaled) f = _mm256_mul_ps(f, fv);
    _mm256_mask_storeu_ps(g + j, k, f);
  }
  __m512d t = vexp8(_mm512_set1_pd((double)zy - lse));
  if (!plain) t = _mm512_sub_pd(_mm512_mul_pd(t, av), ev);
  float f = _mm_cvtss_f32(_mm512_castps512_ps128(_mm512_castps256_ps512(_mm512_cvtpd_ps(t))));
  f -= gy;
  if (scaled) f *= fs;
  g[yi] = f;
}
/* fast: the row holds no NaN and its smallest logit less lse is in vexp's range (lse >= the
 * row's maximum, so every exponent is in [mn - lse, 0]) */
T512 static void ce_grad512(const float *z, float *g, int64_t C, double lse, double a, double ew,
                            int64_t yi, float gy, float fs, int fast) {
  if (fast) ce_grad512_in(z, g, C, lse, a, ew, yi, gy, fs, 1);
  else ce_grad512_in(z, g, C, lse, a, ew, yi, gy, fs, 0);
}
#else
static int ce_avx512(void) { return 0; }
int strop__ce_fp32_available(void) { return 0; }
void strop__vexp16(const float *x, float *out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = (float)strop__vexp((double)x[i]);
}
void strop__vexp8(const double *x, double *out, int64_t n, int checked) {
  (void)checked;
  for (int64_t i = 0; i < n; i++) out[i] = strop__vexp(x[i]);
}
#endif

/* One row: z its C logits, m their largest and s the sum of exp(z - m), y its target. Returns
 * the row's (weighted) loss; with g, writes the gradient there, times fs (the reduction's scale,
 * as a second rounding: 1 skips it), which may be z itself (every logit is read before its
 * gradient is written over it). An ignored row returns 0 and gets a zero gradient. */
static inline __attribute__((always_inline)) double ce_finish(const strop__loss_cfg *c,
                                                              const float *z, float *g, float y,
                                                              int64_t C, double wsum, double m,
                                                              double s, float fs, int isa512,
                                                              int clean, float mn, int fp32) {
  const float eps = c->label_smoothing;
  const float *w = c->class_weights;
  if ((double)y == (double)c->ignore_index) {
    if (g)
      for (int64_t j = 0; j < C; j++) g[j] = 0.0f;
    return 0.0;
  }
  int64_t yi = (int64_t)y;
  double lse = m + log(s);
  double wy = w ? (double)w[yi] : 1.0;
  double row = (1.0 - eps) * wy * (lse - (double)z[yi]);
  if (eps > 0.0f) {
    double sm = 0.0;
    for (int64_t j = 0; j < C; j++) sm += (w ? (double)w[j] : 1.0) * (lse - (double)z[j]);
    row += (double)eps / (double)C * sm;
  }
  if (g) {
    double a = (1.0 - eps) * wy + (double)eps / (double)C * wsum;
    double ew = (double)eps / (double)C;
#ifdef CE_AVX512
    if (!w && isa512 && fp32 && clean) {
      ce_grad_fp32(z, g, C, lse, a, ew, yi, (float)((1.0 - eps) * wy), fs);
      return row;
    }
    if (!w && isa512) {
      ce_grad512(z, g, C, lse, a, ew, yi, (float)((1.0 - eps) * wy), fs,
                 clean && (double)mn - lse >= VEXP_LO);
      return row;
    }
#else
    (void)isa512, (void)clean, (void)mn, (void)fp32;
#endif
    /* two loops, not `w ? w[j] : 1.0` in one: vectorised, that select became a masked load
     * from w, which with w NULL and its mask empty still costs a fault-suppression assist on
     * every vector on AMD's Zen 4 (a quarter of the loss's time); ew * 1.0 is ew exactly */
    if (w)
      for (int64_t j = 0; j < C; j++)
        g[j] = (float)(strop__vexp((double)z[j] - lse) * a - ew * (double)w[j]);
    else
      for (int64_t j = 0; j < C; j++) g[j] = (float)(strop__vexp((double)z[j] - lse) * a - ew);
    g[yi] -= (float)((1.0 - eps) * wy);
    if (fs != 1.0f)
      for (int64_t j = 0; j < C; j++) g[j] *= fs;
  }
  return row;
}

/* The rows of a cross-entropy, strop__rows_together of them at a time for the sums (1 runs the
 * row loop as it was written before: its maximum one compare after another, the reference, the
 * same bits). The rows of a block run as groups across threads, each row wholly on one thread,
 * their losses kept per row and summed afterwards in row order: the bits of one thread. */
typedef struct ce_job {
  const strop__loss_cfg *c;
  const float *z, *y; /* the block's rows and their targets */
  float *g;           /* their gradients, or NULL */
  int64_t rows, C, grp;
  double wsum;
  float fs;
  double *loss; /* per row of the block */
} ce_job;

#ifdef CE_AVX512
/* Row r of the block in single precision (fp32_exp): its maximum, sum and gradient one pass
 * after the other while its logits are in L2 (GPT-2's 50257: 196 KB), where the groups' passes
 * read 8 rows each time (a row that is not clean sums in double: the bits it has in a group) */
static double ce_row_fp32(const ce_job *J, int64_t r) {
  const strop__loss_cfg *c = J->c;
  const int64_t C = J->C;
  const float *z = J->z + r * C;
  double m = 0.0, s = 0.0;
  float mn = 0.0f;
  int clean = 0;
  if ((double)J->y[r] != (double)c->ignore_index) {
    m = ce_range512(z, C, &mn, &clean);
    if (clean) s = ce_sum_fp32(z, C, m);
    else ce_sums512(z, C, &m, 1, &s, 0);
  }
  return ce_finish(c, z, J->g ? J->g + r * C : NULL, J->y[r], C, J->wsum, m, s, J->fs, 1, clean,
                   mn, 1);
}
#endif

/* groups [lo, hi) of the block's rows */
STROP__CLONES static void ce_groups(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const ce_job *J = ctx;
  const strop__loss_cfg *c = J->c;
  const int64_t C = J->C, grp = J->grp;
  const int isa512 = ce_avx512();
#ifdef CE_AVX512
  /* single-precision exponentials: rows without class weights on AVX-512 (and clean) only */
  const int fp32 = isa512 && c->fp32_exp && strop__ce_fp32 && !c->class_weights;
#endif
  for (int64_t r0 = lo * grp; r0 < hi * grp && r0 < J->rows; r0 += grp) {
    const int nr = J->rows - r0 < grp ? (int)(J->rows - r0) : (int)grp;
#ifdef CE_AVX512
    if (fp32) {
      for (int64_t r = r0; r < r0 + nr; r++) J->loss[r] = ce_row_fp32(J, r);
      continue;
    }
#endif
    const float *zr = J->z + r0 * C;
    double m[CE_GROUP], s[CE_GROUP];
    float mn[CE_GROUP];
    int clean[CE_GROUP], all_clean = 1; /* rows whose exponents vexp8_fast takes */
    for (int r = 0; r < nr; r++) {
      m[r] = 0.0; /* an ignored row: its sum is not used */
      mn[r] = 0.0f;
      clean[r] = 0;
      if ((double)J->y[r0 + r] == (double)c->ignore_index) continue;
#ifdef CE_AVX512
      if (isa512) {
        m[r] = ce_range512(zr + r * C, C, &mn[r], &clean[r]);
        all_clean &= clean[r];
        continue;
      }
#endif
      m[r] = ce_max(zr + r * C, C, grp > 1);
    }
#ifdef CE_AVX512
    if (isa512 && grp > 1) /* (rows one at a time: the plain loop, the reference) */
      ce_sums512(zr, C, m, nr, s, all_clean);
    else
#else
    (void)all_clean;
#endif
        if (nr == CE_GROUP)
      ce_sums(zr, C, m, CE_GROUP, s);
    else
      for (int r = 0; r < nr; r++) ce_sums(zr + r * C, C, m + r, 1, s + r);
    for (int r = 0; r < nr; r++)
      J->loss[r0 + r] = ce_finish(c, zr + r * C, J->g ? J->g + (r0 + r) * C : NULL, J->y[r0 + r],
                                  C, J->wsum, m[r], s[r], J->fs, isa512, clean[r], mn[r], 0);
  }
}

/* rows rows of z (stride C) with their targets y (g: their gradients times fs, or NULL): adds
 * their losses to *total in row order */
static void ce_rows(const strop__loss_cfg *c, const float *z, float *g, const float *y,
                    int64_t rows, int64_t C, double wsum, float fs, double *total) {
  const int64_t grp = strop__rows_together < 1          ? 1
                      : strop__rows_together > CE_GROUP ? CE_GROUP
                                                        : strop__rows_together;
  enum { BLOCK_GROUPS = 32 }; /* a block: up to 256 rows, their losses on the stack */
  double loss[BLOCK_GROUPS * CE_GROUP];
  const int64_t block = BLOCK_GROUPS * grp;
  for (int64_t b0 = 0; b0 < rows; b0 += block) {
    const int64_t nb = rows - b0 < block ? rows - b0 : block, groups = (nb + grp - 1) / grp;
    ce_job J = {c, z + b0 * C, y + b0, g ? g + b0 * C : NULL, nb, C, grp, wsum, fs, loss};
    /* a row is about C exponentials: split from a few hundred thousand logits on */
    const int threads = (double)nb * (double)C >= (double)(1 << 18) ? strop__num_threads() : 1;
    strop__par_run(strop__par_chunks(threads, groups, 1), groups, ce_groups, &J);
    for (int64_t r = 0; r < nb; r++)
      if ((double)y[b0 + r] != (double)c->ignore_index) *total += loss[r];
  }
}

/* The weight total of the rows not ignored, summed in row order */
static double ce_wtotal(const strop__loss_cfg *c, const float *target, int64_t rows) {
  double wtotal = 0.0;
  for (int64_t r = 0; r < rows; r++) {
    const float y = target[r];
    if ((double)y == (double)c->ignore_index) continue;
    wtotal += c->class_weights ? (double)c->class_weights[(int64_t)y] : 1.0;
  }
  return wtotal;
}

STROP__CLONES static strop_status cross_entropy(const strop__loss_cfg *c, const float *pred,
                                                int64_t n, int64_t per_sample,
                                                const float *target, int64_t tps,
                                                double *loss_out, float *dpred) {
  int64_t C = 0;
  strop_status st = ce_check(c, per_sample, target, n, tps, &C);
  if (st) return st;
  const int64_t rows = n * tps;
  const double wsum = ce_wsum(c, C);
  double scale = 1.0, total = 0.0;
  if (c->reduction == STROP__LOSS_REDUCTION_MEAN) {
    const double wtotal = ce_wtotal(c, target, rows);
    scale = wtotal != 0.0 ? 1.0 / wtotal : 0.0;
  }
  ce_rows(c, pred, dpred, target, rows, C, wsum, scale != 1.0 ? (float)scale : 1.0f, &total);
  *loss_out = total * scale;
  return STROP_OK;
}

strop_status strop__ce_rows_begin(strop__ce_rows *st, const strop__loss_cfg *c, int64_t n,
                                  int64_t per_sample, const float *target,
                                  int64_t target_per_sample) {
  if (!st || !c || !target || c->kind != STROP__LOSS_CROSS_ENTROPY)
    return strop__err(STROP_E_INVALID_ARG, FN ": cross_entropy: NULL argument or another loss");
  if (n <= 0 || per_sample <= 0 || target_per_sample <= 0)
    return strop__err(STROP_E_INVALID_ARG,
                      FN ": cross_entropy: sizes must be > 0, got n %lld, per_sample %lld, "
                         "target_per_sample %lld",
                      (long long)n, (long long)per_sample, (long long)target_per_sample);
  if (c->reduction != STROP__LOSS_REDUCTION_MEAN && c->reduction != STROP__LOSS_REDUCTION_SUM)
    return strop__err(STROP_E_INVALID_ARG, FN ": cross_entropy: unknown reduction %d",
                      c->reduction);
  int64_t C = 0;
  strop_status s = ce_check(c, per_sample, target, n, target_per_sample, &C);
  if (s) return s;
  st->c = c;
  st->target = target;
  st->rows = n * target_per_sample;
  st->C = C;
  st->wsum = ce_wsum(c, C);
  st->total = 0.0;
  /* the weight total strop__loss_eval sums: the same terms in the same order */
  const double wtotal = ce_wtotal(c, target, st->rows);
  st->scale = 1.0;
  if (c->reduction == STROP__LOSS_REDUCTION_MEAN) st->scale = wtotal != 0.0 ? 1.0 / wtotal : 0.0;
  return STROP_OK;
}

STROP__CLONES void strop__ce_rows_eval(strop__ce_rows *st, int64_t r0, int64_t nr, float *z,
                                       int grad) {
  ce_rows(st->c, z, grad ? z : NULL, st->target + r0, nr, st->C, st->wsum,
          st->scale != 1.0 ? (float)st->scale : 1.0f, &st->total);
}

double strop__ce_rows_loss(const strop__ce_rows *st) { return st->total * st->scale; }

static strop_status elementwise(const strop__loss_cfg *c, const float *pred, int64_t n,
                                int64_t per_sample, const float *target, double *loss_out,
                                float *dpred) {
  int64_t m = n * per_sample;
  double total = 0.0;
  double scale = c->reduction == STROP__LOSS_REDUCTION_MEAN ? 1.0 / (double)m : 1.0;
  float fs = (float)scale;
  switch (c->kind) {
    case STROP__LOSS_MSE:
      for (int64_t i = 0; i < m; i++) {
        double d = (double)pred[i] - (double)target[i];
        total += d * d;
        if (dpred) dpred[i] = (float)(2.0 * d * scale);
      }
      break;
    case STROP__LOSS_L1:
      for (int64_t i = 0; i < m; i++) {
        float d = pred[i] - target[i];
        total += fabs((double)d);
        if (dpred) dpred[i] = d > 0.0f ? fs : d < 0.0f ? -fs : d == 0.0f ? 0.0f : d;
      }
      break;
    case STROP__LOSS_HUBER: {
      double delta = c->delta;
      if (!(delta > 0.0))
        return strop__err(STROP_E_INVALID_ARG, FN ": huber: delta must be > 0, got %g", delta);
      for (int64_t i = 0; i < m; i++) {
        double d = (double)pred[i] - (double)target[i], a = fabs(d);
        double gd;
        if (a < delta) {
          total += 0.5 * d * d;
          gd = d;
        } else {
          total += delta * (a - 0.5 * delta);
          gd = d > 0.0 ? delta : d < 0.0 ? -delta : d; /* d is NaN here if not +-a */
        }
        if (dpred) dpred[i] = (float)(gd * scale);
      }
      break;
    }
    case STROP__LOSS_BCE_WITH_LOGITS: {
      const float *pw = c->pos_weight;
      int64_t np = c->n_pos_weight;
      if (pw && (np <= 0 || per_sample % np != 0))
        return strop__err(STROP_E_INVALID_ARG,
                          FN ": bce_with_logits: %lld pos_weight entries do not divide %lld "
                             "values per sample",
                          (long long)np, (long long)per_sample);
      for (int64_t i = 0; i < m; i++) {
        double x = pred[i], y = target[i];
        double lw = pw ? 1.0 + ((double)pw[i % np] - 1.0) * y : 1.0;
        /* softplus(-x) = log(1 + e^-|x|) + max(-x, 0); sigmoid(-x) from the same e^-|x| */
        double e = exp(-fabs(x));
        double sp = log1p(e) + (x < 0.0 ? -x : 0.0);
        total += (1.0 - y) * x + lw * sp;
        if (dpred) {
          double sig_neg = x >= 0.0 ? e / (1.0 + e) : 1.0 / (1.0 + e);
          dpred[i] = (float)(((1.0 - y) - lw * sig_neg) * scale);
        }
      }
      break;
    }
    default: return strop__err(STROP_E_INTERNAL, FN ": unknown loss kind %d", c->kind);
  }
  *loss_out = total * scale;
  return STROP_OK;
}

strop_status strop__loss_eval(const strop__loss_cfg *c, const float *pred, int64_t n,
                              int64_t per_sample, const float *target, int64_t target_per_sample,
                              double *loss_out, float *dpred) {
  if (!c || !pred || !target || !loss_out)
    return strop__err(STROP_E_INVALID_ARG, FN ": NULL argument");
  if (n <= 0 || per_sample <= 0 || target_per_sample <= 0)
    return strop__err(STROP_E_INVALID_ARG,
                      FN ": %s: sizes must be > 0, got n %lld, per_sample %lld, "
                         "target_per_sample %lld",
                      strop__loss_name(c->kind), (long long)n, (long long)per_sample,
                      (long long)target_per_sample);
  if (c->reduction != STROP__LOSS_REDUCTION_MEAN && c->reduction != STROP__LOSS_REDUCTION_SUM)
    return strop__err(STROP_E_INVALID_ARG, FN ": %s: unknown reduction %d",
                      strop__loss_name(c->kind), c->reduction);
  if (c->kind == STROP__LOSS_CROSS_ENTROPY)
    return cross_entropy(c, pred, n, per_sample, target, target_per_sample, loss_out, dpred);
  if (c->kind < STROP__LOSS_MSE || c->kind > STROP__LOSS_BCE_WITH_LOGITS)
    return strop__err(STROP_E_INVALID_ARG, FN ": unknown loss kind %d", c->kind);
  if (target_per_sample != per_sample)
    return strop__err(
        STROP_E_INVALID_ARG, FN ": %s: targets have %lld values per sample, predictions %lld",
        strop__loss_name(c->kind), (long long)target_per_sample, (long long)per_sample);
  return elementwise(c, pred, n, per_sample, target, loss_out, dpred);
}
