/* SPDX-License-Identifier: MIT */
/* strop — the linear layer (torch.nn.Linear): y = x W^T + b over the last dimension of any
 * input [N, *, in] -> [N, *, out]. The math is strop__linear_forward/_backward (GEMM). */
#include <string.h>

#include "layers/init.h"
#include "layers/layer.h"
#include "ops/dense.h"

typedef struct linear_cfg {
  int64_t in_features; /* 0 ("auto") until inferred */
  int64_t out_features;
  int bias;
  int layout;   /* LAYOUT_*: how weight is stored */
  int in_given; /* 1: in_features came from the options and is checked, not re-inferred */
} linear_cfg;

enum { LAYOUT_OUT_IN, LAYOUT_IN_OUT };
static const char *const LAYOUTS[] = {"out_in", "in_out", NULL};

enum { W, B }; /* parameter slots */

static const strop__optdef OPTIONS[] = {
    STROP__OPT_AUTO_INT(linear_cfg, in_features, "in_features",
                        "input features (the last dimension of the input); auto: inferred"),
    {.name = "out_features",
     .type = STROP__OT_INT,
     .off = offsetof(linear_cfg, out_features),
     .lo = 1,
     .hi = INT32_MAX,
     .example = "4",
     .doc = "output features"},
    STROP__OPT_BOOL(linear_cfg, bias, "bias", "true", "learn an additive bias"),
    STROP__OPT_ENUM(linear_cfg, layout, "weight_layout", "out_in", LAYOUTS,
                    "out_in: weight [out, in] (nn.Linear); in_out: [in, out] (GPT-2's Conv1D)"),
    {NULL}};

static const strop__paramdef PARAMS[] = {
    [W] = {"weight", 0, "[out_features, in_features]; [in_features, out_features] with in_out"},
    [B] = {"bias", 0, "[out_features], when bias is true"},
    {NULL}};

/* LoRA turns a linear node into a lora_linear of the same options (surgery) */
static const strop__lora_ops LORA = {.adapter_type = "lora_linear"};

static strop_status linear_check(void *cfg, strop__opts *o) {
  (void)o;
  linear_cfg *c = cfg;
  c->in_given = c->in_features != 0;
  return STROP_OK;
}

/* [*, in_features] -> [*, out_features] */
static strop_status linear_shape(const strop__node *n, const strop__shape *in,
                                 strop__shape *out) {
  const linear_cfg *c = n->cfg;
  const strop__shape *s = &in[0];
  char buf[96];
  if (s->rank < 1)
    return strop__shape_error(n, "input must have at least one dimension per sample, got %s",
                              strop__shape_str(s, buf, sizeof buf));
  if (c->in_features && s->d[s->rank - 1] != c->in_features)
    return strop__shape_error(n,
                              "in_features is %lld but the input's last dimension is %lld "
                              "(input shape %s)",
                              (long long)c->in_features, (long long)s->d[s->rank - 1],
                              strop__shape_str(s, buf, sizeof buf));
  *out = *s;
  out->d[s->rank - 1] = c->out_features;
  return STROP_OK;
}

static strop_status linear_infer(strop__node *n) {
  linear_cfg *c = n->cfg;
  const strop__shape *s = &n->in_shapes[0];
  if (!c->in_given) c->in_features = s->rank >= 1 ? s->d[s->rank - 1] : 0;
  strop_status st = linear_shape(n, n->in_shapes, &n->out_shape);
  if (st) return st;
  const int64_t in = c->in_features;
  int64_t wd[2] = {c->out_features, in};
  if (c->layout == LAYOUT_IN_OUT) {
    wd[0] = in;
    wd[1] = c->out_features;
  }
  st = strop__node_declare(n, W, 2, wd);
  if (st == STROP_OK) n->params[n->slot[W] - 1].lowp_ok = c->layout == LAYOUT_IN_OUT ? 2 : 1;
  if (st == STROP_OK && c->bias) st = strop__node_declare(n, B, 1, &c->out_features);
  return st;
}

static void linear_init(strop__node *n, strop__rng *rng) {
  const linear_cfg *c = n->cfg;
  strop__param *w = strop__node_p(n, W), *b = strop__node_p(n, B);
  if (w) strop__init_pytorch_linear_default(w->data, w->numel, c->in_features, rng);
  if (b) strop__init_pytorch_linear_default(b->data, b->numel, c->in_features, rng);
}

