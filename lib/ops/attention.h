/* SPDX-License-Identifier: MIT */
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
 * q, k, v, ctx: n*t*d each; p: n*h*t*t softmax weights (before dropout), or 2 n*h*t
 * (row maxima, inverse sums) when dm->tiled. (Dropout's mask is not kept: it is a function of
 * the dims' drop_seed and the weight's place, computed again by the backward.) */
typedef struct strop__mha_cache {
  float *q, *k, *v, *ctx, *p;
  uint64_t drop_seed; /* the forward's dropout seed (strop__mha_dims.drop_seed) */
} strop__mha_cache;

typedef struct strop__mha_dims {
  int64_t n, t, d, heads;
  int causal;            /* 1: position i attends to keys j <= i only */
  const float *pad_mask; /* [n, t], 1 keep, 0 padding (keys masked out); or NULL */
  float dropout;         /* probability of dropping an attention weight; 0: none (eval) */
  uint64_t drop_seed;    /* with dropout: the mask's seed (strop__sdpa_dims.drop_seed) */
  int64_t drop_row0;     /* with dropout: the global index of sample 0 (a data-parallel rank's
                            first row of the whole batch) */
  int chunks;            /* samples split into this many chunks run in parallel (<= 1: one) */
  int tiled;             /* 1: the core runs tiled (strop__sdpa_dims.tiled): c->p then holds
                            2 n*heads*t floats, each row's max and inverse sum */
  int bf16;              /* 1: the core's products in BF16 (strop__sdpa_dims.bf16); the
                            projections stay FP32 */
} strop__mha_dims;

/* ---- the core: attention of already-projected q, k, v (any row strides), as
 * torch.nn.functional.scaled_dot_product_attention; grouped-query attention when kv_heads <
 * heads (query head h reads key/value head h / (heads / kv_heads)). ---- */
typedef struct strop__sdpa_dims {
  int64_t n, t, heads, kv_heads, head_dim;
  int64_t ldq, ldk, ldv; /* row strides (floats) of q, k, v: heads*head_dim when separate,
                             wider when they are views into one packed [t, q|k|v] tensor */
  int causal;
  const float *pad_mask; /* [n, t], 1 keep, 0 padding (keys masked out); or NULL */
  float dropout;      /* probability of dropping an attention weight (after the softmax; the kept
                    ones scaled by 1 / (1 - dropout)); 0: none. The mask is a hash of
                    (drop_seed, drop_row0 + sample, head, query, key) — nothing is drawn or kept
                    per weight: the backward, a checkpointed block's recompute, any split of the
                    samples into chunks or ranks and both cores see the same mask */
  uint64_t drop_seed; /* with dropout: the mask's seed (the layer draws it once per forward) */
  int64_t drop_row0;  /* with dropout: the global index of sample 0 (a data-parallel rank's rows
                         get the mask one process gives the same rows of the whole batch) */
  float scale;        /* of the scores, usually 1 / sqrt(head_dim) */
  int chunks;         /* samples split into this many chunks run in parallel (tiled: the
                         n * kv_heads (sample, kv head) items, a kv head with its group of
                         query heads: the same bits at any count) */
  int tiled;          /* 1: flash-attention style, one block of scores per chunk at a time
                            with the online softmax (running max and sum); the forward keeps only
                            each row's max and inverse sum and the backward recomputes the score
                            blocks (and dropout's mask) from q, k and it. 0: the t x t weights
                            materialised */
  int64_t rot;        /* rotary embeddings (rope.h): the first rot values of every head of q and k
                  rotate as the kernels load them (the backward turns dq and dk back the same
                  way), so the callers pass q and k as they were projected; 0: none */
  const float *rope_cos, *rope_sin; /* with rot: [t, rot / 2] each (strop__rope_tables), row i
                                       for row i of every sample (query i of the cached path) */
  int bf16; /* 1 (the model's compute dtype BF16): q k^T, P V and the backward's products dV, dP,
               dQ and dK on BF16-rounded operands with FP32 sums — vdpbf16ps where
               strop__bf16_dot_enabled(), else the FP32 product of the rounded values — while the
               scaling, masks, softmax and its statistics stay FP32; the scratch grows by a
               block's packing per chunk. 0: FP32 (the same bits as before). The cached
               (decoding) path ignores it. */
} strop__sdpa_dims;

/* Whether the core runs tiled for t queries of head_dim-wide heads. Mode STROP__ATTN_TILED: 1;
 * STROP__ATTN_MATERIALIZED: 0; STROP__ATTN_AUTO: 1, unless the t x t weights are small — at
 * most twice the queries (t <= 2 head_dim) — and the tiled path cannot skip blocks (no causal
 * mask, or one block of queries): there, recomputing the scores and their exp in the backward
 * costs 1.5-1.7x the materialised backward (at t = 64, head_dim 32: one score costs 2 x 32
 * multiply-adds per product, the exp as much as one more product). */
int strop__sdpa_pick_tiled(int64_t t, int64_t head_dim, int causal, int mode);
/* strop__sdpa_pick_tiled's mode, the model's attention setting (strop_model_set_attention, whose
 * values these are): by the rule above, always tiled, always materialised. */
enum { STROP__ATTN_AUTO = 0, STROP__ATTN_TILED = 1, STROP__ATTN_MATERIALIZED = 2 };
/* 1 (the default): the tiled core's callers count its chunks over the n * kv_heads (sample, kv
 * head) items; 0: over the samples, as before 2026-12-05 (one sample: one chunk) — the same
 * bits; bench_big's SDPA_SPLIT=ab switch. */
extern int strop__sdpa_split_heads;

