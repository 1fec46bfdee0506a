/* SPDX-License-Identifier: MIT */
/* strop — batch normalisation kernels (see norm.h). Statistics and reductions accumulate in
 * double, as PyTorch's CPU kernels do, and the transform is y = x * a + b per channel. */
#include "ops/norm.h"

#include <math.h>

#include "core/core.h"
#include "ops/lowp.h"
#include "ops/ops.h"

/* Channels are independent, so the kernels split them over the worker pool; within a channel
 * every sum runs in one fixed order (image by image, position by position), whatever the split.
 * BN_G channels are summed side by side: BN_G independent chains of double additions instead
 * of one (a chain is bound by the adder's latency), each channel's still in its own order, so
 * the bits are those of one channel at a time. */
enum { BN_G = 8 };

typedef struct bn_job {
  int64_t n, c, l;
  const float *x, *dy, *gamma, *beta, *mean, *var, *invstd;
  float eps;
  float *y, *dx, *dgamma, *dbeta, *mean_out, *invstd_out, *var_out;
  int assign;
  float *ab_out;   /* forward: relu(y) stored (strop__relu_forward's select), and each
                      channel's y = x a + b into a = ab_out[ch], b = ab_out[c + ch]; or NULL */
  const float *ab; /* backward: those, whose relu's gradient mask applies to dy; or NULL */
  /* the passes of a batch spread over a group (strop__batchnorm_sums and the rest): */
  const double *mu_in;        /* the means the squared deviations are taken from, or NULL */
  double *sum_out, *dot_out;  /* per channel: this process's sums */
  const double *sum, *sq_dot; /* per channel: the group's sums of x (or dy) and of the squared
                                 deviations (or (x - mean) dy) */
  double cnt;                 /* the group's values per channel */
  const strop__bn_res *res;   /* the residual sum (and relu) after the norm, or NULL */
} bn_job;

int strop__bn_isa = 0;

/* dy as the fused relu passes it back: strop__relu_backward_assign's select on the relu's
 * output relu(v), v = x a + b as the forward computed it, which is <= 0 exactly where v is
 * (NaN passes) — so the output need not be read */
static inline float relu_dy(float x, float a, float b, float g) {
  const float v = x * a + b;
  return v <= 0.0f ? 0.0f : g;
}

/* The gradient of the norm's output from the chain after it at element o: dy through the
 * residual sum's relu (add_bwd_range's select on the relu's output), and handed to the sum's
 * other operand as the add hands it on (written or added) */
static inline float res_dy(const strop__bn_res *r, int64_t o, float g) {
  if (r->out) g = r->out[o] <= 0.0f ? 0.0f : g;
  else if (r->out_h) g = strop__bf16_held_val(r->out_h[o]) <= 0.0f ? 0.0f : g;
  if (r->dr) {
    if (r->dr_assign) r->dr[o] = g;
    else r->dr[o] += g;
  }
  return g;
}

/* The backward's x held as its deviations from the mean in BF16 (strop__bn_res.dev), or NULL */
static const uint16_t *job_dev(const bn_job *j) { return j->res ? j->res->dev : NULL; }

/* The means the backward's sums take x's deviations from: the job's, or 0 where x is held as
 * its deviations already (job_dev) */
static void group_mu(const bn_job *j, int64_t c0, int g, double *mu) {
  for (int k = 0; k < BN_G; k++) mu[k] = k < g && !job_dev(j) ? j->mean[c0 + k] : 0.0;
}

/* s[k] = the sum over the batch of channel c0 + k (k < g) of x, in double */
static void group_sum(const bn_job *j, int64_t c0, int g, double *s) {
  const int64_t cl = j->c * j->l, l = j->l;
  for (int k = 0; k < BN_G; k++) s[k] = 0.0;
  for (int64_t i = 0; i < j->n; i++) {
    const float *p = j->x + i * cl + c0 * l;
    if (g == BN_G) {
      for (int64_t t = 0; t < l; t++)
        for (int k = 0; k < BN_G; k++) s[k] += p[k * l + t];
    } else {
      for (int k = 0; k < g; k++)
        for (int64_t t = 0; t < l; t++) s[k] += p[k * l + t];
    }
  }
}

/* v[k] = the sum of (x - mu[k])^2 over channel c0 + k, in double */
static void group_sq(const bn_job *j, int64_t c0, int g, const double *mu, double *v) {
  const int64_t cl = j->c * j->l, l = j->l;
  for (int k = 0; k < BN_G; k++) v[k] = 0.0;
  for (int64_t i = 0; i < j->n; i++) {
    const float *p = j->x + i * cl + c0 * l;
    if (g == BN_G) {
      for (int64_t t = 0; t < l; t++)
        for (int k = 0; k < BN_G; k++) {
          const double d = p[k * l + t] - mu[k];
          v[k] += d * d;
        }
    } else {
      for (int k = 0; k < g; k++)
        for (int64_t t = 0; t < l; t++) {
          const double d = p[k * l + t] - mu[k];
          v[k] += d * d;
        }
    }
  }
}

/* the fused relu's a and b of channels c0 + k (0 in the missing ones); 0 without a relu */
static int group_ab(const bn_job *j, int64_t c0, int g, float *a, float *b) {
  for (int k = 0; k < BN_G; k++) {
    a[k] = j->ab && k < g ? j->ab[c0 + k] : 0.0f;
    b[k] = j->ab && k < g ? j->ab[j->c + c0 + k] : 0.0f;
  }
  return j->ab != NULL;
}

/* sum[k] of dy and dot[k] of (x - mu[k]) dy over channel c0 + k, in double (dy through the
 * fused relu's mask) */
