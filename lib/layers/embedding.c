/* strop — token embedding (torch.nn.Embedding: ids stored as floats [N, *] -> [N, *, D]) and a
 * learned positional embedding (input [N, T, D] + weight[:T]). */
#include <math.h>

#include "layers/init.h"
#include "layers/layer.h"

static float *grad_of(strop__param *p) { return p && p->trainable ? p->grad : NULL; }

/* ------------------------------------------------------------------ embedding */

#define NO_PADDING INT64_MIN

typedef struct embedding_cfg {
  int64_t num_embeddings;
  int64_t embedding_dim;
  int64_t padding_idx; /* normalised to [0, num_embeddings) in parse; NO_PADDING when absent */
} embedding_cfg;

static strop_status embedding_parse(void *cfg, strop__opts *o) {
  embedding_cfg *c = cfg;
  strop_status st;
  c->padding_idx = NO_PADDING;
  if ((st = strop__opt_require(o, "num_embeddings"))) return st;
  if ((st = strop__opt_int(o, "num_embeddings", 1, INT32_MAX, &c->num_embeddings))) return st;
  if ((st = strop__opt_require(o, "embedding_dim"))) return st;
  if ((st = strop__opt_int(o, "embedding_dim", 1, INT32_MAX, &c->embedding_dim))) return st;
  if ((st = strop__opt_int(o, "padding_idx", INT32_MIN, INT32_MAX, &c->padding_idx))) return st;
  if (c->padding_idx != NO_PADDING) {
    /* PyTorch accepts -num_embeddings <= padding_idx < num_embeddings, negatives from the end */
    if (c->padding_idx < -c->num_embeddings || c->padding_idx >= c->num_embeddings)
      return strop__opt_error(o, "padding_idx", "must be in [%lld, %lld), got %lld",
                              (long long)-c->num_embeddings, (long long)c->num_embeddings,
                              (long long)c->padding_idx);
    if (c->padding_idx < 0) c->padding_idx += c->num_embeddings;
  }
  return STROP_OK;
}

/* padding_idx is written only when set (None in PyTorch). The graph learns the known keys by
 * writing a zeroed cfg, where padding_idx is 0, so the key is listed there. */
static void embedding_write(const void *cfg, strop__optbuf *b) {
  const embedding_cfg *c = cfg;
  strop__optbuf_int(b, "num_embeddings", c->num_embeddings);
  strop__optbuf_int(b, "embedding_dim", c->embedding_dim);
  if (c->padding_idx != NO_PADDING) strop__optbuf_int(b, "padding_idx", c->padding_idx);
}

static strop_status embedding_infer(strop__node *n) {
  embedding_cfg *c = n->cfg;
  const strop__shape *s = &n->in_shapes[0];
  char buf[96];
  if (s->rank + 1 > STROP_MAX_RANK)
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (embedding): input %s has too many dimensions to add one",
                      n->name, strop__shape_str(s, buf, sizeof buf));
  n->out_shape = *s;
  n->out_shape.d[s->rank] = c->embedding_dim;
  n->out_shape.rank = s->rank + 1;
  int64_t wd[2] = {c->num_embeddings, c->embedding_dim};
  return strop__node_add_param(n, "weight", 2, wd, 0);
}

static void embedding_init(strop__node *n, strop__rng *rng) {
  const embedding_cfg *c = n->cfg;
  strop__param *w = strop__node_param(n, "weight");
  strop__init_normal(w->data, w->numel, 0.0f, 1.0f, rng);
  if (c->padding_idx != NO_PADDING)
    strop__init_zeros(w->data + c->padding_idx * c->embedding_dim, (size_t)c->embedding_dim);
}

static strop_status embedding_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                      strop__act *out) {
  (void)x;
  const embedding_cfg *c = n->cfg;
  const float *w = strop__node_param(n, "weight")->data;
  const int64_t per = (int64_t)strop__shape_numel(&in[0].shape), d = c->embedding_dim;
  const int64_t total = in[0].n * per;
  const float *ids = in[0].data;
  for (int64_t i = 0; i < total; i++) {
    float f = ids[i];
    /* the comparison also rejects NaN; floorf rejects fractions */
    if (!(f >= 0.0f && f < (float)c->num_embeddings) || f != floorf(f))
      return strop__err(STROP_E_INVALID_ARG,
                        "layer '%s' (embedding): token id %g at sample %lld, position %lld is "
                        "not an integer in [0, %lld)",
                        n->name, (double)f, (long long)(i / per), (long long)(i % per),
                        (long long)c->num_embeddings);
  }
  float *y = out->data;
  for (int64_t i = 0; i < total; i++) {
    const float *row = w + (int64_t)ids[i] * d;
    float *yr = y + i * d;
    for (int64_t j = 0; j < d; j++) yr[j] = row[j];
  }
  return STROP_OK;
}

