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

enum { W }; /* parameter slot */

static const double NONE_V[] = {(double)NO_PADDING, (double)NO_PADDING, (double)NO_PADDING};

static const strop__optdef EMB_OPTIONS[] = {
    {.name = "num_embeddings", .type = STROP__OT_INT, .off = offsetof(embedding_cfg, num_embeddings),
     .lo = 1, .hi = INT32_MAX, .example = "10", .doc = "vocabulary size"},
    {.name = "embedding_dim", .type = STROP__OT_INT, .off = offsetof(embedding_cfg, embedding_dim),
     .lo = 1, .hi = INT32_MAX, .example = "4", .doc = "width of each vector"},
    {.name = "padding_idx", .type = STROP__OT_INT, .off = offsetof(embedding_cfg, padding_idx),
     .dflt = "none", .lo = INT32_MIN, .hi = INT32_MAX, .words = strop__word_none,
     .word_values = NONE_V,
     .doc = "an id whose vector gets no gradient (negative: from the end); none: no such id"},
    {NULL}};

static const strop__paramdef EMB_PARAMS[] = {
    [W] = {"weight", 0, "[num_embeddings, embedding_dim]"},
    {NULL}};

static strop_status embedding_check(void *cfg, strop__opts *o) {
  embedding_cfg *c = cfg;
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

/* ids [*] -> vectors [*, embedding_dim] */
static strop_status embedding_shape(const strop__node *n, const strop__shape *in,
                                    strop__shape *out) {
  const embedding_cfg *c = n->cfg;
  const strop__shape *s = &in[0];
  char buf[96];
  if (s->rank + 1 > STROP_MAX_RANK)
    return strop__shape_error(n, "input %s has too many dimensions to add one",
                              strop__shape_str(s, buf, sizeof buf));
  *out = *s;
  out->d[s->rank] = c->embedding_dim;
  out->rank = s->rank + 1;
  return STROP_OK;
}

static strop_status embedding_infer(strop__node *n) {
  const embedding_cfg *c = n->cfg;
  strop_status st = embedding_shape(n, n->in_shapes, &n->out_shape);
  if (st) return st;
  int64_t wd[2] = {c->num_embeddings, c->embedding_dim};
  return strop__node_declare(n, W, 2, wd);
}

static void embedding_init(strop__node *n, strop__rng *rng) {
  const embedding_cfg *c = n->cfg;
  strop__param *w = strop__node_p(n, W);
  strop__init_normal(w->data, w->numel, 0.0f, 1.0f, rng);
  if (c->padding_idx != NO_PADDING)
    strop__init_zeros(w->data + c->padding_idx * c->embedding_dim, (size_t)c->embedding_dim);
}

static strop_status embedding_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                      strop__act *out) {
  (void)x;
  const embedding_cfg *c = n->cfg;
  const float *w = strop__node_p(n, W)->data;
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
  float *gw = grad_of(strop__node_p(n, W));
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
    .doc = "token ids (stored as floats) [*] -> vectors [*, embedding_dim] (torch.nn.Embedding)",
    .cfg_size = sizeof(embedding_cfg),
    .n_inputs = 1,
    .flags = 0,
    .options = EMB_OPTIONS,
    .params = EMB_PARAMS,
    .check = embedding_check,
    .shape = embedding_shape,
    .infer = embedding_infer,
    .init = embedding_init,
    .forward = embedding_forward,
    .backward = embedding_backward,
};

/* ------------------------------------------------------------------ positional_embedding */

typedef struct posemb_cfg {
  int64_t num_embeddings; /* the longest sequence (max_len) */
  int64_t embedding_dim;  /* 0 until inferred */
  int positions;          /* POS_*: which row each position takes */
  int64_t offset;         /* row of the first position (RoBERTa: padding_idx + 1) */
  int leading_one;        /* weight stored [1, num_embeddings, D] (torchvision's ViT) */
} posemb_cfg;

enum { POS_ARANGE, POS_MASK, POS_CONSTANT };
static const char *const POS_MODES[] = {"arange", "mask", "constant", NULL};

static const strop__optdef POS_OPTIONS[] = {
    {.name = "num_embeddings", .type = STROP__OT_INT, .off = offsetof(posemb_cfg, num_embeddings),
     .lo = 1, .hi = INT32_MAX, .example = "16", .doc = "the longest sequence (max_len)"},
    STROP__OPT_AUTO_INT(posemb_cfg, embedding_dim, "embedding_dim",
                        "width D of the [T, D] input; auto: inferred"),
    STROP__OPT_ENUM(posemb_cfg, positions, "positions", "arange", POS_MODES,
                    "arange: position t takes row offset + t; mask: the k-th token of the "
                    "batch's padding mask takes row offset + k, padding row max(offset - 1, 0) "
                    "(left padding then gives each token the position it has alone); constant: "
                    "every position takes row offset (BERT's token_type_embeddings for "
                    "token type offset)"),
    STROP__OPT_INT(posemb_cfg, offset, "offset", "0", 0, INT32_MAX,
                   "row of the first position (RoBERTa: padding_idx + 1)"),
    STROP__OPT_BOOL(posemb_cfg, leading_one, "leading_one", "false",
                    "weight stored [1, num_embeddings, D] (torchvision's encoder.pos_embedding)"),
    {NULL}};