/* rows of the GEMM: batch times every leading per-sample dimension */
static int64_t linear_rows(const strop__act *a) {
  int64_t m = a->n;
  for (int i = 0; i + 1 < a->shape.rank; i++) m *= a->shape.d[i];
  return m;
}

strop_status strop__linear_forward_w(const strop__node *n, const strop__param *w, const float *x,
                                     const float *b, float *y, int64_t m, int64_t in, int64_t out,
                                     int w_in_out) {
  if (!w->lowp.dtype) {
    strop__linear_forward_ex(x, w->data, b, y, m, in, out, w_in_out);
    return STROP_OK;
  }
  if (strop__linear_forward_lowp(x, &w->lowp, b, y, m, in, out, w_in_out))
    return strop__err(STROP_E_NOMEM,
                      "layer '%s' (%s): out of memory widening '%s' for its "
                      "product",
                      n->name, n->vt->type, w->name);
  return STROP_OK;
}

strop_status strop__linear_backward_w(const strop__node *n, const strop__param *w,
                                      strop__param *b, const float *x, const float *dy, float *dx,
                                      float *db, int64_t m, int64_t in, int64_t out, int w_in_out,
                                      int din_assign, int pgrad_assign) {
  if (strop__linear_backward_lowp(&w->lowp, dy, dx, m, in, out, w_in_out, din_assign))
    return strop__err(STROP_E_NOMEM,
                      "layer '%s' (%s): out of memory widening '%s' for its "
                      "backward",
                      n->name, n->vt->type, w->name);
  if (db &&
      strop__linear_backward(x, NULL, dy, NULL, NULL, db, m, in, out,
                             pgrad_assign ? STROP__LB_ASSIGN_PARAMS : 0) &&
      pgrad_assign)
    b->grad_checked = 1;
  return STROP_OK;
}

/* A generation step's head (strop__decode.last_rows_only): the last row of each sequence of
 * [nb, t, in] only, gathered so that they run as one product of nb rows (the weight read once),
 * and put back in place. The same values as the full product's rows: each row of a product is
 * computed alone. */
static strop_status last_rows(const strop__node *n, const strop__exec *x, const strop__param *w,
                              const strop__param *b, const strop__act *in, float *out) {
  const linear_cfg *c = n->cfg;
  const int64_t nb = in->n, t = linear_rows(in) / nb, d = c->in_features, o = c->out_features;
  float *xs = strop__arena_alloc(x->arena, (size_t)(nb * d) * sizeof *xs);
  float *ys = strop__arena_alloc(x->arena, (size_t)(nb * o) * sizeof *ys);
  if (!xs || !ys) return strop__err(STROP_E_NOMEM, "layer '%s' (linear): out of memory", n->name);
  for (int64_t s = 0; s < nb; s++)
    memcpy(xs + s * d, in->data + (s * t + t - 1) * d, (size_t)d * sizeof *xs);
  strop_status st = strop__linear_forward_w(n, w, xs, b ? b->data : NULL, ys, nb, d, o,
                                            c->layout == LAYOUT_IN_OUT);
  for (int64_t s = 0; s < nb && !st; s++)
    memcpy(out + (s * t + t - 1) * o, ys + s * o, (size_t)o * sizeof *ys);
  return st;
}

static strop_status linear_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                   strop__act *out) {
  const linear_cfg *c = n->cfg;
  strop__param *w = strop__node_p(n, W), *b = strop__node_p(n, B);
  if (x->decode && x->decode->last_rows_only == n && in[0].shape.rank == 2 &&
      in[0].shape.d[0] > 1)
    return last_rows(n, x, w, b, &in[0], out->data);
  if (strop__compute_bf16(x, w)) /* the model computes in BF16 (layers/compute.c) */
    return strop__linear_forward_c(n, x, w, in[0].data, b ? b->data : NULL, out->data,
                                   linear_rows(&in[0]), c->in_features, c->out_features,
                                   c->layout == LAYOUT_IN_OUT);
  return strop__linear_forward_w(n, w, in[0].data, b ? b->data : NULL, out->data,
                                 linear_rows(&in[0]), c->in_features, c->out_features,
                                 c->layout == LAYOUT_IN_OUT);
}

