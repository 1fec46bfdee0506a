/* SPDX-License-Identifier: MIT */
/* strop — pooling kernels (see pool.h): max pooling keeps the winners' positions for the
 * backward; average pooling follows PyTorch's divisor rules. */
#include "ops/pool.h"

#include "core/core.h"
#include "ops/ops.h"

#include <math.h>
#include <string.h>
#if defined(__SSE2__)
#  include <emmintrin.h>
#endif

/* Kernel taps k in [lo, hi) whose input index start + k * dil falls in [0, in). */
static void taps(int64_t start, int64_t dil, int64_t k, int64_t in, int64_t *lo, int64_t *hi) {
  int64_t l = start >= 0 ? 0 : (-start + dil - 1) / dil;
  int64_t h = in - start <= 0 ? 0 : (in - start + dil - 1) / dil;
  if (h > k) h = k;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

/* The common 2x2 window, stride 2, no padding or dilation: the windows tile the plane. */
static int is_2x2(const strop__pool2d_dims *d) {
  return d->kh == 2 && d->kw == 2 && d->sh == 2 && d->sw == 2 && d->ph == 0 && d->pw == 0 &&
         d->dh == 1 && d->dw == 1 && 2 * d->oh <= d->h && 2 * d->ow <= d->w;
}

int strop__pool_isa = 0;

/* relu as strop__relu_forward has it: negatives to +0, -0 and NaN kept */
#define RELU(v) ((v) < 0.0f ? 0.0f : (v))

/* One tap of the scan in the general loop's order and rules, without branches: v replaces m
 * when it is larger or NaN, unless m already is NaN (the first NaN wins). */
#define MAX_TAP(v, off)                            \
  do {                                             \
    const float v_ = (v);                          \
    const int u_ = (v_ > m || v_ != v_) && m == m; \
    m = u_ ? v_ : m;                               \
    k = u_ ? (off) : k;                            \
  } while (0)

#if defined(__SSE2__)
static __m128 relu_sse2(__m128 v, int relu) {
  return relu ? _mm_andnot_ps(_mm_cmplt_ps(v, _mm_setzero_ps()), v) : v;
}

/* Four windows at once (baseline x86-64 SSE2): the taps deinterleaved from two rows, then the
 * same four MAX_TAP steps as masks. */
static int64_t maxpool_2x2_row_sse2(const float *r0, const float *r1, float *y, int32_t *a,
                                    int64_t ow, int32_t base, int32_t W, int relu) {
  const __m128i one = _mm_set1_epi32(1), kw = _mm_set1_epi32(W), kw1 = _mm_set1_epi32(W + 1);
  const __m128i lane = _mm_setr_epi32(0, 2, 4, 6);
  int64_t ox = 0;
  for (; ox + 4 <= ow; ox += 4) {
    const __m128 a0 = relu_sse2(_mm_loadu_ps(r0 + 2 * ox), relu);
    const __m128 a1 = relu_sse2(_mm_loadu_ps(r0 + 2 * ox + 4), relu);
    const __m128 b0 = relu_sse2(_mm_loadu_ps(r1 + 2 * ox), relu);
    const __m128 b1 = relu_sse2(_mm_loadu_ps(r1 + 2 * ox + 4), relu);
    const __m128 t[3] = {_mm_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1)),
                         _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1))};
    const __m128i off[3] = {one, kw, kw1};
    __m128 m = _mm_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0));
    __m128i k = _mm_setzero_si128();
    for (int j = 0; j < 3; j++) {
      const __m128 v = t[j];
      const __m128 u = _mm_and_ps(_mm_or_ps(_mm_cmpgt_ps(v, m), _mm_cmpunord_ps(v, v)),
                                  _mm_cmpord_ps(m, m));
      m = _mm_or_ps(_mm_and_ps(u, v), _mm_andnot_ps(u, m));
      const __m128i ui = _mm_castps_si128(u);
      k = _mm_or_si128(_mm_and_si128(ui, off[j]), _mm_andnot_si128(ui, k));
    }
    _mm_storeu_ps(y + ox, m);
    const __m128i idx = _mm_add_epi32(_mm_add_epi32(k, lane),
                                      _mm_set1_epi32(base + (int32_t)(2 * ox)));
    _mm_storeu_si128((__m128i *)(void *)(a + ox), idx);
  }
  return ox;
}
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(STROP_NO_CLONES)
#  define POOL_AVX512 1
#  include <immintrin.h>

