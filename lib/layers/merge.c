/* SPDX-License-Identifier: MIT */
/* strop — layers that merge several inputs: add (residual sums of same-shaped inputs) and
 * concat (torch.cat along one dimension; dim counts the batch as 0, default 1). */
#include <string.h>

#include "layers/fuse.h"
#include "layers/layer.h"
#include "ops/dense.h"
#include "ops/layernorm.h"

typedef struct add_cfg {
  int unused; /* no options */
  /* run time, from add_fuse: the rmsnorm after this add that it computes in the same pass
   * over each row, or NULL */
  const strop__node *norm;
  int relu; /* run time, from add_fuse: 1 when it computes the relu after it too */
} add_cfg;

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
  int relu;           /* forward: relu(sum) into y */
  const float *yrelu; /* backward: the fused relu's output, or NULL */
  int assign;         /* backward: exec->din_assign */
} add_job;

/* Elements per thread below which a split does not pay for waking a worker. */
#define ADD_GRAIN 16384

static void add_fwd_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const add_job *j = ctx;
  const float *a = j->in[0].data, *b = j->in[1].data;
  float *y = j->y;
  if (j->relu && j->n_in == 2) { /* the sum and strop__relu_forward's select in one pass */
    for (int64_t k = lo; k < hi; k++) {
      const float s = a[k] + b[k];
      y[k] = s < 0.0f ? 0.0f : s;
    }
    return;
  }
  for (int64_t k = lo; k < hi; k++) y[k] = a[k] + b[k];
  for (int i = 2; i < j->n_in; i++) {
    const float *c = j->in[i].data;
    for (int64_t k = lo; k < hi; k++) y[k] += c[k];
  }
  if (j->relu) strop__relu_forward(y + lo, y + lo, (size_t)(hi - lo));
}

/* The gradient handed to every input, a piece at a time: dout, or with the fused relu
 * strop__relu_backward_assign's select of it, written to the inputs' gradients a bit of
 * din_assign says were not zeroed and added to the others (0 + g is g but for g = -0), in input
 * order: an input read twice (add(x, x)) gets its first slot's g and then the second's. */
static void add_bwd_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const add_job *j = ctx;
  enum { PIECE = 1024 };
  float gb[PIECE];
  for (int64_t p0 = lo; p0 < hi; p0 += PIECE) {
    const int64_t np = hi - p0 < PIECE ? hi - p0 : PIECE;
    const float *g = j->dout + p0;
    if (j->yrelu) {
      const float *yr = j->yrelu + p0;
      for (int64_t k = 0; k < np; k++) gb[k] = yr[k] <= 0.0f ? 0.0f : g[k];
      g = gb;
    }
    for (int i = 0; i < j->n_in; i++) {
      float *dx = j->din[i] ? j->din[i] + p0 : NULL;
      if (!dx) continue;
      if (i < 31 && (j->assign >> i) & 1) memcpy(dx, g, sizeof(float) * (size_t)np);
      else
        for (int64_t k = 0; k < np; k++) dx[k] += g[k];
    }
  }
}

/* A residual sum whose only reader is a relu (a ResNet block's end) computes the relu in the
 * same pass: the sum is never stored and read again, the bits are the two layers' apart (the
 * relu's select on the same float sum; backward, strop__relu_backward_assign's select added to
 * each input's gradient). A residual sum read by an rmsnorm and by others after it (a Llama
 * block's: the norm, and the next residual sum): the sum is stored for the others anyway
 * (shared), so the add writes it and normalises each row while it is in cache, and in the
 * backward adds the norm's input gradient to the sum's and hands it to the inputs in one pass
 * (ops/layernorm.h), with the bits of the two apart. Offered in eval mode and with a training
 * norm weight too (STROP__LAYER_FUSE_EXACT). */
int strop__add_fuse_relu = 1;

static int add_fuse(strop__node *n, strop__node *const *next, int n_next, int shared) {
  add_cfg *c = n->cfg;
  int64_t d;
  float eps;
  strop__param *w;
  c->norm = NULL;
  c->relu = 0;
  if (strop__add_fuse_relu && n_next >= 1 && !shared && n->n_in >= 2 &&
      (next[0]->vt->flags & STROP__LAYER_EPILOGUE_RELU)) {
    c->relu = 1;
    return 1;
  }
  if (n_next < 1 || !shared || !strop__layer_rmsnorm_rows(next[0], &d, &eps, &w)) return 0;
  c->norm = next[0];
  return 1;
}

