/* SPDX-License-Identifier: MIT */
/* strop — dense-family kernels: linear on strop__sgemm, elementwise activations with
 * PyTorch's exact formulas, axis softmax, and dropout with an inlined PCG32 draw. */
#include "ops/dense.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "core/core.h"
#include "core/pool_profile.h"
#include "ops/bf16gemm.h"
#include "ops/ops.h"
#include "ops/vmath.h"

/* ---- linear ---- */

/* A bias's rows and its gradient's column sums were a linear's serial passes (at 2 threads,
 * outside any parallel run: POOL_PROFILE in docs/performance.md, 2026-12-05): rows copied in
 * chunks of rows, sums in chunks of columns, each column summed over the rows in row order —
 * the same bits at any thread count. */
typedef struct bias_job {
  const float *b, *dy;
  float *y, *db;
  int64_t m, out;
  int assign; /* db = 0 + the first row, then the others added */
} bias_job;

static void bias_rows_range(void *ctx, int64_t r0, int64_t r1, int chunk) {
  (void)chunk;
  const bias_job *j = ctx;
  for (int64_t i = r0; i < r1; i++)
    memcpy(j->y + i * j->out, j->b, (size_t)j->out * sizeof(float));
}

/* y's m rows of out = b */
static void bias_rows(const float *b, float *y, int64_t m, int64_t out) {
  bias_job j = {.b = b, .y = y, .m = m, .out = out};
  strop__par_for_pass(m, out >= 16384 ? 1 : 16384 / (out > 0 ? out : 1), bias_rows_range, &j);
}

static void bias_grad_range(void *ctx, int64_t c0, int64_t c1, int chunk) {
  (void)chunk;
  const bias_job *j = ctx;
  float *db = j->db;
  int64_t i = 0;
  if (j->assign) { /* 0 + the first row, as adding into zeros gives (-0 becomes +0) */
    for (int64_t c = c0; c < c1; c++) db[c] = j->m > 0 ? 0.0f + j->dy[c] : 0.0f;
    i = 1;
  }
  for (; i < j->m; i++) {
    const float *r = j->dy + i * j->out;
    for (int64_t c = c0; c < c1; c++) db[c] += r[c];
  }
}

/* db (+)= the column sums of dy [m, out], in row order */
static void bias_grad(const float *dy, float *db, int64_t m, int64_t out, int assign) {
  bias_job j = {.dy = dy, .db = db, .m = m, .out = out, .assign = assign};
  const int64_t grain = 16384 / (m > 0 ? m : 1); /* columns: at least 16384 adds a chunk */
  strop__par_for_pass(out, grain < 16 ? 16 : grain, bias_grad_range, &j);
}

void strop__linear_forward(const float *x, const float *w, const float *b, float *y, int64_t m,
                           int64_t in, int64_t out) {
  strop__linear_forward_ex(x, w, b, y, m, in, out, 0);
}

void strop__linear_forward_ex(const float *x, const float *w, const float *b, float *y, int64_t m,
                              int64_t in, int64_t out, int w_in_out) {
  float beta = 0.0f;
  if (b) {
    bias_rows(b, y, m, out);
    beta = 1.0f;
  }
  if (w_in_out) strop__sgemm(0, 0, m, out, in, 1.0f, x, in, w, out, beta, y, out);
  else strop__sgemm(0, 1, m, out, in, 1.0f, x, in, w, in, beta, y, out);
}

int strop__linear_backward(const float *x, const float *w, const float *dy, float *dx, float *dw,
                           float *db, int64_t m, int64_t in, int64_t out, unsigned assign) {
  const float bx = assign & STROP__LB_ASSIGN_DX ? 0.0f : 1.0f;
  const int assign_p = (assign & STROP__LB_ASSIGN_PARAMS) != 0;
  int finite = assign_p;
  if (assign & STROP__LB_W_IN_OUT) { /* W [in, out]: dx = dy W^T, dW = x^T dy */
    if (dx) strop__sgemm(0, 1, m, in, out, 1.0f, dy, out, w, out, bx, dx, in);
    if (dw && assign_p)
      finite = strop__sgemm_finite(1, 0, in, out, m, 1.0f, x, in, dy, out, 0.0f, dw, out);
    else if (dw) strop__sgemm(1, 0, in, out, m, 1.0f, x, in, dy, out, 1.0f, dw, out);
  } else {
    if (dx) strop__sgemm(0, 0, m, in, out, 1.0f, dy, out, w, in, bx, dx, in);
    if (dw && assign_p)
      finite = strop__sgemm_finite(1, 0, out, in, m, 1.0f, dy, out, x, in, 0.0f, dw, in);
    else if (dw) strop__sgemm(1, 0, out, in, m, 1.0f, dy, out, x, in, 1.0f, dw, in);
  }
  if (db) {
    bias_grad(dy, db, m, out, assign_p);
    if (assign_p) finite = finite && strop__all_finite_serial(db, (size_t)out);
  }
  return finite;
}