static int use_avx512(void) { return strop__pool_isa == 0 && __builtin_cpu_supports("avx512f"); }

/* A whole row of windows, 16 at a time, with masked loads and stores for the rest (the
 * conv outputs this follows are 14 or 7 windows wide): AVX-512 forward of the 2x2 scan. */
__attribute__((target("avx512f"))) static void maxpool_2x2_row_avx512(const float *r0,
                                                                      const float *r1, float *y,
                                                                      int32_t *a, int64_t ow,
                                                                      int32_t base, int32_t W,
                                                                      int relu) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                         30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512 zero = _mm512_setzero_ps();
  const __m512i off[3] = {_mm512_set1_epi32(1), _mm512_set1_epi32(W), _mm512_set1_epi32(W + 1)};
  for (int64_t ox = 0; ox < ow; ox += 16) {
    const int64_t nv = ow - ox < 16 ? ow - ox : 16, ni = 2 * nv;
    const __mmask16 mo = (__mmask16)((1u << nv) - 1u);
    const __mmask16 ml = (__mmask16)(ni >= 16 ? 0xffffu : (1u << ni) - 1u);
    const __mmask16 mh = (__mmask16)(ni > 16 ? (1u << (ni - 16)) - 1u : 0u);
    __m512 v[4];
    for (int r = 0; r < 2; r++) {
      const float *src = (r ? r1 : r0) + 2 * ox;
      __m512 lo = _mm512_maskz_loadu_ps(ml, src), hi = _mm512_maskz_loadu_ps(mh, src + 16);
      if (relu) {
        lo = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(lo, zero, _CMP_LT_OQ), lo, zero);
        hi = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(hi, zero, _CMP_LT_OQ), hi, zero);
      }
      v[2 * r] = _mm512_permutex2var_ps(lo, even, hi);
      v[2 * r + 1] = _mm512_permutex2var_ps(lo, odd, hi);
    }
    __m512 m = v[0];
    __m512i k = _mm512_setzero_si512();
    for (int j = 0; j < 3; j++) {
      const __m512 t = v[j + 1];
      const __mmask16 u = (__mmask16)((_mm512_cmp_ps_mask(t, m, _CMP_GT_OQ) |
                                       _mm512_cmp_ps_mask(t, t, _CMP_UNORD_Q)) &
                                      _mm512_cmp_ps_mask(m, m, _CMP_ORD_Q));
      m = _mm512_mask_blend_ps(u, m, t);
      k = _mm512_mask_blend_epi32(u, k, off[j]);
    }
    _mm512_mask_storeu_ps(y + ox, mo, m);
    const __m512i idx = _mm512_add_epi32(_mm512_add_epi32(k, even),
                                         _mm512_set1_epi32(base + (int32_t)(2 * ox)));
    _mm512_mask_storeu_epi32(a + ox, mo, idx);
  }
}

/* The backward of one row of windows: each window's gradient (zero where the relu's output,
 * the pooled value, is <= 0) to its winner, zeros to the other three cells. */
__attribute__((target("avx512f"))) static void maxpool_2x2_back_row_avx512(
    const float *g, const int32_t *am, const float *ry, float *r0, float *r1, int64_t ow,
    int32_t base, int32_t W) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                         30);
  const __m512i ilo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i ihi = _mm512_add_epi32(ilo, _mm512_set1_epi32(8));
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t ox = 0; ox < ow; ox += 16) {
    const int64_t nv = ow - ox < 16 ? ow - ox : 16, ni = 2 * nv;
    const __mmask16 mo = (__mmask16)((1u << nv) - 1u);
    const __mmask16 ml = (__mmask16)(ni >= 16 ? 0xffffu : (1u << ni) - 1u);
    const __mmask16 mh = (__mmask16)(ni > 16 ? (1u << (ni - 16)) - 1u : 0u);
    __m512 gv = _mm512_maskz_loadu_ps(mo, g + ox);
    if (ry)
      gv = _mm512_mask_blend_ps(
          _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(mo, ry + ox), zero, _CMP_LE_OQ), gv, zero);
    const __m512i k = _mm512_sub_epi32(
        _mm512_maskz_loadu_epi32(mo, am + ox),
        _mm512_add_epi32(even, _mm512_set1_epi32(base + (int32_t)(2 * ox))));
    const __m512 t0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_setzero_si512()), gv);
    const __m512 t1 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(1)), gv);
    const __m512 t2 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(W)), gv);
    const __m512 t3 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(W + 1)),
                                          gv);
    _mm512_mask_storeu_ps(r0 + 2 * ox, ml, _mm512_permutex2var_ps(t0, ilo, t1));
    _mm512_mask_storeu_ps(r0 + 2 * ox + 16, mh, _mm512_permutex2var_ps(t0, ihi, t1));
    _mm512_mask_storeu_ps(r1 + 2 * ox, ml, _mm512_permutex2var_ps(t2, ilo, t3));
    _mm512_mask_storeu_ps(r1 + 2 * ox + 16, mh, _mm512_permutex2var_ps(t2, ihi, t3));
  }
}
#else
static int use_avx512(void) { return 0; }
#endif

