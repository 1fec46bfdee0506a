/* SPDX-License-Identifier: MIT */
/* strop — LoRA kernels (see lora.h): two thin GEMMs forward, three backward, one to merge.
 * The rank is small, so the adapter costs O(m * r * (in + out)) next to the base GEMM. */
#include "ops/lora.h"

#include "ops/ops.h"

void strop__lora_forward(const float *h, const float *a, const float *b, float *t, float *y,
                         int64_t m, int64_t in, int64_t r, int64_t out, float scale) {
  strop__sgemm(0, 1, m, r, in, 1.0f, h, in, a, in, 0.0f, t, r);
  strop__sgemm(0, 1, m, out, r, scale, t, r, b, r, 1.0f, y, out);
}

void strop__lora_backward(const float *h, const float *a, const float *b, const float *t,
                          const float *dy, float *dt, float *dh, float *da, float *db, int64_t m,
                          int64_t in, int64_t r, int64_t out, float scale) {
  if (db) strop__sgemm(1, 0, out, r, m, scale, dy, out, t, r, 1.0f, db, r);
  if (!da && !dh) return;
  strop__sgemm(0, 0, m, r, out, scale, dy, out, b, r, 0.0f, dt, r);
  if (da) strop__sgemm(1, 0, r, in, m, 1.0f, dt, r, h, in, 1.0f, da, in);
  if (dh) strop__sgemm(0, 0, m, in, r, 1.0f, dt, r, a, in, 1.0f, dh, in);
}

void strop__lora_embedding_forward(const float *ids, const float *a, const float *b, float *t,
                                   float *y, int64_t m, int64_t v, int64_t r, int64_t d,
                                   float scale) {
  /* one-hot rows times A^T: a gather of A's columns */
  for (int64_t i = 0; i < m; i++) {
    const int64_t id = (int64_t)ids[i];
    for (int64_t k = 0; k < r; k++) t[i * r + k] = a[k * v + id];
  }
  strop__sgemm(0, 1, m, d, r, scale, t, r, b, r, 1.0f, y, d);
}

void strop__lora_embedding_backward(const float *ids, const float *b, const float *t,
                                    const float *dy, float *dt, float *da, float *db, int64_t m,
                                    int64_t v, int64_t r, int64_t d, float scale, int64_t skip) {
  if (db) strop__sgemm(1, 0, d, r, m, scale, dy, d, t, r, 1.0f, db, r);
  if (!da || !dt) return;
  strop__sgemm(0, 0, m, r, d, scale, dy, d, b, r, 0.0f, dt, r);
  /* dA = dt^T onehot(ids): a scatter into the columns of the ids seen, in row order */
  for (int64_t i = 0; i < m; i++) {
    const int64_t id = (int64_t)ids[i];
    if (id == skip) continue;
    for (int64_t k = 0; k < r; k++) da[k * v + id] += dt[i * r + k];
  }
}

void strop__lora_merge(float *w, const float *a, const float *b, int64_t in, int64_t r,
                       int64_t out, float scale) {
  strop__sgemm(0, 0, out, in, r, scale, b, r, a, in, 1.0f, w, in);
}

void strop__lora_merge_t(float *w, const float *a, const float *b, int64_t in, int64_t r,
                         int64_t out, float scale) {
  strop__sgemm(1, 1, in, out, r, scale, a, in, b, r, 1.0f, w, out);
}

void strop__lora_weight_grads(const float *dw, const float *a, const float *b, int64_t in,
                              int64_t r, int64_t out, float scale, float *da, float *db) {
  if (da) strop__sgemm(1, 0, r, in, out, scale, b, r, dw, in, 1.0f, da, in);
  if (db) strop__sgemm(0, 1, out, r, in, scale, dw, in, a, in, 1.0f, db, r);
}