/* Tests: the tiled path's block of queries x keys (defaults 64 x 128); > 0. */
extern int strop__sdpa_block_q, strop__sdpa_block_k;

/* Floats of p: the weights n*heads*t*t, or tiled 2 n*heads*t: each row's max score and the
 * inverse of its sum of exp(s - max) (its logsumexp, in two parts). */
size_t strop__sdpa_saved_floats(const strop__sdpa_dims *dm);
/* Scratch floats: per chunk, the materialised path's t*t for the dropped weights (forward,
 * with dropout) and 2 t*t (backward; and a row of the mask with dropout); tiled, a block of
 * scores (and of their gradients, and the dropped weights) and a few rows per chunk, whatever
 * t is. With rot, also the rotated rows of the head being read (and their
 * gradients): per chunk t x head_dim for 2 (forward) and 4 (backward) heads materialised, one
 * block of queries and one of keys (twice in the backward) tiled. */
size_t strop__sdpa_forward_scratch(const strop__sdpa_dims *dm);
size_t strop__sdpa_backward_scratch(const strop__sdpa_dims *dm);
/* ctx [n*t, heads*head_dim] = dropout(softmax(mask(scale q k^T))) v per head; p gets the
 * weights before dropout [n, heads, t, t] (or, tiled, the max [n, heads, t] then the inverse
 * sum [n, heads, t] of each row), kept for the backward. A query row whose keys are all
 * masked gets all-zero weights. */
void strop__sdpa_forward(const strop__sdpa_dims *dm, const float *q, const float *k,
                         const float *v, float *p, float *scratch, float *ctx);
/* Given dctx, writes (accumulate = 0) or adds (1) dq, dk, dv in q's, k's and v's layouts; any
 * may be NULL (not needed). ctx is the forward's output (read by the tiled path only). */
void strop__sdpa_backward(const strop__sdpa_dims *dm, const float *q, const float *k,
                          const float *v, const float *p, const float *ctx, const float *dctx,
                          float *scratch, float *dq, float *dk, float *dv, int accumulate);

/* A dropout seed for one forward: two draws from rng. */
uint64_t strop__sdpa_draw_seed(strop__rng *rng);

/* Whether dropout keeps weight (i, j) of head h of global sample s (the mask the kernels apply,
 * for tests): 1 kept, 0 dropped. */
int strop__sdpa_drop_keeps(const strop__sdpa_dims *dm, int64_t s, int64_t h, int64_t i,
                           int64_t j);

/* Incremental decoding: dm->t new queries at positions [past, past + t) against the keys and
 * values of positions [0, past + t), kept per sample in k and v as [cap, ldk] / [cap, ldv]
 * rows (sample b at b * cap rows); dm->causal masks the keys after each query's position,
 * pad_mask and dropout are ignored. ctx [n*t, heads*head_dim]. With dm->rot the queries rotate
 * as they are read (tables for positions [past, past + t)); the cached keys are already
 * rotated (the layer rotates them as it stores them). */
size_t strop__sdpa_cached_scratch(const strop__sdpa_dims *dm, int64_t past);
void strop__sdpa_cached(const strop__sdpa_dims *dm, int64_t past, int64_t cap, const float *q,
                        const float *k, const float *v, float *scratch, float *ctx);

/* ---- rotary position embeddings (Llama's rotate_half convention) ---- */
/* cos and sin of position p times 1 / theta^(2i / rot_dim), positions divided by factor
 * (linear scaling): [t, rot_dim / 2] each. */
void strop__rope_tables(int64_t t, int64_t rot_dim, double theta, double factor, float *cos_t,
                        float *sin_t);
/* The same for positions [p0, p0 + t) (an incremental decoding step's rows). */
void strop__rope_tables_from(int64_t p0, int64_t t, int64_t rot_dim, double theta, double factor,
                             float *cos_t, float *sin_t);
/* y += rotate(x) per head: the first rot values of each head (of head_dim) rotated in halves
 * with the tables of strop__rope_tables(t, rot, ...), the rest as they are; inverse = 1
 * rotates back (the backward). x and y rows [n*t] with strides ldx, ldy. (The kernels rotate
 * the rows they load with rope.h's helpers; this is for rows stored rotated: the key cache.) */
void strop__rope_apply(const float *x, int64_t ldx, float *y, int64_t ldy, int64_t n, int64_t t,
                       int64_t heads, int64_t head_dim, int64_t rot, const float *cos_t,
                       const float *sin_t, int inverse);

/* Scratch floats the forward and backward need beyond the cache. */
size_t strop__attention_forward_scratch(const strop__mha_dims *dm);
size_t strop__attention_backward_scratch(const strop__mha_dims *dm);

/* y[n, t, d] = out_proj(softmax(mask(q k^T / sqrt(d / heads))) v). A query row whose keys
 * are all masked gets all-zero weights (PyTorch would give NaN). With dm->dropout > 0 the
 * weights are dropped with that probability by the mask of dm->drop_seed and the rest scaled
 * by 1 / (1 - dropout). */
void strop__attention_forward(const strop__mha_dims *dm, const float *x,
                              const strop__mha_weights *w, const strop__mha_cache *c,
                              float *scratch, float *y);

/* Given dy, adds d loss / d x into dx (nullable) and the parameter gradients into g. The
 * key bias gets nothing added: softmax is invariant to it, its gradient is exactly zero. */
void strop__attention_backward(const strop__mha_dims *dm, const float *x,
                               const strop__mha_weights *w, const strop__mha_cache *c,
                               const float *dy, float *scratch, float *dx,
                               const strop__mha_grads *g);

#endif