static void maxpool_2x2_forward(const strop__pool2d_dims *d, const float *x, float *y,
                                int32_t *argmax, int relu) {
  const int64_t H = d->h, W = d->w, oh = d->oh, ow = d->ow;
  const int wide = use_avx512();
  for (int64_t pl = 0; pl < d->n * d->c; pl++) {
    const float *xp = x + pl * H * W;
    float *yp = y + pl * oh * ow;
    int32_t *ap = argmax + pl * oh * ow;
    for (int64_t oy = 0; oy < oh; oy++) {
      const float *r0 = xp + 2 * oy * W, *r1 = r0 + W;
      const int32_t base = (int32_t)(2 * oy * W);
      int64_t ox = 0;
#if defined(POOL_AVX512)
      if (wide) {
        maxpool_2x2_row_avx512(r0, r1, yp + oy * ow, ap + oy * ow, ow, base, (int32_t)W, relu);
        continue;
      }
#else
      (void)wide;
#endif
#if defined(__SSE2__)
      if (strop__pool_isa < 2)
        ox = maxpool_2x2_row_sse2(r0, r1, yp + oy * ow, ap + oy * ow, ow, base, (int32_t)W, relu);
#endif
      for (; ox < ow; ox++) {
        float m = relu ? RELU(r0[2 * ox]) : r0[2 * ox];
        int32_t k = 0;
        MAX_TAP(relu ? RELU(r0[2 * ox + 1]) : r0[2 * ox + 1], 1);
        MAX_TAP(relu ? RELU(r1[2 * ox]) : r1[2 * ox], (int32_t)W);
        MAX_TAP(relu ? RELU(r1[2 * ox + 1]) : r1[2 * ox + 1], (int32_t)W + 1);
        yp[oy * ow + ox] = m;
        ap[oy * ow + ox] = base + (int32_t)(2 * ox) + k;
      }
    }
  }
}

/* 1 when the plane holds a NaN (an OR the compiler vectorises). */
STROP__CLONES static int plane_has_nan(const float *x, int64_t n) {
  int nan = 0;
  for (int64_t i = 0; i < n; i++) nan |= x[i] != x[i];
  return nan;
}

/* One plane of an undilated max pool without NaN in its input: per output row, every tap
 * (ki, kj) in scan order swept across the row's outputs — a strided load, a compare and two
 * selects the compiler vectorises — instead of a branchy scalar loop per window. Strict > keeps
 * the first maximum in the window's scan order, as the general loop below does, so the values
 * and the argmax are the same; each argmax starts at the window's first tap, as there. */
STROP__CLONES static void maxpool_plane_swept(const strop__pool2d_dims *d, const float *xp,
                                              float *yp, int32_t *ap, int relu) {
  const int64_t H = d->h, W = d->w, oh = d->oh, ow = d->ow, sw = d->sw, pw = d->pw;
  for (int64_t oy = 0; oy < oh; oy++) {
    const int64_t y0 = oy * d->sh - d->ph;
    int64_t kilo, kihi;
    taps(y0, 1, d->kh, H, &kilo, &kihi);
    float *yr = yp + oy * ow;
    int32_t *ar = ap + oy * ow;
    for (int64_t ox = 0; ox < ow; ox++) {
      const int64_t x0 = ox * sw - pw;
      int64_t kjlo, kjhi;
      taps(x0, 1, d->kw, W, &kjlo, &kjhi);
      yr[ox] = -INFINITY;
      ar[ox] = (int32_t)((y0 + kilo) * W + x0 + kjlo);
    }
    for (int64_t ki = kilo; ki < kihi; ki++) {
      const int64_t rbase = (y0 + ki) * W;
      const float *row = xp + rbase;
      for (int64_t kj = 0; kj < d->kw; kj++) {
        const int64_t off = kj - pw; /* input column ox * sw + off, valid in [0, W) */
        const int64_t lo = off < 0 ? (-off + sw - 1) / sw : 0;
        int64_t hi = W - 1 - off < 0 ? 0 : (W - 1 - off) / sw + 1;
        if (hi > ow) hi = ow;
        for (int64_t ox = lo; ox < hi; ox++) {
          const int64_t c = ox * sw + off;
          const float v = relu ? RELU(row[c]) : row[c];
          const int gt = v > yr[ox];
          yr[ox] = gt ? v : yr[ox];
          ar[ox] = gt ? (int32_t)(rbase + c) : ar[ox];
        }
      }
    }
  }
}