static void group_dot(const bn_job *j, int64_t c0, int g, const double *mu, double *sum,
                      double *dot) {
  const int64_t cl = j->c * j->l, l = j->l;
  float a[BN_G], b[BN_G];
  const float *ra = group_ab(j, c0, g, a, b) ? a : NULL, *rb = b;
  for (int k = 0; k < BN_G; k++) sum[k] = dot[k] = 0.0;
  const uint16_t *dev = job_dev(j);
  for (int64_t i = 0; i < j->n; i++) {
    const int64_t o = i * cl + c0 * l;
    const float *p = dev ? NULL : j->x + o, *q = j->dy + o;
    const uint16_t *ph = dev ? dev + o : NULL;
#define BN_XV(e) (ph ? strop__bf16_val(ph[e]) : p[e])
    if (g == BN_G) {
      for (int64_t t = 0; t < l; t++)
        for (int k = 0; k < BN_G; k++) {
          const float xv = BN_XV(k * l + t);
          float gv = ra ? relu_dy(xv, ra[k], rb[k], q[k * l + t]) : q[k * l + t];
          if (j->res) gv = res_dy(j->res, o + k * l + t, gv);
          sum[k] += gv;
          dot[k] += (xv - mu[k]) * gv;
        }
    } else {
      for (int k = 0; k < g; k++)
        for (int64_t t = 0; t < l; t++) {
          const float xv = BN_XV(k * l + t);
          float gv = ra ? relu_dy(xv, ra[k], rb[k], q[k * l + t]) : q[k * l + t];
          if (j->res) gv = res_dy(j->res, o + k * l + t, gv);
          sum[k] += gv;
          dot[k] += (xv - mu[k]) * gv;
        }
    }
#undef BN_XV
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(STROP_NO_CLONES)
#  define BN_AVX512 1
#  include <immintrin.h>

#  include "ops/tr8.h"
#  define BN_T __attribute__((target("avx512f,avx512vl,avx512bw")))
#  define BN_INL static inline __attribute__((always_inline, target("avx512f,avx512vl,avx512bw")))

static int bn_avx512(void) {
  return strop__bn_isa == 0 && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw");
}

/* The group's sums on AVX-512: one double lane per channel of the group, so each lane adds
 * its channel's values in the scalar loops' order (image by image, position by position) with
 * the same double operations — the same bits. Eight positions of the eight channels are
 * loaded as rows (r[k]: channel k), transposed to columns (r[q]: position q of every channel)
 * and widened to doubles, one column after the other into the sums. A group of fewer than
 * BN_G channels reads channel c0 again in the missing lanes, whose sums are dropped. */

/* 8 x 8 floats: row k, column q -> row q, column k */
BN_INL void transpose8(__m256 r[8]) { strop__tr8x8_ps(r, r); }

/* the group's channel rows of image i (the missing ones: channel c0's) */
BN_INL void group_rows(const bn_job *j, const float *base, int64_t i, int64_t c0, int g,
                       const float **p) {
  for (int k = 0; k < BN_G; k++) p[k] = base + i * j->c * j->l + (c0 + (k < g ? k : 0)) * j->l;
}

/* positions t .. t + 8 of the rows (m of them, the rest read as 0), transposed */
BN_INL void load_cols(const float *const *p, int64_t t, __mmask8 m, __m256 r[8]) {
  for (int k = 0; k < BN_G; k++) r[k] = _mm256_maskz_loadu_ps(m, p[k] + t);
  transpose8(r);
}

/* the same of rows of BF16 values (strop__bn_res.dev), widened */
BN_INL __m256 load_bf16(const uint16_t *h, __mmask8 m) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_maskz_loadu_epi16(m, h)), 16));
}

/* 16 values held by strop__bf16_compact_par (strop__bn_res.out_h), widened as
 * strop__bf16_held_val widens them */
BN_INL __m512 load_held16(const uint16_t *h, __mmask16 m) {
  const __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, h));
  const __mmask16 tiny = _mm512_cmpeq_epi32_mask(_mm512_and_si512(v, _mm512_set1_epi32(0x7fff)),
                                                 _mm512_set1_epi32(STROP__BF16_TINY));
  return _mm512_castsi512_ps(
      _mm512_mask_or_epi32(_mm512_slli_epi32(v, 16), tiny,
                           _mm512_slli_epi32(_mm512_and_si512(v, _mm512_set1_epi32(0x8000)), 16),
                           _mm512_set1_epi32(1)));
}

/* the same of 8 values */
BN_INL __m256 load_held(const uint16_t *h, __mmask8 m) {
  return _mm512_castps512_ps256(load_held16(h, (__mmask16)m));
}

BN_INL void load_cols_h(const uint16_t *const *p, int64_t t, __mmask8 m, __m256 r[8]) {
  for (int k = 0; k < BN_G; k++) r[k] = load_bf16(p[k] + t, m);
  transpose8(r);
}

/* the group's channel rows of image i of the BF16 deviations (group_rows) */
BN_INL void group_rows_h(const bn_job *j, const uint16_t *base, int64_t i, int64_t c0, int g,
                         const uint16_t **p) {
  for (int k = 0; k < BN_G; k++) p[k] = base + i * j->c * j->l + (c0 + (k < g ? k : 0)) * j->l;
}

/* the rows of the residual chain after the norm (its relu's output, the sum's other operand's
 * gradient) of image i, as group_rows; NULL where it has none */
typedef struct res_rows {
  const float *out[BN_G];
  const uint16_t *out_h[BN_G];
  float *dr[BN_G];
} res_rows;

/* the same of x into xr and of dy into r, each dy 0 where the fused relu's x a + b (a, b
 * one per row, or none) is <= 0 (relu_dy), or through the residual chain's relu and into the
 * sum's other operand's gradient (res_dy; rr with res, its first g rows only: the others
 * repeat row 0) */