int strop__bias_cols = 1;

int strop__linear_forward_lowp(const float *x, const strop__lowp *w, const float *b, float *y,
                               int64_t m, int64_t in, int64_t out, int w_in_out) {
  /* a few rows (a decoded token): the weight read as stored, not widened into scratch */
  if (m <= STROP__GEMV_MAX_M && strop__lowp_gemv(x, w, b, y, m, in, out, w_in_out) == 0) return 0;
  if (m > 0 && strop__linear_lowp_direct(w, w_in_out)) {
    void *abf = strop__lowp_scratch_take(strop__bf16_gemm_scratch(w, 0, m, out, in));
    if (!abf) return -1;
    if (b && strop__bias_cols) /* added as each tile is stored: the bits of the two below */
      strop__bf16_gemm_nt_bias(m, out, in, x, in, w, b, y, out, abf);
    else {
      float beta = 0.0f;
      if (b) {
        bias_rows(b, y, m, out);
        beta = 1.0f;
      }
      strop__bf16_gemm_nt(m, out, in, x, in, w, beta, y, out, abf);
    }
    strop__lowp_scratch_give(abf);
    return 0;
  }
  float *wf = strop__lowp_scratch_take((size_t)w->rows * (size_t)w->cols * sizeof(float));
  if (!wf) return -1;
  strop__lowp_expand(w, wf);
  strop__linear_forward_ex(x, wf, b, y, m, in, out, w_in_out);
  strop__lowp_scratch_give(wf);
  return 0;
}

/* dX = dY W on vdpbf16ps (w direct: strop__linear_lowp_direct): 0, or -1 out of memory. keep:
 * NULL, or where the product's scratch goes instead of back, dy rounded at its start
 * (strop__bf16_gemm_a_rounded) for the caller's weight gradient; the caller gives it back. */
static int dx_direct(const strop__lowp *w, const float *dy, float *dx, int64_t m, int64_t in,
                     int64_t out, int assign_dx, void **keep) {
  void *abf = strop__lowp_scratch_take(strop__bf16_gemm_scratch(w, 1, m, in, out));
  if (!abf) return -1;
  strop__bf16_gemm_nn(m, in, out, dy, out, w, assign_dx ? 0.0f : 1.0f, dx, in, abf);
  if (keep) *keep = abf;
  else strop__lowp_scratch_give(abf);
  return 0;
}

int strop__linear_backward_lowp(const strop__lowp *w, const float *dy, float *dx, int64_t m,
                                int64_t in, int64_t out, int w_in_out, int assign_dx) {
  if (!dx) return 0;
  if (m > 0 && strop__linear_lowp_direct(w, w_in_out))
    return dx_direct(w, dy, dx, m, in, out, assign_dx, NULL);
  float *wf = strop__lowp_scratch_take((size_t)w->rows * (size_t)w->cols * sizeof(float));
  if (!wf) return -1;
  strop__lowp_expand(w, wf);
  (void)strop__linear_backward(
      NULL, wf, dy, dx, NULL, NULL, m, in, out,
      (assign_dx ? STROP__LB_ASSIGN_DX : 0) | (w_in_out ? STROP__LB_W_IN_OUT : 0));
  strop__lowp_scratch_give(wf);
  return 0;
}

/* ---- linear in BF16 for an FP32 weight (the model's compute dtype) ---- */

/* x rounded to BF16 values into scratch (the exact fallback's operand), or NULL */
static float *rounded(const float *x, size_t n) {
  float *r = strop__lowp_scratch_take(n * sizeof *r + 1);
  if (r) strop__bf16_round_f32(x, r, n);
  return r;
}

int strop__linear_forward_bf16(const float *x, const strop__lowp *wb, const float *b, float *y,
                               int64_t m, int64_t in, int64_t out) {
  if (strop__bf16_dot_enabled()) /* x rounded as the kernel packs it */
    return strop__linear_forward_lowp(x, wb, b, y, m, in, out, wb->scale_cols);
  float *xr = rounded(x, (size_t)m * (size_t)in);
  if (!xr) return -1;
  const int r = strop__linear_forward_lowp(xr, wb, b, y, m, in, out, wb->scale_cols);
  strop__lowp_scratch_give(xr);
  return r;
}