/* A plane's maxima without their winners (argmax NULL: no backward reads them), the indexed
 * paths' values: each tap's relu where asked, the largest of them, NaN when a tap is NaN.
 * Planes without NaN, undilated, of rows up to NOARG_W: per output row the window rows' maxima
 * column by column (contiguous), their relu, then each window's across them; otherwise each
 * tap in turn. */
enum { NOARG_W = 1024 };
STROP__CLONES static void maxpool_plane_noarg(const strop__pool2d_dims *d, const float *xp,
                                              float *yp, int relu) {
  const int64_t H = d->h, W = d->w, oh = d->oh, ow = d->ow, sw = d->sw, pw = d->pw;
  const int rows = d->dh == 1 && d->dw == 1 && W <= NOARG_W && !plane_has_nan(xp, H * W);
  float cm[NOARG_W];
  for (int64_t oy = 0; oy < oh; oy++) {
    const int64_t y0 = oy * d->sh - d->ph;
    int64_t kilo, kihi;
    taps(y0, d->dh, d->kh, H, &kilo, &kihi);
    float *yr = yp + oy * ow;
    if (rows) {
      for (int64_t c = 0; c < W; c++) cm[c] = -INFINITY;
      for (int64_t ki = kilo; ki < kihi; ki++) {
        const float *row = xp + (y0 + ki) * W;
        for (int64_t c = 0; c < W; c++) cm[c] = row[c] > cm[c] ? row[c] : cm[c];
      }
      if (relu)
        for (int64_t c = 0; c < W; c++) cm[c] = RELU(cm[c]);
      for (int64_t ox = 0; ox < ow; ox++) {
        const int64_t x0 = ox * sw - pw;
        int64_t kjlo, kjhi;
        taps(x0, 1, d->kw, W, &kjlo, &kjhi);
        float m = -INFINITY;
        for (int64_t kj = kjlo; kj < kjhi; kj++) m = cm[x0 + kj] > m ? cm[x0 + kj] : m;
        yr[ox] = m;
      }
      continue;
    }
    for (int64_t ox = 0; ox < ow; ox++) yr[ox] = -INFINITY;
    for (int64_t ki = kilo; ki < kihi; ki++) {
      const float *row = xp + (y0 + ki * d->dh) * W;
      for (int64_t kj = 0; kj < d->kw; kj++) {
        const int64_t off = kj * d->dw - pw; /* input column ox * sw + off, valid in [0, W) */
        const int64_t lo = off < 0 ? (-off + sw - 1) / sw : 0;
        int64_t hi = W - 1 - off < 0 ? 0 : (W - 1 - off) / sw + 1;
        if (hi > ow) hi = ow;
        for (int64_t ox = lo; ox < hi; ox++) {
          const float v = relu ? RELU(row[ox * sw + off]) : row[ox * sw + off];
          yr[ox] = v > yr[ox] || v != v ? v : yr[ox];
        }
      }
    }
  }
}

