/* SPDX-License-Identifier: MIT */
/* strop — rotary position embeddings (Llama's rotate_half convention) on one head's rows as a
 * kernel loads them: small inline helpers that the attention kernels (the training core, tiled
 * and materialised, and generation's cached path) call on the rows they are about to read, so
 * no rotated copy of q or k is made or kept. Inlined into the (cloned) kernels, they get their
 * vector width. Private to lib/ops and lib/layers. */
#ifndef STROP_OPS_ROPE_H
#define STROP_OPS_ROPE_H

#include <stdint.h>

/* One head's vector of head_dim values at one position, whose table row is cr, sr (rot / 2
 * values each, strop__rope_tables): the first rot values rotate in halves, (x1, x2) -> (x1 cos
 * - x2 sin, x2 cos + x1 sin), the rest are copied; inverse = 1 rotates by minus the angle (R^T:
 * the rotation is orthogonal, so a gradient goes back through it so). add = 1 adds into y (a
 * gradient), 0 writes y. x and y do not overlap. */
static inline __attribute__((always_inline)) void strop__rope_vec(const float *x, float *y,
                                                                  int64_t head_dim, int64_t rot,
                                                                  const float *cr,
                                                                  const float *sr, int inverse,
                                                                  int add) {
  const int64_t half = rot / 2;
  const float sg = inverse ? -1.0f : 1.0f;
  if (add) {
    for (int64_t i = 0; i < half; i++) {
      const float x1 = x[i], x2 = x[i + half], c = cr[i], sn = sg * sr[i];
      y[i] += x1 * c - x2 * sn;
      y[i + half] += x2 * c + x1 * sn;
    }
    for (int64_t i = rot; i < head_dim; i++) y[i] += x[i];
  } else {
    for (int64_t i = 0; i < half; i++) {
      const float x1 = x[i], x2 = x[i + half], c = cr[i], sn = sg * sr[i];
      y[i] = x1 * c - x2 * sn;
      y[i + half] = x2 * c + x1 * sn;
    }
    for (int64_t i = rot; i < head_dim; i++) y[i] = x[i];
  }
}

/* `rows` consecutive positions of one head: row r of x (stride ldx) into row r of y (stride
 * ldy) with table row r of cos_t, sin_t ([rows, rot / 2] from the first row's position on). */
static inline __attribute__((always_inline)) void strop__rope_rows(
    const float *x, int64_t ldx, float *y, int64_t ldy, int64_t rows, int64_t head_dim,
    int64_t rot, const float *cos_t, const float *sin_t, int inverse, int add) {
  const int64_t half = rot / 2;
  for (int64_t r = 0; r < rows; r++)
    strop__rope_vec(x + r * ldx, y + r * ldy, head_dim, rot, cos_t + r * half, sin_t + r * half,
                    inverse, add);
}

#endif
