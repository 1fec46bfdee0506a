/* strop — pooling kernels (see pool.h): max pooling keeps the winners' positions for the
 * backward; average pooling follows PyTorch's divisor rules. */
#include "ops/pool.h"

#include <math.h>

/* Kernel taps k in [lo, hi) whose input index start + k * dil falls in [0, in). */
static void taps(int64_t start, int64_t dil, int64_t k, int64_t in, int64_t *lo, int64_t *hi) {
  int64_t l = start >= 0 ? 0 : (-start + dil - 1) / dil;
  int64_t h = in - start <= 0 ? 0 : (in - start + dil - 1) / dil;
  if (h > k) h = k;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

void strop__maxpool2d_forward(const strop__pool2d_dims *d, const float *x, float *y,
                              int32_t *argmax) {
  const int64_t H = d->h, W = d->w, oh = d->oh, ow = d->ow;
  for (int64_t pl = 0; pl < d->n * d->c; pl++) {
    const float *xp = x + pl * H * W;
    float *yp = y + pl * oh * ow;
    int32_t *ap = argmax + pl * oh * ow;
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
            const float v = xp[idx];
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

void strop__maxpool2d_backward(const strop__pool2d_dims *d, const float *dy,
                               const int32_t *argmax, float *dx) {
  const int64_t HW = d->h * d->w, O = d->oh * d->ow;
  for (int64_t pl = 0; pl < d->n * d->c; pl++) {
    float *dxp = dx + pl * HW;
    const float *dyp = dy + pl * O;
    const int32_t *ap = argmax + pl * O;
    for (int64_t o = 0; o < O; o++) dxp[ap[o]] += dyp[o];
  }
}

/* PyTorch's divisor (without ceil_mode the window never passes the padded edge). */
static float avg_divisor(int64_t ylo, int64_t yhi, int64_t xlo, int64_t xhi,
                         const strop__pool2d_dims *d, int count_include_pad) {
  if (count_include_pad) return (float)(d->kh * d->kw);
  return (float)((yhi - ylo) * (xhi - xlo));
}

void strop__avgpool2d_forward(const strop__pool2d_dims *d, const float *x, float *y,
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

void strop__avgpool2d_backward(const strop__pool2d_dims *d, const float *dy, float *dx,
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
        const float g =
            dyp[oy * ow + ox] / avg_divisor(kilo, kihi, kjlo, kjhi, d, count_include_pad);
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
