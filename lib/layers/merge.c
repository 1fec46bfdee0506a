/* SPDX-License-Identifier: MIT */
/* strop — layers that merge several inputs: add (residual sums of same-shaped inputs) and
 * concat (torch.cat along one dimension; dim counts the batch as 0, default 1). */
#include <string.h>

#include "layers/layer.h"

typedef struct concat_cfg {
  int64_t dim; /* as given (PyTorch numbering) */
  int axis;    /* resolved per-sample axis, set by infer */
} concat_cfg;

static int same_shape(const strop__shape *a, const strop__shape *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->d[i] != b->d[i]) return 0;
  return 1;
}

static strop_status add_shape(const strop__node *n, const strop__shape *in, strop__shape *out) {
  char b1[96], b2[96];
  if (n->n_in < 1)
    return strop__err(STROP_E_SHAPE, "layer '%s' (add): needs at least one input", n->name);
  for (int i = 1; i < n->n_in; i++)
    if (!same_shape(&in[i], &in[0]))
      return strop__err(STROP_E_SHAPE,
                        "layer '%s' (add): input %d has shape %s but input 0 has shape %s; add "
                        "needs inputs of the same shape",
                        n->name, i, strop__shape_str(&in[i], b1, sizeof b1),
                        strop__shape_str(&in[0], b2, sizeof b2));
  *out = in[0];
  return STROP_OK;
}

/* The sums run elementwise over slices of the batch on the worker pool (each element's sum in
 * input order, so any split gives the same bits). */
typedef struct add_job {
  const strop__act *in;
  int n_in;
  float *y;          /* forward */
  const float *dout; /* backward */
  float *const *din;
} add_job;

/* Elements per thread below which a split does not pay for waking a worker. */
#define ADD_GRAIN 16384

static void add_fwd_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const add_job *j = ctx;
  const float *a = j->in[0].data, *b = j->in[1].data;
  float *y = j->y;
  for (int64_t k = lo; k < hi; k++) y[k] = a[k] + b[k];
  for (int i = 2; i < j->n_in; i++) {
    const float *c = j->in[i].data;
    for (int64_t k = lo; k < hi; k++) y[k] += c[k];
  }
}

static void add_bwd_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const add_job *j = ctx;
  for (int i = 0; i < j->n_in; i++) {
    float *dx = j->din[i];
    if (!dx) continue;
    for (int64_t k = lo; k < hi; k++) dx[k] += j->dout[k];
  }
}

static strop_status add_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                strop__act *out) {
  (void)x;
  size_t cnt = (size_t)in[0].n * strop__shape_numel(&in[0].shape);
  if (n->n_in == 1) {
    memcpy(out->data, in[0].data, cnt * sizeof(float));
    return STROP_OK;
  }
  add_job j = {.in = in, .n_in = n->n_in, .y = out->data};
  strop__par_for((int64_t)cnt, ADD_GRAIN, add_fwd_range, &j);
  return STROP_OK;
}

static strop_status add_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                 const strop__act *out, const float *dout, float *const *din) {
  (void)x;
  (void)out;
  size_t cnt = (size_t)in[0].n * strop__shape_numel(&in[0].shape);
  add_job j = {.in = in, .n_in = n->n_in, .dout = dout, .din = din};
  strop__par_for((int64_t)cnt, ADD_GRAIN, add_bwd_range, &j);
  return STROP_OK;
}

static const strop__optdef CONCAT_OPTIONS[] = {
    STROP__OPT_INT(concat_cfg, dim, "dim", "1", -(STROP_MAX_RANK + 1), STROP_MAX_RANK,
                   "the dimension, counting the batch as 0 (-1: the last)"),
    {NULL}};

