/* strop — multi-head self-attention forward and backward. Heads are strided views of the
 * [n*t, d] projections (leading dimension d), so every matmul is one strop__sgemm call
 * without copies: Q K^T and P V per (batch, head), projections over all n*t rows at once. */
#include "ops/attention.h"

#include <math.h>
#include <string.h>

#include "core/core.h"
#include "ops/ops.h"
#include "ops/vmath.h"

size_t strop__attention_forward_scratch(const strop__mha_dims *dm) {
  return (size_t)(dm->t * dm->t);
}

static int chunks_of(const strop__mha_dims *dm) { return dm->chunks > 1 ? dm->chunks : 1; }

/* dctx, dq, dk, dv [n t, d], then per chunk of samples its own P' and dP [t, t] */
size_t strop__attention_backward_scratch(const strop__mha_dims *dm) {
  return (size_t)(4 * dm->n * dm->t * dm->d + chunks_of(dm) * 2 * dm->t * dm->t);
}

/* y[rows, d] = x w^T + b */
static void project(const float *x, const float *w, const float *b, int64_t rows, int64_t d,
                    float *y) {
  strop__sgemm(0, 1, rows, d, d, 1.0f, x, d, w, d, 0.0f, y, d);
  if (b)
    for (int64_t r = 0; r < rows; r++) {
      float *yr = y + r * d;
      for (int64_t j = 0; j < d; j++) yr[j] += b[j];
    }
}

/* dw += dy^T x, db += colsum(dy), dx += dy w */
static void project_backward(const float *x, const float *w, const float *dy, int64_t rows,
                             int64_t d, float *dx, float *dw, float *db) {
  if (dw) strop__sgemm(1, 0, d, d, rows, 1.0f, dy, d, x, d, 1.0f, dw, d);
  if (db)
    for (int64_t r = 0; r < rows; r++) {
      const float *dr = dy + r * d;
      for (int64_t j = 0; j < d; j++) db[j] += dr[j];
    }
  if (dx) strop__sgemm(0, 0, rows, d, d, 1.0f, dy, d, w, d, 1.0f, dx, d);
}

/* Masked softmax of one row of scores s[0..t) for query i of batch b, in place. */
/* inlined into the (cloned) per-sample loops so its exp loop gets their vector width */
static inline __attribute__((always_inline)) void softmax_row(float *s, int64_t t, int64_t i,
                                                              int causal, const float *pad) {
  int64_t lim = causal ? i + 1 : t;
  float m = -INFINITY;
  for (int64_t j = 0; j < lim; j++)
    if ((!pad || pad[j] != 0.0f) && s[j] > m) m = s[j];
  if (m == -INFINITY) { /* every key masked (or -inf scores): no attention at all */
    int any_nan = 0;
    for (int64_t j = 0; j < lim; j++) any_nan |= isnan(s[j]);
    for (int64_t j = 0; j < t; j++) s[j] = any_nan ? NAN : 0.0f;
    return;
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < lim; j++) {
    float e = (!pad || pad[j] != 0.0f) ? strop__vexpf(s[j] - m) : 0.0f;
    s[j] = e;
    sum += e;
  }
  float inv = 1.0f / sum;
  for (int64_t j = 0; j < lim; j++) s[j] *= inv;
  for (int64_t j = lim; j < t; j++) s[j] = 0.0f;
}

/* Work shared by the per-sample parts of the forward and the backward. */
typedef struct attn_job {
  const strop__mha_dims *dm;
  const strop__mha_weights *w;
  const strop__mha_cache *c;
  strop__rng *rng;
  float *scratch; /* forward: dropout's t*t; backward: the per-chunk P', dP areas */
  const float *dctx;
  float *dq, *dk, *dv;
  float scale;
} attn_job;

/* Scores, softmax, dropout and P V for samples [b0, b1). */
STROP__CLONES static void attn_fwd_samples(void *ctx, int64_t b0, int64_t b1, int chunk) {
  (void)chunk;
  const attn_job *j = ctx;
  const strop__mha_dims *dm = j->dm;
  const strop__mha_cache *c = j->c;
  const int64_t t = dm->t, d = dm->d, h = dm->heads, hd = d / h;
  const float p = dm->dropout, keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  float *scratch = j->scratch;
  for (int64_t b = b0; b < b1; b++) {
    const float *pad = dm->pad_mask ? dm->pad_mask + b * t : NULL;
    for (int64_t hh = 0; hh < h; hh++) {
      const int64_t off = b * t * d + hh * hd;
      float *P = c->p + (b * h + hh) * t * t;
      strop__sgemm(0, 1, t, t, hd, j->scale, c->q + off, d, c->k + off, d, 0.0f, P, t);
      for (int64_t i = 0; i < t; i++) softmax_row(P + i * t, t, i, dm->causal, pad);
      const float *Pu = P;
      if (c->keep) {
        uint8_t *keep = c->keep + (b * h + hh) * t * t;
        for (int64_t e = 0; e < t * t; e++) {
          keep[e] = strop__rng_uniform(j->rng) >= p;
          scratch[e] = keep[e] ? P[e] * keep_scale : 0.0f;
        }
        Pu = scratch;
      }
      strop__sgemm(0, 0, t, hd, t, 1.0f, Pu, t, c->v + off, d, 0.0f, c->ctx + off, d);
    }
  }
}