BN_INL void load_x_dy_cols(const float *const *px, const uint16_t *const *ph,
                           const float *const *p, const __m256 *a, const __m256 *b,
                           const strop__bn_res *res, const res_rows *rr, int g, int64_t t,
                           __mmask8 m, __m256 xr[8], __m256 r[8]) {
  for (int k = 0; k < BN_G; k++) {
    xr[k] = ph ? load_bf16(ph[k] + t, m) : _mm256_maskz_loadu_ps(m, px[k] + t);
    r[k] = _mm256_maskz_loadu_ps(m, p[k] + t);
    if (a) {
      const __m256 v = _mm256_add_ps(_mm256_mul_ps(xr[k], a[k]), b[k]);
      r[k] = _mm256_mask_mov_ps(r[k], _mm256_cmp_ps_mask(v, _mm256_setzero_ps(), _CMP_LE_OQ),
                                _mm256_setzero_ps());
    }
    if (res) {
      if (res->out || res->out_h) {
        const __m256 y = res->out_h ? load_held(rr->out_h[k] + t, m)
                                    : _mm256_maskz_loadu_ps(m, rr->out[k] + t);
        r[k] = _mm256_mask_mov_ps(r[k], _mm256_cmp_ps_mask(y, _mm256_setzero_ps(), _CMP_LE_OQ),
                                  _mm256_setzero_ps());
      }
      if (res->dr && k < g) {
        float *d = rr->dr[k] + t;
        _mm256_mask_storeu_ps(
            d, m, res->dr_assign ? r[k] : _mm256_add_ps(_mm256_maskz_loadu_ps(m, d), r[k]));
      }
    }
  }
  transpose8(xr);
  transpose8(r);
}

static __mmask8 tail_mask(int64_t left) {
  return (__mmask8)(left >= 8 ? 0xff : (1u << left) - 1u);
}

BN_T static void group_sum_avx512(const bn_job *j, int64_t c0, int g, double *s) {
  __m512d acc = _mm512_setzero_pd();
  const float *p[BN_G];
  __m256 r[8];
  for (int64_t i = 0; i < j->n; i++) {
    group_rows(j, j->x, i, c0, g, p);
    int64_t t = 0;
    for (; t + 8 <= j->l; t += 8) {
      load_cols(p, t, 0xff, r);
      for (int q = 0; q < 8; q++) acc = _mm512_add_pd(acc, _mm512_cvtps_pd(r[q]));
    }
    if (t < j->l) {
      load_cols(p, t, tail_mask(j->l - t), r);
      for (int q = 0; q < j->l - t; q++) acc = _mm512_add_pd(acc, _mm512_cvtps_pd(r[q]));
    }
  }
  _mm512_storeu_pd(s, acc);
}

BN_T static void group_sq_avx512(const bn_job *j, int64_t c0, int g, const double *mu,
                                 double *v) {
  const __m512d m = _mm512_loadu_pd(mu);
  __m512d acc = _mm512_setzero_pd();
  const float *p[BN_G];
  __m256 r[8];
  for (int64_t i = 0; i < j->n; i++) {
    group_rows(j, j->x, i, c0, g, p);
    for (int64_t t = 0; t < j->l; t += 8) {
      const int64_t cols = j->l - t < 8 ? j->l - t : 8;
      load_cols(p, t, tail_mask(cols), r);
      for (int q = 0; q < cols; q++) {
        const __m512d d = _mm512_sub_pd(_mm512_cvtps_pd(r[q]), m);
        acc = _mm512_add_pd(acc, _mm512_mul_pd(d, d));
      }
    }
  }
  _mm512_storeu_pd(v, acc);
}

/* The dot pass's sums over cols positions of the group, transposed (r: x, e: dy, column q of
 * each the group's values at one position): each channel's lane adds them in position order. */
BN_INL void dot_cols(const __m256 *r, const __m256 *e, int64_t cols, __m512d m, __m512d *as,
                     __m512d *ad) {
  for (int k = 0; k < cols; k++) {
    const __m512d gv = _mm512_cvtps_pd(e[k]);
    *as = _mm512_add_pd(*as, gv);
    *ad = _mm512_add_pd(*ad, _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(r[k]), m), gv));
  }
}

/* The residual chain's gradient of the group's rows of image i (res_dy, through the fused
 * relu's select first as relu_dy: a, b per row, or none) into the stage's rows (l floats each),
 * handed on into the sum's other operand's gradient as it goes. A row at a time: the image's
 * rows of the group lie one after another, so each tensor is read (and dr written) in one run. */
BN_T static void stage_rows(const bn_job *j, int64_t i, int64_t c0, int g, const float *a,
                            const float *b, float *stage) {
  const strop__bn_res *res = j->res;
  const int64_t l = j->l;
  for (int k = 0; k < g; k++) {
    const int64_t o = i * j->c * l + (c0 + k) * l;
    const float *px = a ? j->x + o : NULL, *pd = j->dy + o, *po = res->out ? res->out + o : NULL;
    const uint16_t *poh = res->out_h ? res->out_h + o : NULL;
    float *dr = res->dr ? res->dr + o : NULL, *st = stage + k * l;
    const __m512 va = _mm512_set1_ps(a ? a[k] : 0.0f), vb = _mm512_set1_ps(a ? b[k] : 0.0f);
    for (int64_t t = 0; t < l; t += 16) {
      const __mmask16 m = (__mmask16)(l - t >= 16 ? 0xffff : (1u << (l - t)) - 1u);
      __m512 e = _mm512_maskz_loadu_ps(m, pd + t);
      if (a) {
        const __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, px + t), va), vb);
        e = _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LE_OQ),
                               _mm512_setzero_ps());
      }
      if (po || poh) {
        const __m512 y = poh ? load_held16(poh + t, m) : _mm512_maskz_loadu_ps(m, po + t);
        e = _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LE_OQ),
                               _mm512_setzero_ps());
      }
      if (dr)
        _mm512_mask_storeu_ps(
            dr + t, m, res->dr_assign ? e : _mm512_add_ps(_mm512_maskz_loadu_ps(m, dr + t), e));
      _mm512_mask_storeu_ps(st + t, m, e);
    }
  }
}

