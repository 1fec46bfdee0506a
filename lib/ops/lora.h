/* SPDX-License-Identifier: MIT */
/* strop — kernels of the LoRA adapter (Hu et al. 2021, PEFT's semantics): the low-rank path
 * y += scale * (h A^T) B^T, its backward, and merging B A into the base weight. */
#ifndef STROP_OPS_LORA_H
#define STROP_OPS_LORA_H

#include <stdint.h>

/* h[m, in] is the (dropped-out) input, A[r, in], B[out, r]. Writes t[m, r] = h A^T (kept for
 * backward) and ADDS scale * t B^T into y[m, out]. */
void strop__lora_forward(const float *h, const float *a, const float *b, float *t, float *y,
                         int64_t m, int64_t in, int64_t r, int64_t out, float scale);

/* Given dy[m, out]: dt[m, r] = scale * dy B (scratch, overwritten); dB += scale * dy^T t;
 * dA += dt^T h; dh += dt A. Any of dh, da, db may be NULL (not wanted). */
void strop__lora_backward(const float *h, const float *a, const float *b, const float *t,
                          const float *dy, float *dt, float *dh, float *da, float *db, int64_t m,
                          int64_t in, int64_t r, int64_t out, float scale);

/* The adapter of an embedding (PEFT's lora.Embedding), a lora on the one-hot rows of ids[m]
 * (token ids stored as floats, checked by the caller to be in [0, v)): A[r, v], B[d, r].
 * Writes t[m, r] = the columns A[:, ids] (kept for backward) and ADDS scale * t B^T into y[m, d]. */
void strop__lora_embedding_forward(const float *ids, const float *a, const float *b, float *t,
                                   float *y, int64_t m, int64_t v, int64_t r, int64_t d,
                                   float scale);

/* Given dy[m, d]: dB += scale * dy^T t; with da, dt[m, r] = scale * dy B (scratch, overwritten)
 * and dA[:, ids[i]] += dt[i] for every row whose id is not `skip` (the padding row, which
 * F.embedding gives no gradient; -1: none). Either of da, db may be NULL (dt then too). */
void strop__lora_embedding_backward(const float *ids, const float *b, const float *t,
                                    const float *dy, float *dt, float *da, float *db, int64_t m,
                                    int64_t v, int64_t r, int64_t d, float scale, int64_t skip);

/* W[out, in] += scale * B A (merge; pass -scale to unmerge). */
/* The same for a weight stored [in, out] (GPT-2's Conv1D, or an embedding's table [v, d] with
 * in = v, out = d): w += scale (b a)^T. */
void strop__lora_merge_t(float *w, const float *a, const float *b, int64_t in, int64_t r,
                         int64_t out, float scale);
void strop__lora_merge(float *w, const float *a, const float *b, int64_t in, int64_t r,
                       int64_t out, float scale);

/* Adapter gradients from the gradient of a merged weight W' = W + scale * B A (the adapter
 * path computed through W'): dA += scale * B^T dW, dB += scale * dW A^T; either may be NULL. */
void strop__lora_weight_grads(const float *dw, const float *a, const float *b, int64_t in,
                              int64_t r, int64_t out, float scale, float *da, float *db);

#endif
