/* SPDX-License-Identifier: MIT */
/* strop — the transforms of Winograd's minimal filtering F(m x m, 3 x 3) (Lavin & Gray, "Fast
 * Algorithms for Convolutional Neural Networks", 2016), m = 2 or 4: a 3x3 stride-1 convolution
 * becomes (m + 2)^2 independent GEMMs between transformed filters and transformed input tiles,
 * (m + 2)^2 / (9 m^2) of the multiplies of the direct form. The weight gradient, a correlation
 * of the input with dy, is the same trilinear form read another way: F(3 x 3, m x m) with the
 * forward's B, and A and G in each other's place. Each 2-D transform is two passes of a 1-D one; every pass runs over a whole row of tiles with unit-stride stores on one side, so
 * the loops vectorise. */
#include "ops/winograd.h"

#include <string.h>

#include "ops/ops.h"

int64_t strop__winograd_tiles(const strop__conv2d_dims *d, int m) {
  return ((d->oh + m - 1) / m) * ((d->ow + m - 1) / m);
}

/* G of F(m, 3) (rows: the m + 2 transformed taps), double so a filter is rounded once. */
static const double G4[6][3] = {{1.0 / 4, 0, 0},
                                {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                {0, 0, 1}};
static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};

/* Input channels per pass of the filter transform: the loops run across them. */
enum { FB = 32 };

void strop__winograd_filter(const strop__conv2d_dims *d, int m, const float *w, int flip,
                            float *u, int64_t o_lo, int64_t o_hi) {
  strop__winograd_filter_row(d, m, w, flip, -1, u, o_lo, o_hi);
}

STROP__CLONES void strop__winograd_filter_row(const strop__conv2d_dims *d, int m, const float *w,
                                              int flip, int row, float *u, int64_t o_lo,
                                              int64_t o_hi) {
  const int a = m + 2, i0 = row < 0 ? 0 : row, i1 = row < 0 ? a : row + 1;
  const double(*g)[3] = m == 4 ? G4 : G2;
  const int64_t CO = d->c_out, CI = d->c_in;
  double f[9][FB], t[6][3][FB];
  for (int64_t o = o_lo; o < o_hi; o++)
    for (int64_t c0 = 0; c0 < CI; c0 += FB) {
      const int64_t nc = CI - c0 < FB ? CI - c0 : FB;
      for (int64_t c = 0; c < nc; c++) {
        const float *src = flip ? w + ((c0 + c) * CO + o) * 9 : w + (o * CI + c0 + c) * 9;
        for (int q = 0; q < 9; q++) f[q][c] = flip ? src[8 - q] : src[q];
      }
      for (int i = i0; i < i1; i++) /* t = G f */
        for (int s = 0; s < 3; s++)
          for (int64_t c = 0; c < nc; c++)
            t[i][s][c] = g[i][0] * f[s][c] + g[i][1] * f[3 + s][c] + g[i][2] * f[6 + s][c];
      for (int i = i0; i < i1; i++) /* u = t G^T */
        for (int j = 0; j < a; j++) {
          float *uo = u + ((int64_t)((i - i0) * a + j) * CO + o) * CI + c0;
          for (int64_t c = 0; c < nc; c++)
            uo[c] = (float)(t[i][0][c] * g[j][0] + t[i][1][c] * g[j][1] + t[i][2][c] * g[j][2]);
        }
    }
}

/* o[j * os + it * ostep] = (B^T s)_j for the items it < n, whose taps are s[it * step + l * tap].
 * Inlined with constant steps so each call site vectorises on its own. */
