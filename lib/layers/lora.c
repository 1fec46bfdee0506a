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
  const float *h;  /* the adapter's input: x, or dropout(x) */
  uint8_t *mask;   /* dropout mask, NULL when no dropout ran */
  float *t;        /* h A^T [m, r] */
} lora_saved;

static strop_status lora_parse(void *cfg, strop__opts *o) {
  strop__lora_cfg *c = cfg;
  strop_status st;
  c->bias = 1;
  c->r = 8;
  c->alpha = 8.0f;
  c->dropout = 0.0f;
  if ((st = strop__opt_int(o, "in_features", 1, INT32_MAX, &c->in_features))) return st;
  c->in_given = c->in_features != 0;
  if ((st = strop__opt_require(o, "out_features"))) return st;
  if ((st = strop__opt_int(o, "out_features", 1, INT32_MAX, &c->out_features))) return st;
  if ((st = strop__opt_bool(o, "bias", &c->bias))) return st;
  if ((st = strop__opt_int(o, "r", 1, INT32_MAX, &c->r))) return st;
  if ((st = strop__opt_float(o, "alpha", 0.0, 1e9, &c->alpha))) return st;
  if ((st = strop__opt_float(o, "dropout", 0.0, 1.0, &c->dropout))) return st;
  if (c->dropout >= 1.0f) return strop__opt_error(o, "dropout", "must be below 1, got %g",
                                                  (double)c->dropout);
  return strop__opt_bool(o, "merged", &c->merged);
}

static void lora_write(const void *cfg, strop__optbuf *b) {
  const strop__lora_cfg *c = cfg;
  strop__optbuf_int(b, "in_features", c->in_features);
  strop__optbuf_int(b, "out_features", c->out_features);
  strop__optbuf_bool(b, "bias", c->bias);
  strop__optbuf_int(b, "r", c->r);
  strop__optbuf_float(b, "alpha", c->alpha);
  strop__optbuf_float(b, "dropout", c->dropout);
  strop__optbuf_bool(b, "merged", c->merged);
}

static strop_status lora_infer(strop__node *n) {
  strop__lora_cfg *c = n->cfg;
  const strop__shape *s = &n->in_shapes[0];
  char buf[96];
  if (s->rank < 1)
    return strop__err(STROP_E_SHAPE, "layer '%s' (lora_linear): input must have at least one "
                                     "dimension per sample, got %s",
                      n->name, strop__shape_str(s, buf, sizeof buf));
  int64_t in = s->d[s->rank - 1];
  if (c->in_given && c->in_features != in)
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (lora_linear): in_features is %lld but the input's last "
                      "dimension is %lld (input shape %s)",
                      n->name, (long long)c->in_features, (long long)in,
                      strop__shape_str(s, buf, sizeof buf));
  c->in_features = in;
  n->out_shape = *s;
  n->out_shape.d[s->rank - 1] = c->out_features;
  int64_t wd[2] = {c->out_features, in}, ad[2] = {c->r, in}, bd[2] = {c->out_features, c->r};
  strop_status st = strop__node_add_param(n, "weight", 2, wd, 0);
  if (!st && c->bias) st = strop__node_add_param(n, "bias", 1, &c->out_features, 0);
  if (!st) st = strop__node_add_param(n, "lora_A.weight", 2, ad, 0);
  if (!st) st = strop__node_add_param(n, "lora_B.weight", 2, bd, 0);
  if (st) return st;
  /* the base layer is frozen, as in PEFT: only the adapter trains */
  for (int i = 0; i < n->n_params; i++)
    if (i < (c->bias ? 2 : 1)) n->params[i].trainable = 0;
  return STROP_OK;
}

float strop__lora_scale(const strop__lora_cfg *c) {
  return c->r > 0 ? c->alpha / (float)c->r : 0.0f;
}

void strop__lora_init_adapters(strop__node *n, strop__rng *rng) {
  const strop__lora_cfg *c = n->cfg;
  strop__param *a = strop__node_param(n, "lora_A.weight"), *b = strop__node_param(n, "lora_B.weight");
  if (a) strop__init_kaiming_uniform(a->data, a->numel, c->in_features, sqrt(5.0), rng);
  if (b) strop__init_zeros(b->data, b->numel);
}