static void maxpool2d_forward_serial(const strop__pool2d_dims *d, const float *x, float *y,
                                     int32_t *argmax, int relu) {
  const int64_t H = d->h, W = d->w, oh = d->oh, ow = d->ow;
  if (!argmax) {
    for (int64_t pl = 0; pl < d->n * d->c; pl++)
      maxpool_plane_noarg(d, x + pl * H * W, y + pl * oh * ow, relu);
    return;
  }
  if (is_2x2(d)) {
    maxpool_2x2_forward(d, x, y, argmax, relu);
    return;
  }
  for (int64_t pl = 0; pl < d->n * d->c; pl++) {
    const float *xp = x + pl * H * W;
    float *yp = y + pl * oh * ow;
    int32_t *ap = argmax + pl * oh * ow;
    if (d->dh == 1 && d->dw == 1 && !plane_has_nan(xp, H * W)) {
      maxpool_plane_swept(d, xp, yp, ap, relu);
      continue;
    }
    for (int64_t oy = 0; oy < oh; oy++) {
      int64_t y0 = oy * d->sh - d->ph, kilo, kihi;
      taps(y0, d->dh, d->kh, H, &kilo, &kihi);
      for (int64_t ox = 0; ox < ow; ox++) {
        int64_t x0 = ox * d->sw - d->pw, kjlo, kjhi;
        taps(x0, d->dw, d->kw, W, &kjlo, &kjhi);
        int64_t best = (y0 + kilo * d->dh) * W + x0 + kjlo * d->dw;
        float m = -INFINITY;
        for (int64_t ki = kilo; ki < kihi; ki++) {
          const int64_t row = (y0 + ki * d->dh) * W + x0;
          for (int64_t kj = kjlo; kj < kjhi; kj++) {
            const int64_t idx = row + kj * d->dw;
            const float v = relu ? RELU(xp[idx]) : xp[idx];
            if (v > m || isnan(v)) {
              m = v;
              best = idx;
              if (isnan(v)) goto done;
            }
          }
        }
      done:
        yp[oy * ow + ox] = m;
        ap[oy * ow + ox] = (int32_t)best;
      }
    }
  }
}

/* A window's gradient as the relu's backward passes it: zero where the relu's output (the
 * pooled value ry) is <= 0, as strop__relu_backward_assign. */
static float masked(const float *dy, const float *ry, int64_t o) {
  const float g = dy[o];
  return ry && ry[o] <= 0.0f ? 0.0f : g;
}

/* ADDS the (masked) window gradients into dx. */
static void maxpool2d_backward_serial(const strop__pool2d_dims *d, const float *dy,
                                      const int32_t *argmax, const float *ry, float *dx) {
  const int64_t HW = d->h * d->w, O = d->oh * d->ow;
  for (int64_t pl = 0; pl < d->n * d->c; pl++) {
    float *dxp = dx + pl * HW;
    const float *dyp = dy + pl * O, *ryp = ry ? ry + pl * O : NULL;
    const int32_t *ap = argmax + pl * O;
    for (int64_t o = 0; o < O; o++) dxp[ap[o]] += masked(dyp, ryp, o);
  }
}

static void maxpool2d_backward_assign_serial(const strop__pool2d_dims *d, const float *dy,
                                             const int32_t *argmax, const float *ry, float *dx) {
  const int64_t H = d->h, W = d->w, HW = H * W, oh = d->oh, ow = d->ow, O = oh * ow;
  if (!is_2x2(d)) {
    memset(dx, 0, sizeof(float) * (size_t)(d->n * d->c * HW));
    maxpool2d_backward_serial(d, dy, argmax, ry, dx);
    return;
  }
  const int wide = use_avx512();
  /* every input cell lies in at most one window: write each window's four cells, and zero the
   * odd row and column that no window covers */
  for (int64_t pl = 0; pl < d->n * d->c; pl++) {
    float *dxp = dx + pl * HW;
    const float *dyp = dy + pl * O, *ryp = ry ? ry + pl * O : NULL;
    const int32_t *ap = argmax + pl * O;
    if (pl + 2 < d->n * d->c) { /* the stored planes come from memory: ask two ahead */
      const char *p0 = (const char *)(dyp + 2 * O), *p1 = (const char *)(ap + 2 * O);
      const char *p2 = ryp ? (const char *)(ryp + 2 * O) : NULL;
      for (int64_t off = 0; off < O * 4; off += 64) {
        __builtin_prefetch(p0 + off);
        __builtin_prefetch(p1 + off);
        if (p2) __builtin_prefetch(p2 + off);
      }
    }
    for (int64_t oy = 0; oy < oh; oy++) {
      float *r0 = dxp + 2 * oy * W, *r1 = r0 + W;
      const int32_t base = (int32_t)(2 * oy * W);
      const float *gp = dyp + oy * ow, *rp = ryp ? ryp + oy * ow : NULL;
      const int32_t *arow = ap + oy * ow;
      int64_t ox = 0;
#if defined(POOL_AVX512)
      if (wide) {
        maxpool_2x2_back_row_avx512(gp, arow, rp, r0, r1, ow, base, (int32_t)W);
        ox = ow;
      }
#else
      (void)wide;
#endif
#if defined(__SSE2__)
      if (strop__pool_isa < 2) {
        const __m128i kw = _mm_set1_epi32((int32_t)W), kw1 = _mm_set1_epi32((int32_t)W + 1);
        const __m128i one = _mm_set1_epi32(1), lane = _mm_setr_epi32(0, 2, 4, 6);
        for (; ox + 4 <= ow; ox += 4) {
          __m128 g = _mm_loadu_ps(gp + ox);
          if (rp) g = _mm_andnot_ps(_mm_cmple_ps(_mm_loadu_ps(rp + ox), _mm_setzero_ps()), g);
          const __m128i k = _mm_sub_epi32(
              _mm_loadu_si128((const __m128i *)(const void *)(arow + ox)),
              _mm_add_epi32(lane, _mm_set1_epi32(base + (int32_t)(2 * ox))));
          const __m128 v0 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(k, _mm_setzero_si128())),
                                       g);
          const __m128 v1 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(k, one)), g);
          const __m128 v2 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(k, kw)), g);
          const __m128 v3 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(k, kw1)), g);
          _mm_storeu_ps(r0 + 2 * ox, _mm_unpacklo_ps(v0, v1));
          _mm_storeu_ps(r0 + 2 * ox + 4, _mm_unpackhi_ps(v0, v1));
          _mm_storeu_ps(r1 + 2 * ox, _mm_unpacklo_ps(v2, v3));
          _mm_storeu_ps(r1 + 2 * ox + 4, _mm_unpackhi_ps(v2, v3));
        }
      }
