/* SPDX-License-Identifier: MIT */
/* strop — mean over the sequence: [N, T, *] -> [N, *], counting only the positions the
 * padding mask keeps when one is given (exec->pad_mask [N, T], 1 keep, 0 pad). */
#include "layers/layer.h"

/* n->saved: the forward's padding mask (the step keeps it until the backward) */
typedef struct mean_pool_saved {
  const float *mask;
} mean_pool_saved;

static strop_status mean_pool_shape(const strop__node *n, const strop__shape *in,
                                    strop__shape *out) {
  const strop__shape *s = &in[0];
  char buf[96];
  if (s->rank < 2)
    return strop__shape_error(n, "input must be [T, D, ...] per sample, got %s",
                              strop__shape_str(s, buf, sizeof buf));
  out->rank = s->rank - 1;
  for (int i = 1; i < s->rank; i++) out->d[i - 1] = s->d[i];
  return STROP_OK;
}

/* weight of position t in sample b: 1/T, or mask/count; 0 for a fully padded sample */
static float pool_weight(const float *mask, int64_t t_len, int64_t b, int64_t t, float inv) {
  return mask ? mask[b * t_len + t] * inv : inv;
}

static float pool_inv(const float *mask, int64_t t_len, int64_t b) {
  if (!mask) return 1.0f / (float)t_len;
  float cnt = 0.0f;
  for (int64_t t = 0; t < t_len; t++) cnt += mask[b * t_len + t];
  return cnt > 0.0f ? 1.0f / cnt : 0.0f;
}

static strop_status mean_pool_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                      strop__act *out) {
  const int64_t t_len = in[0].shape.d[0];
  const int64_t inner = (int64_t)strop__shape_numel(&in[0].shape) / t_len;
  mean_pool_saved *sv = strop__arena_alloc(x->arena, sizeof *sv);
  if (!sv) return strop__err(STROP_E_NOMEM, "layer '%s' (mean_pool): out of memory", n->name);
  strop_status st;
  sv->mask = strop__exec_mask(n, x, t_len, &st); /* the step's own copy: valid in backward */
  if (st) return st;
  n->saved = sv;
  const float *mask = sv->mask;
  for (int64_t b = 0; b < in[0].n; b++) {
    float inv = pool_inv(mask, t_len, b);
    float *y = out->data + b * inner;
    for (int64_t j = 0; j < inner; j++) y[j] = 0.0f;
    for (int64_t t = 0; t < t_len; t++) {
      float wt = pool_weight(mask, t_len, b, t, inv);
      if (wt == 0.0f) continue;
      const float *xr = in[0].data + (b * t_len + t) * inner;
      for (int64_t j = 0; j < inner; j++) y[j] += wt * xr[j];
    }
  }
  return STROP_OK;
}

static strop_status mean_pool_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                       const strop__act *out, const float *dout,
                                       float *const *din) {
  (void)x;
  (void)out;
  const mean_pool_saved *sv = n->saved;
  if (!sv)
    return strop__err(STROP_E_INTERNAL, "layer '%s' (mean_pool): backward without forward",
                      n->name);
  if (!din[0]) return STROP_OK;
  const int64_t t_len = in[0].shape.d[0];
  const int64_t inner = (int64_t)strop__shape_numel(&in[0].shape) / t_len;
  const float *mask = sv->mask;
  for (int64_t b = 0; b < in[0].n; b++) {
    float inv = pool_inv(mask, t_len, b);
    const float *dy = dout + b * inner;
    for (int64_t t = 0; t < t_len; t++) {
      float wt = pool_weight(mask, t_len, b, t, inv);
      if (wt == 0.0f) continue;
      float *dx = din[0] + (b * t_len + t) * inner;
      for (int64_t j = 0; j < inner; j++) dx[j] += wt * dy[j];
    }
  }
  return STROP_OK;
}