static inline __attribute__((always_inline)) void bt(int m, const float *restrict s, int64_t tap,
                                                     int64_t step, int64_t n, float *restrict o,
                                                     int64_t os, int64_t ostep) {
  if (m == 4) {
    for (int64_t it = 0; it < n; it++) {
      const float *p = s + it * step;
      const float s0 = p[0], s1 = p[tap], s2 = p[2 * tap], s3 = p[3 * tap], s4 = p[4 * tap],
                  s5 = p[5 * tap];
      float *q = o + it * ostep;
      q[0] = 4.0f * s0 - 5.0f * s2 + s4;
      q[os] = s3 + s4 - 4.0f * (s1 + s2);
      q[2 * os] = s4 - s3 + 4.0f * (s1 - s2);
      q[3 * os] = s4 - s2 + 2.0f * (s3 - s1);
      q[4 * os] = s4 - s2 - 2.0f * (s3 - s1);
      q[5 * os] = 4.0f * s1 - 5.0f * s3 + s5;
    }
  } else {
    for (int64_t it = 0; it < n; it++) {
      const float *p = s + it * step;
      const float s0 = p[0], s1 = p[tap], s2 = p[2 * tap], s3 = p[3 * tap];
      float *q = o + it * ostep;
      q[0] = s0 - s2;
      q[os] = s1 + s2;
      q[2 * os] = s2 - s1;
      q[3 * os] = s1 - s3;
    }
  }
}

/* The same with A^T: m outputs from m + 2 taps. */
static inline __attribute__((always_inline)) void at(int m, const float *restrict s, int64_t tap,
                                                     int64_t step, int64_t n, float *restrict o,
                                                     int64_t os, int64_t ostep) {
  if (m == 4) {
    for (int64_t it = 0; it < n; it++) {
      const float *p = s + it * step;
      const float s0 = p[0], s1 = p[tap], s2 = p[2 * tap], s3 = p[3 * tap], s4 = p[4 * tap],
                  s5 = p[5 * tap];
      const float a = s1 + s2, b = s1 - s2, c = s3 + s4, e = s3 - s4;
      float *q = o + it * ostep;
      q[0] = s0 + a + c;
      q[os] = b + 2.0f * e;
      q[2 * os] = a + 4.0f * c;
      q[3 * os] = b + 8.0f * e + s5;
    }
  } else {
    for (int64_t it = 0; it < n; it++) {
      const float *p = s + it * step;
      const float s0 = p[0], s1 = p[tap], s2 = p[2 * tap], s3 = p[3 * tap];
      float *q = o + it * ostep;
      q[0] = s0 + s1 + s2;
      q[os] = s1 - s2 - s3;
    }
  }
}

/* The same with A: m + 2 transformed taps from m taps (a tile of dy in the weight gradient).
 * F(3, m) needs sum_k h[k] d[k + u] (u < 3) for the m taps h of dy; the forward's F(m, 3)
 * computes sum_i p[i] y[i] = sum_xi (A p)_xi (G g)_xi (B^T d)_xi for any p, g, d, which read
 * with p = h and g = e_u is that sum: out = G^T [(A h) . (B^T d)]. */
static inline __attribute__((always_inline)) void ag(int m, const float *restrict s, int64_t tap,
                                                     int64_t step, int64_t n, float *restrict o,
                                                     int64_t os, int64_t ostep) {
  if (m == 4) {
    for (int64_t it = 0; it < n; it++) {
      const float *p = s + it * step;
      const float s0 = p[0], s1 = p[tap], s2 = p[2 * tap], s3 = p[3 * tap];
      const float e = s0 + s2, f = s1 + s3, e4 = s0 + 4.0f * s2, f4 = 2.0f * s1 + 8.0f * s3;
      float *q = o + it * ostep;
      q[0] = s0;
      q[os] = e + f;
      q[2 * os] = e - f;
      q[3 * os] = e4 + f4;
      q[4 * os] = e4 - f4;
      q[5 * os] = s3;
    }
  } else {
    for (int64_t it = 0; it < n; it++) {
      const float *p = s + it * step;
      const float s0 = p[0], s1 = p[tap];
      float *q = o + it * ostep;
      q[0] = s0;
      q[os] = s0 + s1;
      q[2 * os] = s0 - s1;
      q[3 * os] = -s1;
    }
  }
}

/* The same with G^T: 3 outputs from m + 2 taps (the weight gradient's products back to 3x3):
 * G's columns, with its 1/4, 1/6, 1/12 and 1/24 scaled in float. */