int strop__linear_backward_bf16(const float *x, const strop__lowp *wb, const float *dy, float *dx,
                                float *dw, float *db, int64_t m, int64_t in, int64_t out,
                                unsigned assign) {
  return strop__linear_backward_bf16_seen(x, NULL, wb, dy, dx, dw, db, m, in, out, assign, NULL);
}

int strop__dy_once = 1;

int strop__linear_backward_bf16_seen(const float *x, const uint16_t *xh, const strop__lowp *wb,
                                     const float *dy, float *dx, float *dw, float *db, int64_t m,
                                     int64_t in, int64_t out, unsigned assign, int *finite) {
  const int w_in_out = (assign & STROP__LB_W_IN_OUT) != 0;
  const int assign_p = (assign & STROP__LB_ASSIGN_PARAMS) != 0;
  if (finite) *finite = 0;
  if (m <= 0 || (!dx && !dw)) { /* no product (dx has no rows): the FP32 kernel's zeros, sums */
    (void)strop__linear_backward(x, NULL, dy, NULL, dw, db, m, in, out, assign);
    return 0;
  }
  const int dot = strop__bf16_dot_enabled();
  float *dyr = NULL, *xr = NULL;
  void *work = NULL, *abf = NULL;
  if (!dot) {
    dyr = rounded(dy, (size_t)m * (size_t)out);
    if (dw && xh) { /* held in BF16: widened, those are already their own rounding */
      if ((xr = strop__lowp_scratch_take((size_t)m * (size_t)in * sizeof *xr + 1)))
        strop__bf16_expand_par(xh, xr, (size_t)m * (size_t)in);
    } else if (dw) xr = rounded(x, (size_t)m * (size_t)in);
    if (!dyr || (dw && !xr)) goto oom;
  } else if (dw) {
    const int64_t mm = w_in_out ? in : out, nn = w_in_out ? out : in;
    if (!(work = strop__lowp_scratch_take(strop__bf16_gemm_f32_scratch(mm, nn, m)))) goto oom;
  }
  /* dx's product rounds dy into its scratch (strop__bf16_gemm_nn): the weight gradient then
   * reads those values rather than rounding dy again */
  const int once = dot && dx && dw && strop__dy_once && strop__linear_lowp_direct(wb, w_in_out);
  if (once) {
    if (dx_direct(wb, dy, dx, m, in, out, (assign & STROP__LB_ASSIGN_DX) != 0, &abf)) goto oom;
  } else if (dx && strop__linear_backward_lowp(wb, dot ? dy : dyr, dx, m, in, out, w_in_out,
                                               (assign & STROP__LB_ASSIGN_DX) != 0))
    goto oom;
  /* written outright (and the bias's sums) and seen finite as their row blocks were stored */
  int seen = assign_p && dot && finite && strop__bf16_gemm_check_finite;
  if (dw && dot) {
    const float beta = assign_p ? 0.0f : 1.0f;
    const uint16_t *dyh = once ? strop__bf16_gemm_a_rounded(abf) : NULL;
    const int64_t ldy = once ? strop__bf16_gemm_a_stride(out) : out;
    const int ok = w_in_out /* dW [in, out] = x^T dy; [out, in] = dy^T x */
                       ? strop__bf16_gemm_kn_h(in, out, m, x, xh, in, dy, dyh, ldy, beta, dw, out,
                                               work, seen)
                       : strop__bf16_gemm_kn_h(out, in, m, dy, dyh, ldy, x, xh, in, beta, dw, in,
                                               work, seen);
    seen = seen && ok;
  } else if (dw) {
    (void)strop__linear_backward(xr, NULL, dyr, NULL, dw, NULL, m, in, out,
                                 assign & (STROP__LB_ASSIGN_PARAMS | STROP__LB_W_IN_OUT));
  }
  if (db) {
    const int b_seen = strop__linear_backward(x, NULL, dy, NULL, NULL, db, m, in, out,
                                              assign & STROP__LB_ASSIGN_PARAMS);
    seen = seen && b_seen;
  }
  if (finite) *finite = seen;
  strop__lowp_scratch_give(abf);
  strop__lowp_scratch_give(work);
  strop__lowp_scratch_give(xr);
  strop__lowp_scratch_give(dyr);
  return 0;
oom:
  strop__lowp_scratch_give(abf);
  strop__lowp_scratch_give(work);
  strop__lowp_scratch_give(xr);
  strop__lowp_scratch_give(dyr);
  return -1;
}