/* Through P V, dropout, softmax and Q K^T for samples [b0, b1), with this chunk's P', dP. */
STROP__CLONES static void attn_bwd_samples(void *ctx, int64_t b0, int64_t b1, int chunk) {
  const attn_job *j = ctx;
  const strop__mha_dims *dm = j->dm;
  const strop__mha_cache *c = j->c;
  const int64_t t = dm->t, d = dm->d, h = dm->heads, hd = d / h;
  const float p = dm->dropout, keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  float *Pd = j->scratch + chunk * 2 * t * t, *dP = Pd + t * t;
  for (int64_t b = b0; b < b1; b++) {
    for (int64_t hh = 0; hh < h; hh++) {
      const int64_t off = b * t * d + hh * hd;
      const float *P = c->p + (b * h + hh) * t * t;
      const uint8_t *keep = c->keep ? c->keep + (b * h + hh) * t * t : NULL;
      const float *Pu = P;
      if (keep) {
        for (int64_t e = 0; e < t * t; e++) Pd[e] = keep[e] ? P[e] * keep_scale : 0.0f;
        Pu = Pd;
      }
      /* dV = P'^T dctx ; dP' = dctx V^T */
      strop__sgemm(1, 0, t, hd, t, 1.0f, Pu, t, j->dctx + off, d, 0.0f, j->dv + off, d);
      strop__sgemm(0, 1, t, t, hd, 1.0f, j->dctx + off, d, c->v + off, d, 0.0f, dP, t);
      /* through dropout, then softmax: dS = P * (dP - sum_k P dP) */
      for (int64_t i = 0; i < t; i++) {
        const float *pr = P + i * t;
        float *dr = dP + i * t;
        const uint8_t *kr = keep ? keep + i * t : NULL;
        if (kr)
          for (int64_t jj = 0; jj < t; jj++) dr[jj] = kr[jj] ? dr[jj] * keep_scale : 0.0f;
        float dot = 0.0f;
        for (int64_t jj = 0; jj < t; jj++) dot += pr[jj] * dr[jj];
        for (int64_t jj = 0; jj < t; jj++) dr[jj] = pr[jj] * (dr[jj] - dot);
      }
      /* S = scale Q K^T: dQ = scale dS K, dK = scale dS^T Q */
      strop__sgemm(0, 0, t, hd, t, j->scale, dP, t, c->k + off, d, 0.0f, j->dq + off, d);
      strop__sgemm(1, 0, t, hd, t, j->scale, dP, t, c->q + off, d, 0.0f, j->dk + off, d);
    }
  }
}

void strop__attention_forward(const strop__mha_dims *dm, const float *x,
                              const strop__mha_weights *w, const strop__mha_cache *c,
                              strop__rng *rng, float *scratch, float *y) {
  const int64_t n = dm->n, t = dm->t, d = dm->d, h = dm->heads, hd = d / h, rows = n * t;
  const float scale = (float)(1.0 / sqrt((double)hd));
  project(x, w->wq, w->bq, rows, d, c->q);
  project(x, w->wk, w->bk, rows, d, c->k);
  project(x, w->wv, w->bv, rows, d, c->v);
  attn_job j = {.dm = dm, .w = w, .c = c, .rng = rng, .scratch = scratch, .scale = scale};
  if (c->keep) /* dropout draws from one generator in sample order: one chunk */
    attn_fwd_samples(&j, 0, n, 0);
  else
    strop__par_run(chunks_of(dm), n, attn_fwd_samples, &j);
  project(c->ctx, w->wo, w->bo, rows, d, y);
}

void strop__attention_backward(const strop__mha_dims *dm, const float *x,
                               const strop__mha_weights *w, const strop__mha_cache *c,
                               const float *dy, float *scratch, float *dx,
                               const strop__mha_grads *g) {
  const int64_t n = dm->n, t = dm->t, d = dm->d, h = dm->heads, hd = d / h, rows = n * t;
  const float scale = (float)(1.0 / sqrt((double)hd));
  float *dctx = scratch, *dq = dctx + rows * d, *dk = dq + rows * d, *dv = dk + rows * d;
  float *Pd = dv + rows * d; /* per-chunk areas from here */

  project_backward(c->ctx, w->wo, dy, rows, d, NULL, g->wo, g->bo);
  strop__sgemm(0, 0, rows, d, d, 1.0f, dy, d, w->wo, d, 0.0f, dctx, d);
  attn_job j = {.dm = dm, .w = w, .c = c, .scratch = Pd, .dctx = dctx, .dq = dq, .dk = dk,
                .dv = dv, .scale = scale};
  strop__par_run(chunks_of(dm), n, attn_bwd_samples, &j);
  project_backward(x, w->wq, dq, rows, d, dx, g->wq, g->bq);
  /* The key bias adds q_i . b_k to every score of row i: softmax ignores that shift, so its
   * gradient is exactly zero (PyTorch returns rounding noise of ~1e-8); skip the sum. */
  project_backward(x, w->wk, dk, rows, d, dx, g->wk, NULL);
  project_backward(x, w->wv, dv, rows, d, dx, g->wv, g->bv);
}