/* group_dot_avx512 with the residual chain's gradient staged an image at a time (stage_rows):
 * the grouped pass reads eight rows of x and the stage's, which L2 holds, instead of 24 to 32
 * rows from memory side by side. The same operations on the same values: the same bits. */
BN_T static void group_dot_staged(const bn_job *j, int64_t c0, int g, const double *mu,
                                  double *sum, double *dot, float *stage) {
  const __m512d m = _mm512_loadu_pd(mu);
  __m512d as = _mm512_setzero_pd(), ad = _mm512_setzero_pd();
  const float *p[BN_G], *q[BN_G];
  float a[BN_G], b[BN_G];
  __m256 r[8], e[8];
  const int relu = group_ab(j, c0, g, a, b);
  for (int k = 0; k < BN_G; k++) q[k] = stage + (k < g ? k : 0) * j->l;
  const uint16_t *dev = job_dev(j), *ph[BN_G];
  for (int64_t i = 0; i < j->n; i++) {
    stage_rows(j, i, c0, g, relu ? a : NULL, b, stage);
    if (dev) group_rows_h(j, dev, i, c0, g, ph);
    else group_rows(j, j->x, i, c0, g, p);
    for (int64_t t = 0; t < j->l; t += 8) {
      const int64_t cols = j->l - t < 8 ? j->l - t : 8;
      const __mmask8 mk = tail_mask(cols);
      if (dev) load_cols_h(ph, t, mk, r);
      else load_cols(p, t, mk, r);
      load_cols(q, t, mk, e);
      dot_cols(r, e, cols, m, &as, &ad);
    }
  }
  _mm512_storeu_pd(sum, as);
  _mm512_storeu_pd(dot, ad);
}

BN_T static void group_dot_avx512(const bn_job *j, int64_t c0, int g, const double *mu,
                                  double *sum, double *dot) {
  const __m512d m = _mm512_loadu_pd(mu);
  __m512d as = _mm512_setzero_pd(), ad = _mm512_setzero_pd();
  const float *p[BN_G], *q[BN_G];
  float a[BN_G], b[BN_G];
  __m256 r[8], e[8], va[BN_G], vb[BN_G];
  const int relu = group_ab(j, c0, g, a, b);
  res_rows rr;
  for (int k = 0; k < BN_G; k++) va[k] = _mm256_set1_ps(a[k]), vb[k] = _mm256_set1_ps(b[k]);
  const uint16_t *dev = job_dev(j), *ph[BN_G];
  for (int64_t i = 0; i < j->n; i++) {
    if (dev) group_rows_h(j, dev, i, c0, g, ph);
    else group_rows(j, j->x, i, c0, g, p);
    group_rows(j, j->dy, i, c0, g, q);
    if (j->res && j->res->out) group_rows(j, j->res->out, i, c0, g, rr.out);
    if (j->res && j->res->out_h) group_rows_h(j, j->res->out_h, i, c0, g, rr.out_h);
    for (int k = 0; j->res && j->res->dr && k < BN_G; k++)
      rr.dr[k] = j->res->dr + i * j->c * j->l + (c0 + (k < g ? k : 0)) * j->l;
    for (int64_t t = 0; t < j->l; t += 8) {
      const int64_t cols = j->l - t < 8 ? j->l - t : 8;
      const __mmask8 mk = tail_mask(cols);
      load_x_dy_cols(p, dev ? ph : NULL, q, relu ? va : NULL, vb, j->res, &rr, g, t, mk, r, e);
      dot_cols(r, e, cols, m, &as, &ad);
    }
  }
  _mm512_storeu_pd(sum, as);
  _mm512_storeu_pd(dot, ad);
}
#endif

/* The group passes: AVX-512 where the CPU has it, else the scalar loops above. */
static void group_sum_any(const bn_job *j, int64_t c0, int g, double *s) {
#if defined(BN_AVX512)
  if (bn_avx512()) {
    group_sum_avx512(j, c0, g, s);
    return;
  }
#endif
  group_sum(j, c0, g, s);
}

static void group_sq_any(const bn_job *j, int64_t c0, int g, const double *mu, double *v) {
#if defined(BN_AVX512)
  if (bn_avx512()) {
    group_sq_avx512(j, c0, g, mu, v);
    return;
  }
#endif
  group_sq(j, c0, g, mu, v);
}

/* stage: the chunk's scratch of BN_G * l floats for group_dot_staged, or NULL */
static void group_dot_any(const bn_job *j, int64_t c0, int g, const double *mu, double *sum,
                          double *dot, float *stage) {
#if defined(BN_AVX512)
  if (bn_avx512()) {
    if (stage && j->res && (j->res->out || j->res->out_h || j->res->dr))
      group_dot_staged(j, c0, g, mu, sum, dot, stage);
    else group_dot_avx512(j, c0, g, mu, sum, dot);
    return;
  }
#endif
  (void)stage;
  group_dot(j, c0, g, mu, sum, dot);
}

/* The elementwise passes over one channel's row of l values: built for the CPU's widest
 * vectors (STROP__CLONES) — each element's few float operations in the order written, so
 * every clone gives the same bits. */

/* q = p * a + b, or relu of it */
STROP__CLONES static void affine_row(const float *p, float *q, int64_t l, float a, float b,
                                     int relu) {
  if (relu)
    for (int64_t t = 0; t < l; t++) {
      const float v = p[t] * a + b;
      q[t] = v < 0.0f ? 0.0f : v;
    }
  else
    for (int64_t t = 0; t < l; t++) q[t] = p[t] * a + b;
}