int strop__linear_forward_bf16_packed(const float *x, const float *w, const float *b, float *y,
                                      int64_t m, int64_t in, int64_t out, int w_in_out) {
  if (m <= 0) return 0;
  void *work = strop__lowp_scratch_take(strop__bf16_gemm_f32_scratch(m, out, in));
  if (!work) return -1;
  float beta = 0.0f;
  if (b) { /* the bias first, the products added to it: as strop__linear_forward_lowp */
    bias_rows(b, y, m, out);
    beta = 1.0f;
  }
  /* y = x W^T: W [out, in] is op(B) transposed, [in, out] op(B) as it is */
  strop__bf16_gemm_f32(0, !w_in_out, m, out, in, x, in, w, w_in_out ? out : in, beta, y, out,
                       work);
  strop__lowp_scratch_give(work);
  return 0;
}

int strop__linear_dx_bf16_packed(const float *dy, const float *w, float *dx, int64_t m,
                                 int64_t in, int64_t out, int w_in_out, int assign_dx) {
  if (m <= 0) return 0;
  void *work = strop__lowp_scratch_take(strop__bf16_gemm_f32_scratch(m, in, out));
  if (!work) return -1;
  /* dx = dy W: W [out, in] is op(B) as it is, [in, out] transposed */
  strop__bf16_gemm_f32(0, w_in_out, m, in, out, dy, out, w, w_in_out ? out : in,
                       assign_dx ? 0.0f : 1.0f, dx, in, work);
  strop__lowp_scratch_give(work);
  return 0;
}

int strop__linear_lowp_direct(const strop__lowp *w, int w_in_out) {
  /* an int8 weight is expanded to BF16 as the kernel packs its panels */
  return (w->dtype == STROP__LOWP_BF16 || w->dtype == STROP__LOWP_INT8) &&
         w->scale_cols == w_in_out && strop__bf16_dot_enabled();
}

/* ---- elementwise activations ---- */

/* "x < 0 ? 0 : x" rather than fmaxf so NaN propagates, as in PyTorch */
void strop__relu_forward(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void strop__relu_backward(const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)x;
  /* PyTorch's threshold_backward on the result: NaN outputs pass the gradient */
  for (size_t i = 0; i < n; i++) {
    const float g = dy[i];
    dx[i] += y[i] <= 0.0f ? 0.0f : g;
  }
}

void strop__relu_backward_assign(const float *y, const float *dy, float *dx, size_t n) {
  /* dy is read unconditionally so the select vectorises (a conditional load would not) */
  for (size_t i = 0; i < n; i++) {
    const float g = dy[i];
    dx[i] = y[i] <= 0.0f ? 0.0f : g;
  }
}

void strop__leaky_relu_forward(const float *x, float *y, size_t n, float slope) {
  for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : x[i] * slope;
}

