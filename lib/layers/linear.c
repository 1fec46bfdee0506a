/* strop — the linear layer (torch.nn.Linear): y = x W^T + b over the last dimension of any
 * input [N, *, in] -> [N, *, out]. The math is strop__linear_forward/_backward (GEMM). */
#include "layers/init.h"
#include "layers/layer.h"
#include "ops/dense.h"

typedef struct linear_cfg {
  int64_t in_features; /* 0 until inferred when the option is omitted */
  int64_t out_features;
  int bias;
  int in_given; /* 1: in_features came from the options and is checked, not re-inferred */
} linear_cfg;

static strop_status linear_parse(void *cfg, strop__opts *o) {
  linear_cfg *c = cfg;
  strop_status st;
  c->bias = 1;
  if ((st = strop__opt_int(o, "in_features", 1, INT32_MAX, &c->in_features))) return st;
  c->in_given = c->in_features != 0;
  if ((st = strop__opt_require(o, "out_features"))) return st;
  if ((st = strop__opt_int(o, "out_features", 1, INT32_MAX, &c->out_features))) return st;
  return strop__opt_bool(o, "bias", &c->bias);
}

static void linear_write(const void *cfg, strop__optbuf *b) {
  const linear_cfg *c = cfg;
  strop__optbuf_int(b, "in_features", c->in_features);
  strop__optbuf_int(b, "out_features", c->out_features);
  strop__optbuf_bool(b, "bias", c->bias);
}

static strop_status linear_infer(strop__node *n) {
  linear_cfg *c = n->cfg;
  const strop__shape *s = &n->in_shapes[0];
  char buf[96];
  if (s->rank < 1)
    return strop__err(STROP_E_SHAPE, "layer '%s' (linear): input must have at least one "
                                     "dimension per sample, got %s",
                      n->name, strop__shape_str(s, buf, sizeof buf));
  int64_t in = s->d[s->rank - 1];
  if (c->in_given && c->in_features != in)
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (linear): in_features is %lld but the input's last dimension "
                      "is %lld (input shape %s)",
                      n->name, (long long)c->in_features, (long long)in,
                      strop__shape_str(s, buf, sizeof buf));
  c->in_features = in;
  n->out_shape = *s;
  n->out_shape.d[s->rank - 1] = c->out_features;
  int64_t wd[2] = {c->out_features, in};
  strop_status st = strop__node_add_param(n, "weight", 2, wd, 0);
  if (st == STROP_OK && c->bias) st = strop__node_add_param(n, "bias", 1, &c->out_features, 0);
  return st;
}

static void linear_init(strop__node *n, strop__rng *rng) {
  const linear_cfg *c = n->cfg;
  strop__param *w = strop__node_param(n, "weight"), *b = strop__node_param(n, "bias");
  if (w) strop__init_pytorch_linear_default(w->data, w->numel, c->in_features, rng);
  if (b) strop__init_pytorch_linear_default(b->data, b->numel, c->in_features, rng);
}

/* rows of the GEMM: batch times every leading per-sample dimension */
static int64_t linear_rows(const strop__act *a) {
  int64_t m = a->n;
  for (int i = 0; i + 1 < a->shape.rank; i++) m *= a->shape.d[i];
  return m;
}

static strop_status linear_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                   strop__act *out) {
  (void)x;
  const linear_cfg *c = n->cfg;
  strop__param *w = strop__node_param(n, "weight"), *b = strop__node_param(n, "bias");
  strop__linear_forward(in[0].data, w->data, b ? b->data : NULL, out->data, linear_rows(&in[0]),
                        c->in_features, c->out_features);
  return STROP_OK;
}

static strop_status linear_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                    const strop__act *out, const float *dout, float *const *din) {
  (void)out;
  const linear_cfg *c = n->cfg;
  strop__param *w = strop__node_param(n, "weight"), *b = strop__node_param(n, "bias");
  float *dw = w->trainable ? w->grad : NULL;
  float *db = b && b->trainable ? b->grad : NULL;
  const int finite = strop__linear_backward(
      in[0].data, w->data, dout, din[0], dw, db, linear_rows(&in[0]), c->in_features,
      c->out_features,
      (x->din_assign ? STROP__LB_ASSIGN_DX : 0) | (x->pgrad_assign ? STROP__LB_ASSIGN_PARAMS : 0));
  /* written outright and seen finite as written: the trainer's guard need not read them */
  if (finite) {
    if (dw) w->grad_checked = 1;
    if (db) b->grad_checked = 1;
  }
  return STROP_OK;
}

const strop__layer_vtable strop__layer_linear = {
    .type = "linear",
    .cfg_size = sizeof(linear_cfg),
    .n_inputs = 1,
    .flags = STROP__LAYER_ASSIGNS_DIN | STROP__LAYER_ASSIGNS_PGRAD,
    .parse = linear_parse,
    .write = linear_write,
    .infer = linear_infer,
    .init = linear_init,
    .forward = linear_forward,
    .backward = linear_backward,
};
