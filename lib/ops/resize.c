/* SPDX-License-Identifier: MIT */
/* strop — image resizing kernels: bilinear (PyTorch 1.13's CPU arithmetic, align_corners=False)
 * and nearest. Used by the data pipeline's resize transform; layers may use them too. */
#include "ops/resize.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

void strop__resize_bilinear(const float *src, int64_t c, int64_t ih, int64_t iw, float *dst,
                            int64_t oh, int64_t ow) {
  /* PyTorch (1.13, CPU) align_corners=False: src = max(scale * (d + 0.5) - 0.5, 0) in float,
   * index = min(floor(src), in - 1), lambda = clamp(src - index, 0, 1); the row blend is
   * computed first, then the column blend. */
  float sh = (float)ih / (float)oh, sw = (float)iw / (float)ow;
  for (int64_t y = 0; y < oh; y++) {
    float ry = sh * ((float)y + 0.5f) - 0.5f;
    if (ry < 0) ry = 0;
    int64_t y0 = (int64_t)floorf(ry);
    if (y0 > ih - 1) y0 = ih - 1;
    float ly = ry - (float)y0;
    ly = ly < 0 ? 0 : (ly > 1 ? 1 : ly);
    int64_t y1 = y0 + (y0 < ih - 1 ? 1 : 0);
    float hy0 = 1.0f - ly, hy1 = ly;
    for (int64_t x = 0; x < ow; x++) {
      float rx = sw * ((float)x + 0.5f) - 0.5f;
      if (rx < 0) rx = 0;
      int64_t x0 = (int64_t)floorf(rx);
      if (x0 > iw - 1) x0 = iw - 1;
      float lx = rx - (float)x0;
      lx = lx < 0 ? 0 : (lx > 1 ? 1 : lx);
      int64_t x1 = x0 + (x0 < iw - 1 ? 1 : 0);
      float wx0 = 1.0f - lx, wx1 = lx;
      for (int64_t k = 0; k < c; k++) {
        const float *p = src + (size_t)k * (size_t)(ih * iw);
        float t0 = p[y0 * iw + x0] * wx0 + p[y0 * iw + x1] * wx1;
        float t1 = p[y1 * iw + x0] * wx0 + p[y1 * iw + x1] * wx1;
        dst[(size_t)k * (size_t)(oh * ow) + (size_t)(y * ow + x)] = t0 * hy0 + t1 * hy1;
      }
    }
  }
}

static int64_t nearest_idx(int64_t o, int64_t in, int64_t out) {
  if (out == in) return o;
  if (out == 2 * in) return o >> 1;
  float scale = (float)in / (float)out;
  int64_t i = (int64_t)((float)o * scale);
  return i < in - 1 ? i : in - 1;
}

void strop__resize_nearest(const float *src, int64_t c, int64_t ih, int64_t iw, float *dst,
                           int64_t oh, int64_t ow) {
  for (int64_t k = 0; k < c; k++)
    for (int64_t y = 0; y < oh; y++) {
      int64_t sy = nearest_idx(y, ih, oh);
      for (int64_t x = 0; x < ow; x++)
        dst[(size_t)((k * oh + y) * ow + x)] =
            src[(size_t)((k * ih + sy) * iw + nearest_idx(x, iw, ow))];
    }
}

/* ------------------------------------------------------------- antialiased bilinear ---- */

/* Taps per output of one axis resized from in to out. */
static int64_t aa_taps(int64_t in, int64_t out) {
  float scale = (float)in / (float)out;
  float support = scale >= 1.0f ? (float)(1.0 * scale) : 1.0f;
  return (int64_t)ceilf(support) * 2 + 1;
}

/* ATen's _compute_weights_aa for the bilinear filter, in float as ATen's scalar_t, with its
 * double-precision intermediate steps (i + 0.5 and the +0.5 offsets are doubles in C++). */