void strop__leaky_relu_backward(const float *x, const float *y, const float *dy, float *dx,
                                size_t n, float slope) {
  (void)y;
  for (size_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dy[i] : dy[i] * slope;
}

#define GELU_SQRT1_2 0.70710678118654752440f
/* 1/sqrt(2*pi): PyTorch's M_2_SQRTPI * M_SQRT1_2 * 0.5 */
#define GELU_PDF_C 0.39894228040143267794f
/* sqrt(2/pi): PyTorch's M_SQRT2 * M_2_SQRTPI * 0.5 */
#define GELU_TANH_B 0.79788456080286535588f
#define GELU_TANH_K 0.044715f

int strop__gelu_isa = 0;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(STROP_NO_CLONES)
#  define GELU_AVX512 1
#  include <immintrin.h>
#  define T512 __attribute__((target("avx512f")))
#  define INL512 static inline __attribute__((always_inline, target("avx512f")))

static int gelu_avx512(void) { return strop__gelu_isa == 0 && __builtin_cpu_supports("avx512f"); }

/* e^(a + b) for a <= 0 in [-110, 0] and |b| <= 2, a the large part held exactly: n =
 * round((a + b) / ln2), r = (a - n ln2_hi, exact) + b - n ln2_lo (Cody-Waite; b added
 * before the last term, where the sum is small, rounds least), e^r by its Taylor
 * series to r^7 as strop__vexpf, times 2^n by vscalefps (one rounding, so a subnormal result
 * rounds once). */
INL512 __m512 exp_sum512(__m512 a, __m512 b) {
  const __m512 n = _mm512_roundscale_ps(
      _mm512_mul_ps(_mm512_add_ps(a, b), _mm512_set1_ps(1.44269504f)),
      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_add_ps(_mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), a), b);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

/* Phi(x) = erfc(-x / sqrt2) / 2 with strop__verfcf's fit, erfc(z) = t e^(-z^2 + P(t)), and
 * x^2 / 2 carried as hi + lo (an FMA's exact remainder): the float rounding of -z^2 was
 * verfcf's error in the tail (1e-5 at |x| = 12.7), here the tail keeps the fit's accuracy.
 * t = 1 / (1 + z / 2) by vrcp14ps and one Newton step (2^-28) instead of a division. |x| is
 * held at 14.8, past which Phi(-|x|) is 0 in float. *e2 is e^(-x^2 / 2), the density's
 * factor, when asked. */
INL512 __m512 phi512(__m512 x, __m512 *e2) {
  const __m512 ax = _mm512_min_ps(_mm512_abs_ps(x), _mm512_set1_ps(14.8f));
  const __m512 z = _mm512_mul_ps(ax, _mm512_set1_ps(GELU_SQRT1_2));
  const __m512 d = _mm512_fmadd_ps(z, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f));
  const __m512 r0 = _mm512_rcp14_ps(d);
  const __m512 t = _mm512_fmadd_ps(r0, _mm512_fnmadd_ps(d, r0, _mm512_set1_ps(1.0f)), r0);
  const __m512 s = _mm512_sub_ps(t, _mm512_set1_ps(0.5f));
  __m512 p = _mm512_set1_ps(0.17087277f);
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-0.053224765f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-0.26223812f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(0.11370004f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(0.278521901f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-0.157980353f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-0.374999141f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(0.189372402f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.34528443f));
  p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-0.671794082f));
  const __m512 half = _mm512_set1_ps(0.5f);
  const __m512 sq = _mm512_mul_ps(ax, ax);
  const __m512 hi = _mm512_mul_ps(sq, half),
               lo = _mm512_mul_ps(_mm512_fmsub_ps(ax, ax, sq), half);
  const __m512 nhi = _mm512_sub_ps(_mm512_setzero_ps(), hi);
  if (e2) *e2 = exp_sum512(nhi, _mm512_sub_ps(_mm512_setzero_ps(), lo));
  const __m512 q = _mm512_mul_ps(_mm512_mul_ps(t, half), exp_sum512(nhi, _mm512_sub_ps(p, lo)));
  const __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
  return _mm512_mask_sub_ps(q, pos, _mm512_set1_ps(1.0f), q);
}

/* The tanh form's 0.5 (1 + tanh(u)), u = sqrt(2 / pi) (x + 0.044715 x^3) as the plain loop
 * forms it, written as the logistic S = 1 / (1 + e^(-2u)) (the same value; where tanh(u)
 * nears -1 the sum 1 + tanh cancels, this does not): with w = e^(-2|u|) in (0, 1], S is
 * 1 / (1 + w) for u >= 0 and w / (1 + w) below, by vrcp14ps and one Newton step. -2|u| is held
 * at -110, past which w is below the subnormals. *oms is 1 - S, the other one, when asked. */
INL512 __m512 logistic512(__m512 x, __m512 *oms) {
  const __m512 k3 = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(GELU_TANH_K), x), x);
  const __m512 u = _mm512_mul_ps(_mm512_set1_ps(GELU_TANH_B), _mm512_fmadd_ps(k3, x, x));
  const __m512 m = _mm512_max_ps(_mm512_mul_ps(_mm512_abs_ps(u), _mm512_set1_ps(-2.0f)),
                                 _mm512_set1_ps(-110.0f));
  const __m512 w = exp_sum512(m, _mm512_setzero_ps());
  const __m512 d = _mm512_add_ps(w, _mm512_set1_ps(1.0f));
  const __m512 r0 = _mm512_rcp14_ps(d);
  const __m512 r = _mm512_fmadd_ps(r0, _mm512_fnmadd_ps(d, r0, _mm512_set1_ps(1.0f)), r0);
  const __m512 wr = _mm512_mul_ps(w, r);
  const __mmask16 pos = _mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_GE_OQ);
  if (oms) *oms = _mm512_mask_blend_ps(pos, r, wr);
  return _mm512_mask_blend_ps(pos, wr, r);
}

T512 static void gelu_forward512(const float *x, float *y, size_t n, int approximate) {
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    const __m512 f = approximate ? logistic512(v, NULL) : phi512(v, NULL);
    _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(v, f));
  }
}

T512 static void phi_values512(const float *x, float *phi, size_t n) {
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(phi + i, k, phi512(_mm512_maskz_loadu_ps(k, x + i), NULL));
  }
}