/* q = p * a + b + r (r + (p * a + b) with first: the sum's operands in the add's order), or
 * relu of it: the norm, the residual sum and its relu (strop__bn_res) */
STROP__CLONES static void affine_res_row(const float *p, const float *r, float *q, int64_t l,
                                         float a, float b, int first, int relu) {
  if (first && relu)
    for (int64_t t = 0; t < l; t++) {
      const float s = r[t] + (p[t] * a + b);
      q[t] = s < 0.0f ? 0.0f : s;
    }
  else if (relu)
    for (int64_t t = 0; t < l; t++) {
      const float s = (p[t] * a + b) + r[t];
      q[t] = s < 0.0f ? 0.0f : s;
    }
  else if (first)
    for (int64_t t = 0; t < l; t++) q[t] = r[t] + (p[t] * a + b);
  else
    for (int64_t t = 0; t < l; t++) q[t] = (p[t] * a + b) + r[t];
}

/* g = dy where the residual chain's relu output y is > 0 or NaN, else 0 (res_dy's select) */
STROP__CLONES static void mask_row(const float *y, const float *dy, float *g, int64_t l) {
  for (int64_t t = 0; t < l; t++) g[t] = y[t] <= 0.0f ? 0.0f : dy[t];
}

/* the same of y held in BF16 (strop__bn_res.out_h), widened */
STROP__CLONES static void mask_row_h(const uint16_t *y, const float *dy, float *g, int64_t l) {
  for (int64_t t = 0; t < l; t++) g[t] = strop__bf16_held_val(y[t]) <= 0.0f ? 0.0f : dy[t];
}

/* dx = (dy - gm - (x - mu) * k) * w, dy through the fused relu's mask (relu: its a, b); added
 * into dx, or written with assign */
STROP__CLONES static void dx_row(const float *p, const float *gv, int relu, float a, float b,
                                 float *q, int64_t l, float gm, float mu, float k, float w,
                                 int assign) {
  if (relu && assign)
    for (int64_t t = 0; t < l; t++)
      q[t] = (relu_dy(p[t], a, b, gv[t]) - gm - (p[t] - mu) * k) * w;
  else if (relu)
    for (int64_t t = 0; t < l; t++)
      q[t] += (relu_dy(p[t], a, b, gv[t]) - gm - (p[t] - mu) * k) * w;
  else if (assign)
    for (int64_t t = 0; t < l; t++) q[t] = (gv[t] - gm - (p[t] - mu) * k) * w;
  else
    for (int64_t t = 0; t < l; t++) q[t] += (gv[t] - gm - (p[t] - mu) * k) * w;
}

/* dx_row with x's deviations from the mean held in BF16 (strop__bn_res.dev; no fused relu's
 * a and b then): the same operations on x - mu = the deviation widened */
STROP__CLONES static void dx_row_dev(const uint16_t *h, const float *gv, float *q, int64_t l,
                                     float gm, float k, float w, int assign) {
  if (assign)
    for (int64_t t = 0; t < l; t++) q[t] = (gv[t] - gm - strop__bf16_val(h[t]) * k) * w;
  else
    for (int64_t t = 0; t < l; t++) q[t] += (gv[t] - gm - strop__bf16_val(h[t]) * k) * w;
}

/* dx = dy * a (the eval-mode backward), dy through the fused relu's mask (relu: the forward's
 * x ra + rb) */
STROP__CLONES static void scale_row(const float *p, const float *gv, int relu, float ra, float rb,
                                    float *q, int64_t l, float a, int assign) {
  if (relu && assign)
    for (int64_t t = 0; t < l; t++) q[t] = relu_dy(p[t], ra, rb, gv[t]) * a;
  else if (relu)
    for (int64_t t = 0; t < l; t++) q[t] += relu_dy(p[t], ra, rb, gv[t]) * a;
  else if (assign)
    for (int64_t t = 0; t < l; t++) q[t] = gv[t] * a;
  else
    for (int64_t t = 0; t < l; t++) q[t] += gv[t] * a;
}

/* y = x a[k] + b[k] (relu of it with j->ab_out, which gets a and b; the residual sum and its
 * relu after it with j->res) over channel c0 + k of the batch */
static void group_affine(const bn_job *j, int64_t c0, int g, const float *a, const float *b) {
  const int64_t cl = j->c * j->l, l = j->l;
  const strop__bn_res *r = j->res;
  for (int k = 0; k < g && j->ab_out; k++)
    j->ab_out[c0 + k] = a[k], j->ab_out[j->c + c0 + k] = b[k];
  for (int64_t i = 0; i < j->n; i++)
    for (int k = 0; k < g; k++) {
      const int64_t o = i * cl + (c0 + k) * l;
      if (r) affine_res_row(j->x + o, r->r + o, j->y + o, l, a[k], b[k], r->r_first, r->relu);
      else affine_row(j->x + o, j->y + o, l, a[k], b[k], j->ab_out != NULL);
    }
}

/* The gradient of the norm's output over the row at o of l values, for the elementwise pass
 * after the group's sums: where the dot pass wrote it (the sum's other operand's gradient,
 * written outright), else dy through the residual chain's relu into buf (l of them), else dy */
static const float *row_dy(const bn_job *j, int64_t o, int64_t l, float *buf) {
  const strop__bn_res *r = j->res;
  if (r && r->dr && r->dr_assign) return r->dr + o;
  if (r && r->out_h) {
    mask_row_h(r->out_h + o, j->dy + o, buf, l);
    return buf;
  }
  if (r && r->out) {
    mask_row(r->out + o, j->dy + o, buf, l);
    return buf;
  }
  return j->dy + o;
}

/* Groups of BN_G channels per chunk: enough values that a split pays for waking a worker. */
static int64_t bn_grain(int64_t n, int64_t l) {
  const int64_t per = n * l * BN_G;
  return per >= 65536 ? 1 : 65536 / (per > 0 ? per : 1);
}