static void lora_init(strop__node *n, strop__rng *rng) {
  const strop__lora_cfg *c = n->cfg;
  strop__param *w = strop__node_param(n, "weight"), *b = strop__node_param(n, "bias");
  if (w) strop__init_pytorch_linear_default(w->data, w->numel, c->in_features, rng);
  if (b) strop__init_pytorch_linear_default(b->data, b->numel, c->in_features, rng);
  strop__lora_init_adapters(n, rng);
}

void strop__lora_set_merged(strop__node *n, int merge) {
  strop__lora_cfg *c = n->cfg;
  merge = merge ? 1 : 0;
  if (c->merged == merge) return;
  strop__param *w = strop__node_param(n, "weight");
  strop__param *a = strop__node_param(n, "lora_A.weight"), *b = strop__node_param(n, "lora_B.weight");
  if (!w || !a || !b || !w->data || !a->data || !b->data) return;
  float s = strop__lora_scale(c);
  strop__lora_merge(w->data, a->data, b->data, c->in_features, c->r, c->out_features,
                    merge ? s : -s);
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
  strop__param *w = strop__node_param(n, "weight"), *b = strop__node_param(n, "bias");
  strop__param *a = strop__node_param(n, "lora_A.weight"), *bb = strop__node_param(n, "lora_B.weight");
  const int64_t m = lora_rows(&in[0]);
  strop__linear_forward(in[0].data, w->data, b ? b->data : NULL, out->data, m, c->in_features,
                        c->out_features);
  n->saved = NULL;
  if (c->merged) return STROP_OK;
  lora_saved *sv = strop__arena_alloc(x->arena, sizeof *sv);
  float *t = strop__arena_alloc(x->arena, (size_t)m * (size_t)c->r * sizeof(float) + 1);
  if (!sv || !t) return strop__err(STROP_E_NOMEM, "layer '%s' (lora_linear): out of memory", n->name);
  sv->h = in[0].data;
  sv->mask = NULL;
  sv->t = t;
  if (x->training && c->dropout > 0.0f) {
    size_t cnt = (size_t)m * (size_t)c->in_features;
    float *h = strop__arena_alloc(x->arena, cnt * sizeof(float) + 1);
    uint8_t *mask = strop__arena_alloc(x->arena, cnt + 1);
    if (!h || !mask)
      return strop__err(STROP_E_NOMEM, "layer '%s' (lora_linear): out of memory", n->name);
    strop__dropout_forward(in[0].data, h, mask, cnt, c->dropout, x->rng);
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
  strop__param *w = strop__node_param(n, "weight"), *b = strop__node_param(n, "bias");
  strop__param *a = strop__node_param(n, "lora_A.weight"), *bb = strop__node_param(n, "lora_B.weight");
  const int64_t m = lora_rows(&in[0]);
  float *dw = w->trainable ? w->grad : NULL;
  float *db = b && b->trainable ? b->grad : NULL;
  strop__linear_backward(in[0].data, w->data, dout, din[0], dw, db, m, c->in_features,
                         c->out_features, 0);
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
  strop__lora_backward(sv->h, a->data, bb->data, sv->t, dout, dt, dh, da, dbb, m,
                       c->in_features, c->r, c->out_features, strop__lora_scale(c));
  if (dh && sv->mask) strop__dropout_backward(sv->mask, dh, din[0], cnt, c->dropout);
  return STROP_OK;
}

const strop__layer_vtable strop__layer_lora_linear = {
    .type = "lora_linear",
    .cfg_size = sizeof(strop__lora_cfg),
    .n_inputs = 1,
    .flags = STROP__LAYER_STOCHASTIC,
    .parse = lora_parse,
    .write = lora_write,
    .infer = lora_infer,
    .init = lora_init,
    .forward = lora_forward,
    .backward = lora_backward,
};