/* dx = (assign ? 0 : dx) + dy gelu'(x), one FMA (0 + dy g rounds as dy g does). Exact form:
 * gelu' = Phi(x) + x pdf(x); tanh form: S + 2 x S (1 - S) sqrt(2 / pi) (1 + 3 0.044715 x^2),
 * S (1 - S) being (1 - tanh^2(u)) / 4. */
T512 static void gelu_backward512(const float *x, const float *dy, float *dx, size_t n,
                                  int approximate, int assign) {
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    __m512 g;
    if (approximate) {
      __m512 oms;
      const __m512 sg = logistic512(v, &oms);
      const __m512 v2 = _mm512_mul_ps(v, v);
      const __m512 inner_d = _mm512_mul_ps(
          _mm512_set1_ps(GELU_TANH_B),
          _mm512_fmadd_ps(_mm512_set1_ps(3.0f * GELU_TANH_K), v2, _mm512_set1_ps(1.0f)));
      const __m512 right = _mm512_mul_ps(_mm512_mul_ps(_mm512_add_ps(v, v), sg), oms);
      g = _mm512_fmadd_ps(right, inner_d, sg);
    } else {
      __m512 e2;
      const __m512 cdf = phi512(v, &e2);
      g = _mm512_fmadd_ps(v, _mm512_mul_ps(e2, _mm512_set1_ps(GELU_PDF_C)), cdf);
    }
    const __m512 acc = assign ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(k, dx + i);
    _mm512_mask_storeu_ps(dx + i, k, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, dy + i), g, acc));
  }
}
#endif

STROP__CLONES int strop__gelu_phi(const float *x, float *phi, size_t n) {
#ifdef GELU_AVX512
  if (gelu_avx512()) {
    phi_values512(x, phi, n);
    return 1;
  }
#endif
  for (size_t i = 0; i < n; i++) phi[i] = 0.5f * strop__verfcf(-x[i] * GELU_SQRT1_2);
  return 0;
}

STROP__CLONES void strop__gelu_forward(const float *x, float *y, size_t n, int approximate) {
#ifdef GELU_AVX512
  if (gelu_avx512()) {
    gelu_forward512(x, y, n, approximate);
    return;
  }
#endif
  if (approximate) {
    for (size_t i = 0; i < n; i++) {
      float v = x[i];
      float inner = GELU_TANH_B * (v + GELU_TANH_K * v * v * v);
      y[i] = 0.5f * v * (1.0f + strop__vtanhf(inner));
    }
  } else {
    /* PyTorch's 0.5 x (1 + erf(x / sqrt2)), written with erfc so the negative tail does not
     * cancel (1 + erf(-2) loses ~4 digits in float) */
    for (size_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * strop__verfcf(-x[i] * GELU_SQRT1_2);
  }
}

/* dx += dy gelu'(x), or with assign dx = 0 + dy gelu'(x): the sum into a zeroed dx without
 * zeroing it first (the same bits: 0 + v, -0 becoming +0) */
static inline __attribute__((always_inline)) void gelu_bwd(const float *x, const float *dy,
                                                           float *dx, size_t n, int approximate,
                                                           const int assign) {
#ifdef GELU_AVX512
  if (gelu_avx512()) {
    gelu_backward512(x, dy, dx, n, approximate, assign);
    return;
  }
#endif
  if (approximate) {
    for (size_t i = 0; i < n; i++) {
      float v = x[i], v2 = v * v;
      float t = strop__vtanhf(GELU_TANH_B * (v + GELU_TANH_K * v2 * v));
      float left_d = 0.5f * (1.0f + t);
      float right_d = 0.5f * v * (1.0f - t * t);
      float inner_d = GELU_TANH_B * (1.0f + 3.0f * GELU_TANH_K * v2);
      dx[i] = (assign ? 0.0f : dx[i]) + dy[i] * (left_d + right_d * inner_d);
    }
  } else {
    for (size_t i = 0; i < n; i++) {
      float v = x[i];
      float cdf = 0.5f * strop__verfcf(-v * GELU_SQRT1_2);
      float pdf = strop__vexpf(-0.5f * v * v) * GELU_PDF_C;
      dx[i] = (assign ? 0.0f : dx[i]) + dy[i] * (cdf + v * pdf);
    }
  }
}

STROP__CLONES void strop__gelu_backward(const float *x, const float *y, const float *dy,
                                        float *dx, size_t n, int approximate) {
  (void)y;
  gelu_bwd(x, dy, dx, n, approximate, 0);
}

STROP__CLONES void strop__gelu_backward_assign(const float *x, const float *dy, float *dx,
                                               size_t n, int approximate) {
  gelu_bwd(x, dy, dx, n, approximate, 1);
}

static inline float relu6(float v) { return v < 0.0f ? 0.0f : v > 6.0f ? 6.0f : v; }

void strop__relu6_forward(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = relu6(x[i]);
}

void strop__relu6_backward(const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)x; /* 0 < y < 6 exactly where 0 < x < 6 (NaN: neither), so the output suffices */
  for (size_t i = 0; i < n; i++) dx[i] += y[i] > 0.0f && y[i] < 6.0f ? dy[i] : 0.0f;
}

