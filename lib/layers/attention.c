/* strop — multi-head self-attention (torch.nn.MultiheadAttention with batch_first=True and
 * query = key = value) on [N, T, D], with separate q/k/v/out projections named
 * "<node>.q_proj.weight" ..., an optional causal mask and the graph's padding mask. */
#include <math.h>

#include "layers/init.h"
#include "layers/layer.h"
#include "ops/attention.h"

typedef struct mha_cfg {
  int64_t embed_dim; /* 0 until inferred */
  int64_t num_heads;
  int bias;
  float dropout;
  int causal;
} mha_cfg;

static const char *const PARAM_NAMES[8] = {
    "q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias",
    "v_proj.weight", "v_proj.bias", "out_proj.weight", "out_proj.bias",
};

static strop_status mha_parse(void *cfg, strop__opts *o) {
  mha_cfg *c = cfg;
  strop_status st;
  c->bias = 1;
  if ((st = strop__opt_int(o, "embed_dim", 1, INT32_MAX, &c->embed_dim))) return st;
  if ((st = strop__opt_require(o, "num_heads"))) return st;
  if ((st = strop__opt_int(o, "num_heads", INT32_MIN, INT32_MAX, &c->num_heads))) return st;
  if (c->num_heads < 1)
    return strop__opt_error(o, "num_heads", "must be at least 1, got %lld",
                            (long long)c->num_heads);
  if ((st = strop__opt_bool(o, "bias", &c->bias))) return st;
  if ((st = strop__opt_float(o, "dropout", 0.0, 1.0, &c->dropout))) return st;
  if (c->embed_dim && c->embed_dim % c->num_heads != 0)
    return strop__opt_error(o, "num_heads", "embed_dim %lld is not divisible by num_heads %lld",
                            (long long)c->embed_dim, (long long)c->num_heads);
  return strop__opt_bool(o, "causal", &c->causal);
}

static void mha_write(const void *cfg, strop__optbuf *b) {
  const mha_cfg *c = cfg;
  strop__optbuf_int(b, "embed_dim", c->embed_dim);
  strop__optbuf_int(b, "num_heads", c->num_heads);
  strop__optbuf_bool(b, "bias", c->bias);
  strop__optbuf_float(b, "dropout", c->dropout);
  strop__optbuf_bool(b, "causal", c->causal);
}

static strop_status mha_infer(strop__node *n) {
  mha_cfg *c = n->cfg;
  const strop__shape *s = &n->in_shapes[0];
  char buf[96];
  if (s->rank != 2)
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (multihead_attention): input must be [T, embed_dim] per "
                      "sample, got %s",
                      n->name, strop__shape_str(s, buf, sizeof buf));
  if (c->embed_dim && c->embed_dim != s->d[1])
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (multihead_attention): embed_dim is %lld but the input %s has "
                      "%lld features",
                      n->name, (long long)c->embed_dim, strop__shape_str(s, buf, sizeof buf),
                      (long long)s->d[1]);
  if (s->d[1] % c->num_heads != 0)
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (multihead_attention): embed_dim %lld is not divisible by "
                      "num_heads %lld",
                      n->name, (long long)s->d[1], (long long)c->num_heads);
  c->embed_dim = s->d[1];
  n->out_shape = *s;
  int64_t wd[2] = {c->embed_dim, c->embed_dim};
  strop_status st = STROP_OK;
  for (int i = 0; i < 8 && st == STROP_OK; i++) {
    if (i % 2 == 1 && !c->bias) continue;
    st = strop__node_add_param(n, PARAM_NAMES[i], i % 2 ? 1 : 2, wd, 0);
  }
  return st;
}

/* PyTorch: in_proj_weight [3D, D] gets xavier_uniform (so each of q/k/v gets the bound of a
 * [3D, D] matrix), in_proj_bias and out_proj.bias zeros, out_proj.weight nn.Linear's default. */