const strop__layer_vtable strop__layer_mean_pool = {
    .type = "mean_pool",
    .cfg_size = sizeof(int),
    .n_inputs = 1,
    .doc = "mean over the sequence, [T, *] -> [*], honouring the batch's padding mask",
    .flags = 0,
    .shape = mean_pool_shape,
    .infer = strop__node_infer_shape,
    .init = NULL,
    .forward = mean_pool_forward,
    .backward = mean_pool_backward,
};

/* ---- token_pool: one position of each sequence, [N, T, *] -> [N, *]: the first token
 * (BERT's [CLS] where the pooler reads it) or the last (a decoder's sequence classification,
 * GPT2ForSequenceClassification), counted over the padding mask when the batch has one. */

typedef struct token_pool_cfg {
  int which; /* TP_* */
} token_pool_cfg;

enum { TP_FIRST, TP_LAST };
static const char *const TP_WHICH[] = {"first", "last", NULL};

static const strop__optdef TP_OPTIONS[] = {
    STROP__OPT_ENUM(token_pool_cfg, which, "which", "first", TP_WHICH,
                    "first: the first token (a [CLS] token); last: the last token (a decoder's "
                    "summary of the sequence); tokens as the padding mask says"),
    {NULL}};

/* The position sample b takes, or -1 when every position is padding. */
static int64_t tp_pos(const token_pool_cfg *c, const float *mask, int64_t t_len, int64_t b) {
  if (!mask) return c->which == TP_FIRST ? 0 : t_len - 1;
  const float *m = mask + b * t_len;
  if (c->which == TP_FIRST) {
    for (int64_t t = 0; t < t_len; t++)
      if (m[t] != 0.0f) return t;
  } else {
    for (int64_t t = t_len - 1; t >= 0; t--)
      if (m[t] != 0.0f) return t;
  }
  return -1;
}

static strop_status token_pool_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                       strop__act *out) {
  const token_pool_cfg *c = n->cfg;
  const int64_t t_len = in[0].shape.d[0];
  const int64_t inner = (int64_t)strop__shape_numel(&in[0].shape) / t_len;
  strop_status st;
  const float *mask = strop__exec_mask(n, x, t_len, &st);
  if (st) return st;
  for (int64_t b = 0; b < in[0].n; b++) {
    const int64_t t = tp_pos(c, mask, t_len, b);
    float *y = out->data + b * inner;
    const float *xr = in[0].data + (b * t_len + (t < 0 ? 0 : t)) * inner;
    for (int64_t j = 0; j < inner; j++) y[j] = t < 0 ? 0.0f : xr[j];
  }
  return STROP_OK;
}

static strop_status token_pool_backward(strop__node *n, const strop__exec *x,
                                        const strop__act *in, const strop__act *out,
                                        const float *dout, float *const *din) {
  (void)out;
  if (!din[0]) return STROP_OK;
  const token_pool_cfg *c = n->cfg;
  const int64_t t_len = in[0].shape.d[0];
  const int64_t inner = (int64_t)strop__shape_numel(&in[0].shape) / t_len;
  strop_status st;
  const float *mask = strop__exec_mask(n, x, t_len, &st);
  if (st) return st;
  for (int64_t b = 0; b < in[0].n; b++) {
    const int64_t t = tp_pos(c, mask, t_len, b);
    if (t < 0) continue;
    float *dx = din[0] + (b * t_len + t) * inner;
    const float *dy = dout + b * inner;
    for (int64_t j = 0; j < inner; j++) dx[j] += dy[j];
  }
  return STROP_OK;
}

const strop__layer_vtable strop__layer_token_pool = {
    .type = "token_pool",
    .cfg_size = sizeof(token_pool_cfg),
    .n_inputs = 1,
    .doc = "one position of the sequence, [T, *] -> [*]: the first or the last token as the "
           "batch's padding mask says (BERT's [CLS], GPT2ForSequenceClassification's last "
           "token)",
    .options = TP_OPTIONS,
    .shape = mean_pool_shape,
    .infer = strop__node_infer_shape,
    .forward = token_pool_forward,
    .backward = token_pool_backward,
};