static const strop__paramdef POS_PARAMS[] = {
    [W] = {"weight", 0, "[num_embeddings, embedding_dim] ([1, ...] with leading_one)"},
    {NULL}};

/* [T, D] -> [T, D] for offset + T up to num_embeddings */
static strop_status posemb_shape(const strop__node *n, const strop__shape *in,
                                 strop__shape *out) {
  const posemb_cfg *c = n->cfg;
  const strop__shape *s = &in[0];
  char buf[96];
  if (s->rank != 2)
    return strop__shape_error(n, "input must be [T, D] per sample, got %s",
                              strop__shape_str(s, buf, sizeof buf));
  if (c->positions == POS_CONSTANT ? c->offset >= c->num_embeddings
                                    : s->d[0] + c->offset > c->num_embeddings)
    return strop__shape_error(n, "sequence length %lld%s exceeds num_embeddings %lld",
                              (long long)s->d[0], c->offset ? " after the offset" : "",
                              (long long)c->num_embeddings);
  if (c->embedding_dim && c->embedding_dim != s->d[1])
    return strop__shape_error(n, "embedding_dim is %lld but the input %s has %lld features",
                              (long long)c->embedding_dim, strop__shape_str(s, buf, sizeof buf),
                              (long long)s->d[1]);
  *out = *s;
  return STROP_OK;
}

static strop_status posemb_infer(strop__node *n) {
  posemb_cfg *c = n->cfg;
  strop_status st = posemb_shape(n, n->in_shapes, &n->out_shape);
  if (st) return st;
  c->embedding_dim = n->in_shapes[0].d[1];
  int64_t wd[3] = {1, c->num_embeddings, c->embedding_dim};
  return c->leading_one ? strop__node_declare(n, W, 3, wd) : strop__node_declare(n, W, 2, wd + 1);
}

static void posemb_init(strop__node *n, strop__rng *rng) {
  strop__param *w = strop__node_p(n, W);
  strop__init_normal(w->data, w->numel, 0.0f, 1.0f, rng); /* nn.Embedding's N(0, 1) */
}

/* The row position t of sample b takes. */
static int64_t posemb_row(const posemb_cfg *c, const float *mask, int64_t t, int64_t *count) {
  if (c->positions == POS_CONSTANT) return c->offset;
  if (!mask) return c->offset + t;
  if (mask[t] == 0.0f) return c->offset > 0 ? c->offset - 1 : 0;
  return c->offset + (*count)++;
}

static strop_status posemb_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                   strop__act *out) {
  const posemb_cfg *c = n->cfg;
  const float *w = strop__node_p(n, W)->data;
  const int64_t t_len = in[0].shape.d[0], d = in[0].shape.d[1], per = t_len * d;
  strop_status st = STROP_OK;
  const float *mask = c->positions == POS_MASK ? strop__exec_mask(n, x, t_len, &st) : NULL;
  if (st) return st;
  for (int64_t b = 0; b < in[0].n; b++) {
    const float *xi = in[0].data + b * per;
    float *yi = out->data + b * per;
    int64_t count = 0;
    for (int64_t t = 0; t < t_len; t++) {
      const float *wr = w + posemb_row(c, mask ? mask + b * t_len : NULL, t, &count) * d;
      for (int64_t j = 0; j < d; j++) yi[t * d + j] = xi[t * d + j] + wr[j];
    }
  }
  return STROP_OK;
}

static strop_status posemb_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                    const strop__act *out, const float *dout, float *const *din) {
  (void)out;
  const posemb_cfg *c = n->cfg;
  float *gw = grad_of(strop__node_p(n, W));
  const int64_t t_len = in[0].shape.d[0], d = in[0].shape.d[1], per = t_len * d;
  strop_status st = STROP_OK;
  const float *mask = c->positions == POS_MASK ? strop__exec_mask(n, x, t_len, &st) : NULL;
  if (st) return st;
  for (int64_t b = 0; b < in[0].n; b++) {
    const float *dr = dout + b * per;
    if (din[0]) {
      float *dx = din[0] + b * per;
      for (int64_t j = 0; j < per; j++) dx[j] += dr[j];
    }
    if (!gw) continue;
    int64_t count = 0;
    for (int64_t t = 0; t < t_len; t++) {
      float *gr = gw + posemb_row(c, mask ? mask + b * t_len : NULL, t, &count) * d;
      for (int64_t j = 0; j < d; j++) gr[j] += dr[t * d + j];
    }
  }
  return STROP_OK;
}

const strop__layer_vtable strop__layer_positional_embedding = {
    .type = "positional_embedding",
    .doc = "adds a learned position vector: [T, D] + weight[offset:offset + T] (GPT-2's wpe, "
           "BERT's position_embeddings), positions counted over the padding mask if asked",
    .cfg_size = sizeof(posemb_cfg),
    .n_inputs = 1,
    .flags = 0,
    .options = POS_OPTIONS,
    .params = POS_PARAMS,
    .shape = posemb_shape,
    .infer = posemb_infer,
    .init = posemb_init,
    .forward = posemb_forward,
    .backward = posemb_backward,
};