static strop_status linear_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                    const strop__act *out, const float *dout, float *const *din) {
  (void)out;
  const linear_cfg *c = n->cfg;
  strop__param *w = strop__node_p(n, W), *b = strop__node_p(n, B);
  float *dw = w->trainable ? w->grad : NULL;
  float *db = b && b->trainable ? b->grad : NULL;
  if (w->lowp.dtype) /* held in BF16 or int8: frozen, so dx only (a bias may still train) */
    return strop__linear_backward_w(n, w, b, in[0].data, dout, din[0], db, linear_rows(&in[0]),
                                    c->in_features, c->out_features, c->layout == LAYOUT_IN_OUT,
                                    x->din_assign, x->pgrad_assign);
  const unsigned assign = (x->din_assign ? STROP__LB_ASSIGN_DX : 0) |
                          (x->pgrad_assign ? STROP__LB_ASSIGN_PARAMS : 0) |
                          (c->layout == LAYOUT_IN_OUT ? STROP__LB_W_IN_OUT : 0);
  if (strop__compute_bf16(x, w)) { /* the model computes in BF16 (layers/compute.c) */
    int seen = 0;
    const uint16_t *xh = x->held_in ? x->held_in[0] : NULL; /* linear_bf16_input 2 */
    const strop_status st = strop__linear_backward_c(n, x, w, in[0].data, xh, dout, din[0], dw,
                                                     db, linear_rows(&in[0]), c->in_features,
                                                     c->out_features, assign, &seen);
    if (!st && seen) { /* as the FP32 path's below */
      if (dw) w->grad_checked = 1;
      if (db) b->grad_checked = 1;
    }
    return st;
  }
  const int finite = strop__linear_backward(in[0].data, w->data, dout, din[0], dw, db,
                                            linear_rows(&in[0]), c->in_features, c->out_features,
                                            assign);
  /* written outright and seen finite as written: the trainer's guard need not read them */
  if (finite) {
    if (dw) w->grad_checked = 1;
    if (db) b->grad_checked = 1;
  }
  return STROP_OK;
}

/* Every row of y is x's row times W: the graph may run the layer a chunk of rows at a time (the
 * LM head fused with its loss) unless each call would widen a whole held weight. */
static int linear_rows_ok(const strop__node *n) {
  const linear_cfg *c = n->cfg;
  const strop__param *w = strop__node_p(n, W);
  return w && (!w->lowp.dtype || strop__linear_lowp_direct(&w->lowp, c->layout == LAYOUT_IN_OUT));
}

/* In BF16, x is read only by the dW product, which rounds it (strop__linear_backward_bf16_seen,
 * both paths), or not at all (a weight held in BF16 or int8 is frozen; the bias's sums read
 * dy alone). A trained weight's dW on vdpbf16ps reads x as the step holds it (2: x->held_in,
 * strop__bf16_gemm_kn_h), unless strop__linear_held is 0. */
int strop__linear_held = 1;

static int linear_bf16_input(const strop__node *n, const strop__exec *x, int slot) {
  (void)slot;
  const strop__param *w = strop__node_p(n, W);
  if (!w || !(strop__compute_bf16(x, w) || w->lowp.dtype)) return 0;
  return w->lowp.dtype || !w->trainable || !strop__linear_held || !strop__bf16_dot_enabled() ? 1
                                                                                             : 2;
}

const strop__layer_vtable strop__layer_linear = {
    .type = "linear",
    .doc = "y = x W^T + b over the last dimension (torch.nn.Linear)",
    .cfg_size = sizeof(linear_cfg),
    .n_inputs = 1,
    .flags = STROP__LAYER_ASSIGNS_DIN | STROP__LAYER_ASSIGNS_PGRAD | STROP__LAYER_FOLD_CL |
             STROP__LAYER_OUT_UNREAD, /* the backward reads x, W and dy, never y */
    .options = OPTIONS,
    .params = PARAMS,
    .check = linear_check,
    .shape = linear_shape,
    .infer = linear_infer,
    .init = linear_init,
    .forward = linear_forward,
    .backward = linear_backward,
    .rows = linear_rows_ok,
    .bf16_input = linear_bf16_input,
    .lora = &LORA,
};