static void bn_run(const bn_job *j, strop__par_fn fn) {
  strop__par_for((j->c + BN_G - 1) / BN_G, bn_grain(j->n, j->l), fn, (void *)j);
}

size_t strop__batchnorm_stage_floats(int nthreads, int64_t n, int64_t c, int64_t l) {
#if defined(BN_AVX512)
  if (n < 1 || c < 1 || l < 1) return 0;
  /* strop__par_for's chunks at its default split; a run cut finer (bench_big's PAR_SPLIT)
   * stages the chunks it has room for */
  const int chunks = strop__par_chunks(nthreads, (c + BN_G - 1) / BN_G, bn_grain(n, l));
  return (size_t)chunks * BN_G * (size_t)l;
#else
  (void)nthreads, (void)n, (void)c, (void)l;
  return 0;
#endif
}

/* chunk's part of the residual chain's stage (strop__bn_res.stage), or NULL where there is none
 * or it has no room for it (a run split into more chunks than it was sized for) */
static float *chunk_stage(const bn_job *j, int chunk) {
  const strop__bn_res *r = j->res;
  const size_t per = BN_G * (size_t)j->l;
  if (!r || !r->stage || chunk < 0 || ((size_t)chunk + 1) * per > r->stage_floats) return NULL;
  return r->stage + (size_t)chunk * per;
}

static int group_of(const bn_job *j, int64_t grp, int64_t *c0) {
  *c0 = grp * BN_G;
  return j->c - *c0 < BN_G ? (int)(j->c - *c0) : BN_G;
}

/* Channel c0 + k's mean, invstd and biased variance (into the job's outputs) and the affine
 * y = x a[k] + b[k] that normalises it, from the means mu[k] and the sums v[k] of squared
 * deviations over cnt values. */
static void group_stats(const bn_job *j, int64_t c0, int g, const double *mu, const double *v,
                        double cnt, float *a, float *b) {
  for (int k = 0; k < g; k++) {
    const int64_t ch = c0 + k;
    const double var = v[k] / cnt;
    const double is = 1.0 / sqrt(var + (double)j->eps);
    j->mean_out[ch] = (float)mu[k];
    j->invstd_out[ch] = (float)is;
    if (j->var_out) j->var_out[ch] = (float)var;
    a[k] = (float)(j->gamma ? is * j->gamma[ch] : is);
    b[k] = (float)((j->beta ? j->beta[ch] : 0.0) - mu[k] * a[k]);
  }
}

/* The train-mode forward of channel groups [lo, hi): each group's sums of x and of its squared
 * deviations (or the group's, j->sum and j->sq_dot over j->cnt values, summed over a group of
 * processes), its statistics and the affine pass. */
static void fwd_train_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const bn_job *j = ctx;
  const double cnt = j->sum ? j->cnt : (double)(j->n * j->l);
  for (int64_t grp = lo; grp < hi; grp++) {
    int64_t c0;
    const int g = group_of(j, grp, &c0);
    double s[BN_G], mu[BN_G], v[BN_G];
    if (j->sum) {
      for (int k = 0; k < g; k++) mu[k] = j->sum[c0 + k] / cnt, v[k] = j->sq_dot[c0 + k];
    } else {
      group_sum_any(j, c0, g, s);
      for (int k = 0; k < BN_G; k++) mu[k] = s[k] / cnt;
      group_sq_any(j, c0, g, mu, v);
    }
    float a[BN_G], b[BN_G];
    group_stats(j, c0, g, mu, v, cnt, a, b);
    group_affine(j, c0, g, a, b);
  }
}

static void forward_train(int64_t n, int64_t c, int64_t l, const float *x, const float *gamma,
                          const float *beta, float eps, const double *sum, const double *sq,
                          double count, float *relu_ab, float *y, float *mean, float *invstd,
                          float *var_biased, const strop__bn_res *res) {
  const bn_job j = {.n = n,
                    .c = c,
                    .l = l,
                    .x = x,
                    .gamma = gamma,
                    .beta = beta,
                    .eps = eps,
                    .y = y,
                    .mean_out = mean,
                    .invstd_out = invstd,
                    .var_out = var_biased,
                    .ab_out = relu_ab,
                    .res = res,
                    .sum = sum,
                    .sq_dot = sq,
                    .cnt = count};
  bn_run(&j, fwd_train_range);
}

void strop__batchnorm_forward_train(int64_t n, int64_t c, int64_t l, const float *x,
                                    const float *gamma, const float *beta, float eps,
                                    float *relu_ab, float *y, float *mean, float *invstd,
                                    float *var_biased, const strop__bn_res *res) {
  forward_train(n, c, l, x, gamma, beta, eps, NULL, NULL, 0.0, relu_ab, y, mean, invstd,
                var_biased, res);
}

/* Values per call of the elementwise passes of the backward (a row's piece) */
enum { ROW_PIECE = 1024 };

/* dx of channel c0 + k from the sums sum[k] of dy and dot[k] of (x - mu[k]) dy over cnt values
 * (mu the forward's means) */