static void mha_init(strop__node *n, strop__rng *rng) {
  const mha_cfg *c = n->cfg;
  const int64_t d = c->embed_dim;
  for (int i = 0; i < 8; i++) {
    strop__param *p = strop__node_param(n, PARAM_NAMES[i]);
    if (!p) continue;
    if (i % 2) strop__init_zeros(p->data, p->numel);
    else if (i < 6) strop__init_xavier_uniform(p->data, p->numel, d, 3 * d, 1.0, rng);
    else strop__init_pytorch_linear_default(p->data, p->numel, d, rng);
  }
}

static void mha_dims(const strop__node *n, const strop__exec *x, const strop__act *in,
                     strop__mha_dims *dm) {
  const mha_cfg *c = n->cfg;
  dm->n = in[0].n;
  dm->t = in[0].shape.d[0];
  dm->d = c->embed_dim;
  dm->heads = c->num_heads;
  dm->causal = c->causal;
  dm->pad_mask = x->pad_mask;
  dm->dropout = c->dropout;
}

static void mha_weights(strop__node *n, strop__mha_weights *w) {
  const float *p[8];
  for (int i = 0; i < 8; i++) {
    strop__param *q = strop__node_param(n, PARAM_NAMES[i]);
    p[i] = q ? q->data : NULL;
  }
  *w = (strop__mha_weights){p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]};
}

static strop_status mha_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                strop__act *out) {
  const mha_cfg *c = n->cfg;
  strop__mha_dims dm;
  mha_dims(n, x, in, &dm);
  const size_t act = (size_t)(dm.n * dm.t * dm.d), att = (size_t)(dm.n * dm.heads * dm.t * dm.t);
  const int drop = x->training && c->dropout > 0.0f;
  strop__mha_cache *cache = strop__arena_alloc(x->arena, sizeof *cache);
  float *buf = strop__arena_alloc(x->arena, (4 * act + att) * sizeof(float));
  float *scratch =
      strop__arena_alloc(x->arena, strop__attention_forward_scratch(&dm) * sizeof(float));
  uint8_t *keep = drop ? strop__arena_alloc(x->arena, att) : NULL;
  if (!cache || !buf || !scratch || (drop && !keep))
    return strop__err(STROP_E_NOMEM, "layer '%s' (multihead_attention): out of memory", n->name);
  *cache = (strop__mha_cache){buf, buf + act, buf + 2 * act, buf + 3 * act, buf + 4 * act, keep};
  n->saved = cache;
  strop__mha_weights w;
  mha_weights(n, &w);
  strop__attention_forward(&dm, in[0].data, &w, cache, x->rng, scratch, out->data);
  return STROP_OK;
}

static strop_status mha_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                 const strop__act *out, const float *dout, float *const *din) {
  (void)out;
  const strop__mha_cache *cache = n->saved;
  if (!cache)
    return strop__err(STROP_E_INTERNAL,
                      "layer '%s' (multihead_attention): backward without forward", n->name);
  strop__mha_dims dm;
  mha_dims(n, x, in, &dm);
  float *scratch =
      strop__arena_alloc(x->arena, strop__attention_backward_scratch(&dm) * sizeof(float));
  if (!scratch)
    return strop__err(STROP_E_NOMEM, "layer '%s' (multihead_attention): out of memory", n->name);
  strop__mha_weights w;
  mha_weights(n, &w);
  float *g[8];
  for (int i = 0; i < 8; i++) {
    strop__param *p = strop__node_param(n, PARAM_NAMES[i]);
    g[i] = p && p->trainable ? p->grad : NULL;
  }
  strop__mha_grads gr = {g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]};
  strop__attention_backward(&dm, in[0].data, &w, cache, dout, scratch, din[0], &gr);
  return STROP_OK;
}

const strop__layer_vtable strop__layer_multihead_attention = {
    .type = "multihead_attention",
    .cfg_size = sizeof(mha_cfg),
    .n_inputs = 1,
    .flags = STROP__LAYER_STOCHASTIC,
    .parse = mha_parse,
    .write = mha_write,
    .infer = mha_infer,
    .init = mha_init,
    .forward = mha_forward,
    .backward = mha_backward,
};