static void aa_weights(int64_t in, int64_t out, int64_t o0, int64_t n, int64_t taps,
                       int32_t *xmin, int32_t *xsize, float *w) {
  float scale = (float)in / (float)out;
  float support = scale >= 1.0f ? (float)(1.0 * scale) : 1.0f;
  float invscale = scale >= 1.0f ? (float)(1.0 / scale) : 1.0f;
  for (int64_t k = 0; k < n; k++) {
    int64_t i = o0 + k;
    float center = (float)((double)scale * ((double)i + 0.5));
    int64_t lo = (int64_t)((double)(center - support) + 0.5);
    if (lo < 0) lo = 0;
    int64_t hi = (int64_t)((double)(center + support) + 0.5);
    if (hi > in) hi = in;
    int64_t size = hi - lo;
    if (size > taps) size = taps;
    float *wk = w + k * taps, total = 0.0f;
    for (int64_t j = 0; j < size; j++) {
      float x = (float)(((double)((float)(j + lo) - center) + 0.5) * (double)invscale);
      if (x < 0.0f) x = -x;
      float v = x < 1.0f ? (float)(1.0 - (double)x) : 0.0f;
      wk[j] = v;
      total += v;
    }
    for (int64_t j = 0; j < size; j++)
      if (total != 0.0f) wk[j] /= total;
    xmin[k] = (int32_t)lo;
    xsize[k] = (int32_t)(size > 0 ? size : 0);
  }
}

size_t strop__resize_aa_work(const strop__resize_aa_args *a) {
  /* rows of the horizontal pass (all the region's rows the window needs, at most ih) x ww,
   * then weights and indices of both axes */
  size_t tmp = (size_t)a->c * (size_t)a->ih * (size_t)a->ww;
  size_t wx = (size_t)a->ww * (size_t)(aa_taps(a->iw, a->ow) + 2);
  size_t wy = (size_t)a->wh * (size_t)(aa_taps(a->ih, a->oh) + 2);
  return tmp + wx + wy;
}

void strop__resize_bilinear_aa(const float *src, const strop__resize_aa_args *a, float *dst,
                               float *work) {
  int64_t c = a->c, ih = a->ih, iw = a->iw, ww = a->ww, wh = a->wh;
  size_t splane = (size_t)(a->src_h * a->src_w);
  int same_w = iw == a->ow, same_h = ih == a->oh;
  int64_t tx = aa_taps(iw, a->ow), ty = aa_taps(ih, a->oh);
  float *tmp = work;
  float *wx = tmp + (size_t)c * (size_t)ih * (size_t)ww;
  int32_t *xmin = (int32_t *)(wx + (size_t)ww * (size_t)tx), *xsz = xmin + ww;
  float *wy = (float *)(xsz + ww);
  int32_t *ymin = (int32_t *)(wy + (size_t)wh * (size_t)ty), *ysz = ymin + wh;
  if (!same_h) aa_weights(ih, a->oh, a->oy, wh, ty, ymin, ysz, wy);
  /* the region's rows the vertical pass reads */
  int64_t r0 = same_h ? a->oy : ymin[0], r1 = same_h ? a->oy + wh : 0;
  for (int64_t k = 0; !same_h && k < wh; k++)
    if (ymin[k] + ysz[k] > r1) r1 = ymin[k] + ysz[k];
  /* horizontal pass: tmp[c][r][x] for r in [r0, r1), the window's columns */
  if (!same_w) aa_weights(iw, a->ow, a->ox, ww, tx, xmin, xsz, wx);
  for (int64_t k = 0; k < c; k++)
    for (int64_t r = r0; r < r1; r++) {
      const float *s = src + (size_t)k * splane + (size_t)(a->iy + r) * (size_t)a->src_w +
                       (size_t)a->ix;
      float *t = tmp + ((size_t)k * (size_t)ih + (size_t)r) * (size_t)ww;
      if (same_w) {
        memcpy(t, s + a->ox, (size_t)ww * sizeof(float));
        continue;
      }
      for (int64_t x = 0; x < ww; x++) {
        const float *p = s + xmin[x], *w = wx + x * tx;
        float acc = p[0] * w[0];
        for (int32_t j = 1; j < xsz[x]; j++) acc += p[j] * w[j];
        t[x] = acc;
      }
    }
  /* vertical pass */
  for (int64_t k = 0; k < c; k++)
    for (int64_t y = 0; y < wh; y++) {
      float *d = dst + ((size_t)k * (size_t)wh + (size_t)y) * (size_t)ww;
      const float *t = tmp + (size_t)k * (size_t)ih * (size_t)ww;
      if (same_h) {
        memcpy(d, t + (size_t)(a->oy + y) * (size_t)ww, (size_t)ww * sizeof(float));
        continue;
      }
      const float *w = wy + y * ty;
      const float *t0 = t + (size_t)ymin[y] * (size_t)ww;
      for (int64_t x = 0; x < ww; x++) d[x] = t0[x] * w[0];
      for (int32_t j = 1; j < ysz[y]; j++) {
        const float *tj = t0 + (size_t)j * (size_t)ww;
        float wj = w[j];
        for (int64_t x = 0; x < ww; x++) d[x] += tj[x] * wj;
      }
    }
}