static inline __attribute__((always_inline)) void gt(int m, const float *restrict s, int64_t tap,
                                                     int64_t step, int64_t n, float *restrict o,
                                                     int64_t os, int64_t ostep) {
  if (m == 4) {
    for (int64_t it = 0; it < n; it++) {
      const float *p = s + it * step;
      const float s0 = p[0], s1 = p[tap], s2 = p[2 * tap], s3 = p[3 * tap], s4 = p[4 * tap],
                  s5 = p[5 * tap];
      const float a = s1 + s2, b = s1 - s2, c = s3 + s4, e = s3 - s4;
      float *q = o + it * ostep;
      q[0] = 0.25f * s0 - a * (1.0f / 6) + c * (1.0f / 24);
      q[os] = e * (1.0f / 12) - b * (1.0f / 6);
      q[2 * os] = (c - a) * (1.0f / 6) + s5;
    }
  } else {
    for (int64_t it = 0; it < n; it++) {
      const float *p = s + it * step;
      const float s0 = p[0], s1 = p[tap], s2 = p[2 * tap], s3 = p[3 * tap];
      float *q = o + it * ostep;
      q[0] = s0 + 0.5f * (s1 + s2);
      q[os] = 0.5f * (s1 - s2);
      q[2 * os] = 0.5f * (s1 + s2) + s3;
    }
  }
}

/* A row of tiles spans this many input columns (the padded width the transforms run over). */
static int64_t row_width(const strop__conv2d_dims *d, int m) {
  return ((d->ow + m - 1) / m) * m + 2;
}

size_t strop__winograd_work_floats(const strop__conv2d_dims *d, int m) {
  const int64_t wp = (row_width(d, m) + 15) / 16 * 16;
  return (size_t)(3 * (m + 2) * wp);
}

void strop__winograd_input(const strop__conv2d_dims *d, int m, const float *x, float *v,
                           int64_t ld, int64_t ps, int64_t t0, float *work) {
  strop__winograd_input_rows(d, m, x, v, ld, ps, t0, 0, (d->oh + m - 1) / m, work);
}

STROP__CLONES void strop__winograd_input_rows(const strop__conv2d_dims *d, int m, const float *x,
                                              float *v, int64_t ld, int64_t ps, int64_t t0,
                                              int64_t ty0, int64_t ty1, float *work) {
  const int a = m + 2;
  const int64_t H = d->h, W = d->w, CI = d->c_in;
  const int64_t tx_n = (d->ow + m - 1) / m, wp = (row_width(d, m) + 15) / 16 * 16;
  const int64_t wr = row_width(d, m);
  float *rows = work, *t = work + a * wp;
  for (int64_t c = 0; c < CI; c++) {
    const float *xc = x + c * H * W;
    for (int64_t ty = ty0; ty < ty1; ty++) {
      /* the patch rows, zero-padded: column X is input column X - pw */
      for (int l = 0; l < a; l++) {
        float *r = rows + l * wp;
        const int64_t y = ty * m - d->ph + l;
        /* columns [x0, x1) hold input columns x0 - pw .., the rest are zero */
        const int64_t x0 = d->pw < wr ? d->pw : wr;
        const int64_t x1 = y < 0 || y >= H ? x0 : d->pw + W < wr ? d->pw + W : wr;
        for (int64_t X = 0; X < x0; X++) r[X] = 0.0f;
        if (x1 > x0) memcpy(r + x0, xc + y * W, sizeof(float) * (size_t)(x1 - x0));
        for (int64_t X = x1 > x0 ? x1 : x0; X < wr; X++) r[X] = 0.0f;
      }
      bt(m, rows, wp, 1, wr, t, wp, 1); /* down the columns */
      float *vt = v + c * ld + t0 + (ty - ty0) * tx_n;
      for (int i = 0; i < a; i++) /* across each row: tile tx's taps start at column tx m */
        bt(m, t + i * wp, 1, m, tx_n, vt + (int64_t)i * a * ps, ps, 1);
    }
  }
}

void strop__winograd_output(const strop__conv2d_dims *d, int m, const float *mm, int64_t ld,
                            int64_t ps, int64_t t0, const float *b, float *y, int add,
                            float *work) {
  strop__winograd_output_rows(d, m, mm, ld, ps, t0, 0, (d->oh + m - 1) / m, b, y, add, work);
}

