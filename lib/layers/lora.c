/* SPDX-License-Identifier: MIT */
/* strop — lora_linear: a linear layer y = x W^T + b plus a low-rank adapter
 * scale * (dropout(x) A^T) B^T with PEFT's parameter names, init and scale alpha / r. */
#include "layers/lora.h"

#include "layers/init.h"
#include "ops/dense.h"
#include "ops/lora.h"

#include <math.h>
#include <string.h>

/* what forward keeps for backward (arena) */
typedef struct lora_saved {
  const float *h; /* the adapter's input: x, or dropout(x) */
  uint8_t *mask;  /* dropout mask, NULL when no dropout ran */
  float *t;       /* h A^T [m, r] */
} lora_saved;

enum { W, B, LA, LB }; /* parameter slots */
static const char *const LAYOUTS[] = {"out_in", "in_out", NULL};

static const strop__optdef OPTIONS[] = {
    STROP__OPT_AUTO_INT(strop__lora_cfg, in_features, "in_features",
                        "input features; auto: inferred"),
    {.name = "out_features",
     .type = STROP__OT_INT,
     .off = offsetof(strop__lora_cfg, out_features),
     .lo = 1,
     .hi = INT32_MAX,
     .example = "4",
     .doc = "output features"},
    STROP__OPT_BOOL(strop__lora_cfg, bias, "bias", "true", "the base layer has a bias"),
    STROP__OPT_INT(strop__lora_cfg, r, "r", "8", 1, INT32_MAX, "the adapter's rank"),
    STROP__OPT_FLOAT(strop__lora_cfg, alpha, "alpha", "8", 0, 1e9, 0,
                     "scale alpha / r of the adapter's output (PEFT's lora_alpha)"),
    STROP__OPT_FLOAT(strop__lora_cfg, dropout, "dropout", "0", 0, 1, STROP__OF_HI_OPEN,
                     "dropout on the adapter's input in train mode"),
    STROP__OPT_BOOL(strop__lora_cfg, merged, "merged", "false",
                    "B A is folded into weight and the adapter path is skipped"),
    STROP__OPT_ENUM(strop__lora_cfg, layout, "weight_layout", "out_in", LAYOUTS,
                    "the base weight: out_in [out, in] (nn.Linear); in_out [in, out] (GPT-2's "
                    "Conv1D, PEFT's fan_in_fan_out)"),
    {NULL}};

static const strop__paramdef PARAMS[] = {
    [W] = {"weight", STROP__PD_FROZEN,
           "[out_features, in_features] ([in, out] with in_out), "
           "frozen"},
    [B] = {"bias", STROP__PD_FROZEN, "[out_features], frozen, when bias is true"},
    [LA] = {"lora_A.weight", STROP__PD_ADAPTER, "[r, in_features]"},
    [LB] = {"lora_B.weight", STROP__PD_ADAPTER, "[out_features, r]"},
    {NULL}};

static strop_status lora_check(void *cfg, strop__opts *o) {
  (void)o;
  strop__lora_cfg *c = cfg;
  c->in_given = c->in_features != 0;
  return STROP_OK;
}