/* The fused rmsnorm's rows, row width, eps and weight over the sum s. */
static void norm_geometry(const add_cfg *c, const strop__act *s, int64_t *rows, int64_t *d,
                          float *eps, strop__param **w) {
  strop__layer_rmsnorm_rows(c->norm, d, eps, w);
  *rows = s->n * (int64_t)strop__shape_numel(&s->shape) / *d;
}

static strop_status add_norm_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                     strop__act *out) {
  const add_cfg *c = n->cfg;
  if (!x->fused_head)
    return strop__err(STROP_E_INTERNAL, "layer '%s' (add): fused without its own output",
                      n->name);
  int64_t rows, d;
  float eps;
  strop__param *w;
  norm_geometry(c, x->fused_head, &rows, &d, &eps, &w);
  const float **xs = strop__arena_alloc(x->arena, (size_t)n->n_in * sizeof *xs);
  float *rstd = strop__arena_alloc(x->arena, (size_t)rows * sizeof(float) + 1);
  if (!xs || !rstd) return strop__err(STROP_E_NOMEM, "layer '%s' (add): out of memory", n->name);
  for (int i = 0; i < n->n_in; i++) xs[i] = in[i].data;
  strop__add_rmsnorm_forward(xs, n->n_in, rows, d, w ? w->data : NULL, eps, x->fused_head->data,
                             out->data, rstd);
  n->saved = rstd;
  return STROP_OK;
}

static strop_status add_norm_backward(strop__node *n, const strop__exec *x, const float *dout,
                                      float *const *din) {
  const add_cfg *c = n->cfg;
  if (!x->fused_head || !n->saved)
    return strop__err(STROP_E_INTERNAL, "layer '%s' (add): backward without its forward",
                      n->name);
  int64_t rows, d;
  float eps;
  strop__param *w;
  norm_geometry(c, x->fused_head, &rows, &d, &eps, &w);
  float *dw = dout && w && w->trainable ? w->grad : NULL;
  float *scratch = strop__arena_alloc(
      x->arena, strop__add_rmsnorm_backward_scratch(rows, d) * sizeof(float));
  if (!scratch) return strop__err(STROP_E_NOMEM, "layer '%s' (add): out of memory", n->name);
  const size_t cnt = (size_t)rows * (size_t)d;
  for (int i = 0; i < n->n_in && i < 31; i++) /* the fused pass adds to every input's */
    if (din[i] && ((x->din_assign >> i) & 1)) strop__par_zero(din[i], cnt);
  strop__add_rmsnorm_backward(x->fused_head->data, dout, x->fused_head_grad, rows, d,
                              w ? w->data : NULL, n->saved, din, n->n_in, dw, scratch);
  return STROP_OK;
}

static strop_status add_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                strop__act *out) {
  if (n->fused > 0 && ((const add_cfg *)n->cfg)->norm) return add_norm_forward(n, x, in, out);
  size_t cnt = (size_t)in[0].n * strop__shape_numel(&in[0].shape);
  if (n->n_in == 1) {
    memcpy(out->data, in[0].data, cnt * sizeof(float));
    return STROP_OK;
  }
  const int relu = n->fused > 0 && ((const add_cfg *)n->cfg)->relu;
  add_job j = {.in = in, .n_in = n->n_in, .y = out->data, .relu = relu};
  strop__par_for((int64_t)cnt, ADD_GRAIN, add_fwd_range, &j);
  return STROP_OK;
}

static strop_status add_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                 const strop__act *out, const float *dout, float *const *din) {
  (void)out;
  if (n->fused > 0 && ((const add_cfg *)n->cfg)->norm) return add_norm_backward(n, x, dout, din);
  size_t cnt = (size_t)in[0].n * strop__shape_numel(&in[0].shape);
  const int relu = n->fused > 0 && ((const add_cfg *)n->cfg)->relu;
  add_job j = {.in = in,
               .n_in = n->n_in,
               .dout = dout,
               .din = din,
               .yrelu = relu ? out->data : NULL,
               .assign = x->din_assign};
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
    .cfg_size = sizeof(add_cfg), /* no options */
    .n_inputs = 0,
    .doc = "elementwise sum of inputs of one shape (a residual connection)",
    .flags = STROP__LAYER_ANY_INPUTS | STROP__LAYER_ASSIGNS_DIN | STROP__LAYER_OUT_UNREAD |
             STROP__LAYER_IN_UNREAD | STROP__LAYER_FUSE_EXACT | STROP__LAYER_EPILOGUE_ADD,
    .shape = add_shape,
    .infer = strop__node_infer_shape,
    .init = NULL,
    .forward = add_forward,
    .backward = add_backward,
    .fuse = add_fuse,
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