STROP__CLONES void strop__winograd_output_rows(const strop__conv2d_dims *d, int m,
                                               const float *mm, int64_t ld, int64_t ps,
                                               int64_t t0, int64_t ty0, int64_t ty1,
                                               const float *b, float *y, int add, float *work) {
  const int a = m + 2;
  const int64_t OH = d->oh, OW = d->ow, CO = d->c_out;
  const int64_t tx_n = (OW + m - 1) / m, wp = (row_width(d, m) + 15) / 16 * 16;
  float *t = work, *r = work + a * wp;
  for (int64_t o = 0; o < CO; o++) {
    const float bias = b ? b[o] : 0.0f;
    float *yo = y + o * OH * OW;
    for (int64_t ty = ty0; ty < ty1; ty++) {
      const float *mt = mm + o * ld + t0 + (ty - ty0) * tx_n;
      for (int i = 0; i < a; i++) /* across: tile tx fills columns tx m .. tx m + m - 1 */
        at(m, mt + (int64_t)i * a * ps, ps, 1, tx_n, t + i * wp, 1, m);
      at(m, t, wp, 1, OW, r, wp, 1); /* down */
      for (int64_t i = 0; i < m && ty * m + i < OH; i++) {
        float *restrict yr = yo + (ty * m + i) * OW;
        const float *restrict ri = r + i * wp;
        if (add)
          for (int64_t X = 0; X < OW; X++) yr[X] += ri[X] + bias;
        else
          for (int64_t X = 0; X < OW; X++) yr[X] = ri[X] + bias;
      }
    }
  }
}

STROP__CLONES void strop__winograd_dy(const strop__conv2d_dims *d, int m, const float *dy,
                                      float *v, int64_t ld, int64_t ps, int64_t t0, float *work) {
  const int a = m + 2;
  const int64_t OH = d->oh, OW = d->ow, CO = d->c_out, ty_n = (OH + m - 1) / m;
  const int64_t tx_n = (OW + m - 1) / m, wp = (row_width(d, m) + 15) / 16 * 16, wr = tx_n * m;
  float *rows = work, *t = work + m * wp;
  for (int64_t o = 0; o < CO; o++) {
    const float *g = dy + o * OH * OW;
    for (int64_t ty = 0; ty < ty_n; ty++) {
      for (int l = 0; l < m; l++) { /* the tile row's dy rows, zero past the edges */
        float *r = rows + l * wp;
        const int64_t y = ty * m + l;
        const int64_t x1 = y < OH ? OW : 0;
        if (x1) memcpy(r, g + y * OW, sizeof(float) * (size_t)OW);
        for (int64_t X = x1; X < wr; X++) r[X] = 0.0f;
      }
      ag(m, rows, wp, 1, wr, t, wp, 1); /* down the columns */
      float *vt = v + o * ld + t0 + ty * tx_n;
      for (int i = 0; i < a; i++) /* across each row: tile tx's taps start at column tx m */
        ag(m, t + i * wp, 1, m, tx_n, vt + (int64_t)i * a * ps, ps, 1);
    }
  }
}

STROP__CLONES void strop__winograd_filter_grad(const strop__conv2d_dims *d, int m,
                                               const float *mm, int64_t ps, float *dw,
                                               int64_t o_lo, int64_t o_hi) {
  const int a = m + 2;
  const int64_t CI = d->c_in;
  float t[3 * 6 * FB], r[3 * FB];
  for (int64_t o = o_lo; o < o_hi; o++)
    for (int64_t c0 = 0; c0 < CI; c0 += FB) {
      const int64_t nc = CI - c0 < FB ? CI - c0 : FB;
      /* t[u][j][c] = (G^T M)_uj, down the columns: column j's taps are M_(i a + j) */
      for (int j = 0; j < a; j++)
        gt(m, mm + (int64_t)j * ps + o * CI + c0, (int64_t)a * ps, 1, nc, t + j * FB,
           (int64_t)a * FB, 1);
      for (int u = 0; u < 3; u++) { /* (t G)_uv across, added into dW[o, c, u, v] */
        gt(m, t + u * a * FB, FB, 1, nc, r, FB, 1);
        float *k = dw + (o * CI + c0) * 9 + u * 3;
        for (int64_t c = 0; c < nc; c++)
          for (int v = 0; v < 3; v++) k[c * 9 + v] += r[v * FB + c];
      }
    }
}