void strop__hardswish_forward(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = x[i] * relu6(x[i] + 3.0f) / 6.0f;
}

void strop__hardswish_backward(const float *x, const float *y, const float *dy, float *dx,
                               size_t n) {
  (void)y;
  for (size_t i = 0; i < n; i++) {
    const float v = x[i];
    dx[i] += v < -3.0f ? 0.0f : v <= 3.0f ? dy[i] * (v / 3.0f + 0.5f) : dy[i];
  }
}

void strop__hardsigmoid_forward(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = relu6(x[i] + 3.0f) / 6.0f;
}

void strop__hardsigmoid_backward(const float *x, const float *y, const float *dy, float *dx,
                                 size_t n) {
  (void)y;
  for (size_t i = 0; i < n; i++)
    dx[i] += x[i] > -3.0f && x[i] < 3.0f ? dy[i] * (1.0f / 6.0f) : 0.0f;
}

STROP__CLONES void strop__silu_forward(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + strop__vexpf(-x[i]));
}

STROP__CLONES void strop__silu_backward(const float *x, const float *y, const float *dy,
                                        float *dx, size_t n) {
  (void)y;
  for (size_t i = 0; i < n; i++) {
    float s = 1.0f / (1.0f + strop__vexpf(-x[i]));
    dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
  }
}

/* The SiLU gate's passes, elementwise, split over the threads in ranges of elements (they ran
 * on the calling thread alone: 3% of its time in a 2-thread TinyLlama LoRA step, POOL_PROFILE;
 * each element's operations are the same in any range: the same bits). */
typedef struct silu_gate_job {
  const float *g, *u;
  float *h, *dh, *du;
} silu_gate_job;

STROP__CLONES static void silu_gate_fwd_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const silu_gate_job *j = ctx;
  const float *g = j->g, *u = j->u;
  float *h = j->h;
  for (int64_t i = lo; i < hi; i++) h[i] = g[i] / (1.0f + strop__vexpf(-g[i])) * u[i];
}

STROP__CLONES static void silu_gate_bwd_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const silu_gate_job *j = ctx;
  const float *g = j->g, *u = j->u;
  float *dh = j->dh, *du = j->du;
  for (int64_t i = lo; i < hi; i++) {
    const float e = strop__vexpf(-g[i]), s = 1.0f / (1.0f + e), d = dh[i];
    du[i] = d * (g[i] / (1.0f + e));
    dh[i] = d * u[i] * s * (1.0f + g[i] * (1.0f - s));
  }
}

enum { SILU_GATE_GRAIN = 16384 }; /* elements a chunk, as the activations' */

void strop__silu_gate_forward(const float *g, const float *u, float *h, size_t n) {
  silu_gate_job j = {.g = g, .u = u, .h = h};
  strop__par_for_pass((int64_t)n, SILU_GATE_GRAIN, silu_gate_fwd_range, &j);
}

void strop__silu_gate_backward(const float *g, const float *u, float *dh, float *du, size_t n) {
  silu_gate_job j = {.g = g, .u = u, .dh = dh, .du = du};
  strop__par_for_pass((int64_t)n, SILU_GATE_GRAIN, silu_gate_bwd_range, &j);
}

void strop__tanh_forward(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
}

void strop__tanh_backward(const float *x, const float *y, const float *dy, float *dx, size_t n) {
  (void)x;
  for (size_t i = 0; i < n; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}

STROP__CLONES void strop__sigmoid_forward(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + strop__vexpf(-x[i]));
}

void strop__sigmoid_backward(const float *x, const float *y, const float *dy, float *dx,
                             size_t n) {
  (void)x;
  for (size_t i = 0; i < n; i++) dx[i] += dy[i] * (1.0f - y[i]) * y[i];
}

/* ---- softmax over the middle axis of [outer, d, inner] ---- */