static void group_dx(const bn_job *j, int64_t c0, int g, const double *mu, const double *sum,
                     const double *dot, double cnt) {
  const int64_t cl = j->c * j->l, l = j->l;
  const uint16_t *dev = job_dev(j);
  float kk[BN_G], gm[BN_G], fmu[BN_G], w[BN_G], ra[BN_G], rb[BN_G];
  group_ab(j, c0, g, ra, rb);
  for (int k = 0; k < g; k++) {
    const int64_t ch = c0 + k;
    const double is = j->invstd[ch];
    /* dx = (dy - mean(dy) - (x - mu) * k) * invstd * gamma, k = dot * invstd^2 / cnt */
    kk[k] = (float)(dot[k] * is * is / cnt);
    gm[k] = (float)(sum[k] / cnt);
    fmu[k] = (float)mu[k];
    w[k] = (float)(j->gamma ? is * j->gamma[ch] : is);
  }
  for (int64_t i = 0; i < j->n && j->dx; i++)
    for (int k = 0; k < g; k++) {
      const int64_t o = i * cl + (c0 + k) * l;
      for (int64_t t = 0; t < l; t += ROW_PIECE) { /* pieces: row_dy's buffer */
        const int64_t len = l - t < ROW_PIECE ? l - t : ROW_PIECE;
        float buf[ROW_PIECE];
        if (dev)
          dx_row_dev(dev + o + t, row_dy(j, o + t, len, buf), j->dx + o + t, len, gm[k], kk[k],
                     w[k], j->assign);
        else
          dx_row(j->x + o + t, row_dy(j, o + t, len, buf), j->ab != NULL, ra[k], rb[k],
                 j->dx + o + t, len, gm[k], fmu[k], kk[k], w[k], j->assign);
      }
    }
}

/* gamma's and beta's gradients of channel c0 + k from the sums of dy and (x - mean) dy */
static void group_param_grads(const bn_job *j, int64_t c0, int g, const double *sum,
                              const double *dot) {
  for (int k = 0; k < g; k++) {
    const int64_t ch = c0 + k;
    const double is = j->invstd[ch];
    if (j->dgamma) j->dgamma[ch] += (float)(dot[k] * is);
    if (j->dbeta) j->dbeta[ch] += (float)sum[k];
  }
}

/* The train-mode backward of channel groups [lo, hi): each group's sums of dy and (x - mean)
 * dy (dy through the residual chain's relu, handing the sum's gradient on: group_dot) and the
 * parameters' gradients (or the group's sums, j->sum and j->sq_dot over j->cnt values: the dx
 * pass only), then dx. */
static void bwd_train_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const bn_job *j = ctx;
  float *stage = chunk_stage(j, chunk);
  const double cnt = j->sum ? j->cnt : (double)(j->n * j->l);
  for (int64_t grp = lo; grp < hi; grp++) {
    int64_t c0;
    const int g = group_of(j, grp, &c0);
    double mu[BN_G], sum[BN_G], dot[BN_G];
    group_mu(j, c0, g, mu);
    if (j->sum) {
      group_dx(j, c0, g, mu, j->sum + c0, j->sq_dot + c0, cnt);
      continue;
    }
    group_dot_any(j, c0, g, mu, sum, dot, stage);
    group_param_grads(j, c0, g, sum, dot);
    group_dx(j, c0, g, mu, sum, dot, cnt);
  }
}

static void backward_train(int64_t n, int64_t c, int64_t l, const float *x, const float *dy,
                           const float *relu_ab, const float *gamma, const float *mean,
                           const float *invstd, const double *sum, const double *dot,
                           double count, float *dx, float *dgamma, float *dbeta, int assign,
                           const strop__bn_res *res) {
  const bn_job j = {.n = n,
                    .c = c,
                    .l = l,
                    .x = x,
                    .dy = dy,
                    .gamma = gamma,
                    .mean = mean,
                    .invstd = invstd,
                    .dx = dx,
                    .dgamma = dgamma,
                    .dbeta = dbeta,
                    .assign = assign,
                    .ab = relu_ab,
                    .res = res,
                    .sum = sum,
                    .sq_dot = dot,
                    .cnt = count};
  bn_run(&j, bwd_train_range);
}

void strop__batchnorm_backward_train(int64_t n, int64_t c, int64_t l, const float *x,
                                     const float *dy, const float *relu_ab, const float *gamma,
                                     const float *mean, const float *invstd, float *dx,
                                     float *dgamma, float *dbeta, int assign,
                                     const strop__bn_res *res) {
  backward_train(n, c, l, x, dy, relu_ab, gamma, mean, invstd, NULL, NULL, 0.0, dx, dgamma, dbeta,
                 assign, res);
}

/* ---- a batch spread over a group of processes (SyncBatchNorm) ---- */

/* this process's sums of channel group grp: of x, or of (x - mu_in)^2 */
static void sums_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const bn_job *j = ctx;
  for (int64_t grp = lo; grp < hi; grp++) {
    int64_t c0;
    const int g = group_of(j, grp, &c0);
    double v[BN_G], mu[BN_G];
    if (j->mu_in) {
      for (int k = 0; k < BN_G; k++) mu[k] = k < g ? j->mu_in[c0 + k] : 0.0;
      group_sq_any(j, c0, g, mu, v);
    } else {
      group_sum_any(j, c0, g, v);
    }
    for (int k = 0; k < g; k++) j->sum_out[c0 + k] = v[k];
  }
}

void strop__batchnorm_sums(int64_t n, int64_t c, int64_t l, const float *x, const double *mu,
                           double *out) {
  const bn_job j = {.n = n, .c = c, .l = l, .x = x, .mu_in = mu, .sum_out = out};
  bn_run(&j, sums_range);
}

void strop__batchnorm_forward_sums(int64_t n, int64_t c, int64_t l, const float *x,
                                   const float *gamma, const float *beta, float eps,
                                   const double *sum, const double *sq, double count,
                                   float *relu_ab, float *y, float *mean, float *invstd,
                                   float *var_biased, const strop__bn_res *res) {
  forward_train(n, c, l, x, gamma, beta, eps, sum, sq, count, relu_ab, y, mean, invstd,
                var_biased, res);
}

