/* SPDX-License-Identifier: MIT */
/* strop — RMS normalization (Llama's RMSNorm; torch.nn.RMSNorm in PyTorch 2.4+): each row of
 * the trailing normalized_shape dimensions divided by its root mean square, times a weight.
 * Kernels in ops/layernorm.c: the forward keeps only each row's 1 / rms. */
#include "layers/fuse.h"
#include "layers/init.h"
#include "layers/layer.h"
#include "ops/layernorm.h"

typedef struct rmsnorm_cfg {
  int64_t shape[STROP_MAX_RANK]; /* normalized_shape; nshape 0 ("auto") until inferred */
  int nshape;
  float eps;
  int elementwise_affine;
} rmsnorm_cfg;

enum { W }; /* parameter slot */

extern const strop__layer_vtable strop__layer_rmsnorm;

static const strop__optdef OPTIONS[] = {
    {.name = "normalized_shape",
     .type = STROP__OT_INT_LIST,
     .off = offsetof(rmsnorm_cfg, shape),
     .count_off = offsetof(rmsnorm_cfg, nshape),
     .dflt = "auto",
     .lo = 1,
     .hi = INT32_MAX,
     .n = STROP_MAX_RANK,
     .words = strop__word_auto,
     .word_values = strop__word_auto_v,
     .doc = "the trailing dimensions normalised over; auto: the last dimension of the input"},
    STROP__OPT_FLOAT(rmsnorm_cfg, eps, "eps", "1e-06", 0, 1, 0,
                     "added to the mean square (Hugging Face's rms_norm_eps)"),
    STROP__OPT_BOOL(rmsnorm_cfg, elementwise_affine, "elementwise_affine", "true",
                    "learn a weight of normalized_shape"),
    {NULL}};

static const strop__paramdef PARAMS[] = {
    [W] = {"weight", 0, "normalized_shape, when elementwise_affine"},
    {NULL}};

static strop_status rmsnorm_shape(const strop__node *n, const strop__shape *in,
                                  strop__shape *out) {
  const rmsnorm_cfg *c = n->cfg;
  return strop__shape_trailing(n, in, c->shape, c->nshape, out);
}

static strop_status rmsnorm_infer(strop__node *n) {
  rmsnorm_cfg *c = n->cfg;
  const strop__shape *s = &n->in_shapes[0];
  if (c->nshape == 0 && s->rank >= 1) { /* auto: the last dimension, nn.LayerNorm(x.shape[-1]) */
    c->nshape = 1;
    c->shape[0] = s->d[s->rank - 1];
  }
  strop_status st0 = rmsnorm_shape(n, n->in_shapes, &n->out_shape);
  if (st0) return st0;
  if (!c->elementwise_affine) return STROP_OK;
  return strop__node_declare(n, W, c->nshape, c->shape);
}

static void rmsnorm_init(strop__node *n, strop__rng *rng) {
  (void)rng;
  strop__param *w = strop__node_p(n, W);
  if (w) strop__init_ones(w->data, w->numel);
}

/* rows and row length of an activation */
static void geometry(const rmsnorm_cfg *c, const strop__act *a, int64_t *rows, int64_t *d) {
  *d = 1;
  for (int i = 0; i < c->nshape; i++) *d *= c->shape[i];
  *rows = a->n * (int64_t)strop__shape_numel(&a->shape) / *d;
}

int strop__layer_rmsnorm_rows(const strop__node *n, int64_t *d, float *eps, strop__param **w) {
  if (n->vt != &strop__layer_rmsnorm) return 0;
  const rmsnorm_cfg *c = n->cfg;
  *d = 1;
  for (int i = 0; i < c->nshape; i++) *d *= c->shape[i];
  *eps = c->eps;
  *w = strop__node_p(n, W);
  return 1;
}

static strop_status rmsnorm_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                    strop__act *out) {
  const rmsnorm_cfg *c = n->cfg;
  const strop__param *w = strop__node_p(n, W);
  int64_t rows, d;
  geometry(c, &in[0], &rows, &d);
  float *rstd = strop__arena_alloc(x->arena, (size_t)rows * sizeof(float) + 1);
  if (!rstd) return strop__err(STROP_E_NOMEM, "layer '%s' (rmsnorm): out of memory", n->name);
  strop__rmsnorm_forward(in[0].data, rows, d, w ? w->data : NULL, c->eps, out->data, rstd);
  n->saved = rstd;
  return STROP_OK;
}

static strop_status rmsnorm_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                     const strop__act *out, const float *dout,
                                     float *const *din) {
  (void)out;
  if (!n->saved)
    return strop__err(STROP_E_INTERNAL, "layer '%s' (rmsnorm): backward without forward",
                      n->name);
  const strop__param *w = strop__node_p(n, W);
  int64_t rows, d;
  geometry(n->cfg, &in[0], &rows, &d);
  float *dw = strop__node_grad(n, W);
  /* each slice of rows but the first sums its share of dw apart (ops/layernorm.h) */
  float *part = NULL;
  const size_t parts = dw ? strop__rmsnorm_backward_scratch(rows, d) : 0;
  if (parts && !(part = strop__arena_alloc(x->arena, parts * sizeof *part)))
    return strop__err(STROP_E_NOMEM, "layer '%s' (rmsnorm): out of memory", n->name);
  strop__rmsnorm_backward(in[0].data, dout, rows, d, w ? w->data : NULL, n->saved, din[0], dw,
                          part);
  return STROP_OK;
}

const strop__layer_vtable strop__layer_rmsnorm = {
    .type = "rmsnorm",
    .doc = "x / sqrt(mean(x^2) + eps) * weight over the trailing normalized_shape dimensions "
           "(Llama's RMSNorm, torch.nn.RMSNorm)",
    .cfg_size = sizeof(rmsnorm_cfg),
    .n_inputs = 1,
    .options = OPTIONS,
    .params = PARAMS,
    .shape = rmsnorm_shape,
    .infer = rmsnorm_infer,
    .init = rmsnorm_init,
    .forward = rmsnorm_forward,
    .backward = rmsnorm_backward,
};
