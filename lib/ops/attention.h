/* strop — multi-head self-attention kernels on [n, t, d] activations: q/k/v projections,
 * per-(batch, head) scaled dot products through strop__sgemm, masked softmax, dropout on the
 * attention weights, the weighted sum of values and the output projection; and the backward. */
#ifndef STROP_OPS_ATTENTION_H
#define STROP_OPS_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* The projection weights ([d, d], PyTorch's [out, in]) and biases ([d], each nullable). */
typedef struct strop__mha_weights {
  const float *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo;
} strop__mha_weights;

/* Gradients to add into; any may be NULL (frozen or absent). */
typedef struct strop__mha_grads {
  float *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo;
} strop__mha_grads;

/* What the forward leaves for the backward (caller-owned, e.g. arena):
 * q, k, v, ctx: n*t*d each; p: n*h*t*t softmax weights (before dropout);
 * keep: n*h*t*t dropout keep flags, or NULL when no dropout is applied. */
typedef struct strop__mha_cache {
  float *q, *k, *v, *ctx, *p;
  uint8_t *keep;
} strop__mha_cache;

typedef struct strop__mha_dims {
  int64_t n, t, d, heads;
  int causal;             /* 1: position i attends to keys j <= i only */
  const float *pad_mask;  /* [n, t], 1 keep, 0 padding (keys masked out); or NULL */
  float dropout;          /* probability of dropping an attention weight (when keep != NULL) */
  int chunks;             /* samples split into this many chunks run in parallel (<= 1: one) */
} strop__mha_dims;

/* Scratch floats the forward and backward need beyond the cache. */
size_t strop__attention_forward_scratch(const strop__mha_dims *dm);
size_t strop__attention_backward_scratch(const strop__mha_dims *dm);

/* y[n, t, d] = out_proj(softmax(mask(q k^T / sqrt(d / heads))) v). A query row whose keys
 * are all masked gets all-zero weights (PyTorch would give NaN). When c->keep is not NULL
 * the weights are dropped with probability dm->dropout from rng and the rest scaled by
 * 1 / (1 - dropout). */
void strop__attention_forward(const strop__mha_dims *dm, const float *x,
                              const strop__mha_weights *w, const strop__mha_cache *c,
                              strop__rng *rng, float *scratch, float *y);

/* Given dy, adds d loss / d x into dx (nullable) and the parameter gradients into g. The
 * key bias gets nothing added: softmax is invariant to it, its gradient is exactly zero. */
void strop__attention_backward(const strop__mha_dims *dm, const float *x,
                               const strop__mha_weights *w, const strop__mha_cache *c,
                               const float *dy, float *scratch, float *dx,
                               const strop__mha_grads *g);

#endif
