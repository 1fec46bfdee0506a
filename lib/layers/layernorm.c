/* SPDX-License-Identifier: MIT */
/* strop — layer normalization (torch.nn.LayerNorm) over the trailing normalized_shape
 * dimensions, with optional elementwise affine weight and bias. Kernels in ops/layernorm.c. */
#include "layers/init.h"
#include "layers/layer.h"
#include "ops/layernorm.h"

typedef struct layernorm_cfg {
  int64_t shape[STROP_MAX_RANK]; /* normalized_shape; nshape == 0 until inferred */
  int nshape;
  float eps;
  int elementwise_affine;
  int bias;
} layernorm_cfg;

typedef struct layernorm_saved {
  float *mean, *rstd;
} layernorm_saved;

enum { W, B }; /* parameter slots */

static const strop__optdef OPTIONS[] = {
    {.name = "normalized_shape",
     .type = STROP__OT_INT_LIST,
     .off = offsetof(layernorm_cfg, shape),
     .count_off = offsetof(layernorm_cfg, nshape),
     .dflt = "auto",
     .lo = 1,
     .hi = INT32_MAX,
     .n = STROP_MAX_RANK,
     .words = strop__word_auto,
     .word_values = strop__word_auto_v,
     .doc = "the trailing dimensions normalised over; auto: the last dimension of the input"},
    STROP__OPT_FLOAT(layernorm_cfg, eps, "eps", "1e-05", 0, 1, 0,
                     "added to the variance for stability"),
    STROP__OPT_BOOL(layernorm_cfg, elementwise_affine, "elementwise_affine", "true",
                    "learn a weight (and bias) of normalized_shape"),
    STROP__OPT_BOOL(layernorm_cfg, bias, "bias", "true", "with elementwise_affine: learn a bias"),
    {NULL}};

static const strop__paramdef PARAMS[] = {
    [W] = {"weight", 0, "normalized_shape, when elementwise_affine"},
    [B] = {"bias", 0, "normalized_shape, when elementwise_affine and bias"},
    {NULL}};

static strop_status layernorm_shape(const strop__node *n, const strop__shape *in,
                                    strop__shape *out) {
  const layernorm_cfg *c = n->cfg;
  return strop__shape_trailing(n, in, c->shape, c->nshape, out);
}

static strop_status layernorm_infer(strop__node *n) {
  layernorm_cfg *c = n->cfg;
  const strop__shape *s = &n->in_shapes[0];
  if (c->nshape == 0 && s->rank >= 1) { /* auto: the last dimension, nn.LayerNorm(x.shape[-1]) */
    c->nshape = 1;
    c->shape[0] = s->d[s->rank - 1];
  }
  strop_status st0 = layernorm_shape(n, n->in_shapes, &n->out_shape);
  if (st0) return st0;
  if (!c->elementwise_affine) return STROP_OK;
  strop_status st = strop__node_declare(n, W, c->nshape, c->shape);
  if (st == STROP_OK && c->bias) st = strop__node_declare(n, B, c->nshape, c->shape);
  return st;
}

static void layernorm_init(strop__node *n, strop__rng *rng) {
  (void)rng;
  strop__param *w = strop__node_p(n, W), *b = strop__node_p(n, B);
  if (w) strop__init_ones(w->data, w->numel);
  if (b) strop__init_zeros(b->data, b->numel);
}

static int64_t norm_size(const layernorm_cfg *c) {
  int64_t d = 1;
  for (int i = 0; i < c->nshape; i++) d *= c->shape[i];
  return d;
}

static strop_status layernorm_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                      strop__act *out) {
  const layernorm_cfg *c = n->cfg;
  strop__param *w = strop__node_p(n, W), *b = strop__node_p(n, B);
  const int64_t d = norm_size(c);
  const int64_t rows = in[0].n * (int64_t)strop__shape_numel(&in[0].shape) / d;
  layernorm_saved *sv = strop__arena_alloc(x->arena, sizeof *sv);
  float *stats = strop__arena_alloc(x->arena, 2 * (size_t)rows * sizeof(float));
  if (!sv || !stats)
    return strop__err(STROP_E_NOMEM, "layer '%s' (layernorm): out of memory", n->name);
  sv->mean = stats;
  sv->rstd = stats + rows;
  n->saved = sv;
  strop__layernorm_forward(in[0].data, rows, d, w ? w->data : NULL, b ? b->data : NULL, c->eps,
                           out->data, sv->mean, sv->rstd);
  return STROP_OK;
}

static strop_status layernorm_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                       const strop__act *out, const float *dout,
                                       float *const *din) {
  (void)x;
  (void)out;
  const layernorm_cfg *c = n->cfg;
  const layernorm_saved *sv = n->saved;
  if (!sv)
    return strop__err(STROP_E_INTERNAL, "layer '%s' (layernorm): backward without forward",
                      n->name);
  strop__param *w = strop__node_p(n, W), *b = strop__node_p(n, B);
  const int64_t d = norm_size(c);
  const int64_t rows = in[0].n * (int64_t)strop__shape_numel(&in[0].shape) / d;
  strop__layernorm_backward(in[0].data, dout, rows, d, w ? w->data : NULL, sv->mean, sv->rstd,
                            din[0], w && w->trainable ? w->grad : NULL,
                            b && b->trainable ? b->grad : NULL);
  return STROP_OK;
}

const strop__layer_vtable strop__layer_layernorm = {
    .type = "layernorm",
    .doc = "layer normalisation over the trailing normalized_shape dimensions "
           "(torch.nn.LayerNorm)",
    .cfg_size = sizeof(layernorm_cfg),
    .n_inputs = 1,
    .flags = STROP__LAYER_OUT_UNREAD, /* the backward reads the input and the row statistics */
    .options = OPTIONS,
    .params = PARAMS,
    .shape = layernorm_shape,
    .infer = layernorm_infer,
    .init = layernorm_init,
    .forward = layernorm_forward,
    .backward = layernorm_backward,
};