/* [*, in_features] -> [*, out_features] */
static strop_status lora_shape(const strop__node *n, const strop__shape *in, strop__shape *out) {
  const strop__lora_cfg *c = n->cfg;
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

static strop_status lora_infer(strop__node *n) {
  strop__lora_cfg *c = n->cfg;
  const strop__shape *s = &n->in_shapes[0];
  if (!c->in_given) c->in_features = s->rank >= 1 ? s->d[s->rank - 1] : 0;
  strop_status st = lora_shape(n, n->in_shapes, &n->out_shape);
  if (st) return st;
  const int64_t in = c->in_features;
  int64_t wd[2] = {c->out_features, in}, ad[2] = {c->r, in}, bd[2] = {c->out_features, c->r};
  if (c->layout) {
    wd[0] = in;
    wd[1] = c->out_features;
  }
  /* the base layer is frozen, as in PEFT: only the adapter trains */
  st = strop__node_declare(n, W, 2, wd);
  if (!st) n->params[n->slot[W] - 1].lowp_ok = c->layout ? 2 : 1;
  if (!st && c->bias) st = strop__node_declare(n, B, 1, &c->out_features);
  if (!st) st = strop__node_declare(n, LA, 2, ad);
  if (!st) st = strop__node_declare(n, LB, 2, bd);
  return st;
}

float strop__lora_scale(const strop__lora_cfg *c) {
  return c->r > 0 ? c->alpha / (float)c->r : 0.0f;
}

void strop__lora_init_pair(strop__param *a, strop__param *b, int64_t fan_in, strop__rng *rng) {
  if (a && a->data) strop__init_kaiming_uniform(a->data, a->numel, fan_in, sqrt(5.0), rng);
  if (b && b->data) strop__init_zeros(b->data, b->numel);
}

static void lora_init_adapters(strop__node *n, int mask, strop__rng *rng) {
  const strop__lora_cfg *c = n->cfg;
  if (mask & 1)
    strop__lora_init_pair(strop__node_p(n, LA), strop__node_p(n, LB), c->in_features, rng);
}

static void lora_init(strop__node *n, strop__rng *rng) {
  const strop__lora_cfg *c = n->cfg;
  strop__param *w = strop__node_p(n, W), *b = strop__node_p(n, B);
  if (w) strop__init_pytorch_linear_default(w->data, w->numel, c->in_features, rng);
  if (b) strop__init_pytorch_linear_default(b->data, b->numel, c->in_features, rng);
  lora_init_adapters(n, 1, rng);
}

static void lora_set_merged(strop__node *n, int merge) {
  strop__lora_cfg *c = n->cfg;
  merge = merge ? 1 : 0;
  if (c->merged == merge) return;
  strop__param *w = strop__node_p(n, W), *a = strop__node_p(n, LA), *b = strop__node_p(n, LB);
  if (!w || !a || !b || !w->data || !a->data || !b->data) return;
  float s = strop__lora_scale(c);
  (c->layout ? strop__lora_merge_t : strop__lora_merge)(w->data, a->data, b->data, c->in_features,
                                                        c->r, c->out_features, merge ? s : -s);
  w->version++;
  c->merged = merge;
}

static int64_t lora_rows(const strop__act *a) {
  int64_t m = a->n;
  for (int i = 0; i + 1 < a->shape.rank; i++) m *= a->shape.d[i];
  return m;
}

static strop_status lora_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                 strop__act *out) {
  const strop__lora_cfg *c = n->cfg;
  strop__param *w = strop__node_p(n, W), *b = strop__node_p(n, B);
  strop__param *a = strop__node_p(n, LA), *bb = strop__node_p(n, LB);
  const int64_t m = lora_rows(&in[0]);
  n->saved = NULL;
  /* the base in the model's compute dtype; the rank-r adapter stays FP32 (its products are
   * m r (in + out) multiply-adds: rounding them would cost about what it saves) */
  strop_status st = strop__compute_bf16(x, w)
                        ? strop__linear_forward_c(n, x, w, in[0].data, b ? b->data : NULL,
                                                  out->data, m, c->in_features, c->out_features,
                                                  c->layout)
                        : strop__linear_forward_w(n, w, in[0].data, b ? b->data : NULL, out->data,
                                                  m, c->in_features, c->out_features, c->layout);
  if (st) return st;
  if (c->merged) return STROP_OK;
  lora_saved *sv = strop__arena_alloc(x->arena, sizeof *sv);
  float *t = strop__arena_alloc(x->arena, (size_t)m * (size_t)c->r * sizeof(float) + 1);
  if (!sv || !t)
    return strop__err(STROP_E_NOMEM, "layer '%s' (lora_linear): out of memory", n->name);
  sv->h = in[0].data;
  sv->mask = NULL;
  sv->t = t;
  if (x->training && c->dropout > 0.0f) {
    size_t cnt = (size_t)m * (size_t)c->in_features;
    float *h = strop__arena_alloc(x->arena, cnt * sizeof(float) + 1);
    uint8_t *mask = strop__arena_alloc(x->arena, cnt + 1);
    if (!h || !mask)
      return strop__err(STROP_E_NOMEM, "layer '%s' (lora_linear): out of memory", n->name);
    const uint64_t per_row = in[0].n > 0 ? cnt / (size_t)in[0].n : 0;
    strop__exec_skip_rows(x, x->rows_before, per_row);
    strop__dropout_forward(in[0].data, h, mask, cnt, c->dropout, x->rng);
    strop__exec_skip_rows(x, x->rows_after, per_row);
    sv->h = h;
    sv->mask = mask;
  }
  strop__lora_forward(sv->h, a->data, bb->data, t, out->data, m, c->in_features, c->r,
                      c->out_features, strop__lora_scale(c));
  n->saved = sv;
  return STROP_OK;
}