#endif
      for (; ox < ow; ox++) {
        const float g = masked(gp, rp, ox);
        const int32_t k = arow[ox] - base - (int32_t)(2 * ox);
        r0[2 * ox] = k == 0 ? g : 0.0f;
        r0[2 * ox + 1] = k == 1 ? g : 0.0f;
        r1[2 * ox] = k == W ? g : 0.0f;
        r1[2 * ox + 1] = k == W + 1 ? g : 0.0f;
      }
      if (W > 2 * ow) {
        r0[W - 1] = 0.0f;
        r1[W - 1] = 0.0f;
      }
    }
    if (H > 2 * oh) memset(dxp + (H - 1) * W, 0, sizeof(float) * (size_t)W);
  }
}

/* PyTorch's divisor (without ceil_mode the window never passes the padded edge). */
static float avg_divisor(int64_t ylo, int64_t yhi, int64_t xlo, int64_t xhi,
                         const strop__pool2d_dims *d, int count_include_pad) {
  if (count_include_pad) return (float)(d->kh * d->kw);
  return (float)((yhi - ylo) * (xhi - xlo));
}

static void avgpool2d_forward_serial(const strop__pool2d_dims *d, const float *x, float *y,
                                     int count_include_pad) {
  const int64_t H = d->h, W = d->w, oh = d->oh, ow = d->ow;
  for (int64_t pl = 0; pl < d->n * d->c; pl++) {
    const float *xp = x + pl * H * W;
    float *yp = y + pl * oh * ow;
    for (int64_t oy = 0; oy < oh; oy++) {
      int64_t y0 = oy * d->sh - d->ph, kilo, kihi;
      taps(y0, 1, d->kh, H, &kilo, &kihi);
      for (int64_t ox = 0; ox < ow; ox++) {
        int64_t x0 = ox * d->sw - d->pw, kjlo, kjhi;
        taps(x0, 1, d->kw, W, &kjlo, &kjhi);
        float s = 0.0f;
        for (int64_t iy = y0 + kilo; iy < y0 + kihi; iy++)
          for (int64_t ix = x0 + kjlo; ix < x0 + kjhi; ix++) s += xp[iy * W + ix];
        yp[oy * ow + ox] = s / avg_divisor(kilo, kihi, kjlo, kjhi, d, count_include_pad);
      }
    }
  }
}