static void dots_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const bn_job *j = ctx;
  float *stage = chunk_stage(j, chunk);
  for (int64_t grp = lo; grp < hi; grp++) {
    int64_t c0;
    const int g = group_of(j, grp, &c0);
    double mu[BN_G], sum[BN_G], dot[BN_G];
    group_mu(j, c0, g, mu);
    group_dot_any(j, c0, g, mu, sum, dot, stage);
    group_param_grads(j, c0, g, sum, dot);
    for (int k = 0; k < g; k++) j->sum_out[c0 + k] = sum[k], j->dot_out[c0 + k] = dot[k];
  }
}

void strop__batchnorm_dots(int64_t n, int64_t c, int64_t l, const float *x, const float *dy,
                           const float *relu_ab, const float *mean, const float *invstd,
                           float *dgamma, float *dbeta, double *sum, double *dot,
                           const strop__bn_res *res) {
  const bn_job j = {.n = n,
                    .c = c,
                    .l = l,
                    .x = x,
                    .dy = dy,
                    .mean = mean,
                    .invstd = invstd,
                    .dgamma = dgamma,
                    .dbeta = dbeta,
                    .ab = relu_ab,
                    .res = res,
                    .sum_out = sum,
                    .dot_out = dot};
  bn_run(&j, dots_range);
}

void strop__batchnorm_backward_sums(int64_t n, int64_t c, int64_t l, const float *x,
                                    const float *dy, const float *relu_ab, const float *gamma,
                                    const float *mean, const float *invstd, const double *sum,
                                    const double *dot, double count, float *dx, int assign,
                                    const strop__bn_res *res) {
  backward_train(n, c, l, x, dy, relu_ab, gamma, mean, invstd, sum, dot, count, dx, NULL, NULL,
                 assign, res);
}

void strop__batchnorm_update_running(int64_t c, const float *mean, const float *var_biased,
                                     int64_t count, float momentum, float *running_mean,
                                     float *running_var) {
  const double m = momentum;
  const double unbias = count > 1 ? (double)count / (double)(count - 1) : 1.0;
  for (int64_t ch = 0; ch < c; ch++) {
    running_mean[ch] = (float)(m * mean[ch] + (1.0 - m) * running_mean[ch]);
    running_var[ch] = (float)(m * var_biased[ch] * unbias + (1.0 - m) * running_var[ch]);
  }
}

static void fwd_eval_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const bn_job *j = ctx;
  for (int64_t grp = lo; grp < hi; grp++) {
    int64_t c0;
    const int g = group_of(j, grp, &c0);
    float a[BN_G], b[BN_G];
    for (int k = 0; k < g; k++) {
      const int64_t ch = c0 + k;
      const double is = 1.0 / sqrt((double)j->var[ch] + (double)j->eps);
      a[k] = (float)(j->gamma ? is * j->gamma[ch] : is);
      b[k] = (float)((j->beta ? j->beta[ch] : 0.0) - j->mean[ch] * (double)a[k]);
    }
    group_affine(j, c0, g, a, b);
  }
}

void strop__batchnorm_forward_eval(int64_t n, int64_t c, int64_t l, const float *x,
                                   const float *gamma, const float *beta, const float *mean,
                                   const float *var, float eps, float *relu_ab, float *y,
                                   const strop__bn_res *res) {
  const bn_job j = {.n = n,
                    .c = c,
                    .l = l,
                    .x = x,
                    .gamma = gamma,
                    .beta = beta,
                    .mean = mean,
                    .var = var,
                    .eps = eps,
                    .y = y,
                    .ab_out = relu_ab,
                    .res = res};
  bn_run(&j, fwd_eval_range);
}

static void bwd_eval_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const bn_job *j = ctx;
  float *stage = chunk_stage(j, chunk);
  const int64_t cl = j->c * j->l, l = j->l;
  for (int64_t grp = lo; grp < hi; grp++) {
    int64_t c0;
    const int g = group_of(j, grp, &c0);
    double mu[BN_G], sum[BN_G], dot[BN_G];
    if (j->dgamma || j->dbeta || j->res) { /* (the chain's sum hands on its gradient here) */
      group_mu(j, c0, g, mu);
      group_dot_any(j, c0, g, mu, sum, dot, stage);
    }
    for (int k = 0; k < g; k++) {
      const int64_t ch = c0 + k;
      const double is = 1.0 / sqrt((double)j->var[ch] + (double)j->eps);
      if (j->dgamma) j->dgamma[ch] += (float)(dot[k] * is);
      if (j->dbeta) j->dbeta[ch] += (float)sum[k];
      if (!j->dx) continue;
      const float a = (float)(j->gamma ? is * j->gamma[ch] : is);
      const float ra = j->ab ? j->ab[ch] : 0.0f, rb = j->ab ? j->ab[j->c + ch] : 0.0f;
      for (int64_t i = 0; i < j->n; i++)
        for (int64_t t = 0; t < l; t += ROW_PIECE) {
          const int64_t o = i * cl + ch * l + t, len = l - t < ROW_PIECE ? l - t : ROW_PIECE;
          float buf[ROW_PIECE];
          scale_row(j->ab ? j->x + o : NULL, row_dy(j, o, len, buf), j->ab != NULL, ra, rb,
                    j->dx + o, len, a, j->assign);
        }
    }
  }
}

void strop__batchnorm_backward_eval(int64_t n, int64_t c, int64_t l, const float *x,
                                    const float *dy, const float *relu_ab, const float *gamma,
                                    const float *mean, const float *var, float eps, float *dx,
                                    float *dgamma, float *dbeta, int assign,
                                    const strop__bn_res *res) {
  const bn_job j = {.n = n,
                    .c = c,
                    .l = l,
                    .x = x,
                    .dy = dy,
                    .gamma = gamma,
                    .mean = mean,
                    .var = var,
                    .eps = eps,
                    .dx = dx,
                    .dgamma = dgamma,
                    .dbeta = dbeta,
                    .assign = assign,
                    .ab = relu_ab,
                    .res = res};
  bn_run(&j, bwd_eval_range);
}