static strop_status concat_shape(const strop__node *n, const strop__shape *in,
                                 strop__shape *out) {
  const concat_cfg *c = n->cfg;
  char b1[96], b2[96];
  if (n->n_in < 1)
    return strop__err(STROP_E_SHAPE, "layer '%s' (concat): needs at least one input", n->name);
  const strop__shape *s0 = &in[0];
  int64_t full = s0->rank + 1, d = c->dim < 0 ? c->dim + full : c->dim;
  if (d < 1 || d >= full)
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (concat): dim %lld is out of range for input [N, %s] (dim "
                      "counts the batch as 0; use 1..%lld or -1..-%lld)",
                      n->name, (long long)c->dim, strop__shape_str(s0, b1, sizeof b1),
                      (long long)(full - 1), (long long)(full - 1));
  int ax = (int)(d - 1);
  strop__shape o = *s0;
  for (int i = 1; i < n->n_in; i++) {
    const strop__shape *s = &in[i];
    int ok = s->rank == s0->rank;
    for (int k = 0; ok && k < s->rank; k++)
      if (k != ax && s->d[k] != s0->d[k]) ok = 0;
    if (!ok)
      return strop__err(STROP_E_SHAPE,
                        "layer '%s' (concat): input %d has shape %s, which does not match input "
                        "0's shape %s in every dimension but dim %lld",
                        n->name, i, strop__shape_str(s, b1, sizeof b1),
                        strop__shape_str(s0, b2, sizeof b2), (long long)c->dim);
    o.d[ax] += s->d[ax];
  }
  *out = o;
  return STROP_OK;
}

static strop_status concat_infer(strop__node *n) {
  concat_cfg *c = n->cfg;
  strop_status st = concat_shape(n, n->in_shapes, &n->out_shape);
  if (st) return st;
  const int64_t full = n->in_shapes[0].rank + 1;
  c->axis = (int)((c->dim < 0 ? c->dim + full : c->dim) - 1);
  return STROP_OK;
}

/* [outer, d_i * inner] blocks of each input interleave into [outer, d_out * inner] */
static int64_t concat_outer(const concat_cfg *c, const strop__act *a) {
  int64_t o = a->n;
  for (int k = 0; k < c->axis; k++) o *= a->shape.d[k];
  return o;
}

static int64_t concat_block(const concat_cfg *c, const strop__act *a) {
  int64_t b = 1;
  for (int k = c->axis; k < a->shape.rank; k++) b *= a->shape.d[k];
  return b;
}

static strop_status concat_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                   strop__act *out) {
  (void)x;
  const concat_cfg *c = n->cfg;
  int64_t outer = concat_outer(c, &in[0]), ob = concat_block(c, out), off = 0;
  for (int i = 0; i < n->n_in; i++) {
    int64_t ib = concat_block(c, &in[i]);
    const float *src = in[i].data;
    float *dst = out->data + off;
    for (int64_t o = 0; o < outer; o++)
      memcpy(dst + o * ob, src + o * ib, (size_t)ib * sizeof(float));
    off += ib;
  }
  return STROP_OK;
}

static strop_status concat_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                    const strop__act *out, const float *dout, float *const *din) {
  (void)x;
  const concat_cfg *c = n->cfg;
  int64_t outer = concat_outer(c, &in[0]), ob = concat_block(c, out), off = 0;
  for (int i = 0; i < n->n_in; i++) {
    int64_t ib = concat_block(c, &in[i]);
    float *dx = din[i];
    if (dx) {
      const float *src = dout + off;
      for (int64_t o = 0; o < outer; o++) {
        const float *g = src + o * ob;
        float *d = dx + o * ib;
        for (int64_t j = 0; j < ib; j++) d[j] += g[j];
      }
    }
    off += ib;
  }
  return STROP_OK;
}

const strop__layer_vtable strop__layer_add = {
    .type = "add",
    .cfg_size = sizeof(int), /* no options; a non-empty block all the same */
    .n_inputs = 0,
    .doc = "elementwise sum of inputs of one shape (a residual connection)",
    .flags = STROP__LAYER_ANY_INPUTS | STROP__LAYER_OUT_UNREAD | STROP__LAYER_IN_UNREAD,
    .shape = add_shape,
    .infer = strop__node_infer_shape,
    .init = NULL,
    .forward = add_forward,
    .backward = add_backward,
};

const strop__layer_vtable strop__layer_concat = {
    .type = "concat",
    .cfg_size = sizeof(concat_cfg),
    .n_inputs = 0,
    .doc = "joins its inputs along dim (torch.cat)",
    .flags = STROP__LAYER_ANY_INPUTS,
    .options = CONCAT_OPTIONS,
    .shape = concat_shape,
    .infer = concat_infer,
    .init = NULL,
    .forward = concat_forward,
    .backward = concat_backward,
};