static strop_status lora_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                  const strop__act *out, const float *dout, float *const *din) {
  (void)out;
  const strop__lora_cfg *c = n->cfg;
  strop__param *w = strop__node_p(n, W), *b = strop__node_p(n, B);
  strop__param *a = strop__node_p(n, LA), *bb = strop__node_p(n, LB);
  const int64_t m = lora_rows(&in[0]);
  float *dw = w->trainable ? w->grad : NULL;
  float *db = b && b->trainable ? b->grad : NULL;
  if (w->lowp.dtype) {
    strop_status st = strop__linear_backward_w(n, w, b, in[0].data, dout, din[0], db, m,
                                               c->in_features, c->out_features, c->layout, 0, 0);
    if (st) return st;
  } else if (strop__compute_bf16(x, w)) {
    strop_status st = strop__linear_backward_c(n, x, w, in[0].data, NULL, dout, din[0], dw, db, m,
                                               c->in_features, c->out_features,
                                               c->layout ? STROP__LB_W_IN_OUT : 0, NULL);
    if (st) return st;
  } else {
    strop__linear_backward(in[0].data, w->data, dout, din[0], dw, db, m, c->in_features,
                           c->out_features, c->layout ? STROP__LB_W_IN_OUT : 0);
  }
  const lora_saved *sv = n->saved;
  if (c->merged || !sv) return STROP_OK;
  float *da = a->trainable ? a->grad : NULL;
  float *dbb = bb->trainable ? bb->grad : NULL;
  float *dh = din[0];
  size_t cnt = (size_t)m * (size_t)c->in_features;
  if (dh && sv->mask) {
    dh = strop__arena_calloc(x->arena, cnt * sizeof(float) + 1);
    if (!dh) return strop__err(STROP_E_NOMEM, "layer '%s' (lora_linear): out of memory", n->name);
  }
  float *dt = strop__arena_alloc(x->arena, (size_t)m * (size_t)c->r * sizeof(float) + 1);
  if (!dt) return strop__err(STROP_E_NOMEM, "layer '%s' (lora_linear): out of memory", n->name);
  strop__lora_backward(sv->h, a->data, bb->data, sv->t, dout, dt, dh, da, dbb, m, c->in_features,
                       c->r, c->out_features, strop__lora_scale(c));
  if (dh && sv->mask) strop__dropout_backward(sv->mask, dh, din[0], cnt, c->dropout);
  return STROP_OK;
}

/* Row by row as linear (the adapter's product and its dropout too, drawn in row order): the
 * graph may run it a chunk of rows at a time unless each call would widen the held base. */
static int lora_rows_ok(const strop__node *n) {
  const strop__lora_cfg *c = n->cfg;
  const strop__param *w = strop__node_p(n, W);
  return w && (!w->lowp.dtype || strop__linear_lowp_direct(&w->lowp, c->layout));
}

static int64_t lora_rank(const strop__node *n, int part, float *alpha, float *dropout) {
  const strop__lora_cfg *c = n->cfg;
  if (part != 0) return 0;
  if (alpha) *alpha = c->alpha;
  if (dropout) *dropout = c->dropout;
  return c->r;
}

static int lora_merged(const strop__node *n) { return ((const strop__lora_cfg *)n->cfg)->merged; }

/* merged for good (export): a plain linear of the base options */
static const strop__lora_ops LORA = {
    .rank = lora_rank,
    .init_adapters = lora_init_adapters,
    .merged = lora_merged,
    .set_merged = lora_set_merged,
    .merged_type = "linear",
};

const strop__layer_vtable strop__layer_lora_linear = {
    .type = "lora_linear",
    .doc = "a frozen linear plus a trainable low-rank adapter, (alpha / r) (x A^T) B^T "
           "(PEFT's lora.Linear)",
    .cfg_size = sizeof(strop__lora_cfg),
    .n_inputs = 1,
    .flags = STROP__LAYER_STOCHASTIC,
    .options = OPTIONS,
    .params = PARAMS,
    .check = lora_check,
    .shape = lora_shape,
    .infer = lora_infer,
    .init = lora_init,
    .forward = lora_forward,
    .backward = lora_backward,
    .rows = lora_rows_ok,
    .lora = &LORA,
};