/* The row max ignores NaN, but exp(NaN - max) still spreads NaN over the row. */
static void softmax_row(const float *x, float *y, int64_t d, int64_t s, int log_form) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < d; j++)
    if (x[j * s] > mx) mx = x[j * s];
  if (mx == -INFINITY) mx = 0.0f; /* an all -inf row: exp gives 0s, sum 0, NaN out (torch) */
  float sum = 0.0f;
  if (log_form) {
    for (int64_t j = 0; j < d; j++) sum += expf(x[j * s] - mx);
    float lse = mx + logf(sum);
    for (int64_t j = 0; j < d; j++) y[j * s] = x[j * s] - lse;
  } else {
    for (int64_t j = 0; j < d; j++) {
      float e = expf(x[j * s] - mx);
      y[j * s] = e;
      sum += e;
    }
    float inv = 1.0f / sum;
    for (int64_t j = 0; j < d; j++) y[j * s] *= inv;
  }
}

static void softmax_fwd(const float *x, float *y, int64_t outer, int64_t d, int64_t inner,
                        int log_form) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t k = 0; k < inner; k++) {
      size_t off = (size_t)(o * d * inner + k);
      softmax_row(x + off, y + off, d, inner, log_form);
    }
}

void strop__softmax_forward(const float *x, float *y, int64_t outer, int64_t d, int64_t inner) {
  softmax_fwd(x, y, outer, d, inner, 0);
}

void strop__log_softmax_forward(const float *x, float *y, int64_t outer, int64_t d,
                                int64_t inner) {
  softmax_fwd(x, y, outer, d, inner, 1);
}

void strop__softmax_backward(const float *y, const float *dy, float *dx, int64_t outer, int64_t d,
                             int64_t inner) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t k = 0; k < inner; k++) {
      size_t off = (size_t)(o * d * inner + k);
      const float *yr = y + off, *gr = dy + off;
      float *dr = dx + off;
      float dot = 0.0f;
      for (int64_t j = 0; j < d; j++) dot += yr[j * inner] * gr[j * inner];
      for (int64_t j = 0; j < d; j++) dr[j * inner] += yr[j * inner] * (gr[j * inner] - dot);
    }
}

void strop__log_softmax_backward(const float *y, const float *dy, float *dx, int64_t outer,
                                 int64_t d, int64_t inner) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t k = 0; k < inner; k++) {
      size_t off = (size_t)(o * d * inner + k);
      const float *yr = y + off, *gr = dy + off;
      float *dr = dx + off;
      float sum = 0.0f;
      for (int64_t j = 0; j < d; j++) sum += gr[j * inner];
      for (int64_t j = 0; j < d; j++) dr[j * inner] += gr[j * inner] - expf(yr[j * inner]) * sum;
    }
}

/* ---- checks ---- */

STROP__CLONES int strop__all_finite_serial(const float *x, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &x[i], sizeof u);
    bad |= (u & 0x7f800000u) == 0x7f800000u;
  }
  return !bad;
}

typedef struct finite_job {
  const float *x;
  _Atomic int bad;
} finite_job;

static void finite_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  finite_job *j = ctx;
  if (!strop__all_finite_serial(j->x + lo, (size_t)(hi - lo))) atomic_store(&j->bad, 1);
}

int strop__all_finite(const float *x, size_t n) {
  finite_job j = {x, 0};
  strop__par_for((int64_t)n, 65536, finite_range, &j);
  return !atomic_load(&j.bad);
}

/* ---- dropout ---- */

void strop__dropout_forward(const float *x, float *y, uint8_t *mask, size_t n, float p,
                            strop__rng *rng) {
  if (p >= 1.0f) {
    memset(mask, 0, n);
    for (size_t i = 0; i < n; i++) y[i] = x[i] * 0.0f;
    return;
  }
  /* keep when a uniform u32 >= p * 2^32; the PCG32 step is strop__rng_u32's, inlined so the
   * loop makes no call per element and the model's stream advances exactly as with it */
  uint64_t thr = (uint64_t)((double)p * 4294967296.0);
  float scale = 1.0f / (1.0f - p);
  uint64_t st = rng->state, inc = rng->inc;
  for (size_t i = 0; i < n; i++) {
    uint64_t old = st;
    st = old * 6364136223846793005ULL + inc;
    uint32_t xs = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    uint32_t u = (xs >> rot) | (xs << ((-rot) & 31u));
    uint8_t k = (uint64_t)u >= thr;
    mask[i] = k;
    y[i] = x[i] * (k ? scale : 0.0f); /* a product, so NaN in a dropped slot stays NaN (torch) */
  }
  rng->state = st;
}

void strop__dropout_backward(const uint8_t *mask, const float *dy, float *dx, size_t n, float p) {
  if (p >= 1.0f) return;
  float scale = 1.0f / (1.0f - p);
  for (size_t i = 0; i < n; i++) dx[i] += dy[i] * (mask[i] ? scale : 0.0f);
}