static void avgpool2d_backward_serial(const strop__pool2d_dims *d, const float *dy, float *dx,
                                      int count_include_pad) {
  const int64_t H = d->h, W = d->w, oh = d->oh, ow = d->ow;
  for (int64_t pl = 0; pl < d->n * d->c; pl++) {
    float *dxp = dx + pl * H * W;
    const float *dyp = dy + pl * oh * ow;
    for (int64_t oy = 0; oy < oh; oy++) {
      int64_t y0 = oy * d->sh - d->ph, kilo, kihi;
      taps(y0, 1, d->kh, H, &kilo, &kihi);
      for (int64_t ox = 0; ox < ow; ox++) {
        int64_t x0 = ox * d->sw - d->pw, kjlo, kjhi;
        taps(x0, 1, d->kw, W, &kjlo, &kjhi);
        const float g = dyp[oy * ow + ox] /
                        avg_divisor(kilo, kihi, kjlo, kjhi, d, count_include_pad);
        for (int64_t iy = y0 + kilo; iy < y0 + kihi; iy++)
          for (int64_t ix = x0 + kjlo; ix < x0 + kjhi; ix++) dxp[iy * W + ix] += g;
      }
    }
  }
}

void strop__global_avgpool_forward(int64_t n, int64_t c, int64_t hw, const float *x, float *y) {
  for (int64_t i = 0; i < n * c; i++) {
    const float *p = x + i * hw;
    float s = 0.0f;
    for (int64_t j = 0; j < hw; j++) s += p[j];
    y[i] = s / (float)hw;
  }
}

void strop__global_avgpool_backward(int64_t n, int64_t c, int64_t hw, const float *dy,
                                    float *dx) {
  for (int64_t i = 0; i < n * c; i++) {
    float *p = dx + i * hw;
    const float g = dy[i] / (float)hw;
    for (int64_t j = 0; j < hw; j++) p[j] += g;
  }
}

/* ---- adaptive average pooling: output cell (i, j) averages rows [floor(i H / oh),
 *      ceil((i + 1) H / oh)) and the same for columns, as PyTorch's AdaptiveAvgPool2d ---- */

static int64_t adapt_start(int64_t i, int64_t in, int64_t out) { return i * in / out; }
static int64_t adapt_end(int64_t i, int64_t in, int64_t out) {
  return ((i + 1) * in + out - 1) / out;
}

static void adaptive_forward_serial(const strop__pool2d_dims *d, const float *x, float *y) {
  const int64_t H = d->h, W = d->w, OH = d->oh, OW = d->ow;
  for (int64_t p = 0; p < d->n * d->c; p++) {
    const float *xp = x + p * H * W;
    float *yp = y + p * OH * OW;
    for (int64_t i = 0; i < OH; i++) {
      const int64_t y0 = adapt_start(i, H, OH), y1 = adapt_end(i, H, OH);
      for (int64_t j = 0; j < OW; j++) {
        const int64_t x0 = adapt_start(j, W, OW), x1 = adapt_end(j, W, OW);
        float s = 0.0f;
        for (int64_t r = y0; r < y1; r++)
          for (int64_t c = x0; c < x1; c++) s += xp[r * W + c];
        yp[i * OW + j] = s / (float)((y1 - y0) * (x1 - x0));
      }
    }
  }
}

static void adaptive_backward_serial(const strop__pool2d_dims *d, const float *dy, float *dx) {
  const int64_t H = d->h, W = d->w, OH = d->oh, OW = d->ow;
  for (int64_t p = 0; p < d->n * d->c; p++) {
    const float *gp = dy + p * OH * OW;
    float *xp = dx + p * H * W;
    for (int64_t i = 0; i < OH; i++) {
      const int64_t y0 = adapt_start(i, H, OH), y1 = adapt_end(i, H, OH);
      for (int64_t j = 0; j < OW; j++) {
        const int64_t x0 = adapt_start(j, W, OW), x1 = adapt_end(j, W, OW);
        const float g = gp[i * OW + j] / (float)((y1 - y0) * (x1 - x0));
        for (int64_t r = y0; r < y1; r++)
          for (int64_t c = x0; c < x1; c++) xp[r * W + c] += g;
      }
    }
  }
}

/* ---- the public kernels: planes (image, channel) split across threads; each plane's output
 *      depends on that plane alone, so the split changes no bit ---- */

enum {
  POOL_MAX_FWD,
  POOL_MAX_BWD,
  POOL_MAX_BWD_ASSIGN,
  POOL_AVG_FWD,
  POOL_AVG_BWD,
  POOL_ADAPT_FWD,
  POOL_ADAPT_BWD
};