static strop_status embedding_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                       const strop__act *out, const float *dout,
                                       float *const *din) {
  (void)x;
  (void)out;
  (void)din; /* token ids have no gradient */
  const embedding_cfg *c = n->cfg;
  float *gw = grad_of(strop__node_param(n, "weight"));
  if (!gw) return STROP_OK;
  const int64_t per = (int64_t)strop__shape_numel(&in[0].shape), d = c->embedding_dim;
  const int64_t total = in[0].n * per;
  for (int64_t i = 0; i < total; i++) {
    int64_t id = (int64_t)in[0].data[i]; /* validated by the forward */
    if (id == c->padding_idx) continue;
    float *gr = gw + id * d;
    const float *dr = dout + i * d;
    for (int64_t j = 0; j < d; j++) gr[j] += dr[j];
  }
  return STROP_OK;
}

const strop__layer_vtable strop__layer_embedding = {
    .type = "embedding",
    .cfg_size = sizeof(embedding_cfg),
    .n_inputs = 1,
    .flags = 0,
    .parse = embedding_parse,
    .write = embedding_write,
    .infer = embedding_infer,
    .init = embedding_init,
    .forward = embedding_forward,
    .backward = embedding_backward,
};

/* ------------------------------------------------------------------ positional_embedding */

typedef struct posemb_cfg {
  int64_t num_embeddings; /* the longest sequence (max_len) */
  int64_t embedding_dim;  /* 0 until inferred */
} posemb_cfg;

static strop_status posemb_parse(void *cfg, strop__opts *o) {
  posemb_cfg *c = cfg;
  strop_status st;
  if ((st = strop__opt_require(o, "num_embeddings"))) return st;
  if ((st = strop__opt_int(o, "num_embeddings", 1, INT32_MAX, &c->num_embeddings))) return st;
  return strop__opt_int(o, "embedding_dim", 1, INT32_MAX, &c->embedding_dim);
}

static void posemb_write(const void *cfg, strop__optbuf *b) {
  const posemb_cfg *c = cfg;
  strop__optbuf_int(b, "num_embeddings", c->num_embeddings);
  strop__optbuf_int(b, "embedding_dim", c->embedding_dim);
}

static strop_status posemb_infer(strop__node *n) {
  posemb_cfg *c = n->cfg;
  const strop__shape *s = &n->in_shapes[0];
  char buf[96];
  if (s->rank != 2)
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (positional_embedding): input must be [T, D] per sample, got %s",
                      n->name, strop__shape_str(s, buf, sizeof buf));
  if (s->d[0] > c->num_embeddings)
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (positional_embedding): sequence length %lld exceeds "
                      "num_embeddings %lld",
                      n->name, (long long)s->d[0], (long long)c->num_embeddings);
  if (c->embedding_dim && c->embedding_dim != s->d[1])
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (positional_embedding): embedding_dim is %lld but the input %s "
                      "has %lld features",
                      n->name, (long long)c->embedding_dim, strop__shape_str(s, buf, sizeof buf),
                      (long long)s->d[1]);
  c->embedding_dim = s->d[1];
  n->out_shape = *s;
  int64_t wd[2] = {c->num_embeddings, c->embedding_dim};
  return strop__node_add_param(n, "weight", 2, wd, 0);
}

static void posemb_init(strop__node *n, strop__rng *rng) {
  strop__param *w = strop__node_param(n, "weight");
  strop__init_normal(w->data, w->numel, 0.0f, 1.0f, rng); /* nn.Embedding's N(0, 1) */
}

static strop_status posemb_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                   strop__act *out) {
  (void)x;
  const float *w = strop__node_param(n, "weight")->data;
  const int64_t per = in[0].shape.d[0] * in[0].shape.d[1]; /* the first T rows of weight */
  for (int64_t b = 0; b < in[0].n; b++) {
    const float *xi = in[0].data + b * per;
    float *yi = out->data + b * per;
    for (int64_t j = 0; j < per; j++) yi[j] = xi[j] + w[j];
  }
  return STROP_OK;
}

static strop_status posemb_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                    const strop__act *out, const float *dout, float *const *din) {
  (void)x;
  (void)out;
  float *gw = grad_of(strop__node_param(n, "weight"));
  const int64_t per = in[0].shape.d[0] * in[0].shape.d[1];
  for (int64_t b = 0; b < in[0].n; b++) {
    const float *dr = dout + b * per;
    if (din[0]) {
      float *dx = din[0] + b * per;
      for (int64_t j = 0; j < per; j++) dx[j] += dr[j];
    }
    if (gw)
      for (int64_t j = 0; j < per; j++) gw[j] += dr[j];
  }
  return STROP_OK;
}

const strop__layer_vtable strop__layer_positional_embedding = {
    .type = "positional_embedding",
    .cfg_size = sizeof(posemb_cfg),
    .n_inputs = 1,
    .flags = 0,
    .parse = posemb_parse,
    .write = posemb_write,
    .infer = posemb_infer,
    .init = posemb_init,
    .forward = posemb_forward,
    .backward = posemb_backward,
};
