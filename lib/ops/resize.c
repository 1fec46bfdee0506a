/* strop — image resizing kernels: bilinear (PyTorch 1.13's CPU arithmetic, align_corners=False)
 * and nearest. Used by the data pipeline's resize transform; layers may use them too. */
#include "ops/resize.h"

#include <math.h>
#include <stddef.h>

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