typedef struct pool_job {
  int op, count_include_pad;
  const strop__pool2d_dims *d;
  const float *in;
  float *out;
  int32_t *argmax;
  int relu;        /* max forward: pool relu(in) */
  const float *ry; /* max backward: the relu's mask, from the pooled output; or NULL */
} pool_job;

static void pool_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const pool_job *j = ctx;
  strop__pool2d_dims d = *j->d;
  const int64_t HW = d.h * d.w, O = d.oh * d.ow;
  d.n = 1;
  d.c = hi - lo;
  switch (j->op) {
    case POOL_MAX_FWD:
      maxpool2d_forward_serial(&d, j->in + lo * HW, j->out + lo * O,
                               j->argmax ? j->argmax + lo * O : NULL, j->relu);
      break;
    case POOL_MAX_BWD:
      maxpool2d_backward_serial(&d, j->in + lo * O, j->argmax + lo * O,
                                j->ry ? j->ry + lo * O : NULL, j->out + lo * HW);
      break;
    case POOL_MAX_BWD_ASSIGN:
      maxpool2d_backward_assign_serial(&d, j->in + lo * O, j->argmax + lo * O,
                                       j->ry ? j->ry + lo * O : NULL, j->out + lo * HW);
      break;
    case POOL_AVG_FWD:
      avgpool2d_forward_serial(&d, j->in + lo * HW, j->out + lo * O, j->count_include_pad);
      break;
    case POOL_AVG_BWD:
      avgpool2d_backward_serial(&d, j->in + lo * O, j->out + lo * HW, j->count_include_pad);
      break;
    case POOL_ADAPT_FWD: adaptive_forward_serial(&d, j->in + lo * HW, j->out + lo * O); break;
    default: adaptive_backward_serial(&d, j->in + lo * O, j->out + lo * HW); break;
  }
}

static void pool_run(pool_job *j) {
  const int64_t plane = j->d->h * j->d->w, grain = plane >= 8192 ? 1 : 8192 / (plane ? plane : 1);
  strop__par_for(j->d->n * j->d->c, grain, pool_range, j);
}

void strop__maxpool2d_forward(const strop__pool2d_dims *d, const float *x, float *y,
                              int32_t *argmax) {
  strop__maxpool2d_forward_ex(d, x, y, argmax, 0);
}

void strop__maxpool2d_forward_ex(const strop__pool2d_dims *d, const float *x, float *y,
                                 int32_t *argmax, int relu) {
  pool_job j = {POOL_MAX_FWD, 0, d, x, y, argmax, relu, NULL};
  pool_run(&j);
}

void strop__maxpool2d_backward(const strop__pool2d_dims *d, const float *dy,
                               const int32_t *argmax, float *dx) {
  pool_job j = {POOL_MAX_BWD, 0, d, dy, dx, (int32_t *)argmax, 0, NULL};
  pool_run(&j);
}

void strop__maxpool2d_backward_assign(const strop__pool2d_dims *d, const float *dy,
                                      const int32_t *argmax, float *dx) {
  strop__maxpool2d_backward_assign_ex(d, dy, argmax, NULL, dx);
}

void strop__maxpool2d_backward_assign_ex(const strop__pool2d_dims *d, const float *dy,
                                         const int32_t *argmax, const float *relu_y, float *dx) {
  pool_job j = {POOL_MAX_BWD_ASSIGN, 0, d, dy, dx, (int32_t *)argmax, 0, relu_y};
  pool_run(&j);
}

void strop__avgpool2d_forward(const strop__pool2d_dims *d, const float *x, float *y,
                              int count_include_pad) {
  pool_job j = {POOL_AVG_FWD, count_include_pad, d, x, y, NULL, 0, NULL};
  pool_run(&j);
}

void strop__avgpool2d_backward(const strop__pool2d_dims *d, const float *dy, float *dx,
                               int count_include_pad) {
  pool_job j = {POOL_AVG_BWD, count_include_pad, d, dy, dx, NULL, 0, NULL};
  pool_run(&j);
}

void strop__adaptive_avgpool2d_forward(const strop__pool2d_dims *d, const float *x, float *y) {
  pool_job j = {POOL_ADAPT_FWD, 0, d, x, y, NULL, 0, NULL};
  pool_run(&j);
}

void strop__adaptive_avgpool2d_backward(const strop__pool2d_dims *d, const float *dy, float *dx) {
  pool_job j = {POOL_ADAPT_BWD, 0, d, dy, dx, NULL, 0, NULL};
  pool_run(&j);
}
